"""The agents benchmark: its measures, their intervals, its verdicts on the goals, and the files it
writes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import musicgym  # noqa: F401  (registers the environment)
from musicgym.benchmarks import agents_bench, measures
from musicgym.benchmarks.agents_bench import AgentsBenchConfig
from musicgym.benchmarks.character import character_table
from musicgym.benchmarks.goals import CHARACTER_GOALS, is_better
from musicgym.benchmarks.goals import melody_goals as goals
from musicgym.benchmarks.measures import Cell
from musicgym.benchmarks.report import markdown_table
from musicgym.metrics import HISTOGRAMS, PUBLISHED, STATISTICS, pitch_class_histogram
from musicgym.tasks import CHORALE, MELODY, entropy_bits, theory_rewards

FAKE_DATA = "fake-data"
REFERENCE_DATA = agents_bench.reference_data  # before the fixture replaces it
TEST_MELODIES = MELODY.data_column


def summarise(runs, bootstrap=None):
    return measures.summarise(runs, bootstrap, tuple(MELODY.measures))


def pitch_class_entropy(melodies: list[list[int]]) -> float:
    return float(entropy_bits(sum(pitch_class_histogram(m) for m in melodies)))


@pytest.fixture(autouse=True)
def fake_test_melodies(monkeypatch) -> list[list[int]]:
    """Test melodies of a stand-in dataset: the prior's own data would convert for minutes."""
    rng = np.random.default_rng(5)
    tokens = np.array([14, 16, 18, 19, 21, 23, 25, 26, 1, 1, 1, 0])  # C major, holds, rests
    windows = rng.choice(tokens, (40, 32)).tolist()
    monkeypatch.setattr(agents_bench, "reference_data", lambda *_: (FAKE_DATA, windows))
    return windows


@pytest.mark.parametrize(
    "statistic, ours, theirs, better",
    [
        ("notes_not_in_key", 0.5, 1.0, True),
        ("notes_not_in_key", 1.5, 1.0, False),
        ("autocorrelation_lag1", 0.05, -0.11, True),
        ("autocorrelation_lag1", -0.2, 0.11, False),
        ("notes_in_motif", 80.0, 75.7, True),
        ("notes_in_motif", 75.7, 75.7, True),
        ("leaps_resolved", math.nan, 50.0, False),
        ("kl_intervals", 0.1, 0.2, True),
    ],
)
def test_is_better_follows_each_statistics_direction(
    statistic: str, ours: float, theirs: float, better: bool
) -> None:
    assert is_better(statistic, ours, theirs) is better


@pytest.mark.parametrize(
    "melodies, entropy",
    [
        ([[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]], math.log2(12)),
        ([[14, 26, 1, 0, 14]], 0.0),  # only C
        ([[14, 16], [1, 0]], 1.0),  # C and D, once each
        ([[0, 1, 1]], 0.0),  # no pitch at all
    ],
)
def test_pitch_class_entropy(melodies: list[list[int]], entropy: float) -> None:
    assert pitch_class_entropy(melodies) == pytest.approx(entropy)


def test_theory_rewards_are_the_rules_only_env_rewards_times_c() -> None:
    rng = np.random.default_rng(0)
    melodies = rng.integers(0, 38, (3, 32)).tolist()
    config = agents_bench.env_config(AgentsBenchConfig(c=0.5))
    rewards = theory_rewards(melodies, config)
    for melody, row in zip(melodies, rewards):
        env = gym.make("MusicComposition-v0", prior=None, c=0.5)
        env.reset(seed=0)
        expected = [env.step(token)[1] * 0.5 for token in melody]
        np.testing.assert_allclose(row, expected)


def test_contributions_give_the_measures_and_their_intervals() -> None:
    from musicgym.agents.common import load_prior
    from musicgym.envs.stepper import melody_statistics

    melodies = np.random.default_rng(2).integers(0, 38, (6, 32)).tolist()
    prior, config = load_prior("melody16"), agents_bench.env_config(AgentsBenchConfig())
    measured = measures.measure(MELODY, melodies, prior, config)
    expected = melody_statistics(prior, melodies, config.key)  # the spec's statistics and log p
    expected["theory_reward"] = float(theory_rewards(melodies, config).mean())
    expected["pitch_class_entropy"] = pitch_class_entropy(melodies)
    for name, value in expected.items():
        assert measured["measures"][name] == pytest.approx(value, nan_ok=True), name
    reference = {name: np.ones(len(histogram([14]))) for name, histogram in HISTOGRAMS.items()}
    points = measures.point_measures(MELODY, measured, reference)
    bounds = measures.interval_bounds(MELODY, measured, reference, 200)
    for name in ("notes_not_in_key", "log_p", "theory_reward", "kl_intervals"):
        assert bounds[name][0] <= points[name] <= bounds[name][1], name
    assert "distinct_melodies" not in bounds  # a resample repeats melodies: no interval


def test_goals_compare_rltuner_q_with_the_published_columns() -> None:
    tuned = dict(PUBLISHED["Q"])  # exactly Jaques et al.'s Q: ties count as matching
    tuned["log_p"], rules_only = -1.0, {name: 0.0 for name in STATISTICS} | {"log_p": -3.6}
    verdict = goals({"rltuner-q": summarise([tuned]), "rules-only": summarise([rules_only])})
    assert verdict["matches_jaques_q_on"] == list(STATISTICS)
    assert verdict["matches_jaques_q_with_ci_on"] == []  # one run and no bootstrap: no interval
    assert verdict["log_p_above_rules_only"] == pytest.approx(2.6)
    assert verdict["log_p_at_least_1_nat_above_rules_only"]
    # Jaques et al.'s Q beats the Bi-axial + Q paper on notes out of key (1.0 < 2.7)
    assert "notes_not_in_key" in verdict["beats_bi_axial_q_on"]
    assert "melodies_starting_with_tonic" in verdict["beats_bi_axial_q_on"]
    assert goals({"random": summarise([tuned])}) == {}


@pytest.mark.parametrize(
    "statistic, low, high, on_ci",
    [
        ("notes_not_in_key", 0.5, 2.5, True),  # lower is better: all of it below 2.7
        ("notes_not_in_key", 0.5, 3.0, False),
        ("autocorrelation_lag1", -0.04, 0.05, True),  # nearer 0 than -0.05 all along
        ("autocorrelation_lag1", -0.06, 0.01, False),
        ("notes_in_motif", 49.3, 60.0, True),  # higher is better, ties count
        ("notes_in_motif", 45.0, 60.0, False),
    ],
)
def test_goals_report_where_the_whole_interval_is_better(
    statistic: str, low: float, high: float, on_ci: bool
) -> None:
    published = PUBLISHED["Bi-axial + Q (DQN paper)"]
    cells = {name: Cell(published[name]) for name in STATISTICS}
    cells[statistic] = Cell((low + high) / 2, low, high, "bootstrap")
    verdict = goals({"rltuner-q": cells})
    assert (statistic in verdict["beats_bi_axial_q_with_ci_on"]) is on_ci
    assert verdict["beats_bi_axial_q_with_ci_on"] in ([], [statistic])


def test_summarise_gives_the_t_interval_over_seeds_else_the_bootstrap() -> None:
    runs = [{"log_p": value, "notes_not_in_key": 5.0} for value in (-1.0, -2.0, -3.0)]
    cells = summarise(runs, bootstrap={"log_p": (-9.0, 9.0)})
    assert cells["log_p"].interval == "t" and cells["log_p"].mean == -2.0
    assert cells["log_p"].half_width == pytest.approx(4.302653 / math.sqrt(3), abs=1e-4)
    assert cells["notes_not_in_key"].half_width == 0.0  # the seeds agree
    single = summarise(runs[:1], bootstrap={"log_p": (-1.5, -0.75)})
    assert (single["log_p"].low, single["log_p"].high) == (-1.5, -0.75)
    assert single["log_p"].interval == "bootstrap"
    assert single["notes_not_in_key"] == Cell(5.0)  # no bounds: no interval
    assert math.isnan(single["kl_intervals"].mean)


def test_markdown_table_shows_intervals_and_the_legend() -> None:
    runs = [{name: float(i) for name in MELODY.measures} for i in (1, 2)]
    table = markdown_table(
        MELODY, {"rltuner-q": summarise(runs), "random": summarise(runs[:1])}, 1000
    )
    row = next(line for line in table.splitlines() if line.startswith("| notes not in key"))
    assert row.endswith("| 1.50 ± 6.35 | 1.00 |")  # t(1) = 12.706; 12.706 * 0.707 / sqrt(2)
    assert "**lower**: notes excessively repeated (%); notes not in key (%);" in table
    assert "KL to the test melodies: note lengths (nats)" in table
    assert "distinct token 4-grams (%)" in table.split("up to the test melodies'")[1]
    assert "environment steps trained" not in table.split("Better:")[1]


def test_reference_melodies_are_bar_aligned_windows_of_the_test_split(monkeypatch) -> None:
    from musicgym.priors import data as prior_data
    from musicgym.priors import registry as prior_registry

    class FakeDataset:
        resolution = 4

        def melodies(self, split: str) -> list[list[int]]:
            if split == "valid":
                return [[5] * 32]
            assert split == "test"
            return [list(range(2, 38)) * 2 + [0] * 8, [14] * 20]  # 80 tokens, 20 tokens

    asked = {}
    monkeypatch.setattr(
        prior_data, "load_dataset", lambda name, **kw: asked.update(kw, name=name) or FakeDataset()
    )
    card = {"name": "essen", "lowest_pitch": 42, "num_pitches": 48, "key_normalised": True}
    monkeypatch.setattr(prior_registry, "read_checkpoint", lambda path: {"data": card})

    def reference_melodies(prior: str, length: int):
        return REFERENCE_DATA(AgentsBenchConfig(prior=prior, length=length))

    data, windows = reference_melodies("melody16", 32)
    assert data == "essen" and asked["key_normalise"] is True and asked["lowest_pitch"] == 42
    assert windows == [list(range(2, 34)), [*range(34, 38), *range(2, 30)]]  # not from 64: short
    _, windows = reference_melodies("melody16", 20)  # windows start every 2 bars
    assert [w[0] for w in windows] == [2, 34, 14]
    chosen_on = AgentsBenchConfig(prior="melody16", length=32, split="valid")
    assert REFERENCE_DATA(chosen_on) == ("essen", [[5] * 32])  # settings are chosen on valid
    card.pop("key_normalised")  # an older card
    reference_melodies("melody16", 32)
    assert asked["key_normalise"] is False
    monkeypatch.setattr(prior_registry, "read_checkpoint", lambda path: {})
    assert reference_melodies("melody16", 32) is None  # no dataset named: no data column


def test_run_writes_tables_pictures_and_midi(tmp_path: Path, fake_test_melodies) -> None:
    config = AgentsBenchConfig(agents=("random", "prior"), pieces=8, out=str(tmp_path))
    report = agents_bench.run(config)
    assert set(report["results"]) == {"random", "prior"}
    table = (tmp_path / "results.md").read_text()
    for column in PUBLISHED:
        assert column in table
    assert "**random**" in table and "**prior**" in table and f"| {TEST_MELODIES} |" in table
    assert "±" in table and "KL to the test melodies" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"]["random"][0]["distinct_melodies"] == 100.0
    random_log_p = saved["results"]["random"][0]["log_p"]
    assert random_log_p < saved["results"]["prior"][0]["log_p"]  # the prior likes its own samples
    described = {
        "column": TEST_MELODIES,
        "data": FAKE_DATA,
        "split": "test",
        "pieces": 40,
        "sampled": 8,
    }
    assert saved["data_column"] == described
    cell = saved["table"]["random"]["notes_not_in_key"]
    assert cell["interval"] == "bootstrap" and cell["low"] <= cell["mean"] <= cell["high"]
    kl = saved["table"]
    assert kl[TEST_MELODIES]["kl_pitch_classes"]["mean"] < kl["random"]["kl_pitch_classes"]["mean"]
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["column"] for row in rows[:: len(MELODY.measures)]] == [
        TEST_MELODIES,
        "random",
        "prior",
    ]
    assert {"mean", "ci_low", "ci_high", "interval"} <= set(rows[0])
    assert (tmp_path / "piano_rolls.png").stat().st_size > 1000
    assert len(list((tmp_path / "midi" / "random").glob("*.mid"))) == 4
    assert len(list((tmp_path / "midi" / "test-melodies").glob("*.mid"))) == 4  # the data too
    frontier = saved["frontier_without_repetition"]  # the goals' frontier, and their table
    assert frontier and all(0 <= point["notes_in_motif"] <= 100 for point in frontier)
    character = character_table("random", [saved]).splitlines()
    assert character[0] == f"| measure | goal | {TEST_MELODIES} | prior | random 50k |"
    assert len([line for line in character if line.startswith("| ")]) == 2 + 11 + 3
    assert character[-1].startswith("- **random 50k**: ") and "12 goals met" in character[-1]


def test_character_goals_read_jaques_q_at_two_decimals() -> None:
    repetition, in_key, tonic = CHARACTER_GOALS[:3]
    assert repetition.label == "<= 0.0 (Q)" and tonic.label == ">= 28.8 (Q)"
    assert repetition.met(0.004, 15.0) and not repetition.met(0.006, 15.0)
    assert in_key.met(1.0, 0.8) and not in_key.met(1.01, 0.8)
    assert tonic.met(28.8, 4.0) and not tonic.met(28.79, 4.0)
    entropy = next(goal for goal in CHARACTER_GOALS if goal.statistic == "pitch_class_entropy")
    assert entropy.met(2.6, 2.85) and not entropy.met(2.5, 2.85)


def test_load_reuses_measures_and_leaves_out_missing_runs(tmp_path: Path, monkeypatch) -> None:
    settings = {"agents": ("random", "rltuner-q"), "pieces": 6, "out": str(tmp_path)}
    first = agents_bench.run(AgentsBenchConfig(**settings, load=True, jobs=2))
    assert set(first["results"]) == {"random"}  # rltuner-q was never trained: left out
    cache = tmp_path / "runs" / "random-seed0" / measures.MEASURES_FILE
    saved = json.loads(cache.read_text())
    assert len(saved["pieces"]) == 6 and math.isnan(saved["measures"]["trained_steps"])
    assert len(saved["per_piece"]["log_p"]) == 6
    saved["measures"]["distinct_melodies"] = 42.0
    cache.write_text(json.dumps(saved))
    monkeypatch.setattr(agents_bench, "measure", None)  # nothing may be measured again
    reused = agents_bench.run(AgentsBenchConfig(**settings, load=True))
    assert reused["results"]["random"][0]["distinct_melodies"] == 42.0
    assert reused["table"]["random"]["log_p"]["interval"] == "bootstrap"  # from the stored rows
    for name in ("log_p", "kl_intervals"):
        assert reused["table"]["random"][name] == first["table"]["random"][name]
    monkeypatch.undo()
    monkeypatch.setattr(agents_bench, "reference_data", lambda *_: None)  # no data: no KL
    del saved["per_piece"]  # an older file: measured again
    cache.write_text(json.dumps(saved))
    remeasured = agents_bench.run(AgentsBenchConfig(**settings, load=True))
    assert remeasured["results"]["random"][0]["distinct_melodies"] == 100.0
    assert "kl_intervals" not in remeasured["results"]["random"][0]
    assert "KL to" not in (tmp_path / "results.md").read_text().split("Better:")[0]
    shorter = agents_bench.run(AgentsBenchConfig(**{**settings, "pieces": 5}, load=True))
    assert len(shorter["results"]["random"]) == 1
    assert len(json.loads(cache.read_text())["pieces"]) == 5


def test_demo_writes_its_folder_and_prints_the_table(tmp_path: Path, capsys) -> None:
    from musicgym.benchmarks.demo import DemoConfig
    from musicgym.benchmarks.demo import run as run_demo

    config = DemoConfig(out=str(tmp_path / "demo"), steps=64, pieces=4, keep=2)
    table = run_demo(config)
    out = tmp_path / "demo"
    assert len(list((out / "prior").glob("*.mid"))) == 2
    assert len(list((out / "tuned").glob("*.mid"))) == 2
    assert (out / "piano_rolls.png").stat().st_size > 1000
    assert json.loads((out / "statistics.json").read_text()) == json.loads(json.dumps(table))
    assert (out / "run" / "agent.pt").is_file()
    printed = capsys.readouterr().out
    assert "notes not in key" in printed and "Jaques Q" in printed
    character = ("distinct_melodies", "pitch_class_entropy", "kl_note_lengths")
    assert all(name in table["tuned"] for name in character)  # melody16c's card has the data's
    assert "KL to the test melodies: note lengths" in printed
    assert len(list((out / "tuned").glob("*.wav"))) == 2  # a WAV beside each MIDI file
    page = (out / "index.html").read_text()
    assert page.count("<audio ") == 4 and "<h2>prior</h2>" in page and "<h2>tuned</h2>" in page
    assert printed.strip().splitlines()[-1] == f"listen: open {out / 'index.html'}"


def test_like_for_like_counts_each_prior_against_jaques(tmp_path: Path) -> None:
    from dataclasses import asdict

    from musicgym.benchmarks.like_for_like import COLUMNS, like_for_like
    from musicgym.errors import ArgumentError

    def write(folder: Path, prior: str, shift: float) -> None:
        """Every agent exactly Jaques et al.'s column, plus ``shift`` on every statistic."""
        table = {
            agent: {
                m: asdict(Cell(PUBLISHED[column].get(m, 0.0) + shift, 0.0, 1.0, "t"))
                for m in MELODY.measures
            }
            for column, agent in COLUMNS.items()
        }
        folder.mkdir()
        (folder / "results.json").write_text(
            json.dumps({"config": {"prior": prior}, "table": table})
        )

    write(tmp_path / "nr", "note_rnn", 0.0)
    write(tmp_path / "bx", "melody16c", 1000.0)  # far off: better only where higher is better
    text = like_for_like(tmp_path / "nr", tmp_path / "bx")
    assert "| notes not in key (%) | 0.100 | 1.00 | 0.600 | 28.70 | 0.100 ± 0.500 |" in text
    higher = sum(MELODY.better.get(s, "higher") == "higher" for s in STATISTICS)
    assert (
        f"rltuner-q at least as good as Jaques et al.'s Q: 11/11 on note_rnn, {higher}/11" in text
    )
    with pytest.raises(ArgumentError, match="same prior"):
        like_for_like(tmp_path / "nr", tmp_path / "nr")


def test_chorale_demo_writes_chorales_and_their_statistics(tmp_path: Path, capsys) -> None:
    from musicgym.benchmarks.demo import DemoConfig
    from musicgym.benchmarks.demo import run as run_demo
    from musicgym.music.midi import read_midi

    out = tmp_path / "demo"
    config = DemoConfig(out=str(out), chorale=True, steps=64, pieces=2, keep=2)
    table = run_demo(config)
    chorales = sorted((out / "tuned").glob("chorale_*.mid"))
    assert len(chorales) == 2 and len(list((out / "prior").glob("chorale_*.mid"))) == 2
    assert read_midi(chorales[0], lowest_pitch=36, num_pitches=48).num_steps <= 64
    assert set(table) == {"prior", "tuned"} and "parallel_fifths" in table["tuned"]
    assert json.loads((out / "statistics.json").read_text()) == json.loads(json.dumps(table))
    printed = capsys.readouterr().out
    assert "transitions with parallel fifths" in printed and "mean log p per frame" in printed


def test_chorale_goals_count_statistics_closer_to_bach_with_intervals_apart() -> None:
    from musicgym.benchmarks.goals import chorale_goals as goals
    from musicgym.benchmarks.goals import chorale_goals_text

    BACH = CHORALE.data_column

    def column(**values: tuple[float, float, float]) -> dict[str, Cell]:
        cells = {name: Cell(math.nan) for name in CHORALE.measures}
        cells.update({name: Cell(*value, "t") for name, value in values.items()})
        return cells

    fifths, octaves, struck = "parallel_fifths", "parallel_octaves", "struck_frames"
    cadence, entropy = "authentic_cadence", "pitch_class_entropy"
    table = {
        BACH: column(
            **{fifths: (0.2, 0.1, 0.3), octaves: (0.3, 0.2, 0.4), "log_p": (-2,) * 3},
            **{struck: (37.6, 35, 40), cadence: (89, 80, 98), entropy: (2.84, 2.77, 2.91)},
        ),
        "prior": column(
            **{fifths: (1.2, 1.0, 1.4), octaves: (1.8, 1.6, 2.0), "log_p": (-1.8, -1.9, -1.7)},
            **{struck: (34, 33, 35), cadence: (3.5, 1, 6), entropy: (2.87, 2.85, 2.89)},
        ),
        "tuned": column(
            **{fifths: (0.3, 0.2, 0.4), octaves: (1.7, 1.5, 1.9), "log_p": (-2.9, -3.0, -2.8)},
            **{struck: (36, 35, 37), cadence: (61, 50, 72), entropy: (2.5, 2.4, 2.6)},
        ),
    }
    verdict = goals(table)["tuned"]
    assert verdict["closer_to_bach_than_prior"] == [fifths, cadence]  # octaves, struck: overlap
    assert verdict["parallels_per_100_transitions"] == pytest.approx(2.0)
    assert not verdict["parallels_goal_met"]  # 2.0 > 2 * 0.5
    assert verdict["log_p_gap_to_prior"] == pytest.approx(-1.1) and not verdict["log_p_goal_met"]
    like_bach = verdict["bach_like"]  # the chorales-like-Bach issue's goals
    assert like_bach["nearer_bach_on_means"] == [fifths, octaves, cadence, struck]
    assert like_bach["nearer_bach_intervals_apart"] == [fifths, cadence]
    assert not like_bach["nearer_goal_met"] and not like_bach["apart_goal_met"]
    assert like_bach["struck_frames_goal_met"] and not like_bach["entropy_goal_met"]
    assert like_bach["cadence_goal_met"] and like_bach["parallels_to_bach"] == pytest.approx(4.0)
    assert not like_bach["parallels_1_5x_goal_met"] and not like_bach["log_p_goal_met"]
    text = chorale_goals_text(goals(table))
    assert "tuned, like Bach: nearer Bach than the prior on 4/13 means (goal 11: not met)" in text


def test_chorale_bench_is_the_same_code_path(tmp_path: Path, monkeypatch) -> None:
    from musicgym.agents.common import load_prior

    bach = CHORALE.sample_prior(load_prior("bach16"), 6, seed=9, config=CHORALE.defaults)
    monkeypatch.setattr(agents_bench, "reference_data", lambda *_: ("fake-bach", bach))
    settings = {"agents": ("random", "prior"), "pieces": 5, "seeds": (0, 1), "bars": 1}
    config = AgentsBenchConfig(env=CHORALE.env_id, out=str(tmp_path), **settings)
    assert (config.prior, config.rules, config.steps) == ("bach16", "chorale", 30_000)
    report = agents_bench.run(config)
    assert list(report["table"]) == [CHORALE.data_column, "random", "prior"]
    assert report["results"]["prior"][0]["distinct_pieces"] == 100.0  # composed once: seed 0
    assert report["table"]["prior"]["parallel_fifths"]["interval"] == "bootstrap"
    assert report["goals"] == {}  # no trained column to judge
    text = (tmp_path / "results.md").read_text()
    assert "**nearer Bach**" in text and "Jaques" not in text and "mean log p per frame" in text
    assert len(list((tmp_path / "midi" / "Bach").glob("chorale_*.mid"))) == 4
    saved = json.loads((tmp_path / "runs" / "prior-seed0" / "measures.json").read_text())
    assert len(saved["pieces"]) == 5 and CHORALE.from_json(saved["pieces"][0]).num_steps == 16


def test_bench_chorales_is_bench_agents_on_the_chorale_env(monkeypatch) -> None:
    from musicgym.cli import main

    seen = []
    monkeypatch.setattr(agents_bench, "run", seen.append)
    assert main(["bench", "chorales", "--quick", "--out", "x"]) == 0
    assert main(["bench", "agents", "--env", CHORALE.env_id, "--quick", "--out", "x"]) == 0
    assert seen[0] == seen[1] and seen[0].env == CHORALE.env_id and seen[0].pieces == 48
    assert seen[0].seeds == (0, 1, 2) and seen[0].agents[-1] == "sb3-maskableppo"
    assert main(["bench", "agents", "--melodies", "7", "--out", "x"]) == 0  # the older name
    assert seen[2].pieces == 7 and seen[2].env == MELODY.env_id
    assert seen[2].split == "test"  # results are reported on the test split
    assert main(["bench", "chorales", "--split", "valid", "--out", "x"]) == 0
    assert seen[3].split == "valid"


def test_rule_weights_are_measured_on_the_validation_split(monkeypatch) -> None:
    """Weights are settings: ``--weights`` measures on Bach's validation chorales unless
    ``--split`` says otherwise."""
    from musicgym.benchmarks import chorale_weights
    from musicgym.cli import main

    seen = []
    monkeypatch.setattr(chorale_weights, "rule_weight_evidence", lambda *a, **kw: seen.append(kw))
    assert main(["bench", "chorales", "--weights"]) == 0
    assert main(["bench", "chorales", "--weights", "--split", "test", "--percentile", "99"]) == 0
    assert "split" not in seen[0] and chorale_weights.CHOOSING_SPLIT == "valid"
    assert (seen[1]["percentile"], seen[1]["split"]) == (99.0, "test")


def test_a_failed_run_is_recorded_and_fails_the_command(tmp_path: Path, monkeypatch, capsys):
    """A run that raises is a row of results.json's failures, the table says over how many runs
    each column is, and the bench exits 2 unless --allow-failures."""
    from musicgym.errors import BenchmarkError

    monkeypatch.setattr(agents_bench, "reference_data", lambda *_: None)
    bench_agent = agents_bench.bench_agent

    def failing(name, seed, config):
        if name == "random" and seed == 1:
            raise RuntimeError("out of memory\nand more lines")
        return bench_agent(name, seed, config)

    monkeypatch.setattr(agents_bench, "bench_agent", failing)
    settings = {"agents": ("random",), "seeds": (0, 1), "pieces": 6, "out": str(tmp_path)}
    with pytest.raises(BenchmarkError, match="1 of 2 runs failed"):
        agents_bench.run(AgentsBenchConfig(**settings))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["failures"] == [
        {"agent": "random", "seed": 1, "error": "RuntimeError: out of memory"}
    ]
    assert saved["runs"] == {"random": 1} and len(saved["results"]["random"]) == 1
    text = (tmp_path / "results.md").read_text()
    assert "runs per column: random 1" in text and "random (seed 1) failed" in text
    assert "random (seed 1): failed (RuntimeError: out of memory)" in capsys.readouterr().out
    report = agents_bench.run(AgentsBenchConfig(**settings, allow_failures=True))
    assert len(report["failures"]) == 1


def test_a_damaged_measures_file_under_load_is_one_line(tmp_path: Path, monkeypatch):
    from musicgym.errors import BenchmarkError

    monkeypatch.setattr(agents_bench, "reference_data", lambda *_: None)
    settings = {"agents": ("random",), "pieces": 4, "out": str(tmp_path)}
    agents_bench.run(AgentsBenchConfig(**settings))
    cache = tmp_path / "runs" / "random-seed0" / measures.MEASURES_FILE
    for damage in ('{"settings": ', "[1, 2]"):
        cache.write_text(damage)
        with pytest.raises(BenchmarkError, match="delete it to measure again") as raised:
            agents_bench.run(AgentsBenchConfig(**settings, load=True))
        assert str(cache) in str(raised.value) and "\n" not in str(raised.value)


def test_the_datas_frontier_moves_away_from_the_data_as_motifs_densen():
    """The densest-in-motif windows: more notes in motifs and a larger KL of note lengths the
    fewer of them; all windows are the data itself (KL 0)."""
    from musicgym.benchmarks.pareto import data_frontier, frontier_at

    rng = np.random.default_rng(0)
    windows = [rng.integers(0, 38, 32).tolist() for _ in range(60)]
    windows += [[14, 1, 16, 1] * 8 for _ in range(6)]  # a repeated figure: all in motifs
    frontier = data_frontier(windows, "C major", fractions=(1.0, 0.5, 0.1))
    assert [p["fraction"] for p in frontier] == [1.0, 0.5, 0.1]
    assert all(frontier[0][f"kl_{name}"] == 0.0 for name in ("pitch_classes", "note_lengths"))
    motifs = [p["notes_in_motif"] for p in frontier]
    lengths = [p["kl_note_lengths"] for p in frontier]
    assert motifs == sorted(motifs) and lengths == sorted(lengths) and lengths[-1] > 0.01
    middle = frontier_at(frontier, (motifs[0] + motifs[1]) / 2, "kl_note_lengths")
    assert lengths[0] < middle < lengths[1]
    held = [[14] + [1] * 31 for _ in range(10)]  # one note held: excessively repeated
    clean = data_frontier(
        windows + held, "C major", (1.0,), without=("notes_excessively_repeated",)
    )
    everything = data_frontier(windows + held, "C major", (1.0,))
    assert clean[0]["notes_in_motif"] > everything[0]["notes_in_motif"]  # the held ones left out
    assert clean[0]["kl_note_lengths"] > 0 == everything[0]["kl_note_lengths"]


def test_the_budget_picture_draws_every_seed_of_every_report(tmp_path: Path, monkeypatch):
    """One point per run and report, against its steps; the data column as a line."""
    import matplotlib.axes

    from musicgym.benchmarks.pareto import BUDGET_MEASURES, plot_budget

    def report(steps: float, seeds: int) -> dict:
        runs = [{m: 1.0 + seed for m in BUDGET_MEASURES} | {"trained_steps": steps}
                for seed in range(seeds)]  # fmt: skip
        data = {m: {"mean": 0.5} for m in BUDGET_MEASURES}
        return {
            "results": {"dpg": runs},
            "data_column": {"column": "data"},
            "table": {"data": data},
        }

    drawn, lines = [], []
    scatter, axhline = matplotlib.axes.Axes.scatter, matplotlib.axes.Axes.axhline
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "scatter",
        lambda ax, x, y, **k: drawn.append(len(x)) or scatter(ax, x, y, **k),
    )
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline",
                        lambda ax, y, **k: lines.append(y) or axhline(ax, y, **k))  # fmt: skip
    plot_budget([report(5e4, 3), report(1e6, 1)], tmp_path / "budget.png")
    assert drawn == [4] * len(BUDGET_MEASURES) and set(lines) == {0.5}
    assert (tmp_path / "budget.png").stat().st_size > 1000


def test_bench_tuner_times_the_chorale_tuner_against_its_env(capsys):
    from musicgym.benchmarks import tuner_bench

    figures = tuner_bench.run(num_envs=4, steps=320, env="ChoraleComposition-v0", compile=False)
    (bach16,) = figures.values()
    assert bach16["env"] > 0 and bach16["rltuner_q"] > 0 and bach16["rltuner_q_updates"] > 0
    assert bach16["rule_features"] > 0 and bach16["rule_features_updates"] > 0
    assert math.isnan(bach16["readout"])  # the chorale tuner has no trainable readout
    assert "no --train-readout row" in capsys.readouterr().out


@pytest.mark.parametrize("prior", ["bach16", "note_rnn"])
def test_bench_env_times_the_priors_calls_alone_beside_the_envs(capsys, prior):
    """The (e) rows: the prior's own calls for one melody and for ``n``, each an env's ceiling,
    with their ratios to the naive limit where the prior has one (the Bi-axial LSTM's FLOPs)."""
    from musicgym.benchmarks import env_bench

    figures = env_bench.run(num_envs=[2], seconds=0.05, prior_name=prior)
    for row in ("(a) one env", "(c) batched vector env x2"):
        assert figures[row] > 0
    for n in (1, 2):
        assert figures[f"(e) the prior's calls alone x{n}"] > 0
    out = capsys.readouterr().out
    assert "x1: (a or c)/(e) = " in out and "x2: (c)/(b) = " in out
    assert ("naive limit" in figures) == (prior == "bach16") == ("/naive limit: (a)" in out)


@pytest.mark.parametrize("env", ["MusicComposition-v0", "ChoraleComposition-v0"])
def test_bench_env_names_an_unknown_prior_in_one_line(capsys, env):
    from musicgym.cli import main

    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(["bench", "env", "--env", env, "--prior", "bach61"]))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "bach61" in error and "\n" not in error


def test_the_chorale_demo_runs_again_in_its_folder(tmp_path: Path, capsys) -> None:
    """A second demo into the same folder uses the finished chorale run."""
    from musicgym.benchmarks.demo import DemoConfig, run

    settings = {"chorale": True, "steps": 64, "pieces": 2, "out": str(tmp_path / "demo")}
    first = run(DemoConfig(**settings))
    again = run(DemoConfig(**settings))
    assert again["tuned"] == first["tuned"]


def test_results_keep_each_trained_runs_learning_curves(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    config = AgentsBenchConfig(agents=("prior", "rltuner-q"), seeds=(0, 1), out=str(tmp_path))
    run = agents_bench.run_folder(config, "rltuner-q", 1)
    with SummaryWriter(str(run)) as writer:
        for step, value in [(20, 60.0), (10, 50.0)]:
            writer.add_scalar("music/notes_in_motif", value, step)
        writer.add_scalar("charts/episodic_return", 1.0, 10)  # not an evaluation
    tasks = [("prior", 0), ("rltuner-q", 0), ("rltuner-q", 1)]
    outcomes = [{}, agents_bench.RunFailure("no run"), {}]
    curves = agents_bench.learning_curves(config, tasks, outcomes)
    assert curves == {"rltuner-q-seed1": {"notes_in_motif": [[10, 20], [50.0, 60.0]]}}

"""The agents benchmark: its measures, its verdicts on the goals, and the files it writes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import musicgym  # noqa: F401  (registers the environment)
from benchmarks import agents_bench
from benchmarks.agents_bench import AgentsBenchConfig, goals, is_better, pitch_class_entropy
from musicgym.metrics import PUBLISHED, STATISTICS


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
    config = AgentsBenchConfig(c=0.5)
    rewards = agents_bench.theory_rewards(melodies, config)
    for melody, row in zip(melodies, rewards):
        env = gym.make("MusicComposition-v0", prior=None, c=0.5)
        env.reset(seed=0)
        expected = [env.step(token)[1] * 0.5 for token in melody]
        np.testing.assert_allclose(row, expected)


def test_goals_compare_rltuner_q_with_the_published_columns() -> None:
    tuned = dict(PUBLISHED["Q"])  # exactly Jaques et al.'s Q: ties count as matching
    tuned["log_p"], rules_only = -1.0, {name: 0.0 for name in STATISTICS} | {"log_p": -3.6}
    verdict = goals({"rltuner-q": [tuned], "rules-only": [rules_only]})
    assert verdict["matches_jaques_q_on"] == list(STATISTICS)
    assert verdict["log_p_above_rules_only"] == pytest.approx(2.6)
    assert verdict["log_p_at_least_1_nat_above_rules_only"]
    # Jaques et al.'s Q beats the Bi-axial + Q paper on notes out of key (1.0 < 2.7)
    assert "notes_not_in_key" in verdict["beats_bi_axial_q_on"]
    assert "melodies_starting_with_tonic" in verdict["beats_bi_axial_q_on"]
    assert goals({"random": [tuned]}) == {}


def test_run_writes_tables_pictures_and_midi(tmp_path: Path) -> None:
    config = AgentsBenchConfig(agents=("random", "prior"), melodies=8, out=str(tmp_path))
    report = agents_bench.run(config)
    assert set(report["results"]) == {"random", "prior"}
    table = (tmp_path / "results.md").read_text()
    for column in PUBLISHED:
        assert column in table
    assert "**random**" in table and "**prior**" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"]["random"][0]["distinct_melodies"] == 100.0
    random_log_p = saved["results"]["random"][0]["log_p"]
    assert random_log_p < saved["results"]["prior"][0]["log_p"]  # the prior likes its own samples
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["agent"] for row in rows] == ["random", "prior"]
    assert (tmp_path / "piano_rolls.png").stat().st_size > 1000
    assert len(list((tmp_path / "midi" / "random").glob("*.mid"))) == 4


def test_load_reuses_measures_and_leaves_out_missing_runs(tmp_path: Path) -> None:
    settings = {"agents": ("random", "rltuner-q"), "melodies": 6, "out": str(tmp_path)}
    first = agents_bench.run(AgentsBenchConfig(**settings, load=True, jobs=2))
    assert set(first["results"]) == {"random"}  # rltuner-q was never trained: left out
    cache = tmp_path / "runs" / "random-seed0" / agents_bench.MEASURES_FILE
    saved = json.loads(cache.read_text())
    assert len(saved["melodies"]) == 6 and math.isnan(saved["measures"]["trained_steps"])
    saved["measures"]["distinct_melodies"] = 42.0
    cache.write_text(json.dumps(saved))
    reused = agents_bench.run(AgentsBenchConfig(**settings, load=True))
    assert reused["results"]["random"][0]["distinct_melodies"] == 42.0
    remeasured = agents_bench.run(AgentsBenchConfig(**{**settings, "melodies": 5}, load=True))
    assert remeasured["results"]["random"][0]["distinct_melodies"] == 100.0


def test_demo_writes_its_folder_and_prints_the_table(tmp_path: Path, capsys) -> None:
    from benchmarks.demo import DemoConfig
    from benchmarks.demo import run as run_demo

    config = DemoConfig(out=str(tmp_path / "demo"), steps=64, melodies=4, keep=2)
    table = run_demo(config)
    out = tmp_path / "demo"
    assert len(list((out / "prior").glob("*.mid"))) == 2
    assert len(list((out / "tuned").glob("*.mid"))) == 2
    assert (out / "piano_rolls.png").stat().st_size > 1000
    assert json.loads((out / "statistics.json").read_text()) == json.loads(json.dumps(table))
    assert (out / "run" / "agent.pt").is_file()
    printed = capsys.readouterr().out
    assert "notes not in key" in printed and "Jaques Q" in printed

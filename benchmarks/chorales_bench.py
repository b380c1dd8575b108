"""``musicgym bench chorales``: Bach, prior samples, random, rules-only and the tuned agents on
``ChoraleComposition-v0``, measured by the statistics of four-part writing.

Columns:

* **Bach**: the last ``--bars`` bars of every chorale of the test split of the prior's data
  (music21's Bach chorales, the seeded split of ``musicgym.priors.data``; the window ends at the
  chorale's last sounding frame, starting on a beat), the reference the goals compare against;
* **prior**: chorales sampled from the prior decision by decision (exact samples of its
  factorisation, :func:`musicgym.envs.chorale.sample_chorales`);
* **random**: uniformly random valid decisions;
* **rules-only**: the RL Tuner's Q-learning on the rules alone (no ``log p`` in the reward);
* every tuned agent of :data:`musicgym.agents.registry.ALGORITHMS` asked for (``rltuner-q``,
``-psi``,
  ``-g``, ``sb3-maskableppo``, ``sb3-dqn``), trained ``--steps`` decisions per seed.

Each column composes ``--pieces`` chorales of ``--bars`` bars (Bach: as many as the test split
has). Every statistic of :data:`musicgym.metrics.chorale.STATISTICS` judges each piece in the key
:func:`musicgym.metrics.find_key` finds for it (the prior writes in any key: judging everyone in
one key would count its key, not its part writing); ``log_p`` is the mean log-likelihood per frame
under the prior (:func:`musicgym.envs.chorale.frame_log_likelihoods`); ``distinct_pieces`` is
over the set. Cells are means ± the half-width of a 95% interval: a t interval over the seeds
where a column has several, else a percentile bootstrap over its pieces (none for the distinct
share).

The goals of the chorale issue are judged at the end: a tuned agent closer to Bach than the prior
on how many statistics with non-overlapping intervals; parallel fifths and octaves per transition
against twice Bach's; ``log p`` per frame within one nat of the prior's samples.

It writes into ``--out``: ``runs/AGENT-seedS/`` (training runs and ``measures.json``, reused by
``--load``), ``results.md``, ``results.json``, ``piano_rolls.png`` (the first chorale of each
column, voices coloured) and ``midi/COLUMN/chorale_I.mid`` (and a WAV beside each).
``--weights`` prints instead the measurements behind the chorale preset's weights
(:func:`rule_weight_evidence`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from musicgym.benchmarks.agents_bench import (
    Cell,
    _cached,
    _format,
    _result,
    _save,
    summarise,
    trained_agent,
)
from musicgym.config import CHORALE_DEFAULTS, CHORALE_ENV_ID, EnvConfig
from musicgym.metrics import bootstrap_intervals, chorale_contributions
from musicgym.metrics.chorale import (
    DISTINCT_PIECES,
    STATISTICS,
    distinct_pieces,
    statistics_of_sums,
)
from musicgym.metrics.confidence import ratio_of_sums
from musicgym.music.harmony import find_key
from musicgym.music.notestate import NoteState

BACH = "Bach"
REFERENCE_AGENTS = ("prior", "random")
RULES_ONLY = "rules-only"
TUNED_AGENTS = ("rltuner-q", "rltuner-psi", "rltuner-g", "sb3-maskableppo", "sb3-dqn")
ALL_AGENTS = (*REFERENCE_AGENTS, RULES_ONLY, *TUNED_AGENTS)
MEASURES = {
    **STATISTICS,
    DISTINCT_PIECES[0]: DISTINCT_PIECES[1],
    "log_p": "mean log p per frame under the prior",
    "trained_steps": "decisions trained",
}
BETTER_LOWER = (
    "parallel_fifths",
    "parallel_octaves",
    "hidden_perfects",
    "voice_crossings",
    "spacing_violations",
    "out_of_range",
    "notes_not_in_key",
)
SAMPLES = 4
"""Chorales of each column kept as MIDI files (the first of each also as a piano roll)."""
QUICK = {
    "agents": ("prior", "random", RULES_ONLY, "rltuner-q", "sb3-maskableppo"),
    "steps": 2_000,
    "pieces": 48,
}
"""What ``--quick`` changes: fewer agents, decisions and pieces (the seeds stay)."""


@dataclass
class ChoralesBenchConfig:
    """Settings of ``musicgym bench chorales``."""

    agents: tuple[str, ...] = ALL_AGENTS
    """Columns beside Bach: prior, random, rules-only and any algorithm of `agent train`."""
    steps: int = 30_000
    """Decisions (environment steps) of training per agent and seed."""
    pieces: int = 200
    """Chorales each column composes."""
    bars: int = 4
    """Bars per chorale."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the trained agents (the prior and random compose once, seed 0)."""
    out: str = "runs/bench-chorales"
    """Folder of the runs and results."""
    load: bool = False
    """Load the agents trained earlier in --out instead of training them."""
    max_minutes: float = 0.0
    """Stop each training run after so many minutes (0: no limit)."""
    jobs: int = 1
    """Runs side by side, each in its own process with one torch thread."""
    prior: str = CHORALE_DEFAULTS.prior
    """Prior of the environment (a shipped name or a checkpoint path)."""
    rules: str = CHORALE_DEFAULTS.rules
    """Reward rules (preset or names)."""
    c: float = CHORALE_DEFAULTS.c
    """Divisor of the rule rewards."""
    key: str = CHORALE_DEFAULTS.key
    """Key of the environment's rules."""
    hyperparameters: str = '{"exploration": "boltzmann"}'
    """JSON of RL Tuner settings for every rltuner agent and rules-only. Boltzmann exploration
    samples the policy (at first the prior itself); epsilon-greedy's uniform decisions write
    frames of many notes that the network is slow to unlearn (RESULTS.md)."""
    resamples: int = 1000
    """Bootstrap resamples of the pieces, for the intervals of one seed."""
    progress: bool = True
    """Show training progress bars."""


# ------------------------------------------------------------------------------ the pieces
def bach_chorales(prior: str, bars: int) -> list[NoteState]:
    """The last ``bars`` bars of every chorale of the test split of the prior's data: each window
    ends at the chorale's last sounding frame and starts on a beat (at most a beat longer)."""
    from musicgym.priors.data import load_dataset
    from musicgym.priors.registry import read_checkpoint

    data = read_checkpoint(prior).get("data") or {}
    dataset = load_dataset(
        data.get("name", "bach-chorales"),
        resolution=data.get("resolution"),
        lowest_pitch=data.get("lowest_pitch"),
        num_pitches=data.get("num_pitches"),
        progress=True,
    )
    pieces = []
    for chorale in dataset.test:
        sounding = np.flatnonzero(chorale.matrix[..., 0].any(1))
        end = int(sounding[-1]) + 1 if sounding.size else chorale.num_steps
        frames = bars * 4 * chorale.resolution
        start = max(0, (end - frames) // chorale.resolution * chorale.resolution)
        window = chorale.matrix[start:end]
        pieces.append(NoteState(window, chorale.lowest_pitch, chorale.resolution, chorale.name))
    return pieces


def measure(pieces: Sequence[NoteState], prior: str, trained_steps: float = math.nan) -> dict:
    """``{"measures", "per_piece"}``: every measure of :data:`MEASURES` of ``pieces`` (each in its
    own key) and the per-piece contributions a bootstrap resamples."""
    from musicgym.agents.common import load_prior
    from musicgym.envs.decisions import frame_log_likelihoods

    keys = [find_key(piece) for piece in pieces]
    contributions = chorale_contributions(pieces, keys)
    log_p = frame_log_likelihoods(load_prior(prior), pieces)
    contributions["log_p"] = np.array([[frames.sum(), len(frames)] for frames in log_p])
    summed = {name: rows.sum(0) for name, rows in contributions.items()}
    measures = {name: float(value) for name, value in measures_from_sums(summed).items()}
    measures[DISTINCT_PIECES[0]] = distinct_pieces(pieces)
    measures["trained_steps"] = float(trained_steps)
    per_piece = {name: rows.tolist() for name, rows in contributions.items()}
    return {"measures": measures, "per_piece": per_piece, "keys": [k.name for k in keys]}


def measures_from_sums(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The statistics and ``log_p`` of summed contributions ``(..., 2)``."""
    return {**statistics_of_sums(sums), "log_p": ratio_of_sums(sums["log_p"])}


# ---------------------------------------------------------------------------------- agents
def train_agent(name: str, seed: int, run: Path, config: ChoralesBenchConfig) -> None:
    """Train one agent into ``run`` with its train function."""
    from musicgym.agents.registry import ALGORITHMS

    algorithm = ALGORITHMS["rltuner-q" if name == RULES_ONLY else name]
    env = EnvConfig(
        env=CHORALE_ENV_ID,
        prior=config.prior,
        rules=config.rules,
        c=config.c,
        key=config.key,
        bars=config.bars,
        seed=seed,
        prior_reward=name != RULES_ONLY,
    )
    settings = {**asdict(env), "steps": config.steps, "max_minutes": config.max_minutes}
    if name.startswith("rltuner") or name == RULES_ONLY:
        settings.update(json.loads(config.hyperparameters))
    algorithm.train_run(
        algorithm.make_config(**settings), run, overwrite=True, progress=config.progress
    )


MEASURES_VERSION = 2
"""Bumped when the measures change, so that ``--load`` measures the loaded agents again."""


def _settings(config: ChoralesBenchConfig) -> dict:
    names = ("pieces", "bars", "prior", "rules", "c", "key", "steps", "hyperparameters")
    return {**{k: getattr(config, k) for k in names}, "measures": MEASURES_VERSION}


def bench_agent(name: str, seed: int, config: ChoralesBenchConfig) -> dict | None:
    """Train (or load) one column's agent, compose and measure: ``{"settings", "measures",
    "per_piece", "pieces", "minutes"}``, also written to its run folder's ``measures.json``."""
    from musicgym import agents
    from musicgym.agents.common import set_torch_threads

    set_torch_threads(1)
    run_dir = Path(config.out) / "runs" / f"{name}-seed{seed}"
    cache = run_dir / "measures.json"
    if config.load and (cached := _cached(cache, _settings(config))) is not None:
        return cached
    start, trained_steps = time.perf_counter(), math.nan
    if name in REFERENCE_AGENTS:
        path = name if name == "random" else f"prior:{config.prior}"
        agent = agents.load(path, env=CHORALE_ENV_ID, bars=config.bars)
    else:
        agent, trained_steps = trained_agent(name, seed, run_dir, config, train_agent)
        if agent is None:
            return None
    pieces = agent.compose(config.pieces, seed=1000 + seed)
    minutes = (time.perf_counter() - start) / 60
    measured = measure(pieces, config.prior, trained_steps)
    values = measured["measures"]
    print(
        f"{name} (seed {seed}): parallel fifths {values['parallel_fifths']:.2f}%, four voices "
        f"{values['four_voices']:.1f}%, log p/frame {values['log_p']:.2f} ({minutes:.1f} min)",
        flush=True,
    )
    outcome = {
        "settings": _settings(config),
        **measured,
        "pieces": [p.matrix.tolist() for p in pieces[:SAMPLES]],
        "axis": [pieces[0].lowest_pitch, pieces[0].resolution],
        "minutes": minutes,
    }
    _save(cache, outcome)
    return outcome


def sample_pieces(outcome: dict) -> list[NoteState]:
    """The first chorales an outcome of :func:`bench_agent` kept."""
    lowest, resolution = outcome["axis"]
    return [NoteState(np.array(m, np.uint8), lowest, resolution) for m in outcome["pieces"]]


# -------------------------------------------------------------------------------- the table
def column_cells(runs: list[dict], resamples: int) -> dict[str, Cell]:
    """A column's cells: t intervals over its seeds, or a bootstrap over the pieces of one."""
    bootstrap = None
    if len(runs) == 1:
        per_piece = {name: np.asarray(rows) for name, rows in runs[0]["per_piece"].items()}
        bootstrap = bootstrap_intervals(per_piece, measures_from_sums, resamples, seed=0)
    return summarise([run["measures"] for run in runs], bootstrap, tuple(MEASURES))


def closer_to_bach(agent: dict[str, Cell], prior: dict[str, Cell], bach: dict[str, Cell]) -> list:
    """The statistics on which ``agent`` is closer to Bach's value than ``prior`` is, and their
    intervals do not overlap."""
    won = []
    for name in STATISTICS:
        ours, theirs, target = agent[name], prior[name], bach[name].mean
        if any(math.isnan(v) for v in (ours.mean, theirs.mean, target)):
            continue
        closer = abs(ours.mean - target) < abs(theirs.mean - target)
        apart = ours.low > theirs.high or ours.high < theirs.low
        if closer and apart:
            won.append(name)
    return won


def goals(table: dict[str, dict[str, Cell]]) -> dict[str, dict]:
    """Each trained column's verdict on the issue's goals."""
    if BACH not in table or "prior" not in table:
        return {}
    bach, prior = table[BACH], table["prior"]
    bach_parallels = bach["parallel_fifths"].mean + bach["parallel_octaves"].mean
    verdicts = {}
    for name, cells in table.items():
        if name in (BACH, *REFERENCE_AGENTS):
            continue
        won = closer_to_bach(cells, prior, bach)
        parallels = cells["parallel_fifths"].mean + cells["parallel_octaves"].mean
        log_p_gap = cells["log_p"].mean - prior["log_p"].mean
        verdicts[name] = {
            "closer_to_bach_than_prior": won,
            "closer_count": len(won),
            "closer_goal_met": len(won) >= 6,
            "parallels_per_100_transitions": parallels,
            "bach_parallels_per_100_transitions": bach_parallels,
            "parallels_goal_met": parallels <= 2 * bach_parallels,
            "log_p_gap_to_prior": log_p_gap,
            "log_p_goal_met": abs(log_p_gap) <= 1.0,
        }
    return verdicts


def markdown_table(table: dict[str, dict[str, Cell]], resamples: int) -> str:
    header = ["measure", *table]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, label in MEASURES.items():
        cells = []
        for column in table.values():
            cell = column[name]
            interval = f" ± {_format(cell.half_width)}" if cell.interval else ""
            cells.append(_format(cell.mean) + interval)
        if any(cells):
            lines.append("| " + " | ".join([label, *cells]) + " |")
    lower = ", ".join(STATISTICS[name] for name in BETTER_LOWER)
    return (
        "\n".join(lines)
        + "\n\nNearer Bach is better; the rule-breaking rates (lower is what the rules ask: "
        + lower
        + ") are compared with Bach's measured rate, not with zero. ± is the half-width of the "
        + "95% interval: t over seeds where a column has several, else a percentile bootstrap "
        + f"over its pieces ({resamples:,} resamples); none for the distinct share."
    )


def goals_text(verdicts: dict[str, dict]) -> str:
    lines = []
    for name, verdict in verdicts.items():
        lines.append(
            f"{name}: closer to Bach than the prior on {verdict['closer_count']} statistics with "
            f"intervals apart ({', '.join(verdict['closer_to_bach_than_prior']) or 'none'}; goal "
            f"6: {'met' if verdict['closer_goal_met'] else 'not met'}); parallel fifths + octaves "
            f"{verdict['parallels_per_100_transitions']:.2f} per 100 transitions, Bach "
            f"{verdict['bach_parallels_per_100_transitions']:.2f} (goal <= 2x: "
            f"{'met' if verdict['parallels_goal_met'] else 'not met'}); log p per frame "
            f"{verdict['log_p_gap_to_prior']:+.2f} nats from the prior's samples (goal within 1: "
            f"{'met' if verdict['log_p_goal_met'] else 'not met'})"
        )
    return "\n".join(lines)


def write_samples(
    out: Path, columns: dict[str, list[NoteState]], per_column: int = SAMPLES
) -> None:
    """MIDI files (a WAV beside each) of the first chorales of each column, and one sheet of the
    first chorale of each as a four-voice piano roll."""
    from musicgym.music.audio import write_wavs_beside
    from musicgym.music.midi import write_midi
    from musicgym.music.pianoroll import save_piano_roll_sheet

    rolls, titles, paths = [], [], []
    for name, pieces in columns.items():
        folder = out / "midi" / name.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        for i, piece in enumerate(pieces[:per_column]):
            write_midi(piece, folder / f"chorale_{i}.mid")
            if piece.matrix[..., 0].any():
                paths.append(folder / f"chorale_{i}.mid")
        rolls.append(pieces[0])
        titles.append(name)
    write_wavs_beside(paths)
    save_piano_roll_sheet(rolls, out / "piano_rolls.png", titles, columns=2, voices=True)


def run(config: ChoralesBenchConfig) -> dict:
    """Compose and measure every column, and write the tables and pictures."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    bach = bach_chorales(config.prior, config.bars)
    columns: dict[str, list[dict]] = {BACH: [measure(bach, config.prior)]}
    print(f"{BACH}: {len(bach)} test chorales, last {config.bars} bars", flush=True)
    tasks = [
        (name, seed)
        for name in config.agents
        for seed in (config.seeds[:1] if name in REFERENCE_AGENTS else config.seeds)
    ]
    if config.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        tasks.sort(key=lambda task: task[0] in REFERENCE_AGENTS)
        quiet = ChoralesBenchConfig(**{**asdict(config), "progress": False})
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(config.jobs, mp_context=context) as pool:
            futures = [pool.submit(bench_agent, name, seed, quiet) for name, seed in tasks]
            outcomes = [_result(future, name, seed) for future, (name, seed) in zip(futures, tasks)]
    else:
        outcomes = [bench_agent(name, seed, config) for name, seed in tasks]
    for name in config.agents:
        for (task_name, _), outcome in zip(tasks, outcomes):
            if task_name == name and outcome is not None:
                columns.setdefault(name, []).append(outcome)
    table = {name: column_cells(runs, config.resamples) for name, runs in columns.items()}
    verdicts = goals(table)
    report = {
        "config": asdict(config),
        "date": time.strftime("%Y-%m-%d"),
        "minutes": (time.perf_counter() - start) / 60,
        "results": {n: [r["measures"] for r in runs] for n, runs in columns.items()},
        "table": {n: {m: asdict(c) for m, c in cells.items()} for n, cells in table.items()},
        "goals": verdicts,
    }
    (out / "results.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    text = markdown_table(table, config.resamples)
    (out / "results.md").write_text(text + "\n\n" + goals_text(verdicts) + "\n")
    samples = {BACH: bach[:SAMPLES]}
    samples.update({name: sample_pieces(runs[0]) for name, runs in columns.items() if name != BACH})
    write_samples(out, samples)
    print(text)
    print(goals_text(verdicts))
    print(f"\n{report['minutes']:.1f} minutes; results, pictures and MIDI files in {out}")
    return report


# ------------------------------------------------------------------- the preset's weights
def rule_weight_evidence(
    prior_name: str = CHORALE_DEFAULTS.prior,
    bars: int = 4,
    samples: int = 16,
    seed: int = 0,
    c: float = CHORALE_DEFAULTS.c,
) -> dict[str, dict[str, float]]:
    """What each rule of the ``"chorale"`` preset must outweigh: in every state of Bach's test
    chorales (:func:`bach_chorales`, teacher-forced), ``samples`` frames are drawn from the prior;
    among those the rule judges worse than Bach's own frame, the most likely one's ``log p`` gap
    to Bach's frame, per unit of the rule's value, is what the prior gains by breaking the rule
    there. A weight of at least ``c`` times that gap makes the rule win. Prints and returns, per
    rule, the states with such a sample, the median and 90th percentile of the gap, the weight
    that wins at the 90th percentile, and the preset's weight."""
    import torch

    from musicgym.agents.common import load_prior
    from musicgym.music.harmony import sonority
    from musicgym.rules import PRESETS, ChoraleContext, resolve_rules

    prior = load_prior(prior_name)
    rules = resolve_rules(PRESETS["chorale"], ChoraleContext)
    generator = torch.Generator().manual_seed(seed)
    gaps: dict[str, list[float]] = {rule.name: [] for rule, _ in rules}
    states = 0
    for piece in bach_chorales(prior_name, bars):
        key, frames = find_key(piece), torch.from_numpy(piece.matrix.astype(np.float32))
        state, chords = prior.initial_state(samples), []
        for t, frame in enumerate(frames):
            drawn = prior.sample_frames(state, generator)  # (S, N, 2)
            candidates = torch.cat([frame[None], drawn])[None]
            first = prior.select_state(state, torch.zeros(1, dtype=torch.long))
            scores = prior.score_frames(first, candidates)[0].double().numpy()
            own = sonority(piece.matrix[t], piece.lowest_pitch)
            others = [sonority(d, piece.lowest_pitch) for d in drawn.numpy()]
            for rule, _ in rules:
                context = ChoraleContext(tuple(chords), own, len(frames), key, piece.resolution)
                bach_value, best = rule(context), None
                for k, chord in enumerate(others):
                    value = rule(ChoraleContext(tuple(chords), chord, len(frames), key))
                    if value < bach_value:
                        gap = (scores[k + 1] - scores[0]) / (bach_value - value)
                        best = gap if best is None else max(best, gap)
                if best is not None:
                    gaps[rule.name].append(best)
            chords.append(own)
            states += 1
            state = prior.advance(state, frame[None].expand(samples, -1, -1))
    evidence = {}
    print(f"{states} states of Bach's test chorales, {samples} prior samples each, c = {c}")
    print(f"{'rule':<26} {'states':>7} {'median':>8} {'p90':>8} {'wins':>6} {'preset':>7}")
    for rule, weight in rules:
        found = np.asarray(gaps[rule.name])
        median, p90 = (np.median(found), np.percentile(found, 90)) if found.size else (0.0, 0.0)
        evidence[rule.name] = {
            "states": float(found.size),
            "median_gap": float(median),
            "p90_gap": float(p90),
            "winning_weight": float(max(c * p90, 0.0)),
            "preset_weight": weight,
        }
        print(
            f"{rule.name:<26} {found.size:>7d} {median:>8.2f} {p90:>8.2f} "
            f"{max(c * p90, 0.0):>6.2f} {weight:>7.1f}"
        )
    return evidence

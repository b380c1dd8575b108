"""``musicgym bench agents``: every agent on the same environment and budget, beside the papers.

Each agent is trained (its train function of :data:`musicgym.agents.registry.ALGORITHMS`) or loaded
(``--load``) once per seed, composes
``--melodies`` melodies, and is measured by every statistic of the spec
(:func:`musicgym.metrics.evaluate_melodies`) plus

* ``log_p``: the mean ``log p(a|s)`` of its tokens under the prior (the environment's ``"prior"``
  reward part; uniform over 38 actions is -3.64);
* ``theory_reward``: the mean music-theory reward ``r_MT`` per step (the rules' weighted sum,
  before division by ``c``);
* ``distinct_melodies``: distinct melodies / N (%), ``distinct_4grams``: distinct token 4-grams /
  all 4-grams (%), and ``pitch_class_entropy``: the entropy of the pitch classes of all pitch
  tokens, in bits (log2 12 = 3.58 is uniform);
* ``kl_pitch_classes``, ``kl_intervals``, ``kl_note_lengths``: the KL divergence in nats of its
  histograms (:data:`musicgym.metrics.HISTOGRAMS`) to those of the *test melodies*: the test split
  of the prior's training data (its checkpoint's ``"data"``), cut into non-overlapping windows of
  ``--length`` tokens starting on bar lines. The table's "test melodies" column measures
  ``--melodies`` of those windows (seeded sample) like an agent: the values a model of the data
  would reach (its KL rows are the sample's divergence to all windows);
* ``trained_steps``: the environment steps the run reached (``--max-minutes`` may stop it short).

Every cell of the table is the mean and the half-width of its 95% confidence interval: a t interval
over the seeds where an agent has several (:func:`musicgym.metrics.t_interval`), else a percentile
bootstrap over its melodies (``--resamples`` resamples, seeded;
:func:`musicgym.metrics.bootstrap_intervals`) of every measure that sums over melodies, ratios as
ratios of sums (:func:`melody_contributions`, :func:`measures_from_sums`). The distinct shares and
the steps of a single run have no interval: a resample with replacement repeats melodies.

It writes into ``--out``: ``runs/AGENT-seedS/`` (the training run and its ``measures.json``: the
melodies, numbers and per-melody contributions, which ``--load`` reuses),
``runs/test-melodies/measures.json`` (the same for the test melodies, reused while the settings
stay the same), ``results.md`` (the published columns beside ours), ``results.json`` (every number
of every seed, and the table with its intervals' bounds), ``results.csv`` (the table: one row per
column and measure, with the bounds), ``learning_curves.png`` (each statistic and ``log_p`` against
environment steps, from the runs' TensorBoard logs), ``piano_rolls.png`` (sample melodies of each
agent) and ``midi/AGENT/*.mid``. ``--jobs N`` runs N agents at a time in worker processes,
``--ray [ADDRESS]`` each (agent, seed) as a task on a Ray cluster (``benchmarks/ray_runs.py``); a
run that fails is reported and left out of the tables.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musicgym.agents.registry import ALGORITHMS
from musicgym.config import DEFAULTS, EnvConfig
from musicgym.fileio import atomic_output
from musicgym.metrics import (
    HISTOGRAMS,
    PUBLISHED,
    STATISTIC_SCALES,
    STATISTICS,
    bootstrap_intervals,
    distinct_ngrams,
    kl_divergence,
    pitch_class_histogram,
    ratio_of_sums,
    statistic_contributions,
    t_interval,
)
from musicgym.music.notestate import SIXTEENTH_NOTES

if TYPE_CHECKING:
    from musicgym.prior import MelodyPrior

REFERENCE_AGENTS = ("prior", "random")
"""Agents composed without training."""
RULES_ONLY = "rules-only"
"""The RL Tuner's Q-learning on the theory rules alone (no log p in the reward)."""
ALL_AGENTS = (*REFERENCE_AGENTS, RULES_ONLY, *ALGORITHMS)
TEST_MELODIES = "test melodies"
"""The table's column of the prior's held-out test melodies."""
EXTRA_MEASURES = {
    "trained_steps": "environment steps trained",
    "log_p": "mean log p(a|s) under the prior",
    "theory_reward": "mean theory reward r_MT per step",
    "distinct_melodies": "distinct melodies (%)",
    "distinct_4grams": "distinct token 4-grams (%)",
    "pitch_class_entropy": "pitch-class entropy (bits)",
    **{
        f"kl_{name}": f"KL to the test melodies: {name.replace('_', ' ')} (nats)"
        for name in HISTOGRAMS
    },
}
MEASURES = {**STATISTICS, **EXTRA_MEASURES}
BETTER = {
    "notes_excessively_repeated": "lower",
    "autocorrelation_lag1": "zero",
    "autocorrelation_lag2": "zero",
    "autocorrelation_lag3": "zero",
    "notes_not_in_key": "lower",
    **{f"kl_{name}": "lower" for name in HISTOGRAMS},
}
"""How a measure improves: ``lower``, ``zero`` (nearer 0), else higher."""
UP_TO_THE_DATA = ("distinct_melodies", "distinct_4grams", "pitch_class_entropy")
"""Measures that improve as they rise only up to the test melodies' value."""
UNJUDGED = ("trained_steps",)
"""Measures that no direction makes better (the legend leaves them out)."""
DIRECTION_WORDS = {"lower": "lower", "zero": "nearer 0", "higher": "higher"}
TUNED_COLUMN = "Bi-axial + Q (DQN paper)"
JAQUES_Q_COLUMN = "Q"
BAR = 4 * SIXTEENTH_NOTES
"""Tokens in a 4/4 bar: the test melodies' windows start on bar lines."""


@dataclass
class AgentsBenchConfig:
    """Settings of ``musicgym bench agents``."""

    agents: tuple[str, ...] = ALL_AGENTS
    """Agents to compare: prior, random, rules-only, and any algorithm of `musicgym agent train`."""
    steps: int = 50_000
    """Environment steps of training per agent and seed."""
    melodies: int = 1000
    """Melodies each agent composes for the statistics."""
    seeds: tuple[int, ...] = (0,)
    """Seeds; several give a t interval over the seeds instead of a bootstrap over melodies."""
    out: str = "runs/bench-agents"
    """Folder of the runs and results."""
    load: bool = False
    """Load the agents trained earlier in --out instead of training them."""
    max_minutes: float = 0.0
    """Stop each training run after so many minutes, even short of --steps (0: no limit); the
    table reports the steps each run reached, and a second call continues the runs."""
    jobs: int = 1
    """Agents trained and measured side by side, each in its own process with one torch thread
    (one per CPU core is fastest)."""
    prior: str = DEFAULTS.prior
    """Prior of the environment (a shipped name or a checkpoint path); the default is the one
    under which the tuned table is best (the prior ablation of RESULTS.md)."""
    rules: str = DEFAULTS.rules
    """Reward rules (preset or names)."""
    c: float = DEFAULTS.c
    """Divisor of the rule rewards."""
    key: str = DEFAULTS.key
    """Key of the rules and statistics."""
    length: int = DEFAULTS.length
    """Tokens per melody."""
    resamples: int = 1000
    """Bootstrap resamples of the melodies, for the confidence intervals of one seed."""
    progress: bool = True
    """Show training progress bars."""
    ray: str | None = None
    """Run each (agent, seed) as a Ray task: a cluster's address, or '' for a local Ray of --jobs
    CPUs; None: in processes of this machine (--jobs)."""


QUICK = {
    "agents": ("prior", "random", RULES_ONLY, "rltuner-q", "sb3-dqn"),
    "steps": 1_000,
    "melodies": 100,
    "jobs": 2,
}
"""What ``--quick`` sets: five agents, 1,000 steps, 100 melodies, 2 jobs (a minute or two)."""


def run_folder(config: AgentsBenchConfig, name: str, seed: int) -> Path:
    """The folder of one (agent, seed) run: ``--out``/runs/AGENT-seedS."""
    return Path(config.out) / "runs" / f"{name}-seed{seed}"


def is_better(statistic: str, ours: float, theirs: float) -> bool:
    """Whether ``ours`` is at least as good as ``theirs`` on ``statistic`` (ties count)."""
    direction = BETTER.get(statistic, "higher")
    if math.isnan(ours):
        return False
    if direction == "lower":
        return ours <= theirs
    if direction == "zero":
        return abs(ours) <= abs(theirs)
    return ours >= theirs


def entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Entropy in bits of histograms ``counts`` ``(..., K)``, 0 for an empty one; ``(...)``."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(-1, keepdims=True)
    p = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    return 0.0 - np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(-1)


def pitch_class_entropy(melodies: Sequence[Sequence[int]]) -> float:
    """Entropy in bits of the pitch classes of every pitch token of ``melodies``."""
    return float(entropy_bits(sum(pitch_class_histogram(m) for m in melodies)))


def theory_rewards(melodies: Sequence[Sequence[int]], config: AgentsBenchConfig) -> np.ndarray:
    """``r_MT`` of every step of every melody, ``(M, L)``, as the environment computes it: the
    melodies are played back through a rules-only batched environment."""
    import gymnasium as gym

    import musicgym  # noqa: F401  (registers the environment)
    from musicgym.config import ENV_ID

    actions = np.asarray(melodies)
    envs = gym.make_vec(
        ENV_ID,
        num_envs=len(melodies),
        vectorization_mode="vector_entry_point",
        **{**env_config(config).env_kwargs(with_prior=False), "length": actions.shape[1]},
    )
    envs.reset(seed=0)
    rewards = np.stack([envs.step(actions[:, t])[1] for t in range(actions.shape[1])], 1)
    envs.close()
    return rewards * config.c


def melody_contributions(
    melodies: list[list[int]], prior: MelodyPrior, config: AgentsBenchConfig
) -> dict[str, np.ndarray]:
    """What each of the equally long ``melodies`` adds to every measure that sums over melodies,
    ``(M, ...)`` per name: the spec's statistics
    (:func:`musicgym.metrics.statistic_contributions`); ``log_p`` and ``theory_reward``, the
    melody's sum over its tokens and its number of tokens; and the counts of each of
    :data:`musicgym.metrics.HISTOGRAMS`. :func:`measures_from_sums` reads them summed."""
    from musicgym.envs.stepper import melody_log_probs

    contributions = statistic_contributions(melodies, config.key)
    tokens = np.full(len(melodies), float(len(melodies[0])))
    log_p = melody_log_probs(prior, melodies, config.key).double().sum(1).numpy()  # (M,)
    contributions["log_p"] = np.stack([log_p, tokens], 1)
    contributions["theory_reward"] = np.stack([theory_rewards(melodies, config).sum(1), tokens], 1)
    for name, histogram in HISTOGRAMS.items():
        contributions[name] = np.stack([histogram(m) for m in melodies]).astype(float)
    return contributions


def measures_from_sums(
    sums: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every measure that sums over melodies, from :func:`melody_contributions` summed over some
    melodies (``(..., K)`` per name, the leading axes those of bootstrap resamples): the spec's
    statistics, ``log_p``, ``theory_reward``, ``pitch_class_entropy`` and, given the test
    melodies' summed histograms ``reference``, the ``kl_*`` rows; ``(...)`` each."""
    values = {name: ratio_of_sums(sums[name], STATISTIC_SCALES[name]) for name in STATISTICS}
    values["log_p"] = ratio_of_sums(sums["log_p"])
    values["theory_reward"] = ratio_of_sums(sums["theory_reward"])
    values["pitch_class_entropy"] = entropy_bits(sums["pitch_classes"])
    if reference is not None:
        for name in HISTOGRAMS:
            values[f"kl_{name}"] = kl_divergence(sums[name], reference[name])
    return values


def measure(
    melodies: list[list[int]],
    prior: MelodyPrior,
    config: AgentsBenchConfig,
    trained_steps: float = math.nan,
) -> dict:
    """``{"measures", "per_melody"}`` of ``melodies``: every measure of the module docstring but
    the ``kl_*`` rows (:func:`point_measures` adds them), and :func:`melody_contributions` as
    lists."""
    contributions = melody_contributions(melodies, prior, config)
    measures = {
        name: float(value) for name, value in measures_from_sums(_sums(contributions)).items()
    }
    measures["distinct_melodies"] = 100 * len({tuple(m) for m in melodies}) / len(melodies)
    measures["distinct_4grams"] = distinct_ngrams(melodies, 4)
    measures["trained_steps"] = float(trained_steps)
    per_melody = {name: rows.tolist() for name, rows in contributions.items()}
    return {"measures": measures, "per_melody": per_melody}


def point_measures(outcome: dict, reference: dict[str, np.ndarray] | None) -> dict[str, float]:
    """The measures of an ``outcome`` of :func:`bench_agent`: those of :func:`measures_from_sums`
    from its per-melody contributions (with the ``kl_*`` rows to the test melodies' summed
    histograms ``reference`` where given), the others as saved."""
    per_melody = {name: np.asarray(rows) for name, rows in outcome["per_melody"].items()}
    summed = measures_from_sums(_sums(per_melody), reference)
    return {**outcome["measures"], **{name: float(value) for name, value in summed.items()}}


def interval_bounds(
    outcome: dict, reference: dict[str, np.ndarray] | None, config: AgentsBenchConfig
) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap bounds over the melodies of an ``outcome`` of
    :func:`bench_agent`, of every measure :func:`measures_from_sums` gives."""
    per_melody = {name: np.asarray(rows) for name, rows in outcome["per_melody"].items()}
    return bootstrap_intervals(
        per_melody, lambda sums: measures_from_sums(sums, reference), config.resamples, seed=0
    )


def _sums(contributions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: rows.sum(0) for name, rows in contributions.items()}


def env_config(config: AgentsBenchConfig, seed: int = DEFAULTS.seed) -> EnvConfig:
    """The environment every agent of the benchmark trains in."""
    shared = ("prior", "rules", "c", "key", "length")
    return EnvConfig(**{name: getattr(config, name) for name in shared}, seed=seed)


def train_agent(name: str, seed: int, run: Path, config: AgentsBenchConfig) -> None:
    """Train one agent into ``run`` with its train function (resuming an interrupted run)."""
    algorithm = ALGORITHMS["rltuner-q" if name == RULES_ONLY else name]
    settings = {
        **asdict(env_config(config, seed)),
        "steps": config.steps,
        "max_minutes": config.max_minutes,
        "prior_reward": name != RULES_ONLY,
    }
    algorithm.train_run(
        algorithm.make_config(**settings),
        run,
        resume=(run / "agent.json").exists(),
        progress=config.progress,
    )


MEASURES_FILE = "measures.json"
"""Per run: the melodies, measures and per-melody contributions of its last benchmark, reused by
``--load``."""


def _settings(config: AgentsBenchConfig) -> dict:
    return {k: getattr(config, k) for k in ("melodies", "prior", "rules", "c", "key", "length")}


def _cached(path: Path, settings: dict) -> dict | None:
    """The outcome saved at ``path`` if it has these settings and per-melody contributions (an
    older file without them is measured again)."""
    if not path.is_file():
        return None
    cached = json.loads(path.read_text())
    return cached if cached.get("settings") == settings and "per_melody" in cached else None


def _save(path: Path, outcome: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(outcome, default=float))


def trained_agent(
    name: str, seed: int, run_dir: Path, config: Any, train: Callable[..., None]
) -> tuple[Any, float]:
    """The agent of ``name``'s run folder and the steps it trained: trained now by
    ``train(name, seed, run_dir, config)`` (or continued), or with ``config.load`` as it is;
    ``(None, nan)``, said in a line, where ``--load`` finds no run."""
    from musicgym import agents
    from musicgym.agents.common import read_agent_info

    if config.load and not (run_dir / "agent.json").is_file():
        print(f"{name} (seed {seed}): no run in {run_dir}, left out", flush=True)
        return None, math.nan
    if not config.load:
        train(name, seed, run_dir, config)
    return agents.load(run_dir), read_agent_info(run_dir).get("trained_steps", math.nan)


def bench_agent(name: str, seed: int, config: AgentsBenchConfig) -> dict | None:
    """Train (or load) one agent, compose ``config.melodies`` melodies and measure them:
    ``{"settings", "measures", "per_melody", "melodies", "minutes"}`` (:func:`measure`), also
    written to the run folder's ``measures.json``. With ``config.load`` a ``measures.json`` of
    the same settings is reused, and an agent that was never trained gives ``None``."""
    from musicgym import agents
    from musicgym.agents.common import load_prior, set_torch_threads

    set_torch_threads(1)
    run_dir = run_folder(config, name, seed)
    settings = _settings(config)
    cache = run_dir / MEASURES_FILE
    if config.load and (cached := _cached(cache, settings)) is not None:
        return cached
    start = time.perf_counter()
    trained_steps = math.nan
    if name == "prior":
        agent = agents.load(f"prior:{config.prior}", length=config.length)
    elif name == "random":
        agent = agents.load("random", length=config.length)
    else:
        agent, trained_steps = trained_agent(name, seed, run_dir, config, train_agent)
        if agent is None:
            return None
    minutes = (time.perf_counter() - start) / 60
    melodies = agent.compose(config.melodies, seed=1000 + seed)
    measured = measure(melodies, load_prior(config.prior), config, trained_steps)
    print(f"{name} (seed {seed}): " + _summary(measured["measures"]), flush=True)
    outcome = {"settings": settings, **measured, "melodies": melodies, "minutes": minutes}
    _save(cache, outcome)
    return outcome


def reference_melodies(prior: str, length: int) -> tuple[str, list[list[int]]] | None:
    """``(dataset name, windows)``: the test split of the data the prior was trained on (its
    checkpoint's ``"data"``, with its pitch range and key normalisation), each piece's top voice
    as melody tokens cut into non-overlapping windows of ``length`` tokens that start on bar lines
    (the incomplete last window left out), each in canonical spelling. ``None``, with a printed
    note, where the checkpoint records no dataset or it cannot be loaded at 16th notes."""
    from musicgym.errors import MusicgymError
    from musicgym.music.tokens import canonical_tokens
    from musicgym.priors.data import load_dataset
    from musicgym.priors.registry import read_checkpoint

    data = read_checkpoint(prior).get("data") or {}
    if "name" not in data:
        print(f"prior {prior}: its checkpoint names no dataset; no test melodies and no KL rows")
        return None
    print(f"test melodies: the test split of {data['name']} (a new pitch range converts once)")
    try:
        dataset = load_dataset(
            data["name"],
            resolution=data.get("resolution"),
            lowest_pitch=data.get("lowest_pitch"),
            num_pitches=data.get("num_pitches"),
            key_normalise=bool(data.get("key_normalised", False)),
            progress=True,
        )
    except (MusicgymError, OSError) as error:
        print(f"{data['name']}: {error}; no test melodies and no KL rows")
        return None
    if dataset.resolution != SIXTEENTH_NOTES:
        print(f"{data['name']}: not in 16th notes; no test melodies and no KL rows")
        return None
    stride = -(-length // BAR) * BAR  # the first bar line at or after the window's end
    windows = [
        canonical_tokens(melody[start : start + length])
        for melody in dataset.melodies("test")
        for start in range(0, len(melody) - length + 1, stride)
    ]
    return data["name"], windows


def bench_test_melodies(data: str, windows: list[list[int]], config: AgentsBenchConfig) -> dict:
    """:func:`measure` of ``config.melodies`` of the test melodies' ``windows`` (a seeded sample
    without replacement, all of them if fewer), cached in ``runs/test-melodies/measures.json``
    while the settings and the data stay the same."""
    from musicgym.agents.common import load_prior

    settings = {**_settings(config), "data": data, "windows": len(windows)}
    cache = Path(config.out) / "runs" / "test-melodies" / MEASURES_FILE
    if (cached := _cached(cache, settings)) is not None:
        return cached
    chosen = np.random.default_rng(0).choice(
        len(windows), min(config.melodies, len(windows)), replace=False
    )
    melodies = [windows[i] for i in sorted(chosen)]
    measured = measure(melodies, load_prior(config.prior), config)
    print(f"{TEST_MELODIES}: " + _summary(measured["measures"]), flush=True)
    outcome = {"settings": settings, **measured, "melodies": melodies}
    _save(cache, outcome)
    return outcome


def run(config: AgentsBenchConfig) -> dict:
    """Train or load every agent, compose, measure, and write the tables and pictures."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    reference = reference_melodies(config.prior, config.length)
    tasks = [(name, seed) for name in config.agents for seed in config.seeds]
    if config.jobs > 1 or config.ray is not None:
        # The long training runs start first; prior and random only compose.
        tasks.sort(key=lambda task: task[0] in REFERENCE_AGENTS)
    if config.ray is not None:
        outcomes = _run_on_ray(tasks, config)
    elif config.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        quiet = AgentsBenchConfig(**{**asdict(config), "progress": False})
        context = multiprocessing.get_context("spawn")  # no forked torch or env state
        with ProcessPoolExecutor(config.jobs, mp_context=context) as pool:
            futures = [pool.submit(bench_agent, name, seed, quiet) for name, seed in tasks]
            outcomes = [_result(future, name, seed) for future, (name, seed) in zip(futures, tasks)]
    else:
        outcomes = [bench_agent(name, seed, config) for name, seed in tasks]
    return write_report(config, tasks, outcomes, reference)


def write_report(
    config: AgentsBenchConfig,
    tasks: list[tuple[str, int]],
    outcomes: list[dict | None],
    reference: tuple[str, list[list[int]]] | None,
) -> dict:
    """The tables (with the test melodies' column where ``reference`` is given), the goals, the
    pictures and the MIDI files of the runs' ``outcomes``; returns the report."""
    out = Path(config.out)
    histograms, columns, described = None, {}, None
    if reference is not None:
        data, windows = reference
        histograms = {
            name: np.sum([histogram(m) for m in windows], 0)
            for name, histogram in HISTOGRAMS.items()
        }
        columns[TEST_MELODIES] = [bench_test_melodies(data, windows, config)]
        sampled = len(columns[TEST_MELODIES][0]["melodies"])
        described = {"data": data, "windows": len(windows), "sampled": sampled}
    for (name, _), outcome in zip(tasks, outcomes, strict=True):
        if outcome is not None:
            columns.setdefault(name, []).append(outcome)
    results = {
        name: [point_measures(o, histograms) for o in runs] for name, runs in columns.items()
    }
    table = {
        name: summarise(
            results[name],
            interval_bounds(runs[0], histograms, config) if len(runs) == 1 else None,
        )
        for name, runs in columns.items()
    }
    minutes = {
        f"{name}-seed{seed}": outcome["minutes"]
        for (name, seed), outcome in zip(tasks, outcomes)
        if outcome is not None
    }
    agents_results = {name: runs for name, runs in results.items() if name != TEST_MELODIES}
    report = {
        "config": asdict(config),
        "date": time.strftime("%Y-%m-%d"),
        "training_minutes": minutes,
        "test_melodies": described,
        "results": agents_results,
        "table": {
            name: {m: asdict(cell) for m, cell in cells.items()} for name, cells in table.items()
        },
        "goals": goals(table),
    }
    (out / "results.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    write_csv(out / "results.csv", table)
    text = markdown_table(table, config.resamples)
    if described:
        text += (
            f"\n\n{TEST_MELODIES}: {described['sampled']} of the "
            f"{described['windows']} windows of {config.length} tokens of the test split of "
            f"{described['data']} (the data of the prior {config.prior})"
        )
    (out / "results.md").write_text(text + "\n\n" + goals_text(report["goals"]) + "\n")
    samples = {name: runs[0]["melodies"] for name, runs in columns.items() if name != TEST_MELODIES}
    write_samples(out, samples)
    plot_learning_curves(out / "learning_curves.png", out / "runs", config.agents)
    print(text)
    print(goals_text(report["goals"]))
    print(f"\nresults, pictures and MIDI files in {out}")
    return report


def _run_on_ray(tasks: list[tuple[str, int]], config: AgentsBenchConfig) -> list[dict | None]:
    """:func:`bench_agent` of each (agent, seed) as a Ray task (``benchmarks/ray_runs.py``)."""
    from musicgym.benchmarks.ray_runs import RayJob, run_jobs

    quiet = AgentsBenchConfig(**{**asdict(config), "progress": False})
    jobs = [
        RayJob(
            f"{name} (seed {seed})",
            bench_agent,
            (name, seed, quiet),
            run_folder(quiet, name, seed).relative_to(quiet.out).as_posix(),
        )
        for name, seed in tasks
    ]
    return run_jobs(jobs, config.out, config.ray or "", local_cpus=config.jobs)


def _result(future, name: str, seed: int) -> dict | None:
    """A worker's outcome; a run that failed is reported and left out, the others are kept."""
    try:
        return future.result()
    except Exception as error:  # one failed run must not lose the others
        print(f"{name} (seed {seed}): failed ({type(error).__name__}: {error})", flush=True)
        return None


def _summary(values: dict[str, float]) -> str:
    keys = ("notes_not_in_key", "notes_excessively_repeated", "log_p", "theory_reward")
    return ", ".join(f"{k} {values[k]:.2f}" for k in keys)


@dataclass
class Cell:
    """One column's value of one measure: the mean over seeds and its 95% confidence interval."""

    mean: float
    low: float = math.nan
    high: float = math.nan
    interval: str = ""
    """How ``low`` and ``high`` were found: ``"t"`` (over seeds), ``"bootstrap"`` (over
    melodies), or ``""`` (none)."""

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def summarise(
    runs: list[dict[str, float]],
    bootstrap: dict[str, tuple[float, float]] | None = None,
    measures: Sequence[str] = tuple(MEASURES),
) -> dict[str, Cell]:
    """Each of ``measures`` (default :data:`MEASURES`) over ``runs`` (one dict per seed): the mean
    with the t interval over the seeds where at least two have a value, else with the
    ``bootstrap`` bounds where given (those of a single run, :func:`interval_bounds`); a measure
    no run has is NaN."""
    cells = {}
    for name in measures:
        mean, low, high = t_interval([values.get(name, math.nan) for values in runs])
        bounds = (bootstrap or {}).get(name, (math.nan, math.nan)) if len(runs) == 1 else None
        if not math.isnan(low):
            cells[name] = Cell(mean, low, high, "t")
        elif bounds is not None and not math.isnan(bounds[0]):
            cells[name] = Cell(mean, *bounds, "bootstrap")
        else:
            cells[name] = Cell(mean)
    return cells


def markdown_table(table: dict[str, dict[str, Cell]], resamples: int = 1000) -> str:
    """Measures down (a measure no column has left out); the published columns, the test
    melodies and then ours (mean ± the half-width of the 95% confidence interval) across; a legend
    of the directions beneath."""
    published = list(PUBLISHED)
    names = [name if name == TEST_MELODIES else f"**{name}**" for name in table]
    header = ["statistic", *published, *names]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, label in MEASURES.items():
        values = [_format(PUBLISHED[c].get(name, math.nan)) for c in published]
        for column in table.values():
            cell = column[name]
            interval = f" ± {_format(cell.half_width)}" if cell.interval else ""
            values.append(_format(cell.mean) + interval)
        if any(values):
            label = label.replace("|", "\\|")  # "log p(a|s)" inside a Markdown table
            lines.append("| " + " | ".join([label, *values]) + " |")
    return "\n".join(lines) + "\n\n" + legend(resamples)


def legend(resamples: int = 1000) -> str:
    """The table's legend: which way each measure is better, and what ± means."""
    groups: dict[str, list[str]] = {}
    for name, label in MEASURES.items():
        if name in UNJUDGED:
            continue
        direction = DIRECTION_WORDS[BETTER.get(name, "higher")]
        if name in UP_TO_THE_DATA:
            direction += f", up to the {TEST_MELODIES}'"
        groups.setdefault(direction, []).append(label)
    better = " ".join(f"**{d}**: {'; '.join(labels)}." for d, labels in groups.items())
    return (
        f"Better: {better}\n\n"
        "± is the half-width of the 95% confidence interval of the mean: a t interval over the "
        "seeds where an agent has several, else a percentile bootstrap over its melodies "
        f"({resamples:,} resamples; the bounds, not always symmetric, are in results.json and "
        "results.csv); none for the distinct shares or the steps of a single run."
    )


def _format(value: float) -> str:
    if math.isnan(value):
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def goals(table: dict[str, dict[str, Cell]]) -> dict[str, object]:
    """The agents issue's quality goals for ``rltuner-q``, where the runs allow a verdict: the
    statistics whose mean is at least as good as a published column's (:func:`is_better`), and
    those whose whole confidence interval is (``..._with_ci_on``)."""
    if "rltuner-q" not in table:
        return {}
    ours = table["rltuner-q"]

    def as_good(column: str) -> tuple[list[str], list[str]]:
        theirs = PUBLISHED[column]
        on_mean = [s for s in STATISTICS if is_better(s, ours[s].mean, theirs[s])]
        on_ci = [
            s
            for s in STATISTICS
            if all(is_better(s, b, theirs[s]) for b in (ours[s].low, ours[s].high))
        ]
        return on_mean, on_ci

    beats_tuned, beats_tuned_ci = as_good(TUNED_COLUMN)
    matches_q, matches_q_ci = as_good(JAQUES_Q_COLUMN)
    verdict: dict[str, object] = {
        "beats_bi_axial_q_on": beats_tuned,
        "beats_bi_axial_q_on_all": len(beats_tuned) == len(STATISTICS),
        "beats_bi_axial_q_with_ci_on": beats_tuned_ci,
        "matches_jaques_q_on": matches_q,
        "matches_jaques_q_on_8_of_11": len(matches_q) >= 8,
        "matches_jaques_q_with_ci_on": matches_q_ci,
    }
    if RULES_ONLY in table:
        margin = ours["log_p"].mean - table[RULES_ONLY]["log_p"].mean
        verdict["log_p_above_rules_only"] = margin
        verdict["log_p_at_least_1_nat_above_rules_only"] = margin >= 1.0
    return verdict


def goals_text(verdict: dict[str, object]) -> str:
    if not verdict:
        return "(no rltuner-q run: no verdict on the goals)"
    lines = [
        f"- rltuner-q at least as good as {TUNED_COLUMN} on "
        f"{len(verdict['beats_bi_axial_q_on'])}/{len(STATISTICS)} statistics "
        f"(goal: all): {'met' if verdict['beats_bi_axial_q_on_all'] else 'not met'}; "
        f"with the whole 95% CI: {len(verdict['beats_bi_axial_q_with_ci_on'])}",
        f"- rltuner-q at least as good as Jaques et al.'s Q on "
        f"{len(verdict['matches_jaques_q_on'])}/{len(STATISTICS)} "
        f"(goal: 8): {'met' if verdict['matches_jaques_q_on_8_of_11'] else 'not met'}; "
        f"with the whole 95% CI: {len(verdict['matches_jaques_q_with_ci_on'])}",
    ]
    if "log_p_above_rules_only" in verdict:
        lines.append(
            f"- mean log p above the rules-only agent by {verdict['log_p_above_rules_only']:.2f} "
            f"nats (goal: 1): "
            f"{'met' if verdict['log_p_at_least_1_nat_above_rules_only'] else 'not met'}"
        )
    return "\n".join(lines)


def write_csv(path: Path, table: dict[str, dict[str, Cell]]) -> None:
    """The table, one row per column and measure: mean, the 95% interval's bounds and its kind."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["column", "measure", "mean", "ci_low", "ci_high", "interval"])
        for name, cells in table.items():
            for measure_name, cell in cells.items():
                writer.writerow([name, measure_name, cell.mean, cell.low, cell.high, cell.interval])


def write_samples(out: Path, samples: dict[str, list[list[int]]], per_agent: int = 4) -> None:
    """MIDI files (and a WAV beside each) of the first melodies of each agent and one sheet of
    their piano rolls."""
    from musicgym.music.audio import write_wavs_beside
    from musicgym.music.midi import write_melody
    from musicgym.music.pianoroll import save_piano_roll_sheet
    from musicgym.music.tokens import FIRST_PITCH_TOKEN, tokens_to_note_state

    rolls, titles, midi_paths = [], [], []
    for name, melodies in samples.items():
        folder = out / "midi" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, melody in enumerate(melodies[:per_agent]):
            write_melody(melody, folder / f"melody_{i}.mid")
            if any(token >= FIRST_PITCH_TOKEN for token in melody):  # silence has no sound
                midi_paths.append(folder / f"melody_{i}.mid")
            rolls.append(tokens_to_note_state(melody))
            titles.append(f"{name} #{i}")
    write_wavs_beside(midi_paths)
    save_piano_roll_sheet(rolls, out / "piano_rolls.png", titles, columns=per_agent)


def read_curves(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``music/*`` scalars of a run's TensorBoard logs: tag -> (steps, values)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, tuple[list[int], list[float]]] = {}
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            if tag.startswith("music/"):
                steps, values = curves.setdefault(tag.removeprefix("music/"), ([], []))
                for event in accumulator.Scalars(tag):
                    steps.append(event.step)
                    values.append(event.value)
    return {
        tag: (np.array(s)[np.argsort(s, kind="stable")], np.array(v)[np.argsort(s, kind="stable")])
        for tag, (s, v) in curves.items()
    }


def plot_learning_curves(path: Path, runs: Path, names: Sequence[str]) -> None:
    """One panel per statistic (and log p), one line per trained agent (seed 0's run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {
        name: read_curves(runs / f"{name}-seed0")
        for name in names
        if (runs / f"{name}-seed0").is_dir()
    }
    measures = [m for m in MEASURES if any(m in c for c in curves.values())]
    if not measures:
        return
    columns = 4
    rows = math.ceil(len(measures) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, measure_name in zip(axes.flat, measures):
        for name, agent_curves in curves.items():
            if measure_name in agent_curves:
                steps, values = agent_curves[measure_name]
                ax.plot(steps, values, marker=".", label=name)
        ax.set_title(MEASURES[measure_name], fontsize=9)
        ax.set_xlabel("environment steps", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(measures) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

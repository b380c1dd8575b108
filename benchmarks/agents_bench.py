"""``musicgym bench agents``: every agent on the same environment and budget, beside the data and
the papers, on either environment (``--env``; ``musicgym bench chorales`` is this benchmark on
``ChoraleComposition-v0``). What differs between the environments comes from the task
(:mod:`musicgym.tasks`): the pieces, their measures, the published columns and the data column.

Each agent is trained (its train function of :data:`musicgym.agents.registry.ALGORITHMS`, an
interrupted run resumed) or loaded (``--load``) once per seed, composes ``--pieces`` pieces, and
is measured by every measure of its task (:attr:`musicgym.tasks.Task.measures`). For melodies:
the spec's statistics (:func:`musicgym.metrics.evaluate_melodies`) plus

* ``log_p``: the mean ``log p(a|s)`` of its tokens under the prior (the environment's ``"prior"``
  reward part; uniform over 38 actions is -3.64);
* ``theory_reward``: the mean music-theory reward ``r_MT`` per step (the rules' weighted sum,
  before division by ``c``);
* ``distinct_melodies``, ``distinct_4grams`` (%) and ``pitch_class_entropy`` (bits);
* ``kl_pitch_classes``, ``kl_intervals``, ``kl_note_lengths``: the KL divergence in nats of its
  histograms (:data:`musicgym.metrics.HISTOGRAMS`) to those of the *test melodies*;
* ``trained_steps``: the environment steps the run reached (``--max-minutes`` may stop it short).

For chorales: the statistics of four-part writing (:data:`musicgym.metrics.chorale.STATISTICS`,
each piece in the key :func:`musicgym.music.harmony.find_key` finds for it), ``distinct_pieces``,
``log_p`` (the mean log-likelihood per frame under the prior) and ``trained_steps``.

The data column is the test split of the prior's training data (its checkpoint's ``"data"``), cut
as the environment composes (:meth:`musicgym.tasks.Task.reference_pieces`): the *test melodies*
(windows of ``--length`` tokens starting on bar lines, ``--pieces`` of them sampled), or *Bach*
(the last ``--bars`` bars of every test chorale). ``--split valid`` cuts it from the validation
split instead, to choose settings on without looking at the test split. It is measured like an
agent and cached in ``runs/COLUMN/measures.json`` while the settings stay the same.

Every cell of the table is the mean and the half-width of its 95% confidence interval: a t interval
over the seeds where a column has several (:func:`musicgym.metrics.t_interval`), else a percentile
bootstrap over its pieces (``--resamples`` resamples, seeded;
:func:`musicgym.metrics.bootstrap_intervals`) of every measure that sums over pieces
(:mod:`musicgym.benchmarks.measures`). The goals of the environment's issue are judged at the end
(:data:`musicgym.benchmarks.goals.GOALS`).

It writes into ``--out``: ``runs/AGENT-seedS/`` (the training run and its ``measures.json``: the
pieces, numbers and per-piece contributions, which ``--load`` reuses), ``results.md`` (the
published columns beside ours), ``results.json`` (every number of every seed, the table with
its intervals' bounds, each run's wall-clock and CPU minutes and its evaluations during training,
``curves``), ``results.csv`` (the table: one row per column and measure, with the
bounds), ``learning_curves.png`` (each measure against environment steps, from the runs'
TensorBoard logs), for melodies ``pareto.png`` (each run's notes in motif and theory reward
against its KL to the test melodies, beside the data's own frontier: ``benchmarks/pareto.py``,
also in ``results.json``'s ``frontier``), ``piano_rolls.png`` (sample pieces of each column)
and ``midi/COLUMN/*.mid`` (a WAV beside each). ``--jobs N`` runs N agents at a time in worker
processes, ``--ray [ADDRESS]`` each (agent, seed) as a task on a Ray cluster
(``benchmarks/ray_runs.py``). A run that fails is reported in a line, left out of the tables
(which say over how many runs each column is) and listed in ``results.json``'s ``failures``
(agent, seed, error); the command then exits 2 unless ``--allow-failures``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

from musicgym.agents.registry import ALGORITHMS
from musicgym.benchmarks.goals import GOALS, RULES_ONLY
from musicgym.benchmarks.measures import MEASURES_FILE, cached, column_cells, measure, save
from musicgym.benchmarks.pareto import NOT_REPEATED, data_frontier, plot_pareto
from musicgym.benchmarks.ray_runs import RunFailure
from musicgym.benchmarks.report import (
    column_folder,
    markdown_table,
    plot_learning_curves,
    read_curves,
    write_csv,
    write_samples,
)
from musicgym.config import DEFAULTS, ENV_ID, EnvConfig
from musicgym.errors import BenchmarkError
from musicgym.fileio import write_text
from musicgym.runs import StoppablePool
from musicgym.tasks import CHORALE, MELODY, REPORTED_SPLIT, Task, task_of

REFERENCE_AGENTS = ("prior", "random")
"""Agents composed without training."""
MEASURES_VERSION = 3
"""Bumped when the measures change, so that ``--load`` measures the loaded agents again."""


class BenchDefaults(NamedTuple):
    """What the benchmark's settings default to on one environment."""

    agents: tuple[str, ...]
    steps: int
    pieces: int
    seeds: tuple[int, ...]
    out: str
    hyperparameters: str
    reference_once: bool
    """Whether prior and random compose once (the first seed) rather than once per seed."""
    quick: dict[str, Any]
    """What ``--quick`` sets."""


BENCH_DEFAULTS: dict[str, BenchDefaults] = {
    MELODY.env_id: BenchDefaults(
        agents=(*REFERENCE_AGENTS, RULES_ONLY, *ALGORITHMS),
        steps=50_000,
        pieces=1000,
        seeds=(0,),
        out="runs/bench-agents",
        hyperparameters="{}",
        reference_once=False,
        quick={
            "agents": ("prior", "random", RULES_ONLY, "rltuner-q", "sb3-dqn"),
            "steps": 1_000,
            "pieces": 100,
            "jobs": 2,
        },
    ),
    CHORALE.env_id: BenchDefaults(
        agents=(
            *REFERENCE_AGENTS,
            RULES_ONLY,
            *("rltuner-q", "rltuner-psi", "rltuner-g", "sb3-maskableppo", "sb3-dqn"),
        ),
        steps=30_000,
        pieces=200,
        seeds=(0, 1, 2),
        out="runs/bench-chorales",
        # Boltzmann exploration samples the policy (at first the prior itself); epsilon-greedy's
        # uniform decisions write frames of many notes that the network is slow to unlearn.
        hyperparameters='{"exploration": "boltzmann"}',
        reference_once=True,
        quick={
            "agents": ("prior", "random", RULES_ONLY, "rltuner-q", "sb3-maskableppo"),
            "steps": 2_000,
            "pieces": 48,
        },
    ),
}
"""The benchmark's defaults on each environment, by env id."""
QUICK = BENCH_DEFAULTS[ENV_ID].quick
"""What ``--quick`` sets on melodies: five agents, 1,000 steps, 100 melodies, 2 jobs."""


@dataclass
class AgentsBenchConfig:
    """Settings of ``musicgym bench agents``; an empty or zero setting takes the environment's
    default (:data:`BENCH_DEFAULTS`, :class:`~musicgym.config.EnvConfig`)."""

    env: str = ENV_ID
    """The environment: MusicComposition-v0 (melodies) or ChoraleComposition-v0 (chorales)."""
    agents: tuple[str, ...] = ()
    """Agents to compare: prior, random, rules-only, and any algorithm of `musicgym agent train`
    (default: the environment's list)."""
    steps: int = 0
    """Environment steps of training per agent and seed (0: 50,000 melody steps, 30,000 chorale
    decisions)."""
    pieces: int = 0
    """Pieces each agent composes for the statistics (0: 1,000 melodies, 200 chorales)."""
    seeds: tuple[int, ...] = ()
    """Seeds; several give a t interval over the seeds instead of a bootstrap over pieces
    (default: 0 for melodies, 0,1,2 for chorales, where prior and random compose once)."""
    out: str = ""
    """Folder of the runs and results (default: runs/bench-agents, runs/bench-chorales)."""
    load: bool = False
    """Load the agents trained earlier in --out instead of training them."""
    max_minutes: float = 0.0
    """Stop each training run after so many minutes, even short of --steps (0: no limit); the
    table reports the steps each run reached, and a second call continues the runs."""
    jobs: int = 1
    """Agents trained and measured side by side, each in its own process with one torch thread
    (one per CPU core is fastest)."""
    prior: str = ""
    """Prior of the environment (a shipped name or a checkpoint path; default: the
    environment's, melody16c or bach16)."""
    rules: str = ""
    """Reward rules (preset or names; default: the environment's preset)."""
    c: float = DEFAULTS.c
    """Divisor of the rule rewards."""
    key: str = DEFAULTS.key
    """Key of the rules (and of the melody statistics); for ChoraleComposition-v0 also several,
    separated by commas, of which each episode draws one ('C major,C major,A minor': Bach's
    share of major and minor chorales)."""
    length: int = DEFAULTS.length
    """Tokens per melody."""
    bars: int = DEFAULTS.bars
    """Bars per chorale."""
    hyperparameters: str = ""
    """JSON of RL Tuner settings for every rltuner agent and rules-only (default: the
    environment's; Boltzmann exploration for chorales)."""
    resamples: int = 1000
    """Bootstrap resamples of the pieces, for the confidence intervals of one seed."""
    progress: bool = True
    """Show training progress bars."""
    ray: str | None = None
    """Run each (agent, seed) as a Ray task: a cluster's address, or '' for a local Ray of --jobs
    CPUs; None: in processes of this machine (--jobs)."""
    split: Literal["test", "valid"] = REPORTED_SPLIT
    """The split of the prior's data the data column is cut from: test to report results on,
    valid to choose settings on (train on train, choose on valid, report on test)."""
    allow_failures: bool = False
    """Exit 0 when some (agent, seed) runs failed: the tables of the others are written either
    way, and results.json lists the failures."""
    task: Task[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.task = task_of(self.env)
        defaults = BENCH_DEFAULTS[self.env]._asdict()
        for name in ("agents", "steps", "pieces", "seeds", "out", "hyperparameters"):
            if not getattr(self, name):
                setattr(self, name, defaults[name])
        environment = EnvConfig(env=self.env, prior=self.prior, rules=self.rules)
        self.prior, self.rules = environment.prior, environment.rules

    def settings(self) -> dict[str, Any]:
        """The settings as ``asdict`` gives them, without the task."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}


def quick_settings(env: str) -> dict[str, Any]:
    """What ``--quick`` sets on the environment ``env``."""
    task_of(env)  # one line for an unknown id
    return BENCH_DEFAULTS[env].quick


def run_folder(config: AgentsBenchConfig, name: str, seed: int) -> Path:
    """The folder of one (agent, seed) run: ``--out``/runs/AGENT-seedS."""
    return Path(config.out) / "runs" / f"{name}-seed{seed}"


def env_config(config: AgentsBenchConfig, seed: int = DEFAULTS.seed) -> EnvConfig:
    """The environment every agent of the benchmark trains in."""
    shared = ("env", "prior", "rules", "c", "key", "length", "bars")
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
    if name.startswith("rltuner") or name == RULES_ONLY:
        settings.update(json.loads(config.hyperparameters))
    algorithm.train_run(
        algorithm.make_config(**settings),
        run,
        resume=(run / "agent.json").exists(),
        progress=config.progress,
    )


def _settings(config: AgentsBenchConfig) -> dict:
    names = ("env", "pieces", "prior", "rules", "c", "key", "length", "bars")
    return {**{k: getattr(config, k) for k in names}, "measures": MEASURES_VERSION}


def trained_agent(
    name: str, seed: int, run_dir: Path, config: AgentsBenchConfig
) -> tuple[Any, float]:
    """The agent of ``name``'s run folder and the steps it trained: trained now (or continued),
    or with ``config.load`` as it is; ``(None, nan)``, said in a line, where ``--load`` finds no
    run."""
    from musicgym import agents
    from musicgym.agents.common import read_agent_info

    if config.load and not (run_dir / "agent.json").is_file():
        print(f"{name} (seed {seed}): no run in {run_dir}, left out", flush=True)
        return None, math.nan
    if not config.load:
        train_agent(name, seed, run_dir, config)
    return agents.load(run_dir), read_agent_info(run_dir).get("trained_steps", math.nan)


def bench_agent(name: str, seed: int, config: AgentsBenchConfig) -> dict | None:
    """Train (or load) one agent, compose ``config.pieces`` pieces and measure them:
    ``{"settings", "measures", "per_piece", "pieces", "minutes", "cpu_minutes"}`` (training and
    composing, wall-clock and this process's CPU; :func:`measure`), also
    written to the run folder's ``measures.json``. With ``config.load`` a ``measures.json`` of
    the same settings is reused, and an agent that was never trained gives ``None``."""
    from musicgym import agents
    from musicgym.agents.common import load_prior, set_torch_threads

    set_torch_threads(1)
    run_dir = run_folder(config, name, seed)
    settings = _settings(config)
    cache = run_dir / MEASURES_FILE
    if config.load and (saved := cached(cache, settings)) is not None:
        return saved
    start, cpu_start = time.perf_counter(), time.process_time()
    trained_steps = math.nan
    if name == "prior":
        agent = agents.PriorAgent(config=env_config(config))
    elif name == "random":
        agent = agents.RandomAgent(env_config(config))
    else:
        agent, trained_steps = trained_agent(name, seed, run_dir, config)
        if agent is None:
            return None
    pieces = agent.compose(config.pieces, seed=1000 + seed)
    minutes = (time.perf_counter() - start) / 60
    cpu_minutes = (time.process_time() - cpu_start) / 60
    task = config.task
    measured = measure(task, pieces, load_prior(config.prior), env_config(config), trained_steps)
    summary = _summary(task, measured["measures"])
    print(f"{name} (seed {seed}): {summary} ({minutes:.1f} min)", flush=True)
    outcome = {
        "settings": settings,
        **measured,
        "pieces": [task.to_json(piece) for piece in pieces],
        "minutes": minutes,
        "cpu_minutes": cpu_minutes,
    }
    save(cache, outcome)
    return outcome


def reference_data(config: AgentsBenchConfig) -> tuple[str, list[Any]] | None:
    """``(dataset name, pieces)``: ``config.split`` of the data the prior was trained on (its
    checkpoint's ``"data"``, with its pitch range and key normalisation) cut as the environment
    composes (:meth:`musicgym.tasks.Task.reference_pieces`). ``None``, with a printed note,
    where the checkpoint records no dataset (and the task has none of its own) or it cannot be
    loaded or cut."""
    from musicgym.errors import MusicgymError
    from musicgym.priors.registry import data_pieces

    task = config.task
    print(
        f"{task.data_column}: the {config.split} split of the prior's data (a new pitch range "
        "converts once)"
    )
    try:
        return data_pieces(env_config(config), config.split, progress=True)
    except (MusicgymError, OSError) as error:
        print(f"{error}; no {task.data_column}")
        return None


def bench_reference(data: str, pieces: list[Any], config: AgentsBenchConfig) -> dict:
    """:func:`measure` of the data column (:meth:`musicgym.tasks.Task.reference_column` of
    ``pieces``), cached in ``runs/COLUMN/measures.json`` while the settings and the data stay
    the same."""
    from musicgym.agents.common import load_prior

    task = config.task
    settings = {**_settings(config), "data": data, "split": config.split, "count": len(pieces)}
    cache = Path(config.out) / "runs" / column_folder(task.data_column) / MEASURES_FILE
    if (saved := cached(cache, settings)) is not None:
        return saved
    column = task.reference_column(pieces, config.pieces)
    measured = measure(task, column, load_prior(config.prior), env_config(config))
    print(f"{task.data_column}: {_summary(task, measured['measures'])}", flush=True)
    outcome = {"settings": settings, **measured, "pieces": [task.to_json(p) for p in column]}
    save(cache, outcome)
    return outcome


def bench_tasks(config: AgentsBenchConfig) -> list[tuple[str, int]]:
    """The (agent, seed) runs of the benchmark; the long training runs first where they run side
    by side."""
    once = BENCH_DEFAULTS[config.env].reference_once
    tasks = [
        (name, seed)
        for name in config.agents
        for seed in (config.seeds[:1] if once and name in REFERENCE_AGENTS else config.seeds)
    ]
    if config.jobs > 1 or config.ray is not None:
        tasks.sort(key=lambda task: task[0] in REFERENCE_AGENTS)
    return tasks


def run(config: AgentsBenchConfig) -> dict:
    """Train or load every agent, compose, measure, and write the tables and pictures."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    reference = reference_data(config)
    tasks = bench_tasks(config)
    outcomes: list[Any]
    if config.ray is not None:
        outcomes = _run_on_ray(tasks, config)
    elif config.jobs > 1:
        quiet = AgentsBenchConfig(**{**config.settings(), "progress": False})
        with StoppablePool(config.jobs) as pool:
            futures = [pool.submit(bench_agent, name, seed, quiet) for name, seed in tasks]
            pool.wait(
                futures,
                f"during the bench: each run wrote its checkpoint under {out / 'runs'}; the same "
                "command goes on with them",
            )
        outcomes = [
            _result(future.result, name, seed) for future, (name, seed) in zip(futures, tasks)
        ]
    else:
        outcomes = [_result(partial(bench_agent, *task, config), *task) for task in tasks]
    report = write_report(config, tasks, outcomes, reference, (time.perf_counter() - start) / 60)
    if report["failures"] and not config.allow_failures:
        raise BenchmarkError(
            f"{len(report['failures'])} of {len(tasks)} runs failed (see the lines above and "
            f"'failures' in {Path(config.out) / 'results.json'}); the tables hold the others: "
            "--allow-failures exits 0 on such a bench"
        )
    return report


def write_report(
    config: AgentsBenchConfig,
    tasks: list[tuple[str, int]],
    outcomes: list[Any],
    reference: tuple[str, list[Any]] | None,
    minutes: float = math.nan,
) -> dict:
    """The tables (with the data column where ``reference`` is given), the goals, the pictures
    and the MIDI files of the runs' ``outcomes`` (a :class:`RunFailure` is a row of the report's
    ``failures``, and the table says over how many runs each column is); returns the report."""
    task, out = config.task, Path(config.out)
    histograms, columns, described, frontier, frontier_unrepeated = None, {}, None, None, None
    if reference is not None:
        data, pieces = reference
        if task.frontier:
            frontier = data_frontier(pieces, config.key)
            frontier_unrepeated = data_frontier(pieces, config.key, without=NOT_REPEATED)
        histograms = task.reference_histograms(pieces)
        columns[task.data_column] = [bench_reference(data, pieces, config)]
        sampled = len(columns[task.data_column][0]["pieces"])
        described = {
            "column": task.data_column,
            "data": data,
            "split": config.split,
            "pieces": len(pieces),
            "sampled": sampled,
        }
    failures = [
        {"agent": name, "seed": seed, "error": outcome.error}
        for (name, seed), outcome in zip(tasks, outcomes, strict=True)
        if isinstance(outcome, RunFailure)
    ]
    for name in config.agents:
        for (task_name, _), outcome in zip(tasks, outcomes, strict=True):
            if task_name == name and isinstance(outcome, dict):
                columns.setdefault(name, []).append(outcome)
    results, table = {}, {}
    for name, runs in columns.items():
        results[name], table[name] = column_cells(task, runs, histograms, config.resamples)
    goals = GOALS[config.env]
    report = {
        "config": config.settings(),
        "date": time.strftime("%Y-%m-%d"),
        "minutes": minutes,
        "training_minutes": {
            f"{name}-seed{seed}": outcome["minutes"]
            for (name, seed), outcome in zip(tasks, outcomes)
            if isinstance(outcome, dict)
        },
        "training_cpu_minutes": {
            f"{name}-seed{seed}": outcome.get("cpu_minutes", math.nan)
            for (name, seed), outcome in zip(tasks, outcomes)
            if isinstance(outcome, dict)
        },
        "curves": learning_curves(config, tasks, outcomes),
        "runs": {name: len(runs) for name, runs in columns.items()},
        "failures": failures,
        "data_column": described,
        "results": {name: runs for name, runs in results.items() if name != task.data_column},
        "table": {
            name: {m: asdict(cell) for m, cell in cells.items()} for name, cells in table.items()
        },
        "goals": goals.judge(table),
        "frontier": frontier,
        "frontier_without_repetition": frontier_unrepeated,
    }
    write_text(out / "results.json", json.dumps(report, indent=1, default=float) + "\n")
    write_csv(out / "results.csv", table)
    text = markdown_table(task, table, config.resamples)
    if described:
        text += (
            f"\n\n{task.data_column}: {described['sampled']} of the {described['pieces']} "
            f"{task.plural} cut from the {config.split} split of {described['data']} (the data "
            f"of the prior {config.prior})"
        )
    text += "\n\nruns per column: " + ", ".join(f"{n} {k}" for n, k in report["runs"].items())
    for failure in failures:
        text += f"\n{failure['agent']} (seed {failure['seed']}) failed: {failure['error']}"
    verdict = goals.text(report["goals"])
    write_text(out / "results.md", text + "\n\n" + verdict + "\n")
    samples = {
        name: [task.from_json(p) for p in runs[0]["pieces"][:4]] for name, runs in columns.items()
    }
    write_samples(task, out, samples)
    plot_learning_curves(
        task, out / "learning_curves.png", out / "runs", config.agents, report["curves"]
    )
    if task.frontier:
        plot_pareto(report, frontier, out / "pareto.png")
    print(text)
    print(verdict)
    print(f"\nresults, pictures and MIDI files in {out}")
    return report


def learning_curves(
    config: AgentsBenchConfig, tasks: list[tuple[str, int]], outcomes: list[Any]
) -> dict[str, dict[str, list[list[float]]]]:
    """Each trained run's evaluations during training, from its TensorBoard logs: ``"AGENT-seedS"
    -> {measure: [steps, values]}`` (the run's ``eval_melodies`` pieces per point)."""
    curves = {}
    for (name, seed), outcome in zip(tasks, outcomes, strict=True):
        run = run_folder(config, name, seed)
        if isinstance(outcome, dict) and name not in ("prior", "random") and run.is_dir():
            read = read_curves(run)
            curves[f"{name}-seed{seed}"] = {
                m: [s.tolist(), v.tolist()] for m, (s, v) in read.items()
            }
    return curves


def _run_on_ray(tasks: list[tuple[str, int]], config: AgentsBenchConfig) -> list[Any]:
    """:func:`bench_agent` of each (agent, seed) as a Ray task (``benchmarks/ray_runs.py``)."""
    from musicgym.benchmarks.ray_runs import RayJob, run_jobs

    quiet = AgentsBenchConfig(**{**config.settings(), "progress": False})
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


def _result(outcome: Callable[[], dict | None], name: str, seed: int) -> Any:
    """A run's outcome; one that failed is reported in a line and gives a :class:`RunFailure`
    (a row of ``results.json``'s failures), the others are kept."""
    try:
        return outcome()
    except BenchmarkError:  # the bench's own files are damaged: bad input, not a failed run
        raise
    except Exception as error:  # one failed run must not lose the others
        why = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        print(f"{name} (seed {seed}): failed ({why})", flush=True)
        return RunFailure(why)


def _summary(task: Task[Any], values: dict[str, float]) -> str:
    return ", ".join(f"{k} {values[k]:.2f}" for k in task.headline)

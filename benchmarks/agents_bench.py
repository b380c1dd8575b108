"""``musicgym bench agents``: every agent on the same environment and budget, beside the papers.

Each agent is trained (``musicgym agent train``) or loaded (``--load``) once per seed, composes
``--melodies`` melodies, and is measured by every statistic of the spec
(:func:`musicgym.metrics.evaluate_melodies`) plus

* ``log_p``: the mean ``log p(a|s)`` of its tokens under the prior (the environment's ``"prior"``
  reward part; uniform over 38 actions is -3.64);
* ``theory_reward``: the mean music-theory reward ``r_MT`` per step (the rules' weighted sum,
  before division by ``c``);
* ``distinct_melodies``: distinct melodies / N (%), and ``pitch_class_entropy``: the entropy of
  the pitch classes of all pitch tokens, in bits (log2 12 = 3.58 is uniform);
* ``trained_steps``: the environment steps the run reached (``--max-minutes`` may stop it short).

It writes into ``--out``: ``runs/AGENT-seedS/`` (the training run and its ``measures.json``: the
melodies and numbers, which ``--load`` reuses), ``results.md`` (the published columns beside
ours), ``results.json`` and ``results.csv`` (every number of every seed), ``learning_curves.png``
(each statistic and ``log_p`` against environment steps, from the runs' TensorBoard logs),
``piano_rolls.png`` (sample melodies of each agent) and ``midi/AGENT/*.mid``. ``--jobs N`` runs N
agents at a time in worker processes; a run that fails is reported and left out of the tables.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from musicgym.fileio import atomic_output
from musicgym.metrics import PUBLISHED, STATISTICS
from musicgym.tokens import FIRST_PITCH_TOKEN

REFERENCE_AGENTS = ("prior", "random")
"""Agents composed without training."""
RULES_ONLY = "rules-only"
"""The RL Tuner's Q-learning on the theory rules alone (no log p in the reward)."""
ALL_AGENTS = (
    "prior",
    "random",
    RULES_ONLY,
    "rltuner-q",
    "rltuner-psi",
    "rltuner-g",
    "sb3-dqn",
    "sb3-ppo",
    "sb3-qrdqn",
    "sb3-recurrentppo",
)
EXTRA_MEASURES = {
    "trained_steps": "environment steps trained",
    "log_p": "mean log p(a|s) under the prior",
    "theory_reward": "mean theory reward r_MT per step",
    "distinct_melodies": "distinct melodies (%)",
    "pitch_class_entropy": "pitch-class entropy (bits)",
}
MEASURES = {**STATISTICS, **EXTRA_MEASURES}
BETTER = {
    "notes_excessively_repeated": "lower",
    "autocorrelation_lag1": "zero",
    "autocorrelation_lag2": "zero",
    "autocorrelation_lag3": "zero",
    "notes_not_in_key": "lower",
}
"""How a statistic improves: ``lower``, ``zero`` (nearer 0), else higher."""
TUNED_COLUMN = "Bi-axial + Q (DQN paper)"
JAQUES_Q_COLUMN = "Q"


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
    """Seeds; several give mean and spread."""
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
    prior: str = "melody16"
    """Prior of the environment (a shipped name or a checkpoint path). melody16 rather than the
    environment's default bach16: the RL Tuner tunes it better (the prior ablation of
    RESULTS.md)."""
    rules: str = "jaques2017"
    """Reward rules (preset or names)."""
    c: float = 0.5
    """Divisor of the rule rewards."""
    key: str = "C major"
    """Key of the rules and statistics."""
    length: int = 32
    """Tokens per melody."""
    progress: bool = True
    """Show training progress bars."""


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


def pitch_class_entropy(melodies: Sequence[Sequence[int]]) -> float:
    """Entropy in bits of the pitch classes of every pitch token of ``melodies``."""
    tokens = np.array([t for m in melodies for t in m if t >= FIRST_PITCH_TOKEN])
    if not tokens.size:
        return 0.0
    counts = np.bincount((tokens - FIRST_PITCH_TOKEN) % 12, minlength=12)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def theory_rewards(melodies: Sequence[Sequence[int]], config: AgentsBenchConfig) -> np.ndarray:
    """``r_MT`` of every step of every melody, ``(M, L)``, as the environment computes it: the
    melodies are played back through a rules-only batched environment."""
    import gymnasium as gym

    import musicgym  # noqa: F401  (registers the environment)
    from agents.common import parse_rules

    actions = np.asarray(melodies)
    envs = gym.make_vec(
        "MusicComposition-v0",
        num_envs=len(melodies),
        vectorization_mode="vector_entry_point",
        prior=None,
        rules=parse_rules(config.rules),
        c=config.c,
        key=config.key,
        length=actions.shape[1],
    )
    envs.reset(seed=0)
    rewards = np.stack([envs.step(actions[:, t])[1] for t in range(actions.shape[1])], 1)
    envs.close()
    return rewards * config.c


def measure(melodies: list[list[int]], prior, config: AgentsBenchConfig) -> dict[str, float]:
    """Every statistic of the spec and the extra measures of the module docstring."""
    from agents.action_scores import melody_statistics

    results = melody_statistics(prior, melodies, config.key)
    results["theory_reward"] = float(theory_rewards(melodies, config).mean())
    results["distinct_melodies"] = 100 * len({tuple(m) for m in melodies}) / len(melodies)
    results["pitch_class_entropy"] = pitch_class_entropy(melodies)
    return results


def train_agent(name: str, seed: int, run: Path, config: AgentsBenchConfig) -> None:
    """Train one agent into ``run`` with ``musicgym agent train`` (resuming an interrupted run)."""
    from musicgym.cli import main

    algo = "rltuner-q" if name == RULES_ONLY else name
    argv = [
        "agent", "train", "--algo", algo, "--out", str(run), "--steps", str(config.steps),
        "--seed", str(seed), "--prior", config.prior, "--rules", config.rules,
        "--c", str(config.c), "--key", config.key, "--length", str(config.length),
    ]  # fmt: skip
    if name == RULES_ONLY:
        argv.append("--no-prior-reward")
    if config.max_minutes > 0:
        argv += ["--max-minutes", str(config.max_minutes)]
    if (run / "agent.json").exists():
        argv.append("--resume")
    if not config.progress:
        argv.append("--no-progress")
    status = main(argv)
    if status:
        raise RuntimeError(f"training {name} (seed {seed}) failed with status {status}")


MEASURES_FILE = "measures.json"
"""Per run: the melodies and measures of its last benchmark, reused by ``--load``."""


def bench_agent(name: str, seed: int, config: AgentsBenchConfig) -> dict | None:
    """Train (or load) one agent, compose ``config.melodies`` melodies and measure them:
    ``{"measures", "melodies", "minutes"}``, also written to the run folder's ``measures.json``.
    With ``config.load`` a ``measures.json`` of the same settings is reused, and an agent that
    was never trained gives ``None``."""
    import agents
    from agents.common import load_prior, read_agent_info, set_torch_threads

    set_torch_threads(1)
    run_dir = Path(config.out) / "runs" / f"{name}-seed{seed}"
    settings = {k: getattr(config, k) for k in ("melodies", "prior", "rules", "c", "key", "length")}
    cache = run_dir / MEASURES_FILE
    if config.load and cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("settings") == settings:
            return cached
    start = time.perf_counter()
    trained_steps = math.nan
    if name == "prior":
        agent = agents.load(f"prior:{config.prior}", length=config.length)
    elif name == "random":
        agent = agents.load("random", length=config.length)
    else:
        if config.load and not (run_dir / "agent.json").is_file():
            print(f"{name} (seed {seed}): no run in {run_dir}, left out", flush=True)
            return None
        if not config.load:
            train_agent(name, seed, run_dir, config)
        agent = agents.load(run_dir)
        trained_steps = read_agent_info(run_dir).get("trained_steps", math.nan)
    minutes = (time.perf_counter() - start) / 60
    melodies = agent.compose(config.melodies, seed=1000 + seed)
    measures = measure(melodies, load_prior(config.prior), config)
    measures["trained_steps"] = float(trained_steps)
    print(f"{name} (seed {seed}): " + _summary(measures), flush=True)
    outcome = {"settings": settings, "measures": measures, "melodies": melodies, "minutes": minutes}
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(cache) as temporary:
        temporary.write_text(json.dumps(outcome, default=float))
    return outcome


def run(config: AgentsBenchConfig) -> dict:
    """Train or load every agent, compose, measure, and write the tables and pictures."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(name, seed) for name in config.agents for seed in config.seeds]
    if config.jobs > 1:
        # The long training runs start first; prior and random only compose.
        tasks.sort(key=lambda task: task[0] in REFERENCE_AGENTS)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        quiet = AgentsBenchConfig(**{**asdict(config), "progress": False})
        context = multiprocessing.get_context("spawn")  # no forked torch or env state
        with ProcessPoolExecutor(config.jobs, mp_context=context) as pool:
            futures = [pool.submit(bench_agent, name, seed, quiet) for name, seed in tasks]
            outcomes = [_result(future, name, seed) for future, (name, seed) in zip(futures, tasks)]
    else:
        outcomes = [bench_agent(name, seed, config) for name, seed in tasks]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in config.agents}
    samples: dict[str, list[list[int]]] = {}
    minutes: dict[str, float] = {}
    for (name, seed), outcome in zip(tasks, outcomes, strict=True):
        if outcome is None:
            continue
        results[name].append(outcome["measures"])
        samples.setdefault(name, outcome["melodies"])
        minutes[f"{name}-seed{seed}"] = outcome["minutes"]
    results = {name: runs for name, runs in results.items() if runs}
    report = {
        "config": asdict(config),
        "date": time.strftime("%Y-%m-%d"),
        "training_minutes": minutes,
        "results": results,
        "goals": goals(results),
    }
    (out / "results.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    write_csv(out / "results.csv", results)
    table = markdown_table(results)
    (out / "results.md").write_text(table + "\n\n" + goals_text(report["goals"]) + "\n")
    write_samples(out, samples)
    plot_learning_curves(out / "learning_curves.png", out / "runs", config.agents)
    print(table)
    print(goals_text(report["goals"]))
    print(f"\nresults, pictures and MIDI files in {out}")
    return report


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


def mean_and_spread(runs: list[dict[str, float]], measure_name: str) -> tuple[float, float]:
    values = np.array([r[measure_name] for r in runs], dtype=float)
    finite = values[~np.isnan(values)]
    if not finite.size:
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std()) if finite.size > 1 else 0.0


def markdown_table(results: dict[str, list[dict[str, float]]]) -> str:
    """Statistics down, the published columns then ours (mean ± spread over seeds) across."""
    published = list(PUBLISHED)
    header = ["statistic", *published, *(f"**{name}**" for name in results)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, label in MEASURES.items():
        cells = [label.replace("|", "\\|")]  # "log p(a|s)" inside a Markdown table
        cells += [_format(PUBLISHED[c].get(name, math.nan)) for c in published]
        for runs in results.values():
            mean, spread = mean_and_spread(runs, name)
            several = len(runs) > 1 and not math.isnan(mean)
            cells.append(_format(mean) + (f" ± {_format(spread)}" if several else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value: float) -> str:
    if math.isnan(value):
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def goals(results: dict[str, list[dict[str, float]]]) -> dict[str, object]:
    """The agents issue's quality goals for ``rltuner-q``, where the runs allow a verdict."""
    if "rltuner-q" not in results:
        return {}
    ours = {n: mean_and_spread(results["rltuner-q"], n)[0] for n in [*STATISTICS, "log_p"]}
    beats_tuned = [s for s in STATISTICS if is_better(s, ours[s], PUBLISHED[TUNED_COLUMN][s])]
    matches_q = [s for s in STATISTICS if is_better(s, ours[s], PUBLISHED[JAQUES_Q_COLUMN][s])]
    verdict: dict[str, object] = {
        "beats_bi_axial_q_on": beats_tuned,
        "beats_bi_axial_q_on_all": len(beats_tuned) == len(STATISTICS),
        "matches_jaques_q_on": matches_q,
        "matches_jaques_q_on_8_of_11": len(matches_q) >= 8,
    }
    if RULES_ONLY in results:
        margin = ours["log_p"] - mean_and_spread(results[RULES_ONLY], "log_p")[0]
        verdict["log_p_above_rules_only"] = margin
        verdict["log_p_at_least_1_nat_above_rules_only"] = margin >= 1.0
    return verdict


def goals_text(verdict: dict[str, object]) -> str:
    if not verdict:
        return "(no rltuner-q run: no verdict on the goals)"
    lines = [
        f"- rltuner-q at least as good as {TUNED_COLUMN} on "
        f"{len(verdict['beats_bi_axial_q_on'])}/{len(STATISTICS)} statistics "
        f"(goal: all): {'met' if verdict['beats_bi_axial_q_on_all'] else 'not met'}",
        f"- rltuner-q at least as good as Jaques et al.'s Q on "
        f"{len(verdict['matches_jaques_q_on'])}/{len(STATISTICS)} "
        f"(goal: 8): {'met' if verdict['matches_jaques_q_on_8_of_11'] else 'not met'}",
    ]
    if "log_p_above_rules_only" in verdict:
        lines.append(
            f"- mean log p above the rules-only agent by {verdict['log_p_above_rules_only']:.2f} "
            f"nats (goal: 1): "
            f"{'met' if verdict['log_p_at_least_1_nat_above_rules_only'] else 'not met'}"
        )
    return "\n".join(lines)


def write_csv(path: Path, results: dict[str, list[dict[str, float]]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["agent", "seed_index", *MEASURES])
        for name, runs in results.items():
            for i, values in enumerate(runs):
                writer.writerow([name, i, *(values[m] for m in MEASURES)])


def write_samples(out: Path, samples: dict[str, list[list[int]]], per_agent: int = 4) -> None:
    """MIDI files of the first melodies of each agent and one sheet of their piano rolls."""
    from musicgym.midi import write_melody
    from musicgym.pianoroll import save_piano_roll_sheet
    from musicgym.tokens import tokens_to_note_state

    rolls, titles = [], []
    for name, melodies in samples.items():
        folder = out / "midi" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, melody in enumerate(melodies[:per_agent]):
            write_melody(melody, folder / f"melody_{i}.mid")
            rolls.append(tokens_to_note_state(melody))
            titles.append(f"{name} #{i}")
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

"""What the agents benchmark writes, for any task: the Markdown table with its legend, the CSV
table, the sample pieces (MIDI, WAV and one sheet of piano rolls) and the learning curves."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicgym.benchmarks.measures import Cell
from musicgym.fileio import atomic_output
from musicgym.tasks import Task

DIRECTION_WORDS = {"lower": "lower", "zero": "nearer 0", "higher": "higher"}


def format_number(value: float) -> str:
    """A table's number: empty for NaN, thousands separated, three significant-ish digits."""
    if math.isnan(value):
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"


def format_cell(cell: Cell) -> str:
    """A table's cell: the mean, and ± the half-width of its interval where it has one."""
    interval = f" ± {format_number(cell.half_width)}" if cell.interval else ""
    return format_number(cell.mean) + interval


def markdown_table(task: Task[Any], table: dict[str, dict[str, Cell]], resamples: int) -> str:
    """Measures down (a measure no column has left out); the task's published columns, then the
    data column and the agents (mean ± the half-width of the 95% confidence interval, agents in
    bold) across; a legend of the directions beneath."""
    published = list(task.published)
    names = [name if name == task.data_column else f"**{name}**" for name in table]
    header = ["statistic", *published, *names]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, label in task.measures.items():
        values = [format_number(task.published[c].get(name, math.nan)) for c in published]
        values += [format_cell(column[name]) for column in table.values()]
        if any(values):
            label = label.replace("|", "\\|")  # "log p(a|s)" inside a Markdown table
            lines.append("| " + " | ".join([label, *values]) + " |")
    return "\n".join(lines) + "\n\n" + legend(task, resamples)


def legend(task: Task[Any], resamples: int = 1000) -> str:
    """The table's legend: which way each measure is better, and what ± means."""
    words = {**DIRECTION_WORDS, "data": f"nearer {task.data_column}"}
    groups: dict[str, list[str]] = {}
    for name, label in task.measures.items():
        if name in task.unjudged:
            continue
        direction = words[task.better.get(name, "higher")]
        if name in task.up_to_the_data:
            direction += f", up to the {task.data_column}'"
        groups.setdefault(direction, []).append(label)
    better = " ".join(f"**{d}**: {'; '.join(labels)}." for d, labels in groups.items())
    note = f" {task.legend_note}" if task.legend_note else ""
    return (
        f"Better: {better}{note}\n\n"
        "± is the half-width of the 95% confidence interval of the mean: a t interval over the "
        f"seeds where an agent has several, else a percentile bootstrap over its {task.plural} "
        f"({resamples:,} resamples; the bounds, not always symmetric, are in results.json and "
        "results.csv); none for the distinct shares or the steps of a single run."
    )


def write_csv(path: Path, table: dict[str, dict[str, Cell]]) -> None:
    """The table, one row per column and measure: mean, the 95% interval's bounds and its kind."""
    with atomic_output(path) as temporary, temporary.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["column", "measure", "mean", "ci_low", "ci_high", "interval"])
        for name, cells in table.items():
            for measure_name, cell in cells.items():
                writer.writerow([name, measure_name, cell.mean, cell.low, cell.high, cell.interval])


def column_folder(name: str) -> str:
    """The folder name of a column's MIDI files (``midi/NAME``): spaces as dashes."""
    return name.replace(" ", "-")


def write_samples(
    task: Task[Any], out: Path, samples: dict[str, Sequence[Any]], per_column: int = 4
) -> None:
    """MIDI files (and a WAV beside each) of the first pieces of each column, and one sheet of
    piano rolls of the first :attr:`~musicgym.tasks.Task.rolls_per_column` of each."""
    rolls, titles = [], []
    for name, pieces in samples.items():
        folder = out / "midi" / column_folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        kept = list(pieces[:per_column])
        paths = [folder / f"{task.piece_name}_{i}.mid" for i in range(len(kept))]
        for piece, path in zip(kept, paths):
            task.write_midi(piece, path)
        task.write_wavs(kept, paths)
        rolls.extend(kept[: task.rolls_per_column])
        titles.extend(f"{name} #{i}" for i in range(len(kept[: task.rolls_per_column])))
    columns = per_column if task.rolls_per_column > 1 else 2
    task.write_piano_roll_sheet(rolls, out / "piano_rolls.png", titles, columns)


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


def plot_learning_curves(
    task: Task[Any],
    path: Path,
    runs: Path,
    names: Sequence[str],
    known: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> None:
    """One panel per measure of the task, one line per trained agent (seed 0's run); ``known``:
    curves already read, by run folder (``"AGENT-seed0"``: measure -> (steps, values)), not read
    from its logs again."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    known, curves = known or {}, {}
    for name in names:
        run = f"{name}-seed0"
        if (runs / run).is_dir():
            curves[name] = known[run] if run in known else read_curves(runs / run)
    measures = [m for m in task.measures if any(m in c for c in curves.values())]
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
        ax.set_title(task.measures[measure_name], fontsize=9)
        ax.set_xlabel("environment steps", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(measures) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

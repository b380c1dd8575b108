"""The measures of the agents benchmark, for any task: a column's pieces measured
(:func:`measure`), the measures of its stored per-piece contributions (:func:`point_measures`),
their 95% intervals (:func:`interval_bounds`, :func:`summarise`) and the cells of the table
(:class:`Cell`).

Every measure that sums over pieces is a function of the pieces' contributions summed
(:meth:`musicgym.tasks.Task.contributions`, :meth:`~musicgym.tasks.Task.measures_from_sums`), so
that a percentile bootstrap resamples the pieces of one run; the measures of the set as a whole
(:meth:`~musicgym.tasks.Task.set_measures`, its distinct shares) and the steps a run trained have
no interval over one run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicgym.config import EnvConfig
from musicgym.errors import BenchmarkError
from musicgym.fileio import write_text
from musicgym.metrics import bootstrap_intervals, t_interval
from musicgym.tasks import Task

MEASURES_FILE = "measures.json"
"""Per run: the pieces, measures and per-piece contributions of its last benchmark, reused by
``--load``."""


def measure(
    task: Task[Any],
    pieces: Sequence[Any],
    prior: Any,
    config: EnvConfig,
    trained_steps: float = math.nan,
) -> dict:
    """``{"measures", "per_piece"}`` of ``pieces``: every measure of ``task`` but those relative
    to the data (:func:`point_measures` adds them), and the per-piece contributions as lists."""
    contributions = task.contributions(prior, pieces, config)
    summed = task.measures_from_sums(_sums(contributions))
    measures = {name: float(value) for name, value in summed.items()}
    measures.update(task.set_measures(pieces))
    measures["trained_steps"] = float(trained_steps)
    per_piece = {name: rows.tolist() for name, rows in contributions.items()}
    return {"measures": measures, "per_piece": per_piece}


def point_measures(
    task: Task[Any], outcome: dict, reference: dict[str, np.ndarray] | None
) -> dict[str, float]:
    """The measures of an ``outcome`` of :func:`measure`: those that sum over pieces from its
    per-piece contributions (with the measures relative to the data column's histograms
    ``reference`` where given), the others as saved."""
    summed = task.measures_from_sums(_sums(_rows(outcome)), reference)
    return {**outcome["measures"], **{name: float(value) for name, value in summed.items()}}


def interval_bounds(
    task: Task[Any], outcome: dict, reference: dict[str, np.ndarray] | None, resamples: int
) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap bounds over the pieces of an ``outcome`` of :func:`measure`, of
    every measure that sums over pieces."""
    return bootstrap_intervals(
        _rows(outcome), lambda sums: task.measures_from_sums(sums, reference), resamples, seed=0
    )


def _rows(outcome: dict) -> dict[str, np.ndarray]:
    return {name: np.asarray(rows) for name, rows in outcome["per_piece"].items()}


def _sums(contributions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: rows.sum(0) for name, rows in contributions.items()}


@dataclass
class Cell:
    """One column's value of one measure: the mean over seeds and its 95% confidence interval."""

    mean: float
    low: float = math.nan
    high: float = math.nan
    interval: str = ""
    """How ``low`` and ``high`` were found: ``"t"`` (over seeds), ``"bootstrap"`` (over
    pieces), or ``""`` (none)."""

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def summarise(
    runs: list[dict[str, float]],
    bootstrap: dict[str, tuple[float, float]] | None,
    measures: Sequence[str],
) -> dict[str, Cell]:
    """Each of ``measures`` over ``runs`` (one dict per seed): the mean with the t interval over
    the seeds where at least two have a value, else with the ``bootstrap`` bounds where given
    (those of a single run, :func:`interval_bounds`); a measure no run has is NaN."""
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


def column_cells(
    task: Task[Any], runs: list[dict], reference: dict[str, np.ndarray] | None, resamples: int
) -> tuple[list[dict[str, float]], dict[str, Cell]]:
    """A column's measures per run and its cells: t intervals over its seeds, or a bootstrap over
    the pieces of one run."""
    values = [point_measures(task, run, reference) for run in runs]
    bootstrap = interval_bounds(task, runs[0], reference, resamples) if len(runs) == 1 else None
    return values, summarise(values, bootstrap, tuple(task.measures))


def cached(path: Path, settings: dict) -> dict | None:
    """The outcome saved at ``path`` if it has these settings and per-piece contributions (an
    older file without them is measured again); a damaged file is one line."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise BenchmarkError(
            f"{path}: not readable JSON ({first}); delete it to measure again"
        ) from None
    if not isinstance(saved, dict):
        raise BenchmarkError(f"{path}: not the measures of a run; delete it to measure again")
    fresh = saved.get("settings") == settings and isinstance(saved.get("per_piece"), dict)
    return saved if fresh else None


def save(path: Path, outcome: dict) -> None:
    """Write an outcome as JSON, atomically."""
    write_text(path, json.dumps(outcome, default=float))

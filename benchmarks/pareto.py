"""The data's own frontier and the Pareto picture of a melody benchmark.

The rules pull against the data: real melodies dense in motifs are far from the data's note
lengths. :func:`data_frontier` measures how far: the test windows sorted by their share of notes
in motifs, and for the densest ``fraction`` of them, their notes in motifs against the KL of
their histograms (pitch classes, intervals, note lengths) to all windows'. An agent can be judged
against that curve: no closer to the data than real melodies as dense in motifs are.

:func:`plot_pareto` draws, from a ``bench agents`` report, every agent's point per seed (notes in
motif and theory reward per step against each KL, and theory reward against ``log p``) beside the
frontier: ``pareto.png``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicgym.metrics import HISTOGRAMS, kl_divergence, statistic_contributions

FRACTIONS = (1.0, 0.5, 0.3, 0.2, 0.14, 0.1, 0.05, 0.03)
"""The densest shares of the test windows the frontier is measured on."""
KL_MEASURES = tuple(f"kl_{name}" for name in HISTOGRAMS)
NOT_REPEATED = ("notes_excessively_repeated",)
"""The frontier of the windows without an excessive repetition (``without`` of
:func:`data_frontier`): what the goals' real melodies look like once they ask for none."""


def data_frontier(
    windows: Sequence[Sequence[int]],
    key: str,
    fractions: Sequence[float] = FRACTIONS,
    without: Sequence[str] = (),
) -> list[dict[str, float]]:
    """For each ``fraction``: the densest-in-motifs ``fraction`` of ``windows`` (test melodies),
    their ``notes_in_motif`` (%, a ratio of sums) and each ``kl_*`` of their summed histograms to
    those of all windows (nats). ``without``: statistics (e.g. ``"notes_excessively_repeated"``)
    whose windows with any count of them are left out before the fractions are taken."""
    contributions = statistic_contributions(windows, key)
    in_motif = contributions["notes_in_motif"]  # (M, 2): notes, of
    shares = in_motif[:, 0] / np.maximum(in_motif[:, 1], 1)
    kept = np.ones(len(windows), dtype=bool)
    for statistic in without:
        kept &= contributions[statistic][:, 0] == 0
    order = np.flatnonzero(kept)[np.argsort(-shares[kept], kind="stable")]
    histograms = {
        name: np.stack([h(w) for w in windows]).astype(float) for name, h in HISTOGRAMS.items()
    }
    everything = {name: counts.sum(0) for name, counts in histograms.items()}
    frontier = []
    for fraction in fractions:
        chosen = order[: max(1, round(fraction * len(order)))]
        sums = in_motif[chosen].sum(0)
        point = {"fraction": fraction, "notes_in_motif": float(100 * sums[0] / max(sums[1], 1))}
        for name, counts in histograms.items():
            point[f"kl_{name}"] = float(kl_divergence(counts[chosen].sum(0), everything[name]))
        frontier.append(point)
    return frontier


def frontier_at(frontier: Sequence[dict[str, float]], motif: float, measure: str) -> float:
    """The frontier's ``measure`` at ``notes_in_motif`` = ``motif`` (linear between its points;
    its nearest end outside them)."""
    points = sorted((p["notes_in_motif"], p[measure]) for p in frontier)
    xs, ys = zip(*points)
    return float(np.interp(motif, xs, ys))


def plot_pareto(
    report: dict[str, Any], frontier: Sequence[dict[str, float]] | None, path: Path
) -> None:
    """The Pareto picture of a ``bench agents`` report (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("notes_in_motif", m) for m in KL_MEASURES] + [
        ("theory_reward", "kl_note_lengths"),
        ("theory_reward", "log_p"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    results = report.get("results", {})
    data = (report.get("data_column") or {}).get("column")
    for ax, (x, y) in zip(axes.flat, panels):
        if frontier and x == "notes_in_motif":
            points = sorted((p[x], p[y]) for p in frontier)
            ax.plot(*zip(*points), color="0.4", linestyle="--", label="the data's frontier")
        for name, runs in results.items():
            xs = [_number(run.get(x)) for run in runs]
            ys = [_number(run.get(y)) for run in runs]
            if all(math.isnan(v) for v in xs + ys):
                continue
            ax.scatter(xs, ys, s=18, label=name, alpha=0.8)
        cells = report.get("table", {}).get(data, {}) if data else {}
        if x in cells and y in cells:
            ax.scatter([cells[x]["mean"]], [cells[y]["mean"]], marker="*", s=80, color="k",
                       label=data)  # fmt: skip
        ax.set_xlabel(x.replace("_", " "), fontsize=8)
        ax.set_ylabel(y.replace("_", " "), fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=6)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


BUDGET_MEASURES = (
    "notes_in_motif",
    "theory_reward",
    "distinct_melodies",
    "notes_in_repeated_motif",
    "kl_note_lengths",
    "kl_intervals",
)
"""What the budget picture shows against the training steps: the rules, then the character."""


def plot_budget(reports: Sequence[dict[str, Any]], path: Path) -> None:
    """Each agent's :data:`BUDGET_MEASURES` against its training steps, one point per seed and
    ``bench agents`` report (``results.json``) of ``reports``, an agent on each prior in a colour
    of its own, with the data column's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(BUDGET_MEASURES), figsize=(3.3 * len(BUDGET_MEASURES), 3))
    for ax, measure in zip(axes, BUDGET_MEASURES):
        agents: dict[str, list[tuple[float, float]]] = {}
        for report in reports:
            prior = (report.get("config") or {}).get("prior")
            for name, runs in report.get("results", {}).items():
                label = f"{name} ({prior})" if prior else name
                for run in runs:
                    point = (_number(run.get("trained_steps")), _number(run.get(measure)))
                    if not math.isnan(point[0]):  # the prior and the data: no steps
                        agents.setdefault(label, []).append(point)
            data = (report.get("data_column") or {}).get("column")
            cell = report.get("table", {}).get(data, {}).get(measure) if data else None
            if cell:
                ax.axhline(cell["mean"], color="0.5", linestyle="--", linewidth=0.8)
        for name, points in agents.items():
            ax.scatter(*zip(*sorted(points)), s=14, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("training steps", fontsize=8)
        ax.set_title(measure.replace("_", " "), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6, title="-- the data", title_fontsize=6)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":  # python -m musicgym.benchmarks.pareto OUT.png results.json ...
    import json
    import sys

    plot_budget([json.loads(Path(p).read_text()) for p in sys.argv[2:]], Path(sys.argv[1]))

"""The character table: a melody tuner at several budgets beside the test melodies and the prior,
each measure with its goal, and a verdict per budget (the issue's "tuned music that keeps its
character"), read from ``bench agents`` reports (``results.json``) of one prior::

    python -m musicgym.benchmarks.character dpg runs/final-melody16c-{50k,200k,1m}/results.json

The goals live in :data:`musicgym.benchmarks.goals.CHARACTER_GOALS`; each report's budget is its
``--steps``; the test melodies and the prior come from the first report that has them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from musicgym.benchmarks.goals import CHARACTER_GOALS, character_verdict, frontier_gap
from musicgym.benchmarks.measures import Cell
from musicgym.benchmarks.report import format_cell
from musicgym.tasks import MELODY

SHOWN_TOO = ("autocorrelation_lag1", "theory_reward", "log_p")
"""Measures shown beneath the goals' (not goals)."""


def budget_label(steps: int) -> str:
    """``50k``, ``200k``, ``1M``."""
    return f"{steps // 1_000_000}M" if steps % 1_000_000 == 0 else f"{steps // 1000}k"


def character_table(agent: str, reports: Sequence[dict[str, Any]]) -> str:
    """The markdown table of ``agent`` in each report (one column per budget, the test melodies
    and the prior first), the frontier's note lengths at each budget's motif share, and the
    verdicts."""
    first = next(r for r in reports if r.get("data_column"))
    data = first["data_column"]["column"]
    columns = {data: first["table"][data]}
    with_prior = [report["table"]["prior"] for report in reports if "prior" in report["table"]]
    if with_prior:
        columns["prior"] = with_prior[0]
    budgets = {}
    for report in reports:
        label = f"{agent} {budget_label(report['config']['steps'])}"
        columns[label] = budgets[label] = report["table"][agent]
    header = ["measure", "goal", *columns]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * len(columns)]
    rows = [(goal.statistic, goal.label) for goal in CHARACTER_GOALS]
    rows += [(name, "(not a goal)") for name in SHOWN_TOO]
    for statistic, label in rows:
        cells = [format_cell(Cell(**cells[statistic])) for cells in columns.values()]
        name = MELODY.labels[statistic].replace("|", "\\|")  # log p(a|s)
        lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for report, (label, cells) in zip(reports, budgets.items()):
        frontier = report["frontier_without_repetition"]
        gap = frontier_gap(cells, frontier)
        motif = cells["notes_in_motif"]["mean"]
        lines.append(
            f"- {label}: {motif:.1f}% in motifs, note lengths {gap:+.3f} nats from real melodies "
            "as dense in motifs without an excessive repetition."
        )
    lines.append("")
    test = columns[data]
    for (label, cells), report in zip(budgets.items(), reports):
        verdict = character_verdict(cells, test, report["frontier_without_repetition"])
        met = [name for name, ok in verdict.items() if ok]
        missed = [name for name, ok in verdict.items() if not ok]
        line = f"- **{label}**: {len(met)} of {len(verdict)} goals met"
        lines.append(line + (f"; not met: {', '.join(missed)}." if missed else "."))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``AGENT RESULTS.json...``: print the character table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    agent, paths = argv[0], [Path(path) for path in argv[1:]]
    reports = [json.loads(path.read_text()) for path in paths]
    reports.sort(key=lambda report: report["config"]["steps"])
    print(character_table(agent, reports), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The character table: a melody tuner at several budgets beside the test melodies and the prior,
each measure with its goal, and a verdict per budget (the issue's "tuned music that keeps its
character"), read from ``bench agents`` reports (``results.json``) of one prior::

    python -m musicgym.benchmarks.character dpg runs/final-melody16c-{50k,200k,1m}/results.json

The goals live in :data:`musicgym.benchmarks.goals.CHARACTER_GOALS`; each report's budget is its
``--steps``; the test melodies and the prior come from the first report that has them.
"""

from __future__ import annotations

import argparse
import json
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
    budgets = [(f"{agent} {budget_label(r['config']['steps'])}", r) for r in reports]
    for label, report in budgets:
        columns[label] = report["table"][agent]
    header = ["measure", "goal", *columns]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * len(columns)]
    rows = [(goal.statistic, goal.label) for goal in CHARACTER_GOALS]
    rows += [(name, "(not a goal)") for name in SHOWN_TOO]
    for statistic, label in rows:
        cells = [format_cell(Cell(**cells[statistic])) for cells in columns.values()]
        name = MELODY.labels[statistic].replace("|", "\\|")  # log p(a|s)
        lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    gaps, verdicts = [""], [""]
    for label, report in budgets:
        cells, frontier = report["table"][agent], report["frontier_without_repetition"]
        motif, gap = cells["notes_in_motif"]["mean"], frontier_gap(cells, frontier)
        gaps.append(
            f"- {label}: {motif:.1f}% in motifs, note lengths {gap:+.3f} nats from real melodies "
            "as dense in motifs without an excessive repetition."
        )
        verdict = character_verdict(cells, columns[data], gap)
        missed = [name for name, ok in verdict.items() if not ok]
        line = f"- **{label}**: {len(verdict) - len(missed)} of {len(verdict)} goals met"
        verdicts.append(line + (f"; not met: {', '.join(missed)}." if missed else "."))
    lines += gaps + verdicts
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``AGENT RESULTS.json...``: print the character table."""
    parser = argparse.ArgumentParser(
        prog="python -m musicgym.benchmarks.character", description=__doc__.splitlines()[0]
    )
    parser.add_argument("agent", help="the tuner's column in the reports, e.g. dpg")
    parser.add_argument("reports", nargs="+", type=Path, help="bench agents' results.json files")
    args = parser.parse_args(argv)
    reports = [json.loads(path.read_text()) for path in args.reports]
    reports.sort(key=lambda report: report["config"]["steps"])
    print(character_table(args.agent, reports), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

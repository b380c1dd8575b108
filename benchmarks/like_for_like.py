"""``musicgym bench like-for-like``: the RL Tuner tuned on our Note RNN and on the Bi-axial LSTM,
beside Jaques et al.'s Note RNN, Q, Ψ and G columns.

It reads two ``bench agents`` folders (their ``results.json``), each a run of ``prior``,
``rltuner-q``, ``rltuner-psi`` and ``rltuner-g`` on the same environment but for the prior: one on
a Note RNN (``--prior note_rnn``), one on a Bi-axial LSTM (``--prior melody16c``). It writes
``like_for_like.md`` into the first: the spec's statistics and the comparable extra measures down
(the KL rows compare with the same test melodies when both priors were trained on the same data);
Jaques et al.'s four columns, then ours on each prior across (mean ± the half-width of the 95%
confidence interval); and, per algorithm, on how many of the spec's statistics each of ours is at
least as good as Jaques et al.'s (:func:`musicgym.benchmarks.goals.is_better`). The mean log
p rows are each under the agent's own prior, so they compare an agent with its prior only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from musicgym.benchmarks.goals import is_better
from musicgym.benchmarks.measures import Cell
from musicgym.benchmarks.report import format_cell, format_number
from musicgym.errors import ArgumentError
from musicgym.fileio import write_text
from musicgym.metrics import PUBLISHED, STATISTICS
from musicgym.tasks import MELODY

COLUMNS = {"Note RNN": "prior", "Q": "rltuner-q", "Psi": "rltuner-psi", "G": "rltuner-g"}
"""Jaques et al.'s column -> the agent of ours that is its like."""
ROWS = (*STATISTICS, "log_p", "distinct_4grams", "kl_pitch_classes", "kl_intervals")
ROWS += ("kl_note_lengths",)


def read_table(folder: str | Path) -> tuple[str, dict[str, dict[str, Cell]]]:
    """The prior and the table of a ``bench agents`` folder; one line if it is not one or lacks
    an agent of :data:`COLUMNS`."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise ArgumentError(f"{folder}: no results.json; run `musicgym bench agents` there first")
    report = json.loads(path.read_text())
    table = {
        name: {measure: Cell(**values) for measure, values in cells.items()}
        for name, cells in report["table"].items()
    }
    missing = [agent for agent in COLUMNS.values() if agent not in table]
    if missing:
        raise ArgumentError(f"{folder}: results without {', '.join(missing)}")
    return report["config"].get("prior", "?"), table


def like_for_like(note_rnn: str | Path, biaxial: str | Path) -> str:
    """The Markdown table and counts of the module docstring."""
    priors = dict([read_table(note_rnn), read_table(biaxial)])
    if len(priors) < 2:
        raise ArgumentError(f"{note_rnn}, {biaxial}: runs on the same prior; give one of each")
    header = [*(f"{c} (Jaques)" for c in COLUMNS)]
    header += [f"**{agent}** on {prior}" for prior in priors for agent in COLUMNS.values()]
    lines = ["| measure | " + " | ".join(header) + " |", "|" + " --- |" * (len(header) + 1)]
    for measure in ROWS:
        published = [format_number(PUBLISHED[c].get(measure, math.nan)) for c in COLUMNS]
        ours = [format_cell(t[a][measure]) for t in priors.values() for a in COLUMNS.values()]
        label = MELODY.measures[measure].replace("|", "\\|")
        lines.append("| " + " | ".join([label, *published, *ours]) + " |")
    lines.append("")
    for column, agent in COLUMNS.items():
        counts = []
        for prior, table in priors.items():
            wins = sum(is_better(s, table[agent][s].mean, PUBLISHED[column][s]) for s in STATISTICS)
            counts.append(f"{wins}/{len(STATISTICS)} on {prior}")
        lines.append(f"- {agent} at least as good as Jaques et al.'s {column}: {', '.join(counts)}")
    return "\n".join(lines)


def plot_prior_curves(priors: list[str], png: Path) -> None:
    """Each prior's valid log-likelihood per step against its training minutes (from its model
    card), its test figure marked at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from musicgym.prior import checkpoint_path

    figure, ax = plt.subplots(figsize=(7, 4))
    for prior in priors:
        card = json.loads(checkpoint_path(prior).with_suffix(".json").read_text())
        minutes = [point["minutes"] for point in card["curve"]]
        (line,) = ax.plot(minutes, [point["valid"] for point in card["curve"]], label=prior)
        test = card["test_log_likelihood_per_step"]
        ax.plot(
            card["minutes"], test, "o", color=line.get_color(), label=f"{prior} test {test:.3f}"
        )
    ax.set_xlabel("training minutes (one CPU thread)")
    ax.set_ylabel("valid log-likelihood per 16th-note step")
    ax.set_title("priors of the like-for-like table")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png, dpi=110)
    plt.close(figure)


def run(note_rnn: str | Path, biaxial: str | Path) -> str:
    """Print the table and write it to ``note_rnn/like_for_like.md``, the priors' learning
    curves to ``note_rnn/prior_curves.png``."""
    text = like_for_like(note_rnn, biaxial)
    write_text(Path(note_rnn) / "like_for_like.md", text + "\n")
    print(text)
    priors = [read_table(folder)[0] for folder in (note_rnn, biaxial)]
    plot_prior_curves(priors, Path(note_rnn) / "prior_curves.png")
    print(f"\nthe priors' learning curves: {Path(note_rnn) / 'prior_curves.png'}")
    return text

"""The issues' quality goals of the agents benchmark, one verdict per task: :data:`GOALS` maps an
env id to the function that judges a table and the one that words its verdict."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from musicgym.benchmarks.measures import Cell
from musicgym.benchmarks.pareto import frontier_at
from musicgym.metrics import PUBLISHED, STATISTICS
from musicgym.metrics.chorale import STATISTICS as CHORALE_STATISTICS
from musicgym.tasks import CHORALE, MELODY

Table = dict[str, dict[str, Cell]]
TUNED_COLUMN = "Bi-axial + Q (DQN paper)"
JAQUES_Q_COLUMN = "Q"
RULES_ONLY = "rules-only"
"""The RL Tuner's Q-learning on the theory rules alone (no log p in the reward)."""


def is_better(statistic: str, ours: float, theirs: float) -> bool:
    """Whether ``ours`` is at least as good as ``theirs`` on a melody ``statistic`` (ties
    count)."""
    direction = MELODY.better.get(statistic, "higher")
    if math.isnan(ours):
        return False
    if direction == "lower":
        return ours <= theirs
    if direction == "zero":
        return abs(ours) <= abs(theirs)
    return ours >= theirs


def melody_goals(table: Table) -> dict[str, object]:
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


def melody_goals_text(verdict: dict[str, object]) -> str:
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


BACH_LIKE_STATISTICS = tuple(
    name for name in CHORALE_STATISTICS if name not in ("chord_changes", "perfect_cadence")
)
"""The 13 statistics the chorales-like-Bach issue counts: the spec's and the struck frames."""


def closer_to_bach(
    agent: dict[str, Cell],
    prior: dict[str, Cell],
    bach: dict[str, Cell],
    apart: bool = True,
    statistics: tuple[str, ...] = tuple(CHORALE_STATISTICS),
) -> list:
    """The ``statistics`` on which ``agent``'s mean is closer to Bach's than ``prior``'s is, and
    (``apart``) their intervals do not overlap."""
    won = []
    for name in statistics:
        ours, theirs, target = agent[name], prior[name], bach[name].mean
        if any(math.isnan(v) for v in (ours.mean, theirs.mean, target)):
            continue
        closer = abs(ours.mean - target) < abs(theirs.mean - target)
        if closer and (not apart or ours.low > theirs.high or ours.high < theirs.low):
            won.append(name)
    return won


def inside(cell: Cell, interval: Cell) -> bool:
    """Whether ``cell``'s mean lies inside ``interval``'s 95% interval."""
    return interval.low <= cell.mean <= interval.high


def bach_like_goals(cells: dict[str, Cell], prior: dict[str, Cell], bach: dict[str, Cell]) -> dict:
    """One trained column's verdict on the chorales-like-Bach issue's goals."""
    nearer = closer_to_bach(cells, prior, bach, apart=False, statistics=BACH_LIKE_STATISTICS)
    apart = closer_to_bach(cells, prior, bach, statistics=BACH_LIKE_STATISTICS)
    parallels = cells["parallel_fifths"].mean + cells["parallel_octaves"].mean
    bach_parallels = bach["parallel_fifths"].mean + bach["parallel_octaves"].mean
    log_p = cells["log_p"]
    return {
        "nearer_bach_on_means": nearer,
        "nearer_goal_met": len(nearer) >= 11,
        "nearer_bach_intervals_apart": apart,
        "apart_goal_met": len(apart) >= 8,
        "struck_frames_goal_met": inside(cells["struck_frames"], bach["struck_frames"]),
        "entropy_goal_met": inside(cells["pitch_class_entropy"], bach["pitch_class_entropy"]),
        "cadence_goal_met": cells["authentic_cadence"].mean >= 60.0,
        "parallels_to_bach": parallels / bach_parallels if bach_parallels else math.inf,
        "parallels_1_5x_goal_met": parallels <= 1.5 * bach_parallels,
        "log_p_goal_met": inside(log_p, bach["log_p"])
        or abs(log_p.mean - bach["log_p"].mean) < abs(prior["log_p"].mean - bach["log_p"].mean),
    }


def chorale_goals(table: Table) -> dict[str, dict]:
    """Each trained column's verdict on the chorale issue's goals: closer to Bach than the prior
    on how many statistics with intervals apart; parallel fifths and octaves against twice Bach's;
    ``log p`` per frame within one nat of the prior's samples."""
    bach_column = CHORALE.data_column
    if bach_column not in table or "prior" not in table:
        return {}
    bach, prior = table[bach_column], table["prior"]
    bach_parallels = bach["parallel_fifths"].mean + bach["parallel_octaves"].mean
    verdicts = {}
    for name, cells in table.items():
        if name in (bach_column, "prior", "random"):
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
            "bach_like": bach_like_goals(cells, prior, bach),
        }
    return verdicts


def chorale_goals_text(verdicts: dict[str, dict]) -> str:
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
        lines.append(f"{name}, like Bach: " + _bach_like_text(verdict["bach_like"]))
    return "\n".join(lines)


def _bach_like_text(verdict: dict) -> str:
    def met(key: str) -> str:
        return "met" if verdict[key] else "not met"

    count = len(BACH_LIKE_STATISTICS)
    return (
        f"nearer Bach than the prior on {len(verdict['nearer_bach_on_means'])}/{count} means "
        f"(goal 11: {met('nearer_goal_met')}), {len(verdict['nearer_bach_intervals_apart'])} "
        f"with intervals apart (goal 8: {met('apart_goal_met')}); struck frames inside Bach's "
        f"interval: {met('struck_frames_goal_met')}; pitch-class entropy inside Bach's interval: "
        f"{met('entropy_goal_met')}; authentic cadences >= 60%: {met('cadence_goal_met')}; "
        f"parallels {verdict['parallels_to_bach']:.2f}x Bach's (goal <= 1.5x: "
        f"{met('parallels_1_5x_goal_met')}); log p per frame inside Bach's interval or nearer "
        f"it than the prior's: {met('log_p_goal_met')}"
    )


class CharacterGoal(NamedTuple):
    """One of the character issue's goals on a tuned agent's mean ``statistic`` (``label``: as
    the table shows it)."""

    statistic: str
    label: str
    met: Callable[[float, float], bool]
    """Whether an agent's mean meets it, given the test melodies' mean."""


def _at_least_q(statistic: str) -> CharacterGoal:
    """As good as Jaques et al.'s Q column, read at two decimals (Ψ's and G's precision in the
    same row: Q's 0.0 excessive repetition counts as under 0.005%)."""
    published = PUBLISHED[JAQUES_Q_COLUMN][statistic]
    direction = ">=" if MELODY.better.get(statistic, "higher") == "higher" else "<="
    return CharacterGoal(
        statistic,
        f"{direction} {published} (Q)",
        lambda ours, _: is_better(statistic, round(ours, 2), published),
    )


CHARACTER_GOALS: tuple[CharacterGoal, ...] = (
    *(
        _at_least_q(statistic)
        for statistic in (
            "notes_excessively_repeated",
            "notes_not_in_key",
            "melodies_starting_with_tonic",
            "leaps_resolved",
        )
    ),
    CharacterGoal("notes_in_motif", ">= 60", lambda ours, _: ours >= 60),
    CharacterGoal("distinct_melodies", ">= 90", lambda ours, _: ours >= 90),
    CharacterGoal("notes_in_repeated_motif", "<= 1", lambda ours, _: ours <= 1),
    CharacterGoal("pitch_class_entropy", "test ± 0.3", lambda ours, test: abs(ours - test) <= 0.3),
    CharacterGoal("kl_pitch_classes", "<= 0.1", lambda ours, _: ours <= 0.1),
    CharacterGoal("kl_intervals", "<= 0.2", lambda ours, _: ours <= 0.2),
    CharacterGoal("kl_note_lengths", "<= 0.3", lambda ours, _: ours <= 0.3),
)
"""The goals of tuned melodies that keep the data's character (issue 20), but the frontier's
(:func:`frontier_gap`): the rules at least as well as Jaques et al.'s Q, the data's
character kept."""
FRONTIER_MARGIN = 0.1
"""How far above the data's frontier a tuned agent's note lengths may lie (nats)."""


def frontier_gap(cells: dict[str, dict], frontier: list[dict[str, float]]) -> float:
    """How far the agent's KL of note lengths lies above the data's ``frontier`` at its own
    share of notes in motifs (nats; the cells as ``results.json`` keeps them)."""
    at = frontier_at(frontier, cells["notes_in_motif"]["mean"], "kl_note_lengths")
    return cells["kl_note_lengths"]["mean"] - at


def character_verdict(
    cells: dict[str, dict], test: dict[str, dict], frontier_gap: float
) -> dict[str, bool]:
    """Each character goal by its statistic (and ``"frontier"``: :func:`frontier_gap` within
    :data:`FRONTIER_MARGIN`), met or not by ``cells`` (an agent's table column as
    ``results.json`` keeps it; ``test``: the test melodies')."""
    verdict = {
        goal.statistic: goal.met(cells[goal.statistic]["mean"], test[goal.statistic]["mean"])
        for goal in CHARACTER_GOALS
    }
    verdict["frontier"] = frontier_gap <= FRONTIER_MARGIN
    return verdict


class Goals(NamedTuple):
    """A task's goals: the verdict on a table, and its words."""

    judge: Callable[[Table], dict]
    text: Callable[[dict], str]


GOALS: dict[str, Goals] = {
    MELODY.env_id: Goals(melody_goals, melody_goals_text),
    CHORALE.env_id: Goals(chorale_goals, chorale_goals_text),
}
"""Each env id's goals."""

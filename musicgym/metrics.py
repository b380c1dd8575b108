"""Evaluation statistics of token melodies, and the melody tests the reward rules share with them.

Every statistic follows its definition in ``spec/melody-rules.md`` ("Evaluation statistics"). The
tests on a melody (excessive repetition, autocorrelation, motifs, leap tracking, key membership) are
written once here; :mod:`musicgym.rules` calls them for the reward at one step, and
:func:`evaluate_melodies` calls them at every step of finished melodies, so a reward and its
statistic cannot drift apart.

Where the original RL Tuner evaluation code differs: its "in-key third" interval test can never be
true (a known defect); none of our statistics uses it, and the reward rule that needs the test
(:class:`musicgym.rules.PreferredIntervals`) computes it correctly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from musicgym.keys import Key
from musicgym.tokens import (
    FIRST_PITCH_TOKEN,
    NO_EVENT,
    NOTE_OFF,
    NUM_TOKENS,
    is_pitch_token,
    pitch_to_token,
    token_to_pitch,
)
from musicgym.tokens import validate_tokens as _validate_tokens

MOTIF_LENGTH = 8
"""Tokens in a motif: the last half bar of 16ths."""
MIN_MOTIF_NOTES = 3
"""Distinct pitch tokens that make the last ``MOTIF_LENGTH`` tokens a motif."""
LEAP_SEMITONES = 7
"""A move of at least this many semitones from the last pitch token is a leap."""
STEPS_BEFORE_LEAP_RESOLUTION = 6
"""A leap resolved by an opposite leap is rewarded only after more than this many steps."""
AUTOCORRELATION_LAGS = (1, 2, 3)

LEAP_RESOLVED = 1
LEAP_DOUBLED = -1


@lru_cache(maxsize=64)
def in_key_tokens(key: Key) -> frozenset[int]:
    """Tokens that are "in key": NOTE_OFF, NO_EVENT and the pitch tokens whose pitch class is in
    the scale of ``key`` (for C major: 0, 1, 2, 4, 6, 7, 9, 11, 13, 14, ...)."""
    return frozenset(
        [NOTE_OFF, NO_EVENT]
        + [t for t in range(FIRST_PITCH_TOKEN, NUM_TOKENS) if key.contains(token_to_pitch(t))]
    )


@lru_cache(maxsize=64)
def tonic_token(key: Key) -> int:
    """The tonic token of ``key``: its tonic at or above MIDI 60 (14 for C major)."""
    return pitch_to_token(key.tonic_pitch())


def last_pitch_token(tokens: Sequence[int]) -> int | None:
    """The last pitch token of ``tokens`` (skipping NOTE_OFF and NO_EVENT), or ``None``."""
    for token in reversed(tokens):
        if token > NO_EVENT:
            return token
    return None


def is_excessive_repetition(composition: Sequence[int], action: int) -> bool:
    """Whether ``action`` after ``composition`` is an excessive repetition.

    Scanning ``composition`` backwards: a token equal to ``action`` counts, NOTE_OFF marks rests,
    NO_EVENT marks holds, any other token stops the scan. Excessive: ``action`` is NOTE_OFF and the
    count is over 1, or the count is over 4 with neither rests nor holds, or over 6 with either.
    """
    count, has_rests, has_holds = 0, False, False
    for token in reversed(composition):
        if token == action:
            count += 1
        elif token == NOTE_OFF:
            has_rests = True
        elif token == NO_EVENT:
            has_holds = True
        else:
            break
    if action == NOTE_OFF and count > 1:
        return True
    return count > (6 if has_rests or has_holds else 4)


def autocorrelations(
    tokens: Sequence[int], lags: Sequence[int] = AUTOCORRELATION_LAGS
) -> tuple[float, ...]:
    """Lag-``k`` autocorrelation of the raw token numbers for every ``k`` in ``lags``: ``x``
    centred on its mean, ``sum(x[k:] * x[:n - k]) / n / var(x)``; NaN when the tokens do not
    vary, 0 for a lag with no pairs. Plain Python: melodies are short, and this runs every step."""
    n = len(tokens)
    if n == 0:
        return (math.nan,) * len(lags)
    mean = sum(tokens) / n
    x = [token - mean for token in tokens]
    variance = sum(v * v for v in x) / n
    if variance == 0.0:
        return (math.nan,) * len(lags)
    return tuple(sum(a * b for a, b in zip(x[k:], x)) / n / variance for k in lags)


def autocorrelation(tokens: Sequence[int], lag: int) -> float:
    """The lag-``lag`` autocorrelation of :func:`autocorrelations`."""
    return autocorrelations(tokens, (lag,))[0]


def motif_notes(tokens: Sequence[int]) -> int:
    """Distinct pitch tokens in the last ``MOTIF_LENGTH`` tokens when they form a motif (at least
    ``MIN_MOTIF_NOTES`` of them), else 0; 0 too while fewer than ``MOTIF_LENGTH`` tokens exist."""
    if len(tokens) < MOTIF_LENGTH:
        return 0
    unique = len({t for t in tokens[-MOTIF_LENGTH:] if t > NO_EVENT})
    return unique if unique >= MIN_MOTIF_NOTES else 0


def repeats_motif(tokens: Sequence[int]) -> bool:
    """Whether the last ``MOTIF_LENGTH`` tokens form a motif that also occurs, token for token,
    entirely before them."""
    if not motif_notes(tokens):
        return False
    motif = list(tokens[-MOTIF_LENGTH:])
    earlier = list(tokens[:-MOTIF_LENGTH])
    return any(
        earlier[i : i + MOTIF_LENGTH] == motif for i in range(len(earlier) - MOTIF_LENGTH + 1)
    )


@dataclass
class LeapTracker:
    """The leap-resolution memory of the RL Tuner, fed one token at a time.

    A leap is a move of ``LEAP_SEMITONES`` or more from the last pitch token. With no leap pending,
    a leap becomes pending (its direction and the note it leapt from are kept). With one pending: a
    leap the other way clears it and counts as resolved only if more than
    ``STEPS_BEFORE_LEAP_RESOLUTION`` steps passed since the pending leap; a leap the same way is
    doubled and the pending leap stays. A non-leap pitch that reaches the note leapt from, or goes
    beyond it, resolves and clears it. Every step that is not a leap, except the very first step,
    adds one to the steps since the last leap; a leap sets it to 0.
    """

    direction: int = 0
    """+1 for a pending ascending leap, -1 descending, 0 none."""
    leapt_from: int | None = None
    steps_since_leap: int = 0
    previous_pitch: int | None = None
    started: bool = False

    def step(self, token: int) -> int:
        """Feed ``token``; returns ``LEAP_RESOLVED``, ``LEAP_DOUBLED`` or 0."""
        outcome = self._judge(token) if self.started else 0
        self.started = True
        if is_pitch_token(token):
            self.previous_pitch = token
        return outcome

    def _judge(self, token: int) -> int:
        if not is_pitch_token(token):
            self.steps_since_leap += 1
            return 0
        previous = self.previous_pitch
        if previous is not None and abs(token - previous) >= LEAP_SEMITONES:
            direction = 1 if token > previous else -1
            outcome = 0
            if self.direction == 0:
                self.direction, self.leapt_from = direction, previous
            elif self.direction != direction:
                if self.steps_since_leap > STEPS_BEFORE_LEAP_RESOLUTION:
                    outcome = LEAP_RESOLVED
                self.direction, self.leapt_from = 0, None
            else:
                outcome = LEAP_DOUBLED
            self.steps_since_leap = 0
            return outcome
        self.steps_since_leap += 1
        if self.leapt_from is not None and (
            (self.direction > 0 and token <= self.leapt_from)
            or (self.direction < 0 and token >= self.leapt_from)
        ):
            self.direction, self.leapt_from = 0, None
            return LEAP_RESOLVED
        return 0


_trackers: dict[tuple[int, ...], LeapTracker] = {}
_MAX_CACHED_TRACKERS = 65536


def leap_outcome(composition: Sequence[int], action: int) -> int:
    """The leap outcome of ``action`` after ``composition``: the last of
    ``leap_outcomes([*composition, action])``, computed from a cached tracker of the composition
    when a step before asked for it (environments ask step after step)."""
    key = tuple(composition)
    tracker = _trackers.get(key)
    if tracker is None:
        previous = _trackers.get(key[:-1]) if key else None
        if previous is not None:
            tracker = copy.copy(previous)
            tracker.step(key[-1])
        else:
            tracker = LeapTracker()
            for token in key:
                tracker.step(token)
        if len(_trackers) >= _MAX_CACHED_TRACKERS:
            _trackers.clear()
        _trackers[key] = tracker
    return copy.copy(tracker).step(action)


def leap_outcomes(tokens: Iterable[int]) -> list[int]:
    """The leap outcome (``LEAP_RESOLVED``, ``LEAP_DOUBLED`` or 0) at every step of ``tokens``."""
    tracker = LeapTracker()
    return [tracker.step(token) for token in tokens]


def has_unique_max(melody: Sequence[int]) -> bool:
    """Whether the highest token of the melody occurs exactly once."""
    return bool(melody) and list(melody).count(max(melody)) == 1


def has_unique_min(melody: Sequence[int]) -> bool:
    """Whether the lowest pitch token of the melody occurs exactly once (False without pitches)."""
    pitches = [t for t in melody if t > NO_EVENT]
    return bool(pitches) and pitches.count(min(pitches)) == 1


STATISTICS: dict[str, str] = {
    "notes_excessively_repeated": "notes excessively repeated (%)",
    "autocorrelation_lag1": "mean autocorrelation, lag 1",
    "autocorrelation_lag2": "mean autocorrelation, lag 2",
    "autocorrelation_lag3": "mean autocorrelation, lag 3",
    "notes_not_in_key": "notes not in key (%)",
    "melodies_starting_with_tonic": "melodies starting with tonic (%)",
    "leaps_resolved": "leaps resolved (%)",
    "unique_max_note": "melodies with unique max note (%)",
    "unique_min_note": "melodies with unique min note (%)",
    "notes_in_motif": "notes in motif (%)",
    "notes_in_repeated_motif": "notes in repeated motif (%)",
}
"""The statistics :func:`evaluate_melodies` returns, in the spec's order, with their labels.
All are percentages (0..100) except the autocorrelations."""

PUBLISHED: dict[str, dict[str, float]] = {
    column: dict(zip(STATISTICS, values, strict=True))
    for column, values in {
        "Note RNN": (63.3, -0.16, 0.14, -0.13, 0.1, 0.9, 77.2, 64.7, 49.4, 5.9, 0.007),
        "Q": (0.0, -0.11, 0.03, 0.03, 1.00, 28.8, 91.1, 56.4, 51.9, 75.7, 0.11),
        "Psi": (0.02, -0.10, -0.01, 0.01, 0.60, 28.7, 90.0, 59.4, 58.3, 73.8, 0.09),
        "G": (0.03, 0.55, 0.31, 0.17, 28.7, 0.0, 52.2, 37.1, 56.5, 69.3, 0.01),
        "Bi-axial prior (DQN paper)": (
            47.7,
            0.13,
            -0.23,
            -0.12,
            0.4,
            0.1,
            69.1,
            42.9,
            55.7,
            3.2,
            0.04,
        ),
        "Bi-axial + Q (DQN paper)": (
            17.0,
            -0.05,
            0.09,
            0.04,
            2.7,
            19.2,
            79.3,
            34.7,
            48.9,
            49.3,
            0.07,
        ),
    }.items()
}
"""Published figures by column (Jaques et al. 2017; the Bi-axial + DQN paper), in the units of
:data:`STATISTICS`: ``PUBLISHED["Q"]["notes_in_motif"] == 75.7``."""


def evaluate_melodies(
    melodies: Iterable[Sequence[int]], key: str | Key = "C major"
) -> dict[str, float]:
    """Every statistic of the spec over ``melodies`` (token sequences), keyed as :data:`STATISTICS`.

    Per-step statistics divide by ``total``, the number of tokens of all melodies (NOTE_OFF and
    NO_EVENT count); per-melody ones by the number of melodies; mean autocorrelations ignore NaN
    (a melody whose tokens do not vary) and are NaN if every melody is; ``leaps_resolved`` is
    resolved / (resolved + doubled) over all melodies, NaN without any.
    """
    key = Key.parse(key)
    melodies = [_validate_tokens(m, f"melodies[{i}]") for i, m in enumerate(melodies)]
    if not melodies:
        raise ValueError("melodies: need at least one melody")
    total = sum(len(m) for m in melodies)
    if total == 0:
        raise ValueError("melodies: every melody is empty")
    in_key, tonic = in_key_tokens(key), tonic_token(key)

    repeated = not_in_key = in_motif = in_repeated_motif = resolved = doubled = 0
    lag_values: dict[int, list[float]] = {lag: [] for lag in AUTOCORRELATION_LAGS}
    for melody in melodies:
        for t, token in enumerate(melody):
            repeated += is_excessive_repetition(melody[:t], token)
            not_in_key += token not in in_key
            if motif_notes(melody[: t + 1]):
                in_motif += 1
                in_repeated_motif += repeats_motif(melody[: t + 1])
        outcomes = leap_outcomes(melody)
        resolved += outcomes.count(LEAP_RESOLVED)
        doubled += outcomes.count(LEAP_DOUBLED)
        for lag, value in zip(AUTOCORRELATION_LAGS, autocorrelations(melody), strict=True):
            lag_values[lag].append(value)

    def mean_ignoring_nan(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return sum(finite) / len(finite) if finite else math.nan

    count = len(melodies)
    stats = {
        "notes_excessively_repeated": 100 * repeated / total,
        **{
            f"autocorrelation_lag{lag}": mean_ignoring_nan(lag_values[lag])
            for lag in AUTOCORRELATION_LAGS
        },
        "notes_not_in_key": 100 * not_in_key / total,
        "melodies_starting_with_tonic": 100
        * sum(bool(m) and m[0] == tonic for m in melodies)
        / count,
        "leaps_resolved": 100 * resolved / (resolved + doubled) if resolved + doubled else math.nan,
        "unique_max_note": 100 * sum(map(has_unique_max, melodies)) / count,
        "unique_min_note": 100 * sum(map(has_unique_min, melodies)) / count,
        "notes_in_motif": 100 * in_motif / total,
        "notes_in_repeated_motif": 100 * in_repeated_motif / total,
    }
    return {name: float(stats[name]) for name in STATISTICS}

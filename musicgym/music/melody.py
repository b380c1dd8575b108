"""A token melody's shape, as the RL Tuner judges it (``docs/spec/melody-rules.md``): key
membership, the tonic, excessive repetition, autocorrelation, motifs and their repeats, leaps
and their resolution, unique extremes.

The tests on a melody are written once here: :mod:`musicgym.rules.melody` calls them for the
reward at one step, and :mod:`musicgym.metrics.melody` at every step of finished melodies, so a
reward and its statistic cannot drift apart.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from musicgym.music.keys import Key
from musicgym.music.tokens import (
    FIRST_PITCH_TOKEN,
    NO_EVENT,
    NOTE_OFF,
    NUM_TOKENS,
    is_pitch_token,
    pitch_to_token,
    token_to_pitch,
)

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

    def __copy__(self) -> LeapTracker:
        """The same memory, every field (``copy.copy``'s generic way took a third of
        :func:`action_outcomes`, which copies the tracker once per action)."""
        copied = object.__new__(LeapTracker)
        copied.__dict__.update(self.__dict__)
        return copied

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
    return copy.copy(_tracker_after(composition)).step(action)


def _tracker_after(composition: Sequence[int]) -> LeapTracker:
    """The tracker fed ``composition`` (cached; do not step it), built from the cached tracker of
    the composition less its last token where there is one."""
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
    return tracker


RULE_OUTCOMES = (
    "resolves_leap",
    "doubles_leap",
    "excessive_repetition",
    "starts_on_tonic",
    "not_in_key",
    "in_motif",
    "in_repeated_motif",
)
"""What :func:`action_outcomes` tells of each action: what it adds, at its own step, to the
rules' statistics that count steps (a leap's outcome is counted where it is resolved or
doubled, the tonic start at the first step)."""


def action_outcomes(composition: Sequence[int], key: Key) -> list[tuple[bool, ...]]:
    """For every token (``NUM_TOKENS``) as the action after ``composition`` in ``key``: its
    :data:`RULE_OUTCOMES`, as the rules judge them (some rest on memory beyond the last few
    tokens, a pending leap, or on counting them, a repetition). The latest compositions' are
    cached: an agent asks for a state's when it stores it and again when it acts there."""
    return list(_action_outcomes(tuple(composition), key))


@lru_cache(maxsize=1024)
def _action_outcomes(composition: tuple[int, ...], key: Key) -> tuple[tuple[bool, ...], ...]:
    tracker = _tracker_after(composition)
    in_key, tonic = in_key_tokens(key), tonic_token(key)
    outcomes = []
    for action in range(NUM_TOKENS):
        leap = copy.copy(tracker).step(action)
        played = [*composition, action]
        motif = bool(motif_notes(played))
        outcomes.append(
            (
                leap == LEAP_RESOLVED,
                leap == LEAP_DOUBLED,
                is_excessive_repetition(composition, action),
                not composition and action == tonic,
                action not in in_key,
                motif,
                motif and repeats_motif(played),
            )
        )
    return tuple(outcomes)


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

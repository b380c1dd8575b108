"""Evaluation statistics of token melodies.

Every statistic follows its definition in ``docs/spec/melody-rules.md`` ("Evaluation
statistics") and counts with the tests of :mod:`musicgym.music.melody` (the ones the melody
rules reward with), at every step of finished melodies.

Where the original RL Tuner evaluation code differs: its "in-key third" interval test can never be
true (a known defect); none of our statistics uses it, and the reward rule that needs the test
(:class:`musicgym.rules.PreferredIntervals`) computes it correctly.

Beyond the spec, for comparing agents: what each melody contributes to each statistic
(:func:`statistic_contributions`, which a bootstrap over melodies resamples), histograms of pitch
classes, intervals and note lengths with their KL divergence to the data's (:data:`HISTOGRAMS`,
:func:`kl_divergence`) and the share of distinct 4-grams; the confidence intervals are in
:mod:`musicgym.metrics.confidence`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from musicgym.metrics.confidence import ratio_of_sums
from musicgym.music.keys import Key
from musicgym.music.melody import (
    AUTOCORRELATION_LAGS,
    LEAP_DOUBLED,
    LEAP_RESOLVED,
    autocorrelations,
    has_unique_max,
    has_unique_min,
    in_key_tokens,
    is_excessive_repetition,
    leap_outcomes,
    motif_notes,
    repeats_motif,
    tonic_token,
)
from musicgym.music.tokens import FIRST_PITCH_TOKEN, LOWEST_MELODY_PITCH, NO_EVENT
from musicgym.music.tokens import validate_tokens as _validate_tokens

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


STATISTIC_SCALES: dict[str, float] = {
    name: 1.0 if name.startswith("autocorrelation") else 100.0 for name in STATISTICS
}
"""What :func:`ratio_of_sums` multiplies each statistic's ratio by: 100 for the percentages."""


def statistic_contributions(
    melodies: Iterable[Sequence[int]], key: str | Key = "C major"
) -> dict[str, np.ndarray]:
    """What each melody adds to every statistic of :data:`STATISTICS`: ``(M, 2)`` per statistic,
    a numerator and a denominator, such that the statistic of any multiset of the melodies is
    :func:`ratio_of_sums` of their rows summed (a bootstrap resamples the rows).

    Per-step statistics count the melody's qualifying steps over its tokens (NOTE_OFF and NO_EVENT
    count); per-melody ones 0 or 1 over 1; an autocorrelation is its value over 1, or 0 over 0 for
    a melody whose tokens do not vary (NaN); ``leaps_resolved`` counts resolved leaps over resolved
    plus doubled ones. Each is the sum over the steps of :func:`step_contributions`.

    Raises:
        ValueError: no melodies, or only empty ones.
    """
    return {name: rows.sum(1) for name, rows in step_contributions(melodies, key).items()}


def step_contributions(
    melodies: Iterable[Sequence[int]], key: str | Key = "C major"
) -> dict[str, np.ndarray]:
    """What each step of each melody adds to every statistic of :data:`STATISTICS`: ``(M, L,
    2)`` per statistic (``L`` the longest melody; a shorter one's missing steps add nothing),
    the step at which each count becomes known: a per-step statistic at its step, the tonic
    start at the first, a leap's outcome where it is resolved or doubled, the autocorrelations
    and the unique extremes at the last step.

    Raises:
        ValueError: no melodies, or only empty ones.
    """
    key = Key.parse(key)
    melodies = [_validate_tokens(m, f"melodies[{i}]") for i, m in enumerate(melodies)]
    if not melodies:
        raise ValueError("melodies: need at least one melody")
    if not any(melodies):
        raise ValueError("melodies: every melody is empty")
    in_key, tonic = in_key_tokens(key), tonic_token(key)
    length = max(map(len, melodies))
    rows = {name: np.zeros((len(melodies), length, 2)) for name in STATISTICS}
    for i, melody in enumerate(melodies):
        for t, token in enumerate(melody):
            rows["notes_excessively_repeated"][i, t] = (
                is_excessive_repetition(melody[:t], token),
                1,
            )
            rows["notes_not_in_key"][i, t] = (token not in in_key, 1)
            in_motif = bool(motif_notes(melody[: t + 1]))
            rows["notes_in_motif"][i, t] = (in_motif, 1)
            rows["notes_in_repeated_motif"][i, t] = (in_motif and repeats_motif(melody[: t + 1]), 1)
        for t, outcome in enumerate(leap_outcomes(melody)):
            if outcome in (LEAP_RESOLVED, LEAP_DOUBLED):
                rows["leaps_resolved"][i, t] = (outcome == LEAP_RESOLVED, 1)
        last = max(len(melody) - 1, 0)  # an empty melody still counts as a melody
        for lag, value in zip(AUTOCORRELATION_LAGS, autocorrelations(melody), strict=True):
            defined = not math.isnan(value)
            rows[f"autocorrelation_lag{lag}"][i, last] = (value if defined else 0.0, defined)
        rows["melodies_starting_with_tonic"][i, 0] = (bool(melody) and melody[0] == tonic, 1)
        rows["unique_max_note"][i, last] = (has_unique_max(melody), 1)
        rows["unique_min_note"][i, last] = (has_unique_min(melody), 1)
    return rows


def evaluate_melodies(
    melodies: Iterable[Sequence[int]], key: str | Key = "C major"
) -> dict[str, float]:
    """Every statistic of the spec over ``melodies`` (token sequences), keyed as :data:`STATISTICS`.

    Per-step statistics divide by ``total``, the number of tokens of all melodies (NOTE_OFF and
    NO_EVENT count); per-melody ones by the number of melodies; mean autocorrelations ignore NaN
    (a melody whose tokens do not vary) and are NaN if every melody is; ``leaps_resolved`` is
    resolved / (resolved + doubled) over all melodies, NaN without any.
    """
    contributions = statistic_contributions(melodies, key)
    return {
        name: float(ratio_of_sums(rows.sum(0), STATISTIC_SCALES[name]))
        for name, rows in contributions.items()
    }


# ------------------------------------------------------------------ histograms against the data
INTERVAL_CLIP = 12
"""Melodic intervals are clipped to ``-INTERVAL_CLIP..INTERVAL_CLIP`` semitones."""
NOTE_LENGTH_CLIP = 16
"""Note lengths are clipped to ``1..NOTE_LENGTH_CLIP`` 16ths."""
KL_PSEUDO_COUNT = 0.5
"""Added to every bin of both histograms before :func:`kl_divergence` normalises them (the
Krichevsky-Trofimov estimate), so that a bin one histogram lacks gives a finite divergence."""


def _pitch_tokens(melody: Sequence[int]) -> np.ndarray:
    tokens = np.asarray(melody, dtype=np.int64)
    return tokens[tokens >= FIRST_PITCH_TOKEN]


def pitch_class_histogram(melody: Sequence[int]) -> np.ndarray:
    """``(12,)`` counts of the pitch classes of the melody's pitch tokens, C first."""
    pitch_classes = (_pitch_tokens(melody) - FIRST_PITCH_TOKEN + LOWEST_MELODY_PITCH) % 12
    return np.bincount(pitch_classes, minlength=12)


def interval_histogram(melody: Sequence[int]) -> np.ndarray:
    """``(2 * INTERVAL_CLIP + 1,)`` counts of the intervals in semitones between consecutive pitch
    tokens (rests and holds between them skipped), clipped to ``±INTERVAL_CLIP``; index
    ``INTERVAL_CLIP`` is the repeated note."""
    intervals = np.clip(np.diff(_pitch_tokens(melody)), -INTERVAL_CLIP, INTERVAL_CLIP)
    return np.bincount(intervals + INTERVAL_CLIP, minlength=2 * INTERVAL_CLIP + 1)


def note_length_histogram(melody: Sequence[int]) -> np.ndarray:
    """``(NOTE_LENGTH_CLIP,)`` counts of the notes' lengths in 16ths, index ``length - 1``: a note
    is a pitch token and the NO_EVENT holds that follow it (up to NOTE_OFF, the next pitch token or
    the melody's end), clipped to ``NOTE_LENGTH_CLIP``."""
    tokens = np.asarray(melody, dtype=np.int64)
    starts = np.flatnonzero(tokens >= FIRST_PITCH_TOKEN)
    ends = np.append(np.flatnonzero(tokens != NO_EVENT), len(tokens))  # the token after a note
    lengths = ends[np.searchsorted(ends, starts, side="right")] - starts
    return np.bincount(np.minimum(lengths, NOTE_LENGTH_CLIP) - 1, minlength=NOTE_LENGTH_CLIP)


HISTOGRAMS: dict[str, Callable[[Sequence[int]], np.ndarray]] = {
    "pitch_classes": pitch_class_histogram,
    "intervals": interval_histogram,
    "note_lengths": note_length_histogram,
}
"""The histograms of a melody that are compared with the data's (:func:`kl_divergence`)."""


def kl_divergence(
    counts: np.ndarray, reference_counts: np.ndarray, pseudo_count: float = KL_PSEUDO_COUNT
) -> np.ndarray:
    """``KL(P || Q) = sum P log(P / Q)`` in nats, of the histogram ``counts`` ``(..., K)`` to
    ``reference_counts`` ``(K,)``; both add ``pseudo_count`` to every bin before they are
    normalised into ``P`` and ``Q``. Shape ``(...)``: 0 for proportional histograms, else > 0."""
    p = np.asarray(counts, dtype=float) + pseudo_count
    q = np.asarray(reference_counts, dtype=float) + pseudo_count
    p /= p.sum(-1, keepdims=True)
    q /= q.sum(-1, keepdims=True)
    return (p * np.log(p / q)).sum(-1)


def distinct_ngrams(melodies: Iterable[Sequence[int]], n: int = 4) -> float:
    """Distinct token ``n``-grams among all ``n``-grams of ``melodies`` (each melody's own, none
    across two melodies), in %; NaN when no melody has ``n`` tokens."""
    ngrams = [tuple(m[i : i + n]) for m in melodies for i in range(len(m) - n + 1)]
    return 100 * len(set(ngrams)) / len(ngrams) if ngrams else math.nan

"""The evaluation statistics on hand-made melodies against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicgym.metrics import (
    PUBLISHED,
    STATISTICS,
    autocorrelation,
    evaluate_melodies,
    leap_outcome,
    leap_outcomes,
)
from musicgym.tokens import TokenError

M1 = [14, 16, 18, 1, 21, 1, 1, 0]  # in key, starts on the tonic, a motif at its end, no leap
M2 = [15, 15, 15, 15, 15, 15, 0, 0]  # C#4 six times: the sixth is excessive; not in key
M3 = [14, 21, 1, 19, 17, 14, 28, 35]  # leap up resolved by steps, then a leap doubled; Eb4
P = [2, 4, 6, 1]


def test_statistics_of_three_melodies():
    stats = evaluate_melodies([M1, M2, M3])
    assert list(stats) == list(STATISTICS)
    expected = {
        "notes_excessively_repeated": 100 * 1 / 24,
        "notes_not_in_key": 100 * 7 / 24,
        "melodies_starting_with_tonic": 100 * 2 / 3,
        "leaps_resolved": 50.0,
        "unique_max_note": 100 * 2 / 3,
        "unique_min_note": 100 * 1 / 3,
        "notes_in_motif": 100 * 2 / 24,
        "notes_in_repeated_motif": 0.0,
    }
    for name, value in expected.items():
        assert stats[name] == pytest.approx(value), name


def test_repeated_motif_statistics():
    stats = evaluate_melodies([P * 4])
    assert stats["notes_in_motif"] == pytest.approx(100 * 9 / 16)  # every window from step 7
    assert stats["notes_in_repeated_motif"] == pytest.approx(100 * 1 / 16)  # only step 15
    assert stats["notes_excessively_repeated"] == 0.0
    assert math.isnan(stats["leaps_resolved"])  # no leap at all


def test_mean_autocorrelation_ignores_nan():
    stats = evaluate_melodies([[2, 4, 2, 4], [2, 2, 4, 4], [14, 14, 14, 14]])
    assert stats["autocorrelation_lag1"] == pytest.approx((-0.75 + 0.25) / 2)
    assert stats["autocorrelation_lag2"] == pytest.approx((0.5 - 0.5) / 2)
    assert stats["autocorrelation_lag3"] == pytest.approx((-0.25 - 0.25) / 2)
    assert math.isnan(evaluate_melodies([[14] * 4])["autocorrelation_lag1"])


@pytest.mark.parametrize(
    ("tokens", "lag", "expected"),
    [([2, 4], 1, -0.5), ([2, 4], 3, 0.0), ([2, 4, 2, 4], 2, 0.5), ([7, 7, 7], 1, math.nan)],
)
def test_autocorrelation(tokens, lag, expected):
    value = autocorrelation(tokens, lag)
    assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


def test_statistics_follow_the_key():
    melody = [21, 23, 25, 20, 21]  # G A B F# G: in G major, not in C major (F#)
    assert evaluate_melodies([melody], key="G major")["notes_not_in_key"] == 0.0
    assert evaluate_melodies([melody], key="G major")["melodies_starting_with_tonic"] == 100.0
    assert evaluate_melodies([melody])["notes_not_in_key"] == pytest.approx(20.0)
    assert evaluate_melodies([melody])["melodies_starting_with_tonic"] == 0.0


def test_leap_outcomes_per_step():
    assert leap_outcomes(M3) == [0, 0, 0, 0, 0, 1, 0, -1]


def test_published_columns():
    assert PUBLISHED["Q"]["notes_in_motif"] == 75.7
    assert PUBLISHED["Note RNN"]["autocorrelation_lag1"] == -0.16
    assert PUBLISHED["Bi-axial + Q (DQN paper)"]["notes_excessively_repeated"] == 17.0
    assert all(list(column) == list(STATISTICS) for column in PUBLISHED.values())


@pytest.mark.parametrize(
    ("melodies", "error", "message"),
    [
        ([], ValueError, "at least one"),
        ([[14, 38]], TokenError, r"melodies\[0\]"),
        ([[]], ValueError, "empty"),
    ],
)
def test_bad_melodies(melodies, error, message):
    with pytest.raises(error, match=message):
        evaluate_melodies(melodies)


def test_cached_leap_outcome_agrees_with_a_full_replay():
    rng = np.random.default_rng(0)
    melodies = [rng.choice([0, 1, 14, 16, 21, 28, 35, 7], size=24).tolist() for _ in range(20)]
    for melody in melodies:  # step by step (the cache path), then in reverse (full replays)
        expected = leap_outcomes(melody)
        assert [leap_outcome(melody[:t], melody[t]) for t in range(24)] == expected
        assert [leap_outcome(melody[:t], melody[t]) for t in reversed(range(24))] == expected[::-1]
    assert any(-1 in leap_outcomes(m) for m in melodies) and any(
        1 in leap_outcomes(m) for m in melodies
    )

"""The evaluation statistics, histograms and intervals against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicgym.metrics import (
    HISTOGRAMS,
    INTERVAL_CLIP,
    KL_PSEUDO_COUNT,
    NOTE_LENGTH_CLIP,
    PUBLISHED,
    STATISTIC_SCALES,
    STATISTICS,
    bootstrap_intervals,
    distinct_ngrams,
    evaluate_melodies,
    interval_histogram,
    kl_divergence,
    note_length_histogram,
    pitch_class_histogram,
    ratio_of_sums,
    statistic_contributions,
    step_contributions,
    t_interval,
    t_quantile,
)
from musicgym.music.keys import Key
from musicgym.music.melody import (
    RULE_OUTCOMES,
    action_outcomes,
    autocorrelation,
    leap_outcome,
    leap_outcomes,
)
from musicgym.music.tokens import TokenError

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


C_MAJOR = Key.parse("C major")


def test_action_outcomes_say_which_actions_resolve_or_double_the_pending_leap():
    composition = [14, 23, 23, 23, 23, 23]  # C4 up a sixth to A4 (a leap pending), A4 x 5
    outcomes = action_outcomes(composition, C_MAJOR)
    which = [[a for a, outcome in enumerate(outcomes) if outcome[i]] for i in range(3)]
    # nothing resolves yet (a leap back down this soon does not count); another leap up doubles
    # it; a sixth A4 in a row is excessive
    assert which == [[], list(range(30, 38)), [23]]
    stepped_down = [14, 23, 21, 19, 18, 16, 1, 1]  # down by steps to E4, held
    resolves = [a for a, outcome in enumerate(action_outcomes(stepped_down, C_MAJOR)) if outcome[0]]
    assert resolves == list(range(10, 15))  # a step back to C4 or below
    held_on = [*stepped_down, 1]  # 7 steps since the leap: a leap down now resolves it too
    resolves = [a for a, outcome in enumerate(action_outcomes(held_on, C_MAJOR)) if outcome[0]]
    assert resolves == list(range(2, 15))


@pytest.mark.parametrize("key", ["C major", "A minor"])
def test_action_outcomes_are_what_each_step_adds_to_the_statistics(key):
    """Each token of random melodies, judged as an action after the tokens before it, has the
    outcomes that :func:`step_contributions` counts at its step."""
    rng = np.random.default_rng(1)
    melodies = [rng.choice([0, 1, 1, 14, 16, 18, 21, 28, 35], size=24).tolist() for _ in range(6)]
    melodies += [[14, 16, 18, 19, 21, 1, 0, 1] * 3]  # motifs, repeated
    melodies += [[14] * 8, [23] * 6 + [15, 1, 1, 1, 1, 1, 1]]  # tonics (C, A), repeated, C#
    contributions = step_contributions(melodies, key)
    counted_by = {  # the statistic whose numerator each outcome after the leap's adds to
        "excessive_repetition": "notes_excessively_repeated",
        "starts_on_tonic": "melodies_starting_with_tonic",
        "not_in_key": "notes_not_in_key",
        "in_motif": "notes_in_motif",
        "in_repeated_motif": "notes_in_repeated_motif",
    }
    assert list(counted_by) == list(RULE_OUTCOMES[2:])
    seen = np.zeros(len(RULE_OUTCOMES))
    for i, melody in enumerate(melodies):
        for t, token in enumerate(melody):
            outcomes = action_outcomes(melody[:t], Key.parse(key))[token]
            seen += outcomes
            resolved, leaps = contributions["leaps_resolved"][i, t]
            assert outcomes[:2] == (resolved == 1, leaps == 1 and resolved == 0)
            for name, outcome in zip(RULE_OUTCOMES[2:], outcomes[2:]):
                assert outcome == bool(contributions[counted_by[name]][i, t, 0]), (name, i, t)
    assert seen.all()  # every outcome happened somewhere


def test_contributions_sum_to_the_statistics():
    melodies = [M1, M2, M3, [14] * 8]
    contributions = statistic_contributions(melodies)
    assert list(contributions) == list(STATISTICS)
    assert all(rows.shape == (4, 2) for rows in contributions.values())
    stats = evaluate_melodies(melodies)
    for name, rows in contributions.items():
        assert ratio_of_sums(rows.sum(0), STATISTIC_SCALES[name]) == pytest.approx(stats[name])
    assert contributions["autocorrelation_lag1"][3].tolist() == [0.0, 0.0]  # NaN: left out
    assert contributions["leaps_resolved"][2].tolist() == [1.0, 2.0]  # M3: one of two resolved
    assert math.isnan(ratio_of_sums(np.zeros(2)))


@pytest.mark.parametrize(
    ("melody", "expected"),
    [
        ([14, 26, 15, 1, 0, 2], {0: 3, 1: 1}),  # C4, C5, C#4, C3
        ([0, 1, 1], {}),
    ],
)
def test_pitch_class_histogram(melody, expected):
    assert pitch_class_histogram(melody).tolist() == [expected.get(pc, 0) for pc in range(12)]


def test_interval_histogram_skips_rests_and_clips():
    histogram = interval_histogram([14, 1, 21, 0, 2, 37, 36])  # +7, -19, +35, -1 semitones
    expected = np.zeros(2 * INTERVAL_CLIP + 1, int)
    expected[[INTERVAL_CLIP + 7, 0, 2 * INTERVAL_CLIP, INTERVAL_CLIP - 1]] = 1
    assert histogram.tolist() == expected.tolist()
    assert interval_histogram([14]).sum() == 0


def test_note_length_histogram_of_a_hand_made_melody():
    # a rest held before the first note; C held 3, E 1, E 2, a rest, G held to the end (21)
    melody = [1, 14, 1, 1, 0, 18, 18, 1, 0, 1, 21, *[1] * 20]
    histogram = note_length_histogram(melody)
    assert histogram.shape == (NOTE_LENGTH_CLIP,)
    assert {i + 1: n for i, n in enumerate(histogram) if n} == {1: 1, 2: 1, 3: 1, 16: 1}
    assert note_length_histogram([1, 0, 1]).sum() == 0
    assert set(HISTOGRAMS) == {"pitch_classes", "intervals", "note_lengths"}


def test_kl_divergence():
    counts = np.array([3.0, 0.0, 5.0, 2.0])
    assert kl_divergence(counts, counts) == 0.0
    assert kl_divergence(counts, 4 * counts) > 0  # the smoothing weighs less on more counts
    assert kl_divergence(counts, counts[::-1]) > 0
    # [1, 0] to [0, 1] with 0.5 added: P = (3/4, 1/4), Q = (1/4, 3/4)
    assert kl_divergence([1, 0], [0, 1]) == pytest.approx(0.5 * math.log(3))
    assert KL_PSEUDO_COUNT == 0.5
    assert kl_divergence([1, 0], [0, 1], pseudo_count=1.0) == pytest.approx(math.log(2) / 3)
    batch = kl_divergence(np.stack([counts, counts[::-1]]), counts)  # bootstrap resamples
    assert batch.shape == (2,) and batch[0] == 0.0 and batch[1] > 0


@pytest.mark.parametrize(
    ("melodies", "share"),
    [
        ([[1, 2, 3, 4, 1, 2, 3, 4]], 100 * 4 / 5),  # 1234 twice
        ([[1, 2, 3, 4, 1, 2, 3, 4], [1, 2, 3], [1, 2, 3, 4]], 100 * 4 / 6),
        ([[5, 5, 5, 5, 5, 5]], 100 * 1 / 3),
        ([[1, 2], [3, 4]], math.nan),  # no 4-gram spans two melodies
    ],
)
def test_distinct_4grams(melodies, share):
    value = distinct_ngrams(melodies, 4)
    assert (math.isnan(value) and math.isnan(share)) or value == pytest.approx(share)


def _t_cdf(x: float, df: int) -> float:
    """Student's t CDF by Simpson's rule over its density (an independent check of the table)."""
    grid = np.linspace(0.0, x, 20_001)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
    h = grid[1] - grid[0]
    integral = (
        h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
    )
    return 0.5 + integral


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 29, 30, 31, 45, 100, 1000])
def test_t_quantile_is_the_975_quantile(df):
    assert _t_cdf(t_quantile(df), df) == pytest.approx(0.975, abs=1e-5)


def test_t_interval_of_a_known_case():
    mean, low, high = t_interval([1.0, 2.0, 3.0])  # s = 1, n = 3, t(2) = 4.3027
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), abs=1e-4)
    assert mean - low == pytest.approx(high - mean)
    assert t_interval([1.0, math.nan, 3.0])[1:] == pytest.approx((2 - 12.7062, 2 + 12.7062))
    single = t_interval([5.0, math.nan])
    assert single[0] == 5.0 and math.isnan(single[1]) and math.isnan(single[2])
    assert all(math.isnan(v) for v in t_interval([math.nan]))
    with pytest.raises(ValueError, match="degrees_of_freedom"):
        t_quantile(0)


def test_bootstrap_of_a_constant_statistic_has_zero_width():
    rows = {"steps": np.column_stack([np.arange(1.0, 11.0), np.arange(1.0, 11.0)])}
    bounds = bootstrap_intervals(rows, lambda sums: {"ratio": ratio_of_sums(sums["steps"])})
    assert bounds == {"ratio": (1.0, 1.0)}


def test_bootstrap_resamples_ratios_as_ratios_of_sums():
    rng = np.random.default_rng(3)
    rows = np.column_stack([rng.integers(0, 5, 40), rng.integers(1, 9, 40)]).astype(float)
    bounds = bootstrap_intervals(
        {"leaps": rows}, lambda sums: {"share": ratio_of_sums(sums["leaps"], 100)}, 500, seed=7
    )
    # the same resamples drawn directly: the drawn melodies' rows, summed, then divided
    drawn = np.random.default_rng(7).integers(0, 40, (500, 40))
    shares = 100 * rows[drawn, 0].sum(1) / rows[drawn, 1].sum(1)
    assert bounds["share"] == pytest.approx(tuple(np.percentile(shares, [2.5, 97.5])))
    point = 100 * rows[:, 0].sum() / rows[:, 1].sum()
    assert bounds["share"][0] < point < bounds["share"][1]


def test_an_empty_melody_counts_as_a_melody_and_adds_no_steps():
    """Per-melody statistics count it (not on the tonic, one extreme of nothing); per-step ones
    get nothing from it; the steps' sums are the melodies' rows."""
    rows = statistic_contributions([[14, 1, 16], []])
    for name in ("melodies_starting_with_tonic", "unique_max_note", "unique_min_note"):
        assert rows[name][1, 1] == 1 and rows[name][0].tolist() == [1, 1], name
    assert rows["notes_not_in_key"][1].tolist() == [0, 0]
    steps = step_contributions([[14, 1, 16], []])
    assert all(steps[name].shape == (2, 3, 2) for name in steps)
    assert all((steps[name].sum(1) == rows[name]).all() for name in rows)

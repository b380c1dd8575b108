"""Statistics of four-part writing over a set of chorales.

Every statistic counts with the tests of :mod:`musicgym.music.harmony` (the ones the chorale
rules reward with), on every frame of finished pieces, each piece judged in its key (given, or
found by :func:`~musicgym.music.harmony.find_key`). Statistics are ratios of sums over pieces
(:func:`chorale_contributions` gives each piece's numerator and denominator, which a bootstrap
resamples), in % except the entropy and the mean number of voices; :func:`distinct_pieces` is
over the set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from musicgym.metrics.confidence import ratio_of_sums
from musicgym.music.harmony import (
    FOUR_VOICES,
    PROFILES,
    Sonority,
    authentic_cadence,
    beat_before,
    chord_in_key,
    find_key,
    harmonic_motion,
    hidden_perfect,
    notes_not_in_key,
    out_of_range,
    parallel_perfects,
    perfect_authentic_cadence,
    sonorities,
    spacing_violation,
    voice_overlap,
)
from musicgym.music.keys import Key
from musicgym.music.notestate import NoteState

STATISTICS: dict[str, str] = {
    "parallel_fifths": "transitions with parallel fifths (%)",
    "parallel_octaves": "transitions with parallel octaves (%)",
    "hidden_perfects": "transitions with hidden fifths/octaves (%)",
    "voice_crossings": "transitions with voice crossing/overlap (%)",
    "spacing_violations": "frames with a spacing violation (%)",
    "out_of_range": "notes out of their voice's range (%)",
    "four_voices": "frames with four voices (%)",
    "notes_not_in_key": "notes not in key (%)",
    "beats_in_key": "beats whose chord is in key (%)",
    "authentic_cadence": "pieces ending on an authentic cadence (%)",
    "pitch_class_entropy": "pitch-class entropy (bits)",
    "mean_voices": "mean number of voices",
    "struck_frames": "frames where a note is struck (%)",
    "chord_changes": "beats that strike a new chord (%)",
    "perfect_cadence": "pieces ending V-I, an authentic cadence from the dominant (%)",
}
"""The statistics :func:`evaluate_chorales` returns, with their labels: the spec's list (the
share of distinct pieces is :func:`distinct_pieces`, the mean log p per frame is the prior's) and,
beyond it, the character a rule-follower can give up: ``struck_frames`` and ``chord_changes``,
the harmonic rhythm (holding one valid chord for bars breaks no rule), and ``perfect_cadence``,
the final tonic approached from the dominant in root position
(:func:`~musicgym.music.harmony.perfect_authentic_cadence`)."""

STATISTIC_SCALES: dict[str, float] = {
    name: 1.0 if name in ("pitch_class_entropy", "mean_voices") else 100.0 for name in STATISTICS
}
"""What :func:`ratio_of_sums` multiplies each statistic's ratio by: 100 for the percentages."""

DISTINCT_PIECES = ("distinct_pieces", "distinct pieces (%)")
"""The statistic of the whole set (:func:`distinct_pieces`) that :func:`evaluate_chorales` adds,
and its label."""

ContributionRows = dict[str, list[tuple[float, float]]]


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def piece_contributions(
    chords: Sequence[Sonority], key: Key, resolution: int
) -> dict[str, tuple[float, float]]:
    """What one piece (its frames' sonorities) adds to each statistic of :data:`STATISTICS`:
    ``(numerator, denominator)``.

    Transitions count pairs of consecutive frames that both hold two voices or more; spacing
    counts frames of three voices or more; the notes are every frame's sounding notes; beats are
    the frames at multiples of ``resolution`` (a chord change compares a beat with the beat
    before, :func:`~musicgym.music.harmony.harmonic_motion`; the first beat counts as one); the
    cadences are judged on the last frame and the chord before the final one.
    """
    rows = {name: [0.0, 0.0] for name in STATISTICS}

    def add(name: str, numerator: float, denominator: float = 1.0) -> None:
        rows[name][0] += numerator
        rows[name][1] += denominator

    counts = np.zeros(12)
    for t, chord in enumerate(chords):
        voices = len(chord.pitches)
        np.add.at(counts, np.asarray(chord.pitches, dtype=np.int64) % 12, 1)
        if t and voices >= 2 and len(chords[t - 1].pitches) >= 2:
            previous = chords[t - 1]
            parallel = parallel_perfects(previous, chord)
            add("parallel_fifths", "fifth" in parallel)
            add("parallel_octaves", "octave" in parallel)
            add("hidden_perfects", hidden_perfect(previous, chord))
            add("voice_crossings", voice_overlap(previous, chord))
        if voices >= 3:
            add("spacing_violations", spacing_violation(chord))
        add("out_of_range", out_of_range(chord), voices)
        add("notes_not_in_key", notes_not_in_key(chord, key), voices)
        add("four_voices", voices == FOUR_VOICES)
        add("mean_voices", voices)
        add("struck_frames", any(chord.struck))
        if t % resolution == 0:
            add("beats_in_key", chord_in_key(chord, key))
            motion = harmonic_motion(beat_before(chords, t, resolution), chord)
            add("chord_changes", motion == "new chord")
    if chords:
        add("authentic_cadence", authentic_cadence(chords[-1], key))
        add("perfect_cadence", perfect_authentic_cadence(chords, key))
    if counts.any():
        add("pitch_class_entropy", _entropy_bits(counts))
    return {name: (numerator, denominator) for name, (numerator, denominator) in rows.items()}


KeysArgument = Key | str | Sequence[Key | str] | None


def piece_keys(pieces: Sequence[NoteState], keys: KeysArgument = None) -> list[Key]:
    """One key per piece: ``keys`` itself (one for all, or one each), or :func:`find_key` of
    each piece where ``keys`` is ``None``."""
    if keys is None:
        return [find_key(piece) for piece in pieces]
    if isinstance(keys, (Key, str)):
        return [Key.parse(keys)] * len(pieces)
    if len(keys) != len(pieces):
        raise ValueError(f"keys: {len(keys)} keys for {len(pieces)} pieces")
    return [Key.parse(key) for key in keys]


def chorale_contributions(
    pieces: Sequence[NoteState], keys: KeysArgument = None
) -> dict[str, np.ndarray]:
    """``(M, 2)`` per statistic of :data:`STATISTICS`: each piece's numerator and denominator
    (:func:`piece_contributions`), each piece judged in its key (:func:`piece_keys`).

    Raises:
        ValueError: no pieces.
    """
    if not len(pieces):
        raise ValueError("pieces: need at least one piece")
    rows: ContributionRows = {name: [] for name in STATISTICS}
    for piece, key in zip(pieces, piece_keys(pieces, keys)):
        for name, row in piece_contributions(sonorities(piece), key, piece.resolution).items():
            rows[name].append(row)
    return {name: np.array(rows[name], dtype=float) for name in STATISTICS}


def statistics_of_sums(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each statistic of summed contributions ``(..., 2)`` (:func:`ratio_of_sums` with its
    scale)."""
    return {name: ratio_of_sums(sums[name], STATISTIC_SCALES[name]) for name in STATISTICS}


def evaluate_chorales(pieces: Sequence[NoteState], keys: KeysArgument = None) -> dict[str, float]:
    """Every statistic of :data:`STATISTICS` over ``pieces`` (see :func:`piece_contributions`;
    NaN where a statistic has nothing to count), and ``distinct_pieces``."""
    contributions = chorale_contributions(pieces, keys)
    summed = {name: rows.sum(0) for name, rows in contributions.items()}
    statistics = {name: float(value) for name, value in statistics_of_sums(summed).items()}
    statistics[DISTINCT_PIECES[0]] = distinct_pieces(pieces)
    return statistics


def distinct_pieces(pieces: Sequence[NoteState]) -> float:
    """Distinct note-states among ``pieces``, in % (NaN without pieces)."""
    if not len(pieces):
        return math.nan
    distinct = {(p.lowest_pitch, p.matrix.shape, p.matrix.tobytes()) for p in pieces}
    return 100.0 * len(distinct) / len(pieces)


def profile_shares(
    pieces: Sequence[NoteState], keys: KeysArgument = None
) -> dict[str, dict[str, tuple[float, ...]]]:
    """Each profile of :data:`~musicgym.music.harmony.PROFILES` over ``pieces``: profile name ->
    mode -> the share of each category, each piece counted in its key (:func:`piece_keys`);
    what :data:`~musicgym.music.harmony.BACH_PROFILES` holds for Bach's chorales (a mode without
    pieces is left out).

    Raises:
        ValueError: no pieces.
    """
    if not len(pieces):
        raise ValueError("pieces: need at least one piece")
    totals: dict[str, dict[str, np.ndarray]] = {name: {} for name in PROFILES}
    for piece, key in zip(pieces, piece_keys(pieces, keys)):
        chords = sonorities(piece)
        for name, profile in PROFILES.items():
            counts = profile.counts(chords, key, piece.resolution)
            totals[name][key.mode] = totals[name].get(key.mode, 0) + counts
    return {
        name: {
            mode: tuple((counts / counts.sum()).tolist())
            for mode, counts in modes.items()
            if counts.sum()
        }
        for name, modes in totals.items()
    }

"""Four-part harmony: a frame's voices (:class:`Sonority`) and the tests of
``docs/spec/chorale-rules.md`` on one frame or on a frame and the one before it (parallels, hidden
perfects, crossing, spacing, ranges, leaps, chords and notes in key, the cadence), the soprano as
melody tokens, and the key of a piece.

The tests are written once here: :mod:`musicgym.rules.chorale` calls them when a time step ends,
and :mod:`musicgym.metrics.chorale` on every frame of finished pieces, so a reward and its
statistic cannot drift apart.

Choices the spec leaves open, made here once:

* **Voices across frames** are matched by rank when both frames hold the same number of voices;
  otherwise only the outer voices (bass with bass, soprano with soprano) are matched.
* **A voice moves** when its pitch changes; a held or re-struck note does not move.
* **The key's notes** are its scale; in a minor key also the raised sixth and seventh (melodic
  minor), which Bach's minor chorales use throughout. The leading tone is the pitch class a
  semitone below the tonic in both modes.
* **Chords in key** are the triads and seventh chords built on the degrees of the key's scale
  (in minor: of the natural and of the harmonic minor scale), complete or without their fifth.
* **The cadence's tonic triad** may lack its fifth, and in minor may have a major third (the
  Picardy third Bach ends most minor chorales with).
* **The key of a piece** is given, or found by :func:`find_key`: music21's Krumhansl-Kessler key
  profiles correlated with the piece's pitch classes weighted by the frames they sound in (what
  music21's own key analysis does with a score).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from itertools import combinations, pairwise
from typing import NamedTuple

import numpy as np

from musicgym.music.keys import Key
from musicgym.music.notestate import NoteState, fold_pitches
from musicgym.music.tokens import (
    LOWEST_MELODY_PITCH,
    NO_EVENT,
    NOTE_OFF,
    NUM_MELODY_PITCHES,
    pitch_to_token,
)

VOICE_RANGES: dict[str, tuple[int, int]] = {
    "bass": (40, 60),
    "tenor": (48, 67),
    "alto": (55, 74),
    "soprano": (60, 79),
}
"""The usual range of each voice, lowest and highest MIDI pitch (both included)."""
INNER_RANGE = (VOICE_RANGES["tenor"][0], VOICE_RANGES["alto"][1])
"""The range of a middle voice of a frame that does not hold four voices (tenor or alto)."""
FOUR_VOICES = 4
PERFECT_INTERVALS = {0: "octave", 7: "fifth"}
"""Interval classes (semitones mod 12) of the perfect consonances the parallel rules watch."""
MAX_SPACING = 12
"""The most semitones allowed between soprano and alto, and between alto and tenor."""
MAX_LEAP = 12
"""A voice may move at most this many semitones (an octave)."""
MAX_STEP = 2
"""A move of more than this many semitones is a leap (hidden fifths need the soprano to leap)."""


class Sonority(NamedTuple):
    """The notes of one frame: ``pitches`` sounding, low to high (MIDI), and ``struck``, whether
    each is articulated in this frame (else held from the frame before)."""

    pitches: tuple[int, ...]
    struck: tuple[bool, ...]

    @property
    def bass(self) -> int | None:
        return self.pitches[0] if self.pitches else None

    @property
    def soprano(self) -> int | None:
        return self.pitches[-1] if self.pitches else None


SILENCE = Sonority((), ())


def sonority(frame: np.ndarray, lowest_pitch: int) -> Sonority:
    """The sonority of one note-state frame ``(N, 2)`` whose index 0 is ``lowest_pitch``."""
    frame = np.asarray(frame)
    index = np.flatnonzero(frame[:, 0])
    return Sonority(
        tuple((index + lowest_pitch).tolist()), tuple(frame[index, 1].astype(bool).tolist())
    )


def sonorities(note_state: NoteState) -> list[Sonority]:
    """The sonority of every frame of ``note_state``."""
    return [sonority(frame, note_state.lowest_pitch) for frame in note_state.matrix]


# ----------------------------------------------------------------------- the key's notes, chords
@lru_cache(maxsize=64)
def chorale_scale(key: Key) -> frozenset[int]:
    """Pitch classes in ``key``: its scale, and in minor the raised sixth and seventh too."""
    raised = {(key.tonic + 9) % 12, (key.tonic + 11) % 12} if key.mode == "minor" else set()
    return frozenset(key.scale) | raised


def leading_tone(key: Key) -> int:
    """The pitch class a semitone below the tonic (scale degree 7, raised in minor)."""
    return (key.tonic + 11) % 12


@lru_cache(maxsize=64)
def diatonic_chords(key: Key) -> frozenset[frozenset[int]]:
    """Every pitch-class set that is a triad or seventh chord on a degree of ``key``'s scale (in
    minor: of the natural and of the harmonic minor scale), complete or without its fifth."""
    scales = [key.scale]
    if key.mode == "minor":
        harmonic = list(key.scale)
        harmonic[6] = leading_tone(key)
        scales.append(tuple(harmonic))
    chords: set[frozenset[int]] = set()
    for scale in scales:
        for degree in range(7):
            root, third, fifth, seventh = (scale[(degree + k) % 7] for k in (0, 2, 4, 6))
            chords |= {
                frozenset({root, third, fifth}),
                frozenset({root, third}),
                frozenset({root, third, fifth, seventh}),
                frozenset({root, third, seventh}),
            }
    return frozenset(chords)


def pitch_classes(chord: Sonority) -> frozenset[int]:
    return frozenset(p % 12 for p in chord.pitches)


def chord_in_key(chord: Sonority, key: Key) -> bool:
    """Whether the frame's pitch classes are a chord of :func:`diatonic_chords` (a frame of one
    pitch class, or silence, is none)."""
    return pitch_classes(chord) in diatonic_chords(key)


def notes_not_in_key(chord: Sonority, key: Key) -> int:
    """Sounding notes whose pitch class is not in :func:`chorale_scale`."""
    scale = chorale_scale(key)
    return sum(p % 12 not in scale for p in chord.pitches)


def doubled_leading_tone(chord: Sonority, key: Key) -> bool:
    """Whether two or more sounding notes are the leading tone."""
    return sum(p % 12 == leading_tone(key) for p in chord.pitches) >= 2


def authentic_cadence(chord: Sonority, key: Key) -> bool:
    """Whether the frame is the tonic triad (its fifth may be missing; in minor its third may be
    major) with the tonic in the bass and in the soprano."""
    if not chord.pitches or chord.bass % 12 != key.tonic or chord.soprano % 12 != key.tonic:
        return False
    thirds = {3, 4} if key.mode == "minor" else {4}
    classes = pitch_classes(chord)
    triad_thirds = {(key.tonic + t) % 12 for t in thirds} & classes
    return len(triad_thirds) == 1 and classes <= {key.tonic, (key.tonic + 7) % 12, *triad_thirds}


# -------------------------------------------------------------------------- one frame's voices
def voice_ranges(count: int) -> list[tuple[int, int]]:
    """The range of each of ``count`` voices, low to high: bass, tenor, alto, soprano for four;
    otherwise the bass's, :data:`INNER_RANGE` for the middle ones and the soprano's (a single
    voice may lie anywhere from the bass's lowest to the soprano's highest note)."""
    if count == FOUR_VOICES:
        return [VOICE_RANGES[name] for name in ("bass", "tenor", "alto", "soprano")]
    if count == 1:
        return [(VOICE_RANGES["bass"][0], VOICE_RANGES["soprano"][1])]
    return [VOICE_RANGES["bass"], *[INNER_RANGE] * (count - 2), VOICE_RANGES["soprano"]][:count]


def out_of_range(chord: Sonority) -> int:
    """Voices outside their range (:func:`voice_ranges`)."""
    ranges = voice_ranges(len(chord.pitches))
    return sum(not low <= p <= high for p, (low, high) in zip(chord.pitches, ranges))


def spacing_violation(chord: Sonority) -> bool:
    """With three or more voices: more than :data:`MAX_SPACING` semitones between two adjacent
    voices above the bass (soprano-alto and alto-tenor for four voices)."""
    upper = chord.pitches[1:]
    return len(chord.pitches) >= 3 and any(b - a > MAX_SPACING for a, b in pairwise(upper))


# ---------------------------------------------------------------- a frame and the one before it
def matched_voices(previous: Sonority, current: Sonority) -> list[tuple[int, int]]:
    """``(pitch before, pitch now)`` of the voices matched across two frames: every voice by rank
    when both hold as many, else the bass and (with two voices or more in both) the soprano."""
    before, now = previous.pitches, current.pitches
    if not before or not now:
        return []
    if len(before) == len(now):
        return list(zip(before, now))
    outer = [(before[0], now[0])]
    if len(before) >= 2 and len(now) >= 2:
        outer.append((before[-1], now[-1]))
    return outer


def _direction(move: tuple[int, int]) -> int:
    return (move[1] > move[0]) - (move[1] < move[0])


def parallel_perfects(previous: Sonority, current: Sonority) -> set[str]:
    """The perfect intervals (``"fifth"``, ``"octave"``) that two matched voices form in both
    frames while both move in the same direction."""
    found = set()
    for low, high in combinations(matched_voices(previous, current), 2):
        direction = _direction(low)
        if direction == 0 or direction != _direction(high):
            continue
        before, now = (high[0] - low[0]) % 12, (high[1] - low[1]) % 12
        if before == now and now in PERFECT_INTERVALS:
            found.add(PERFECT_INTERVALS[now])
    return found


def hidden_perfect(previous: Sonority, current: Sonority) -> bool:
    """The outer voices move in the same direction into a fifth or an octave that they did not
    form before (that would be parallel), the soprano by a leap (more than :data:`MAX_STEP`)."""
    if len(previous.pitches) < 2 or len(current.pitches) < 2:
        return False
    bass = (previous.pitches[0], current.pitches[0])
    soprano = (previous.pitches[-1], current.pitches[-1])
    direction = _direction(bass)
    if direction == 0 or direction != _direction(soprano):
        return False
    before, now = (soprano[0] - bass[0]) % 12, (soprano[1] - bass[1]) % 12
    leap = abs(soprano[1] - soprano[0]) > MAX_STEP
    return now in PERFECT_INTERVALS and before != now and leap


def voice_overlap(previous: Sonority, current: Sonority) -> bool:
    """With as many voices (two or more) in both frames, matched by rank: a voice moves above the
    previous note of the voice above it, or below that of the voice below it (crossing or
    overlap)."""
    before, now = previous.pitches, current.pitches
    if len(before) != len(now) or len(now) < 2:
        return False
    return any(
        (i + 1 < len(now) and now[i] > before[i + 1]) or (i > 0 and now[i] < before[i - 1])
        for i in range(len(now))
    )


def large_leap(previous: Sonority, current: Sonority) -> bool:
    """A matched voice moves more than :data:`MAX_LEAP` semitones (an octave is allowed)."""
    return any(abs(now - before) > MAX_LEAP for before, now in matched_voices(previous, current))


@lru_cache(maxsize=128)
def _soprano_token(pitch: int) -> int:
    return pitch_to_token(int(fold_pitches(pitch, LOWEST_MELODY_PITCH, NUM_MELODY_PITCHES)))


def soprano_token(chord: Sonority, previous: Sonority | None) -> int:
    """The top voice of ``chord`` as a melody token (:mod:`musicgym.music.tokens`) after the
    frame ``previous``: NOTE_OFF for silence, NO_EVENT where the top note is held on from the
    frame before, else its pitch token (a pitch outside the tokens' MIDI 48..83 moved by octaves
    into it)."""
    if not chord.pitches:
        return NOTE_OFF
    if not chord.struck[-1] and previous is not None and chord.soprano == previous.soprano:
        return NO_EVENT
    return _soprano_token(chord.soprano)


def soprano_tokens(chords: Iterable[Sonority]) -> tuple[int, ...]:
    """The top voice as melody tokens, one per frame (:func:`soprano_token`)."""
    tokens, previous = [], None
    for chord in chords:
        tokens.append(soprano_token(chord, previous))
        previous = chord
    return tuple(tokens)


# ------------------------------------------------------------------------------- the piece's key
@lru_cache(maxsize=1)
def _key_profiles() -> np.ndarray:
    """``(24, 12)``: music21's Krumhansl-Kessler profiles of the 12 major then 12 minor keys."""
    from music21.analysis.discrete import KrumhanslKessler

    profiles = KrumhanslKessler()
    rows = []
    for mode in ("major", "minor"):
        weights = np.asarray(profiles.getWeights(mode), dtype=float)
        rows += [np.roll(weights, tonic) for tonic in range(12)]
    return np.stack(rows)


def find_key(note_state: NoteState) -> Key:
    """The key whose Krumhansl-Kessler profile correlates best with the piece's pitch classes,
    each weighted by the frames it sounds in (C major for a silent piece)."""
    counts = np.zeros(12)
    pitches = note_state.lowest_pitch + np.arange(note_state.num_pitches)
    np.add.at(counts, pitches % 12, note_state.matrix[..., 0].sum(0))
    if not counts.any() or counts.std() == 0:
        return Key()
    profiles = _key_profiles()
    correlations = [np.corrcoef(counts, profile)[0, 1] for profile in profiles]
    best = int(np.argmax(correlations))
    return Key(best % 12, "major" if best < 12 else "minor")

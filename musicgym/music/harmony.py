"""Four-part harmony: a frame's voices (:class:`Sonority`) and the tests of
``docs/spec/chorale-rules.md`` on one frame or on a frame and the one before it (parallels, hidden
perfects, crossing, spacing, ranges, leaps, chords and notes in key, the cadence), the character
of a chorale beyond the rules (chord qualities, harmonic rhythm, the dominant before the final
tonic, and the profiles of its frames that Bach's chorales are measured by), the soprano as melody
tokens, and the key of a piece.

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
* **A chord's quality** is that of the triad or seventh chord its pitch classes are, on any root,
  complete or without its fifth (two pitch classes a third apart are a triad without its fifth).
* **Harmonic rhythm** is judged beat by beat: a beat strikes a new chord (its pitch classes differ
  from the previous beat's), strikes the same chord again, or strikes nothing (held or silent).
* **The final chord** is the run of last frames with the last frame's pitch classes; the frame
  before it is the chord that approaches it.
* **The key of a piece** is given, or found by :func:`find_key`: music21's Krumhansl-Kessler key
  profiles correlated with the piece's pitch classes weighted by the frames they sound in (what
  music21's own key analysis does with a score).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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
BEATS_PER_BAR = 4
"""Quarter-note beats in a 4/4 bar."""
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


def tonic_thirds(key: Key) -> frozenset[int]:
    """The pitch classes that may be the tonic triad's third: in minor the minor third or (a
    Picardy third) the major one."""
    thirds = (3, 4) if key.mode == "minor" else (4,)
    return frozenset((key.tonic + third) % 12 for third in thirds)


def tonic_triad(chord: Sonority, key: Key) -> bool:
    """Whether the frame's pitch classes are the tonic triad's (its fifth may be missing; one of
    :func:`tonic_thirds`), in any voicing."""
    classes = pitch_classes(chord)
    triad_thirds = tonic_thirds(key) & classes
    return len(triad_thirds) == 1 and classes <= {key.tonic, (key.tonic + 7) % 12, *triad_thirds}


def cadence_parts(chord: Sonority, key: Key) -> tuple[bool, bool, bool]:
    """What an authentic cadence asks of its last frame: the tonic in the bass, the tonic in the
    soprano, the tonic triad (:func:`tonic_triad`)."""
    if not chord.pitches:
        return False, False, False
    return chord.bass % 12 == key.tonic, chord.soprano % 12 == key.tonic, tonic_triad(chord, key)


def authentic_cadence(chord: Sonority, key: Key) -> bool:
    """Whether the frame is the tonic triad (its fifth may be missing; in minor its third may be
    major) with the tonic in the bass and in the soprano: all of :func:`cadence_parts`."""
    return all(cadence_parts(chord, key))


# ------------------------------------------------------------- chord qualities and the cadence
CHORD_QUALITIES: dict[str, tuple[int, ...]] = {
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "diminished": (0, 3, 6),
    "augmented": (0, 4, 8),
    "dominant seventh": (0, 4, 7, 10),
    "major seventh": (0, 4, 7, 11),
    "minor seventh": (0, 3, 7, 10),
    "half-diminished seventh": (0, 3, 6, 10),
    "diminished seventh": (0, 3, 6, 9),
}
"""The triads and seventh chords by quality: semitones above the root (root, third, fifth,
seventh)."""


@lru_cache(maxsize=1)
def _qualities_of_pitch_class_sets() -> dict[frozenset[int], str]:
    """Every chord of :data:`CHORD_QUALITIES` on every root, complete or without its fifth; the
    first quality listed names a set two qualities share (a third alone: major or minor)."""
    qualities: dict[frozenset[int], str] = {}
    for quality, intervals in CHORD_QUALITIES.items():
        without_fifth = intervals[:2] + intervals[3:]
        for root in range(12):
            for chord in (intervals, without_fifth):
                qualities.setdefault(frozenset((root + i) % 12 for i in chord), quality)
    return qualities


def chord_quality(chord: Sonority) -> str | None:
    """The quality (:data:`CHORD_QUALITIES`) of the triad or seventh chord the frame's pitch
    classes are, complete or without its fifth; ``None`` for any other set (one pitch class, an
    open fifth, a chord with a suspension or passing note, silence)."""
    return _qualities_of_pitch_class_sets().get(pitch_classes(chord))


def dominant_in_root_position(chord: Sonority, key: Key) -> bool:
    """The dominant in the bass and the leading tone sounding: V or V7 in root position (other
    notes may sound beside them: a suspension, an anticipation of the tonic)."""
    return (
        bool(chord.pitches)
        and chord.bass % 12 == key.dominant
        and (leading_tone(key) in pitch_classes(chord))
    )


def final_approach(chords: Sequence[Sonority]) -> Sonority | None:
    """The frame before the final chord (the last frames that have the last frame's pitch
    classes); ``None`` when every frame has them."""
    if not chords:
        return None
    final = pitch_classes(chords[-1])
    for chord in reversed(chords[:-1]):
        if pitch_classes(chord) != final:
            return chord
    return None


def perfect_authentic_cadence(chords: Sequence[Sonority], key: Key) -> bool:
    """The piece ends on an authentic cadence (:func:`authentic_cadence` of its last frame)
    approached from the dominant in root position (:func:`dominant_in_root_position` of
    :func:`final_approach`): V(7)-I with the tonic in the soprano at the end."""
    if not chords or not authentic_cadence(chords[-1], key):
        return False
    approach = final_approach(chords)
    return approach is not None and dominant_in_root_position(approach, key)


# ------------------------------------------------------------------------- harmonic rhythm
HARMONIC_MOTIONS = ("new chord", "same chord", "held")
"""What a beat does (:func:`harmonic_motion`)."""


def harmonic_motion(previous_beat: Sonority | None, beat: Sonority) -> str:
    """One of :data:`HARMONIC_MOTIONS`: ``"held"`` when no note is struck on the beat (held or
    silent), ``"same chord"`` when it strikes the pitch classes of the beat before, else ``"new
    chord"`` (the first beat of a piece strikes a new one)."""
    if not any(beat.struck):
        return "held"
    if previous_beat is not None and pitch_classes(previous_beat) == pitch_classes(beat):
        return "same chord"
    return "new chord"


def beat_before(chords: Sequence[Sonority], t: int, resolution: int) -> Sonority | None:
    """The frame one beat before frame ``t`` (``None`` in the first beat)."""
    return chords[t - resolution] if t >= resolution else None


# --------------------------------------------------------------------------------- profiles
CHORD_KINDS = ("diatonic", "chromatic", "no chord")
"""What a beat's chord is: a chord of the key (:func:`chord_in_key`), another triad or seventh
chord (:func:`chord_quality`: a secondary dominant, a borrowed chord), or no such chord."""


def chord_kind(chord: Sonority, key: Key) -> str:
    """One of :data:`CHORD_KINDS`."""
    if chord_in_key(chord, key):
        return "diatonic"
    return "no chord" if chord_quality(chord) is None else "chromatic"


FrameCategories = Callable[[Sequence[Sonority], int, Key, int], Sequence[int]]
"""``(chords, t, key, resolution) -> category indices``: what frame ``t`` of ``chords`` adds to a
profile (one index per item it counts; none for a frame it does not count)."""


@dataclass(frozen=True)
class Profile:
    """A distribution over categories of a chorale's frames, counted frame by frame, that a piece
    can be compared with Bach's by (:data:`BACH_PROFILES`, :func:`profile_divergence`).

    Args:
        name: the profile's name.
        categories: the categories, in the order of the counts.
        frame_categories: the categories frame ``t`` adds.
        every_note: whether it counts every sounding note of every frame (else one item per
            beat).
    """

    name: str
    categories: tuple[str, ...]
    frame_categories: FrameCategories
    every_note: bool = False

    def counts(self, chords: Sequence[Sonority], key: Key, resolution: int) -> np.ndarray:
        """``(K,)``: the categories of every frame of ``chords``."""
        found = [
            c for t in range(len(chords)) for c in self.frame_categories(chords, t, key, resolution)
        ]
        return np.bincount(np.asarray(found, dtype=np.int64), minlength=len(self.categories))

    def items_per_beat(self, resolution: int) -> int:
        """About how many items a beat of four voices adds at ``resolution`` frames per beat."""
        return FOUR_VOICES * resolution if self.every_note else 1


def _degrees(chords: Sequence[Sonority], t: int, key: Key, resolution: int) -> list[int]:
    return [(p - key.tonic) % 12 for p in chords[t].pitches]


def _sounding_beat(chords: Sequence[Sonority], t: int, resolution: int) -> bool:
    return t % resolution == 0 and bool(chords[t].pitches)


def _chord_kind_on_beat(chords: Sequence[Sonority], t: int, key: Key, resolution: int) -> list[int]:
    if not _sounding_beat(chords, t, resolution):
        return []
    return [CHORD_KINDS.index(chord_kind(chords[t], key))]


def _motion_on_beat(chords: Sequence[Sonority], t: int, key: Key, resolution: int) -> list[int]:
    if not _sounding_beat(chords, t, resolution):
        return []
    return [HARMONIC_MOTIONS.index(harmonic_motion(beat_before(chords, t, resolution), chords[t]))]


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            "pitch_classes",
            tuple(f"tonic + {k}" for k in range(12)),
            _degrees,
            every_note=True,
        ),
        Profile("chord_kinds", CHORD_KINDS, _chord_kind_on_beat),
        Profile("harmonic_rhythm", HARMONIC_MOTIONS, _motion_on_beat),
    )
}
"""The profiles by name: ``pitch_classes``, every sounding note of every frame by its semitones
above the tonic (the chromaticism of :func:`notes_not_in_key`'s statistic and of the pitch-class
entropy, as a distribution); ``chord_kinds``, every sounding beat's :func:`chord_kind`; and
``harmonic_rhythm``, every sounding beat's :func:`harmonic_motion`. Silent frames add nothing
(the corpus pads every pickup to a bar of silence)."""

BACH_PROFILES: dict[str, dict[str, tuple[float, ...]]] = {
    "pitch_classes": {
        "major": (
            0.2068, 0.0074, 0.1238, 0.0033, 0.1354, 0.1034, 0.0129, 0.189, 0.0082, 0.1161, 0.0224,
            0.0714,
        ),
        "minor": (
            0.1955, 0.0093, 0.1007, 0.132, 0.023, 0.1203, 0.0056, 0.1915, 0.0701, 0.0197, 0.0946,
            0.0377,
        ),
    },
    "chord_kinds": {"major": (0.7469, 0.1509, 0.1022), "minor": (0.7327, 0.1768, 0.0906)},
    "harmonic_rhythm": {"major": (0.8238, 0.0959, 0.0803), "minor": (0.8326, 0.0959, 0.0715)},
}  # fmt: skip
"""Bach's profiles: profile name -> mode -> the share of each category, over the 297 chorales of
the training split of ``bach-chorales`` (music21's corpus at 16th notes, the data of the prior
``bach16``), each piece in the key :func:`find_key` finds, rounded to 4 places: ``musicgym bench
chorales --profiles`` measures and prints them (:func:`musicgym.metrics.chorale.profile_shares`).
In major, 5.4% of the notes lie outside the scale; 25% of the beats are not a chord of the key;
82% of the beats strike a new chord."""


def profile_divergence(
    counts: np.ndarray, reference: Sequence[float], pseudo_counts: float
) -> float:
    """``KL(P || Q)`` in nats: how far the counts ``(K,)`` lie from the reference shares ``Q``
    (positive, normalised here), with ``P`` the shares of the counts plus ``pseudo_counts`` items
    drawn in the reference's shares (0 for no items, and for counts in the reference's shares)."""
    reference = np.asarray(reference, dtype=float)
    reference = reference / reference.sum()
    smoothed = np.asarray(counts, dtype=float) + pseudo_counts * reference
    shares = smoothed / smoothed.sum()
    return float((shares * np.log(shares / reference)).sum())


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

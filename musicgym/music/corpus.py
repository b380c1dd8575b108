"""Notes of music21 scores, the chorales of music21's corpus by name, and their phrases.

:func:`score_notes` lays a score's notes on a grid of steps (``musicgym.priors.data`` converts whole
corpora with it); :func:`corpus_chorale` reads one chorale of the corpus, e.g. ``"bwv269"``, as a
note-state (``ChoraleComposition-v0`` primes with its first bar); :func:`corpus_phrases` reads every
chorale of the corpus with the steps where its phrases end, at its fermatas (the phrase episodes of
``ChoraleComposition-v0``). music21 is imported on first use: parsing a chorale takes about a
third of a second, so :func:`corpus_phrases` converts the corpus once and caches it in
:func:`cache_dir`, as ``musicgym.priors.data`` caches its datasets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from musicgym.errors import EnvArgumentError
from musicgym.music.notestate import NoteState

PHRASES_VERSION = 1
"""The version of :func:`corpus_phrases`' conversion: bump it when the conversion changes, so
that the caches of the old one are left unread."""


def cache_dir() -> Path:
    """Where conversions are cached: ``$MUSICGYM_CACHE`` or the user cache directory (e.g.
    ``~/.cache/musicgym``)."""
    if os.environ.get("MUSICGYM_CACHE"):
        return Path(os.environ["MUSICGYM_CACHE"])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("musicgym"))


def _pickup(part: Any) -> Fraction:
    """The quarter notes missing before a part's pickup: its first bar padded to a whole bar."""
    measures = part.getElementsByClass("Measure")
    return Fraction(measures[0].paddingLeft) if measures else Fraction(0)


def score_notes(score: Any, resolution: int) -> list[tuple[int, int, int]]:
    """(pitch, start, end) in steps of every note of a music21 score, pickups padded to a bar."""
    notes = []
    for part in score.parts or [score]:
        pickup = _pickup(part)
        for element in part.stripTies().flatten().notes:
            if element.duration.isGrace:
                continue
            start = (Fraction(element.offset) + pickup) * resolution
            end = start + Fraction(element.quarterLength) * resolution
            for pitch in element.pitches:
                notes.append((int(pitch.midi), round(start), round(end)))
    return notes


def key_signature_sharps(score: Any) -> int:
    """Sharps (flats negative) of a score's first key signature, else of music21's key analysis."""
    from music21 import key

    signatures = score.recurse().getElementsByClass(key.KeySignature)
    return int(signatures[0].sharps if signatures else score.analyze("key").sharps)


def fermata_ends(score: Any, resolution: int) -> list[int]:
    """The steps where a score's phrases end: the end of each note under a fermata (followed
    through its ties), in the steps of :func:`score_notes`, ascending. The fermatas of the top
    part (the soprano, where Bach's chorales mark them), or of the first part that has any."""
    from music21 import expressions

    for part in score.parts or [score]:
        onsets = [
            Fraction(note.offset)
            for note in part.flatten().notes
            if any(isinstance(mark, expressions.Fermata) for mark in note.expressions)
        ]
        if not onsets:
            continue
        held = [
            (Fraction(note.offset), Fraction(note.offset) + Fraction(note.quarterLength))
            for note in part.stripTies().flatten().notes
        ]
        pickup, ends = _pickup(part), set()
        for onset in onsets:  # the note (its ties joined) that sounds at the fermata's onset
            end = next((end for start, end in held if start <= onset < end), None)
            if end is not None:
                ends.add(round((end + pickup) * resolution))
        return sorted(ends)
    return []


def corpus_chorale(
    name: str, resolution: int, lowest_pitch: int, num_pitches: int, what: str = "primer"
) -> NoteState:
    """The corpus chorale ``name`` (``"bwv269"``, as music21's ``corpus.parse("bach/NAME")``
    finds it) on the given grid and pitch axis; one line naming ``what`` when there is no such
    chorale or a note lies outside the axis (:func:`phrased_chorale`'s notes)."""
    return phrased_chorale(name, resolution, lowest_pitch, num_pitches, what).chorale


def _on_axis(
    notes: list[tuple[int, int, int]],
    name: str,
    resolution: int,
    lowest_pitch: int,
    num_pitches: int,
    what: str,
) -> NoteState:
    pitches, starts, ends = np.array(notes).T
    if pitches.min() < lowest_pitch or pitches.max() >= lowest_pitch + num_pitches:
        raise EnvArgumentError(
            f"{what}: chorale {name!r} spans MIDI {pitches.min()}..{pitches.max()}, more than the "
            f"prior's pitch axis {lowest_pitch}..{lowest_pitch + num_pitches - 1} holds"
        )
    return NoteState.from_notes(
        pitches,
        starts,
        ends,
        lowest_pitch=lowest_pitch,
        num_pitches=num_pitches,
        resolution=resolution,
        name=f"bach/{name}",
    )


# ------------------------------------------------------------------------------------- phrases
class PhrasedChorale(NamedTuple):
    """A chorale of the corpus and where its phrases end."""

    name: str
    """Its corpus name, e.g. ``"bwv269"`` (``"chorale:bwv269"`` as a primer)."""
    chorale: NoteState
    """All of it, pickup padded to a bar (as :func:`score_notes` lays it out)."""
    phrase_ends: tuple[int, ...]
    """The frames where its phrases end (:func:`fermata_ends`), ascending: phrase ``j`` is frames
    ``phrase_ends[j - 1] .. phrase_ends[j] - 1`` (the first from frame 0). Empty: no fermata."""
    voices: int
    """Its parts (four in most chorales; some add instruments)."""
    meter: str
    """Its first time signature, e.g. ``"4/4"``."""
    sharps: int
    """Sharps (flats negative) of its key signature (:func:`key_signature_sharps`)."""


def _chorale_paths() -> list[str]:
    """The corpus paths of music21's Bach chorales, e.g. ``"bach/bwv269"``."""
    from music21 import corpus

    return [str(p) for p in corpus.chorales.Iterator(returnType="filename")]


def _phrased_notes(
    score: Any, resolution: int
) -> tuple[list[tuple[int, int, int]], tuple[int, ...], int, str, int]:
    """A chorale's notes, phrase ends, parts, time signature and key signature."""
    signatures = score.recurse().getElementsByClass("TimeSignature")
    meter = signatures[0].ratioString if signatures else ""
    ends = tuple(fermata_ends(score, resolution))
    return (
        score_notes(score, resolution),
        ends,
        len(score.parts),
        meter,
        key_signature_sharps(score),
    )


@lru_cache(maxsize=64)
def phrased_chorale(
    name: str, resolution: int, lowest_pitch: int, num_pitches: int, what: str = "primer"
) -> PhrasedChorale:
    """The corpus chorale ``name`` with its phrases (parsed on first use, then kept: a primer
    given at every reset is parsed once; :func:`corpus_phrases` reads them all); one line naming
    ``what`` when there is no such chorale or a note lies outside the pitch axis."""
    from music21 import corpus

    try:
        score = corpus.parse(f"bach/{name}")
    except Exception:  # music21 raises its own CorpusException, or others for odd names
        raise EnvArgumentError(
            f"{what}: no chorale {name!r} in music21's corpus (e.g. 'chorale:bwv269')"
        ) from None
    notes, *phrasing = _phrased_notes(score, resolution)
    chorale = _on_axis(notes, name, resolution, lowest_pitch, num_pitches, what)
    return PhrasedChorale(name, chorale, *phrasing)


_loaded: dict[Path, list[PhrasedChorale]] = {}
"""The conversions this process has read, by cache file: an env made again reads no file."""


def corpus_phrases(
    resolution: int, lowest_pitch: int, num_pitches: int, progress: bool = True
) -> list[PhrasedChorale]:
    """Every chorale of music21's corpus (371) whose notes lie on the pitch axis, with its
    phrases: converted once (about a minute), then read from the cache in ``cache_dir()``, keyed
    by resolution, pitch axis and :data:`PHRASES_VERSION` (a damaged cache is converted again;
    one that cannot be written is skipped with a note). ``progress``: a note on stderr while
    converting."""
    key = f"bach-phrases-r{resolution}-p{lowest_pitch}-{num_pitches}-v{PHRASES_VERSION}.npz"
    cached = cache_dir() / key
    if cached in _loaded:
        return _loaded[cached]
    try:
        chorales = _read_phrases(cached, resolution, lowest_pitch)
    except (OSError, ValueError, KeyError):  # none yet, or damaged: convert
        paths = _chorale_paths()
        if progress:
            print(
                f"musicgym: note: converting the phrases of {len(paths)} corpus chorales once "
                f"(about a minute), cached in {cached}",
                file=sys.stderr,
            )
        from music21 import corpus

        chorales = []
        for path in paths:
            notes, *phrasing = _phrased_notes(corpus.parse(path), resolution)
            pitches = [pitch for pitch, _, _ in notes]
            if notes and lowest_pitch <= min(pitches) and max(pitches) < lowest_pitch + num_pitches:
                name = path.removeprefix("bach/")
                chorale = _on_axis(notes, name, resolution, lowest_pitch, num_pitches, "corpus")
                chorales.append(PhrasedChorale(name, chorale, *phrasing))
        write_conversion(
            cached,
            [c.chorale for c in chorales],
            phrase_ends=np.array([e for c in chorales for e in c.phrase_ends], np.int64),
            phrases=np.array([len(c.phrase_ends) for c in chorales]),
            voices=np.array([c.voices for c in chorales]),
            meters=np.array([c.meter for c in chorales]),
            sharps=np.array([c.sharps for c in chorales]),
        )
    _loaded[cached] = chorales
    return chorales


def _read_phrases(path: Path, resolution: int, lowest_pitch: int) -> list[PhrasedChorale]:
    pieces, arrays = read_conversion(path, resolution, lowest_pitch)
    bounds = np.concatenate([[0], np.cumsum(arrays["phrases"])])
    return [
        PhrasedChorale(
            piece.name.removeprefix("bach/"),
            piece,
            tuple(int(end) for end in arrays["phrase_ends"][bounds[i] : bounds[i + 1]]),
            int(arrays["voices"][i]),
            str(arrays["meters"][i]),
            int(arrays["sharps"][i]),
        )
        for i, piece in enumerate(pieces)
    ]


def write_conversion(path: Path, pieces: Sequence[NoteState], **arrays: np.ndarray) -> None:
    """Cache a conversion atomically as an ``.npz``: its pieces' frames, lengths and names, and
    ``arrays``; a cache that cannot be written (read-only, full) is skipped with a note: the next
    load converts again."""
    from musicgym.errors import OutputError
    from musicgym.fileio import atomic_output

    try:
        with atomic_output(path) as temporary:
            np.savez_compressed(
                temporary,
                frames=np.concatenate([p.matrix for p in pieces]),
                lengths=np.array([p.num_steps for p in pieces]),
                names=np.array([p.name for p in pieces]),
                **arrays,
            )
    except OutputError as error:
        print(f"musicgym: note: conversion not cached: {error}", file=sys.stderr)


def read_conversion(
    path: Path, resolution: int, lowest_pitch: int
) -> tuple[list[NoteState], dict[str, np.ndarray]]:
    """The pieces and the other arrays of a :func:`write_conversion` file."""
    with np.load(path) as cache:
        arrays = dict(cache)
    frames, lengths, names = (arrays.pop(name) for name in ("frames", "lengths", "names"))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    pieces = [
        NoteState(frames[a:b], lowest_pitch, resolution, str(name))
        for a, b, name in zip(bounds[:-1], bounds[1:], names)
    ]
    return pieces, arrays

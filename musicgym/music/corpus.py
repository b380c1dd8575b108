"""Notes of music21 scores, and the chorales of music21's corpus by name.

:func:`score_notes` lays a score's notes on a grid of steps (``musicgym.priors.data`` converts whole
corpora with it); :func:`corpus_chorale` reads one chorale of the corpus, e.g. ``"bwv269"``, as a
note-state (``ChoraleComposition-v0`` primes with its first bar). music21 is imported on first
use: parsing a chorale takes about a third of a second.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from musicgym.errors import EnvArgumentError
from musicgym.music.notestate import NoteState


def score_notes(score: Any, resolution: int) -> list[tuple[int, int, int]]:
    """(pitch, start, end) in steps of every note of a music21 score, pickups padded to a bar."""
    notes = []
    for part in score.parts or [score]:
        measures = part.getElementsByClass("Measure")
        pickup = Fraction(measures[0].paddingLeft) if measures else Fraction(0)
        for element in part.stripTies().flatten().notes:
            if element.duration.isGrace:
                continue
            start = (Fraction(element.offset) + pickup) * resolution
            end = start + Fraction(element.quarterLength) * resolution
            for pitch in element.pitches:
                notes.append((int(pitch.midi), round(start), round(end)))
    return notes


def corpus_chorale(
    name: str, resolution: int, lowest_pitch: int, num_pitches: int, what: str = "primer"
) -> NoteState:
    """The corpus chorale ``name`` (``"bwv269"``, as music21's ``corpus.parse("bach/NAME")``
    finds it) on the given grid and pitch axis; one line naming ``what`` when there is no such
    chorale or a note lies outside the axis."""
    from music21 import corpus

    try:
        score = corpus.parse(f"bach/{name}")
    except Exception:  # music21 raises its own CorpusException, or others for odd names
        raise EnvArgumentError(
            f"{what}: no chorale {name!r} in music21's corpus (e.g. 'chorale:bwv269')"
        ) from None
    pitches, starts, ends = np.array(score_notes(score, resolution)).T
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

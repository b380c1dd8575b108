"""Phrase episodes of ``ChoraleComposition-v0`` (``phrases=True``): Bach's phrases, each primed by
its chorale before it, so that an ending is rewarded every phrase, not once per chorale.

Bach's chorales are phrases that end at fermatas with cadences
(:func:`musicgym.music.corpus.corpus_phrases` finds them). A phrase episode draws a chorale and
one of its phrases after the first; its primer is the chorale from its start up to the phrase, and
it composes the phrase's own frames, from where the fermata before it ends to where its own ends
(no rounding: a phrase that starts on the fourth beat starts there, and the observation's bar
position says so), so the end-of-piece rules (``cadence``, ``perfect_cadence``) judge the phrase's
last frame. The chorale is transposed into the episode's key (the rules'), whose mode must be its
own (:func:`chorale_key`), to the nearest octave that keeps it on the pitch axis.

The chorales drawn are those that fit an episode of the environment: four voices, in 4/4 (the
environment's bars), a key that its signature and its last bass note agree on, and a phrase after
the first of at most ``bars`` bars; the phrases drawn are those. Of the 371 chorales of music21's
corpus, 362 lie on bach16's pitch axis, all with fermatas; with ``bars=4`` 290 of them are drawn
(157 in major, 133 in minor), with 1,488 phrases of 0.75 to 4 bars (median 2; 969 of exactly 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from musicgym.errors import EnvArgumentError
from musicgym.music.corpus import PhrasedChorale, corpus_phrases, phrased_chorale
from musicgym.music.harmony import BEATS_PER_BAR, FOUR_VOICES
from musicgym.music.keys import Key

METER = f"{BEATS_PER_BAR}/4"
"""The time signature of the chorales whose phrases are drawn: the environment's bars."""


class Opening(NamedTuple):
    """How a chorale episode starts: what it is primed with and what it composes."""

    primer: np.ndarray
    """``(T, N, 2)``: frames fed to the prior and shown in the observation, never judged."""
    length: int
    """Frames the episode composes."""
    bar_position: int = 0
    """The first composed frame's place in its bar, in frames (where the primer leaves off)."""


def episode_phrases(chorale: PhrasedChorale, max_length: int) -> list[tuple[int, int]]:
    """``(start, end)`` frames of each phrase of ``chorale`` that an episode composes: every one
    after the first that starts on a beat and lasts at most ``max_length`` frames."""
    ends, resolution = chorale.phrase_ends, chorale.chorale.resolution
    return [
        (start, end)
        for start, end in pairwise(ends)
        if start % resolution == 0 and end - start <= max_length
    ]


SIGNATURE_ENDINGS = {0: "major", 9: "minor", 2: "minor", 7: "major"}
"""The mode of a chorale by where its last bass note (its tonic) lies above its key signature's
major tonic: on it (major), a sixth above (the relative minor), a second (a minor key notated
with one flat fewer, "dorian") or a fifth (a major key with one sharp fewer, "mixolydian")."""


def chorale_key(chorale: PhrasedChorale) -> Key | None:
    """The key of a Bach chorale: its last bass note is the tonic, its key signature tells the
    mode (:data:`SIGNATURE_ENDINGS`); ``None`` where the two disagree, as in the modal chorales
    that end on the dominant (a Phrygian ending)."""
    last = chorale.chorale.matrix[-1, :, 0]
    tonic = (chorale.chorale.lowest_pitch + int(np.flatnonzero(last)[0])) % 12
    major = 7 * chorale.sharps % 12  # the signature's major key: 1 sharp G, 1 flat F
    mode = SIGNATURE_ENDINGS.get((tonic - major) % 12)
    return None if mode is None else Key(tonic, mode)


def semitones_between(source: Key, target: Key) -> int:
    """Semitones in -6..+5 that move ``source``'s tonic onto ``target``'s."""
    return (target.tonic - source.tonic + 6) % 12 - 6


class PhraseEpisodes:
    """The phrases an environment draws its phrase episodes from (see the module docstring).

    Args:
        chorales: corpus chorales with their phrase ends; those that fit no episode are left out.
        bars: the environment's ``bars``: the longest phrase drawn.
        source: what they are, for messages (``"the corpus"``, ``"chorale 'bwv347'"``).
    """

    def __init__(self, chorales: Sequence[PhrasedChorale], bars: int, source: str) -> None:
        self.source, self.bars = source, bars
        self.chorales: list[PhrasedChorale] = []
        self.phrases: list[list[tuple[int, int]]] = []
        """Each chorale's phrases to compose, ``(start, end)`` frames."""
        self.keys: list[Key] = []
        """Each chorale's key (:func:`chorale_key`)."""
        for chorale in chorales:
            steps_per_bar = BEATS_PER_BAR * chorale.chorale.resolution
            phrases = episode_phrases(chorale, bars * steps_per_bar)
            key = chorale_key(chorale)
            if chorale.voices == FOUR_VOICES and chorale.meter == METER and phrases and key:
                self.chorales.append(chorale)
                self.phrases.append(phrases)
                self.keys.append(key)
        self._candidates: dict[Key, list[tuple[int, int]]] = {}

    def candidates(self, key: Key) -> list[tuple[int, int]]:
        """``(index, semitones)``: the chorales an episode in ``key`` draws (those in its mode
        that fit the pitch axis moved to its tonic) and how far each is transposed (the
        smallest shift that fits: to the tonic's nearest octave)."""
        if key not in self._candidates:
            found = []
            for index, (chorale, own) in enumerate(zip(self.chorales, self.keys)):
                shift = chorale.chorale.fitting_shift(semitones_between(own, key))
                if own.mode == key.mode and shift is not None:
                    found.append((index, shift))
            self._candidates[key] = found
        return self._candidates[key]

    def check(self, key: Key, what: str = "key") -> None:
        """One line naming ``what`` when no phrase can be drawn in ``key``."""
        if self.candidates(key):
            return
        if not self.chorales:
            raise EnvArgumentError(
                f"phrases: {self.source} has no phrase to compose (a chorale of four voices in "
                f"{METER}, ending in its key, whose fermatas end a phrase of at most "
                f"{self.bars} bar(s) after its first)"
            )
        modes = sorted({own.mode for own in self.keys})
        if key.mode not in modes:
            raise EnvArgumentError(
                f"{what}: phrase episodes transpose a chorale into the rules' key, {key.name}, "
                f"but {self.source} is in {' and '.join(modes)} only"
            )
        raise EnvArgumentError(
            f"{what}: {self.source} does not fit the prior's pitch axis in {key.name}"
        )

    def draw(self, key: Key, rng: np.random.Generator) -> Opening:
        """A phrase episode in ``key``: a chorale (uniformly among :meth:`candidates`) and one
        of its phrases (uniformly), transposed; one line if there is none."""
        self.check(key, "reset")
        candidates = self.candidates(key)
        index, shift = candidates[int(rng.integers(len(candidates)))]
        phrases = self.phrases[index]
        start, end = phrases[int(rng.integers(len(phrases)))]
        chorale = self.chorales[index].chorale
        primer = np.roll(chorale.matrix[:start], shift, axis=1)  # fitting_shift: nothing wraps
        steps_per_bar = BEATS_PER_BAR * chorale.resolution
        return Opening(primer, end - start, start % steps_per_bar)


def corpus_phrase_episodes(
    bars: int, resolution: int, lowest_pitch: int, num_pitches: int
) -> PhraseEpisodes:
    """The phrases of every chorale of music21's corpus (converted once, then cached:
    :func:`~musicgym.music.corpus.corpus_phrases`)."""
    chorales = corpus_phrases(resolution, lowest_pitch, num_pitches)
    return PhraseEpisodes(chorales, bars, "the corpus")


def chorale_phrase_episodes(
    name: str, bars: int, resolution: int, lowest_pitch: int, num_pitches: int, what: str
) -> PhraseEpisodes:
    """The phrases of the corpus chorale ``name``; one line naming ``what`` when it has none to
    compose (not four voices, not in 4/4, no fermata, no phrase after the first short enough)."""
    chorale = phrased_chorale(name, resolution, lowest_pitch, num_pitches, what)
    if chorale.voices != FOUR_VOICES:
        raise EnvArgumentError(
            f"{what}: chorale {name!r} has {chorale.voices} voices; phrase episodes compose four"
        )
    if chorale.meter != METER:
        raise EnvArgumentError(
            f"{what}: chorale {name!r} is in {chorale.meter or 'no metre'}; phrase episodes "
            f"compose {METER} bars"
        )
    if not chorale.phrase_ends:
        raise EnvArgumentError(
            f"{what}: chorale {name!r} marks no fermata, so no phrase of it ends; phrase episodes "
            "end at one"
        )
    if chorale_key(chorale) is None:
        raise EnvArgumentError(
            f"{what}: chorale {name!r} ends on a chord that is not the tonic of its key signature "
            "(a modal ending); phrase episodes transpose a chorale into the rules' key by its own"
        )
    episodes = PhraseEpisodes([chorale], bars, f"chorale {name!r}")
    if not episodes.chorales:
        raise EnvArgumentError(
            f"{what}: chorale {name!r} has no phrase after its first of at most {bars} bar(s) "
            f"(its fermatas end {len(chorale.phrase_ends)} phrase(s))"
        )
    return episodes

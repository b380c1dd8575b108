"""Phrase episodes of ``ChoraleComposition-v0`` (``phrases=True``): Bach's phrases, each primed by
its chorale before it, so that an ending is rewarded every phrase, not once per chorale.

Bach's chorales are phrases that end at fermatas with cadences
(:func:`musicgym.music.corpus.corpus_phrases` finds them). A phrase episode draws a chorale and
one of its phrases after the first; its primer is the chorale from its start up to the phrase, and
it composes the phrase's own frames, up to the frame where the fermata's note ends, so the
end-of-piece rules (``cadence``, ``perfect_cadence``) judge the phrase's end. The chorale is
transposed into the episode's key (the rules'), whose mode must be its own.

The chorales drawn are those that fit an episode of the environment: four voices, in 4/4 (the
environment's bars), and a phrase after the first of at most ``bars`` bars; the phrases drawn are
those. Of the 371 chorales of music21's corpus, 313 do (166 in major, 147 in minor by
:func:`~musicgym.music.harmony.find_key`), with 1,637 phrases of 0.75 to 4 bars (median 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from musicgym.errors import EnvArgumentError
from musicgym.music.corpus import PhrasedChorale, corpus_phrases, phrased_chorale
from musicgym.music.harmony import BEATS_PER_BAR, FOUR_VOICES, find_key
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
        for chorale in chorales:
            steps_per_bar = BEATS_PER_BAR * chorale.chorale.resolution
            phrases = episode_phrases(chorale, bars * steps_per_bar)
            if chorale.voices == FOUR_VOICES and chorale.meter == METER and phrases:
                self.chorales.append(chorale)
                self.phrases.append(phrases)
        self.keys = [find_key(chorale.chorale) for chorale in self.chorales]
        """Each chorale's key (:func:`~musicgym.music.harmony.find_key`)."""
        self._candidates: dict[Key, list[tuple[int, int]]] = {}

    def candidates(self, key: Key) -> list[tuple[int, int]]:
        """``(chorale, semitones)``: the chorales an episode in ``key`` draws (those in its mode
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
                f"{METER} whose fermatas end a phrase of at most {self.bars} bar(s) after its "
                "first)"
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


_corpus_episodes: dict[tuple[int, int], tuple[list[PhrasedChorale], PhraseEpisodes]] = {}
"""The corpus' phrase episodes made in this process, by its chorales' identity and ``bars`` (the
chorales kept with them, so that the identity stays theirs): every env of a vector of single
envs shares one."""


def corpus_phrase_episodes(
    bars: int, resolution: int, lowest_pitch: int, num_pitches: int
) -> PhraseEpisodes:
    """The phrases of every chorale of music21's corpus (converted once, then cached:
    :func:`~musicgym.music.corpus.corpus_phrases`); made once per process (finding the
    chorales' keys takes about a second)."""
    chorales = corpus_phrases(resolution, lowest_pitch, num_pitches)
    made = (id(chorales), bars)
    if made not in _corpus_episodes:
        _corpus_episodes[made] = (chorales, PhraseEpisodes(chorales, bars, "the corpus"))
    return _corpus_episodes[made][1]


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
    episodes = PhraseEpisodes([chorale], bars, f"chorale {name!r}")
    if not episodes.chorales:
        raise EnvArgumentError(
            f"{what}: chorale {name!r} has no phrase after its first of at most {bars} bar(s) "
            f"(its fermatas end {len(chorale.phrase_ends)} phrase(s))"
        )
    return episodes

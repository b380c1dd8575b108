"""The four-part-writing rules of ``docs/spec/chorale-rules.md``, on
:class:`~musicgym.rules.base.ChoraleContext`: each is judged when a time step ends, on the frame
just ended and the one before it, by the tests of :mod:`musicgym.music.harmony` (which the
chorale statistics count with). The melody rules judge the soprano line as ``soprano_<name>``
(:class:`SopranoRule`).

Each rule returns -1 per violation (``voice_range`` and ``notes_in_key``: per note) and 0
otherwise, except ``cadence``, which returns +1 for the final authentic cadence (the ending
rules pay over the chorale's last beat, a share on each frame: :class:`EndingRule`). The weights
of the preset ``"chorale"`` (:data:`CHORALE`) are chosen so that each rule can outweigh the prior's
log p where Bach obeys it; ``benchmarks/RESULTS.md`` ("Chorales: rule weights") gives the
measurements behind them.

Beyond the spec, rules that ask for Bach's character and not only for the absence of errors:
``perfect_cadence`` (+1 for a final V-I) and the profile rules (:class:`ProfileRule`:
``harmonic_rhythm``, ``pitch_class_profile``, ``chord_profile``), which reward a frame by how far
it moves the piece's running profile towards Bach's: positive for what the piece has less of than
Bach, negative for what it has more of. The preset ``"chorale_character"``
(:data:`CHORALE_CHARACTER`) adds them to the spec's rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from musicgym.errors import RuleError
from musicgym.music.harmony import (
    BACH_PROFILES,
    FOUR_VOICES,
    PROFILES,
    Profile,
    authentic_cadence,
    cadence_parts,
    chord_in_key,
    doubled_leading_tone,
    hidden_perfect,
    large_leap,
    notes_not_in_key,
    out_of_range,
    parallel_perfects,
    perfect_authentic_cadence,
    profile_divergence,
    spacing_violation,
    voice_overlap,
)
from musicgym.rules.base import ChoraleContext, RewardRule
from musicgym.rules.melody import MELODY_RULES


class ChoraleRule(RewardRule):
    """A rule judged when a chorale's time step ends."""

    context: ClassVar[type] = ChoraleContext


class ParallelFifths(ChoraleRule):
    """-1 when two voices a perfect fifth apart (7 semitones mod 12) in the frame before are a
    fifth apart again, both having moved in the same direction."""

    name = "parallel_fifths"
    default_weight = 3.0

    def __call__(self, context: ChoraleContext) -> float:
        previous = context.previous
        return (
            -1.0 if previous and "fifth" in parallel_perfects(previous, context.sonority) else 0.0
        )


class ParallelOctaves(ChoraleRule):
    """-1 when two voices an octave or unison apart (0 mod 12) in the frame before are so again,
    both having moved in the same direction."""

    name = "parallel_octaves"
    default_weight = 3.0

    def __call__(self, context: ChoraleContext) -> float:
        previous = context.previous
        hit = previous and "octave" in parallel_perfects(previous, context.sonority)
        return -1.0 if hit else 0.0


class HiddenPerfects(ChoraleRule):
    """-1 when bass and soprano move in the same direction into a fifth or an octave, the soprano
    by a leap (hidden or direct fifths and octaves)."""

    name = "hidden_perfects"
    default_weight = 2.5

    def __call__(self, context: ChoraleContext) -> float:
        previous = context.previous
        return -1.0 if previous and hidden_perfect(previous, context.sonority) else 0.0


class VoiceCrossing(ChoraleRule):
    """-1 when, with the voices matched by rank, a voice moves above the previous note of the voice
    above it or below that of the voice below it (crossing or overlap)."""

    name = "voice_crossing"
    default_weight = 2.0

    def __call__(self, context: ChoraleContext) -> float:
        previous = context.previous
        return -1.0 if previous and voice_overlap(previous, context.sonority) else 0.0


class Spacing(ChoraleRule):
    """-1 when more than an octave separates soprano and alto, or alto and tenor."""

    name = "spacing"
    default_weight = 2.0

    def __call__(self, context: ChoraleContext) -> float:
        return -1.0 if spacing_violation(context.sonority) else 0.0


class VoiceRange(ChoraleRule):
    """-1 for every voice outside its range (soprano 60-79, alto 55-74, tenor 48-67, bass
    40-60)."""

    name = "voice_range"
    default_weight = 2.0

    def __call__(self, context: ChoraleContext) -> float:
        return -float(out_of_range(context.sonority))


class FourVoices(ChoraleRule):
    """-1 on a beat where not exactly four voices sound."""

    name = "four_voices"
    default_weight = 4.0

    def __call__(self, context: ChoraleContext) -> float:
        wrong = context.on_beat and len(context.sonority.pitches) != FOUR_VOICES
        return -1.0 if wrong else 0.0


class LargeLeap(ChoraleRule):
    """-1 when a voice moves more than an octave."""

    name = "large_leap"
    default_weight = 3.0

    def __call__(self, context: ChoraleContext) -> float:
        previous = context.previous
        return -1.0 if previous and large_leap(previous, context.sonority) else 0.0


class DoubledLeadingTone(ChoraleRule):
    """-1 when the leading tone (scale degree 7) sounds in two voices."""

    name = "doubled_leading_tone"
    default_weight = 2.5

    def __call__(self, context: ChoraleContext) -> float:
        return -1.0 if doubled_leading_tone(context.sonority, context.key) else 0.0


class ChordInKey(ChoraleRule):
    """-1 on a beat whose pitch classes are not a triad or seventh chord on a degree of the key
    (complete or without its fifth; in minor, of the natural or harmonic minor scale)."""

    name = "chord_in_key"
    default_weight = 4.0

    def __call__(self, context: ChoraleContext) -> float:
        wrong = context.on_beat and not chord_in_key(context.sonority, context.key)
        return -1.0 if wrong else 0.0


class NotesInKey(ChoraleRule):
    """-1 for every sounding note whose pitch class is not in the key (in minor, the raised
    sixth and seventh are). Not in the preset (see :data:`CHORALE`)."""

    name = "notes_in_key"
    default_weight = 1.0

    def __call__(self, context: ChoraleContext) -> float:
        return -float(notes_not_in_key(context.sonority, context.key))


class EndingRule(ChoraleRule):
    """A rule of the chorale's ending, judged on its last beat, where Bach holds the final chord:
    each of the beat's ``resolution`` frames earns a ``1 / resolution`` share of :meth:`ending`
    of the piece ending there, 0 every other frame. A final chord struck on the last beat and
    held earns the ending's value whole, as the spec's judgement of the last frame does; the
    reward comes when the chord is struck, not ``resolution - 1`` frames (and discounts) later.
    Its weight is measured on sampled endings, not on single frames (``musicgym bench chorales
    --weights``)."""

    def __call__(self, context: ChoraleContext) -> float:
        return self.ending(context) / context.resolution if context.in_last_beat else 0.0

    def ending(self, context: ChoraleContext) -> float:
        """The value of the piece ending with ``context``'s frame."""
        raise NotImplementedError


class Cadence(EndingRule):
    """+1 when the piece ends on the tonic triad with the tonic in bass and soprano (an authentic
    cadence's ending), paid over the last beat (:class:`EndingRule`)."""

    name = "cadence"
    default_weight = 10.0

    def ending(self, context: ChoraleContext) -> float:
        return float(authentic_cadence(context.sonority, context.key))


class CadenceParts(EndingRule):
    """A third for each of what ``cadence`` asks of the final chord (the tonic in the bass, the
    tonic in the soprano, the tonic triad: :func:`~musicgym.music.harmony.cadence_parts`): a
    partial credit that an agent meets far more often than the whole cadence (the prior's
    samples end with the tonic in the bass about a quarter of the time, on a cadence 3.5%), so
    that its value is learned from many endings, not from the few whole ones."""

    name = "cadence_parts"
    default_weight = 6.0

    def ending(self, context: ChoraleContext) -> float:
        return sum(cadence_parts(context.sonority, context.key)) / 3


class PerfectCadence(EndingRule):
    """+1 when the chorale ends on an authentic cadence approached from the dominant in root
    position (V or V7 with the leading tone, then the tonic triad with the tonic in bass and
    soprano: :func:`~musicgym.music.harmony.perfect_authentic_cadence`)."""

    name = "perfect_cadence"
    default_weight = 10.0

    def ending(self, context: ChoraleContext) -> float:
        chords = (*context.composition, context.sonority)
        return float(perfect_authentic_cadence(chords, context.key))


class ProfileRule(ChoraleRule):
    """How far a frame moves the piece's running profile (a
    :class:`~musicgym.music.harmony.Profile`: its counts over the frames so far) towards a
    reference's shares in the key's mode, Bach's by default
    (:data:`~musicgym.music.harmony.BACH_PROFILES`): the drop of the
    :func:`~musicgym.music.harmony.profile_divergence` of the counts that the frame's items make,
    times the items a finished chorale holds (``N``:
    :meth:`~musicgym.music.harmony.Profile.items_per_beat` times its beats). The counts start from
    ``N`` pseudo-items in the reference's shares (a chorale's worth, so that an item's reward stays
    within about ``|log(Q_k / P_k)|`` from the first frame on), and a chorale's rewards add up to
    ``-N KL(P || Q)`` of its final smoothed shares ``P``: 0 for the reference's shares, whatever
    the number of notes played, so that neither silence nor held chords avoid it. An item of a
    category the piece has less of than the reference earns up to about ``log(Q_k / P_k)`` nats;
    one it has more of costs that.

    Args:
        name: the rule's name.
        profile: what is counted.
        reference: mode -> the share of each category (default: Bach's for ``profile``).
        default_weight: the weight a list of rule names gives it.
    """

    def __init__(
        self,
        name: str,
        profile: Profile,
        reference: Mapping[str, Sequence[float]] | None = None,
        default_weight: float = 1.0,
    ) -> None:
        reference = BACH_PROFILES[profile.name] if reference is None else reference
        for mode in ("major", "minor"):
            shares = reference.get(mode)
            if shares is None or len(shares) != len(profile.categories):
                raise RuleError(
                    f"rule {name}: the reference needs {len(profile.categories)} shares in "
                    f"major and in minor ({', '.join(profile.categories)}); got {reference!r}"
                )
            if not all(math.isfinite(share) and share > 0 for share in shares):
                raise RuleError(f"rule {name}: every {mode} share must be > 0; got {shares!r}")
        self.name = name  # type: ignore[misc]
        self.default_weight = default_weight  # type: ignore[misc]
        self.profile = profile
        self.reference = {mode: tuple(reference[mode]) for mode in ("major", "minor")}

    def __call__(self, context: ChoraleContext) -> float:
        chords = (*context.composition, context.sonority)
        key, resolution = context.key, context.resolution
        added = self.profile.frame_categories(chords, context.step, key, resolution)
        if not added:
            return 0.0
        before = self.profile.counts(context.composition, key, resolution)
        after = before + np.bincount(added, minlength=len(before))
        items = self.profile.items_per_beat(resolution) * (context.length // resolution)
        reference = self.reference[key.mode]
        drop = profile_divergence(before, reference, items) - profile_divergence(
            after, reference, items
        )
        return items * drop


class SopranoRule(ChoraleRule):
    """A melody rule judging the soprano line (:meth:`ChoraleContext.soprano_context`): named
    ``soprano_<name>``, with the melody rule's default weight."""

    def __init__(self, melody_rule: RewardRule) -> None:
        self.melody_rule = melody_rule
        self.name = f"soprano_{melody_rule.name}"  # type: ignore[misc]
        self.default_weight = melody_rule.default_weight  # type: ignore[misc]

    def __call__(self, context: ChoraleContext) -> float:
        return self.melody_rule(context.soprano_context())


CHORALE_RULES: dict[str, RewardRule] = {
    rule.name: rule
    for rule in (
        ParallelFifths(),
        ParallelOctaves(),
        HiddenPerfects(),
        VoiceCrossing(),
        Spacing(),
        VoiceRange(),
        FourVoices(),
        LargeLeap(),
        DoubledLeadingTone(),
        ChordInKey(),
        NotesInKey(),
        Cadence(),
        CadenceParts(),
        PerfectCadence(),
        ProfileRule("harmonic_rhythm", PROFILES["harmonic_rhythm"]),
        ProfileRule("pitch_class_profile", PROFILES["pitch_classes"]),
        ProfileRule("chord_profile", PROFILES["chord_kinds"]),
        *(SopranoRule(rule) for rule in MELODY_RULES.values()),
    )
}
"""The rules of ``docs/spec/chorale-rules.md``, the character rules (``perfect_cadence`` and the
profile rules) and the soprano line's melody rules, by name."""

CHORALE: dict[str, float] = {
    "parallel_fifths": 3.0,
    "parallel_octaves": 3.0,
    "hidden_perfects": 2.5,
    "voice_crossing": 2.0,
    "spacing": 2.0,
    "voice_range": 2.0,
    "four_voices": 4.0,
    "large_leap": 3.0,
    "doubled_leading_tone": 2.5,
    "chord_in_key": 4.0,
    "cadence": 10.0,
    "soprano_leap_resolution": 2.0,
}
"""The preset ``"chorale"``: the four-part-writing rules of the spec and the soprano's leap
resolution (the melody rule that still applies to a chorale's top voice at 16th notes; the others
reward a melody's motifs or punish the held notes of a chorale), with their weights: each rule's
``c`` times the 90th percentile of what the prior gains by breaking it where Bach obeys it,
rounded up to a half (``musicgym bench chorales --weights``, then on Bach's test chorales: the
measurement reads the validation split now; the cadence, which the prior's samples hardly ever
reach, by the reasoning of RESULTS.md). ``notes_in_key`` is left out: on top of
``chord_in_key`` it drove the tuned chorales' chromatic notes far below Bach's 5%."""

CHORALE_CHARACTER: dict[str, float] = {
    "parallel_fifths": 4.0,
    "parallel_octaves": 4.5,
    "hidden_perfects": 4.0,
    "voice_crossing": 4.5,
    "spacing": 1.5,
    "voice_range": 2.5,
    "four_voices": 4.0,
    "doubled_leading_tone": 2.5,
    "cadence": 12.5,
    "soprano_leap_resolution": 3.0,
    "perfect_cadence": 13.0,
    "harmonic_rhythm": 7.5,
    "pitch_class_profile": 4.0,
    "chord_profile": 4.0,
}
"""The preset ``"chorale_character"``: :data:`CHORALE`'s rules less ``chord_in_key``, which only
punishes the chromatic chords Bach writes on a quarter of his beats (``chord_profile`` asks for
his share of them instead), and the rules that ask for Bach's character: ``perfect_cadence`` and
the profile rules. Every weight is measured on Bach's validation chorales (``musicgym bench
chorales --weights --rules chorale_character,cadence_parts``), ``c`` times the 90th percentile
of what the prior gains by breaking the rule where Bach obeys it, rounded up to a half: the
cadence rules on endings of a bar sampled from the prior, the profile rules where a sample lies
at least half a nat further from Bach's profile than Bach's frame. The voice leading (parallels,
hidden perfects, crossing) takes the 99th percentile (``--percentile 99``): at the 90th the tuned
chorales broke it at 2.5 times Bach's rate, beside the cadence and texture rules whose rewards
an agent can reach by breaking it. ``large_leap`` is left out: the prior gains nothing by
breaking it at the 90th percentile. Chosen on the validation split over the weights measured on
the test split (``benchmarks/RESULTS.md``, "Choosing on the validation split")."""

"""Bach's character beyond the rules: chord qualities, harmonic rhythm, the final V-I, the
profiles and their rules, the preset ``"chorale_character"`` and the statistics that show the
character."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import musicgym  # noqa: F401  (registers the environments)
from musicgym.errors import RuleError
from musicgym.metrics import evaluate_chorales
from musicgym.metrics.chorale import profile_shares
from musicgym.music.harmony import (
    BACH_PROFILES,
    PROFILES,
    Sonority,
    chord_kind,
    chord_quality,
    dominant_in_root_position,
    final_approach,
    harmonic_motion,
    perfect_authentic_cadence,
    profile_divergence,
    sonorities,
)
from musicgym.rules import BUILTIN_RULES, PRESETS, ChoraleContext, resolve_rules
from musicgym.rules.chorale import CHORALE, ProfileRule
from tests.test_chorale_rules import A_MINOR, C_MAJOR, chord, piece


def hold(frame: Sonority) -> Sonority:
    """``frame`` held on into the next frame (nothing struck)."""
    return chord(*frame.pitches, held=frame.pitches)


def beat(frame: Sonority, resolution: int = 4) -> list[Sonority]:
    """``frame`` struck on a beat and held to the next one."""
    return [frame, *[hold(frame)] * (resolution - 1)]


TONIC = chord(48, 55, 64, 72)  # C3 G3 E4 C5
DOMINANT_SEVENTH = chord(43, 53, 62, 71)  # G2 F3 D4 B4
SUBDOMINANT = chord(41, 57, 65, 72)  # F2 A3 F4 C5
DOMINANT_FIRST_INVERSION = chord(47, 55, 62, 67)  # B2 G3 D4 G4


# ------------------------------------------------------------------------ chords and motion
@pytest.mark.parametrize(
    ("pitches", "quality"),
    [
        ((48, 52, 55), "major"),
        ((57, 60, 64), "minor"),
        ((47, 50, 53), "diminished"),
        ((48, 52, 56), "augmented"),
        ((43, 47, 50, 53), "dominant seventh"),
        ((48, 52, 55, 59), "major seventh"),
        ((50, 53, 57, 60), "minor seventh"),
        ((47, 50, 53, 57), "half-diminished seventh"),
        ((47, 50, 53, 56), "diminished seventh"),
        ((48, 52, 60), "major"),  # without its fifth
        ((43, 53, 59), "dominant seventh"),  # G F B: without its fifth
        ((48, 55), None),  # an open fifth
        ((48, 50, 52), None),  # a cluster
        ((48, 53, 55), None),  # a suspended fourth
        ((60,), None),
        ((), None),
    ],
)
def test_chord_quality(pitches, quality):
    assert chord_quality(chord(*pitches)) == quality


@pytest.mark.parametrize(
    ("pitches", "key", "kind"),
    [
        ((48, 55, 64, 72), C_MAJOR, "diatonic"),
        ((50, 57, 66, 74), C_MAJOR, "chromatic"),  # D major: V of V
        ((52, 56, 59, 64), A_MINOR, "diatonic"),  # E major: V of A minor (harmonic minor)
        ((48, 53, 55, 72), C_MAJOR, "no chord"),  # C F G: a suspension
    ],
)
def test_chord_kind(pitches, key, kind):
    assert chord_kind(chord(*pitches), key) == kind


def test_harmonic_motion():
    assert harmonic_motion(None, TONIC) == "new chord"
    assert harmonic_motion(DOMINANT_SEVENTH, TONIC) == "new chord"
    assert harmonic_motion(TONIC, chord(48, 60, 64, 67)) == "same chord"  # C E G revoiced
    assert harmonic_motion(TONIC, hold(TONIC)) == "held"
    assert harmonic_motion(TONIC, chord()) == "held"  # silence strikes nothing


@pytest.mark.parametrize(
    ("chords", "key", "expected"),
    [
        ((SUBDOMINANT, DOMINANT_SEVENTH, TONIC), C_MAJOR, True),
        ((DOMINANT_SEVENTH, TONIC, hold(TONIC), chord(48, 52, 55, 60)), C_MAJOR, True),
        ((chord(43, 55, 62, 71), chord(48, 55, 64, 72)), C_MAJOR, True),  # V without seventh
        ((chord(43, 55, 60, 67), TONIC), C_MAJOR, False),  # G C G: no leading tone
        ((DOMINANT_FIRST_INVERSION, TONIC), C_MAJOR, False),  # V6: leading tone in the bass
        ((SUBDOMINANT, TONIC), C_MAJOR, False),  # plagal
        ((DOMINANT_SEVENTH, chord(48, 55, 64, 76)), C_MAJOR, False),  # E on top: imperfect
        ((TONIC, hold(TONIC)), C_MAJOR, False),  # no chord before the final one
        ((chord(40, 56, 59, 62), chord(45, 57, 61, 69)), A_MINOR, True),  # E7 -> A (Picardy)
    ],
)
def test_perfect_authentic_cadence(chords, key, expected):
    assert perfect_authentic_cadence(chords, key) == expected


def test_final_approach_and_dominant():
    chords = [SUBDOMINANT, DOMINANT_SEVENTH, TONIC, hold(TONIC)]
    assert final_approach(chords) == DOMINANT_SEVENTH
    assert final_approach([TONIC, hold(TONIC)]) is None
    assert dominant_in_root_position(DOMINANT_SEVENTH, C_MAJOR)
    assert not dominant_in_root_position(DOMINANT_SEVENTH, A_MINOR)  # G is not E


# --------------------------------------------------------------------------------- profiles
def test_profile_counts_of_a_hand_made_piece():
    chords = [
        *beat(TONIC),
        *beat(chord(50, 57, 66, 74)),  # D F# A D: chromatic
        chord(48, 53, 55, 72),  # C F G C: no chord, struck
        hold(chord(48, 53, 55, 72)),
        chord(),  # silence off the beat
        chord(),
        chord(),  # silence on a beat: counts in neither beat profile
    ]
    counts = {name: profile.counts(chords, C_MAJOR, 4) for name, profile in PROFILES.items()}
    degrees = [p % 12 for frame in chords for p in frame.pitches]
    assert counts["pitch_classes"].tolist() == np.bincount(degrees, minlength=12).tolist()
    assert counts["chord_kinds"].tolist() == [1, 1, 1]  # diatonic, chromatic, no chord
    assert counts["harmonic_rhythm"].tolist() == [3, 0, 0]
    held_beats = [*beat(TONIC), *[hold(TONIC)] * 4, *beat(chord(48, 60, 64, 67))]
    assert PROFILES["harmonic_rhythm"].counts(held_beats, C_MAJOR, 4).tolist() == [1, 1, 1]


def test_pitch_class_profile_is_relative_to_the_tonic():
    frames = [chord(57, 60, 64), chord(59, 62, 68)]  # A C E | B D G#
    counts = PROFILES["pitch_classes"].counts(frames, A_MINOR, 4)
    assert np.flatnonzero(counts).tolist() == [0, 2, 3, 5, 7, 11]


def test_profile_divergence_and_items():
    reference = np.array([0.5, 0.25, 0.25])
    assert profile_divergence(np.zeros(3), reference, 4) == 0.0
    assert profile_divergence(np.array([4, 2, 2]), reference, 4) == pytest.approx(0.0, abs=1e-12)
    counts, pseudo = np.array([3, 0, 1]), 2.0
    smoothed = counts + pseudo * reference
    shares = smoothed / smoothed.sum()
    expected = float((shares * np.log(shares / reference)).sum())
    assert profile_divergence(counts, reference, pseudo) == pytest.approx(expected)
    assert expected > 0
    assert PROFILES["pitch_classes"].items_per_beat(4) == 16
    assert PROFILES["chord_kinds"].items_per_beat(4) == 1


def test_bach_profiles_are_distributions_over_their_categories():
    assert set(BACH_PROFILES) == set(PROFILES)
    for name, modes in BACH_PROFILES.items():
        assert set(modes) == {"major", "minor"}
        for shares in modes.values():
            assert len(shares) == len(PROFILES[name].categories)
            assert min(shares) > 0
            assert sum(shares) == pytest.approx(1.0, abs=1e-3)


def test_profile_shares_of_hand_made_pieces():
    major = piece(*beat(TONIC), *beat(chord(50, 57, 66, 74)))  # C major, then D major
    minor = piece(*beat(chord(45, 57, 60, 64)))  # A minor
    shares = profile_shares([major, minor], [C_MAJOR, A_MINOR])
    assert shares["chord_kinds"]["major"] == pytest.approx((0.5, 0.5, 0.0))
    assert shares["chord_kinds"]["minor"] == pytest.approx((1.0, 0.0, 0.0))
    assert shares["harmonic_rhythm"]["major"] == pytest.approx((1.0, 0.0, 0.0))
    counts = np.bincount([0, 3, 7, 0], minlength=12) * 4  # A A C E, four frames
    assert shares["pitch_classes"]["minor"] == pytest.approx(tuple(counts / counts.sum()))
    with pytest.raises(ValueError, match="at least one piece"):
        profile_shares([])


# ------------------------------------------------------------------------------------ rules
REFERENCE = {"major": (0.5, 0.25, 0.25), "minor": (0.5, 0.25, 0.25)}
"""A made-up profile of chord kinds: half the beats diatonic, a quarter chromatic, a quarter no
chord."""


def judge(rule, chords, length=64, key=C_MAJOR):
    return rule(ChoraleContext(tuple(chords[:-1]), chords[-1], length, key))


def test_a_profile_rule_rewards_what_the_piece_lacks_and_costs_what_it_has_too_much_of():
    rule = ProfileRule("kinds", PROFILES["chord_kinds"], REFERENCE)
    diatonic = [frame for _ in range(4) for frame in beat(TONIC)]  # four diatonic beats
    chromatic = chord(50, 57, 66, 74)
    assert judge(rule, [*diatonic, chromatic]) > 0  # the piece lacks chromatic beats
    assert judge(rule, [*diatonic, TONIC]) < 0  # and has too many diatonic ones
    assert judge(rule, [*diatonic, TONIC, hold(TONIC)]) == 0.0  # off the beat: not counted
    # the first beat moves the piece away from any profile; the rarer kind further
    assert 0 > judge(rule, [TONIC]) > judge(rule, [chromatic])


def test_a_profile_rules_rewards_add_up_to_minus_the_final_divergence():
    rule = ProfileRule("kinds", PROFILES["chord_kinds"], REFERENCE)
    kinds = [TONIC, chord(50, 57, 66, 74), TONIC, TONIC, chord(48, 53, 55, 72), TONIC]
    chords = [frame for kind in kinds for frame in beat(kind)]
    total = sum(judge(rule, chords[: t + 1], len(chords)) for t in range(len(chords)))
    counts = PROFILES["chord_kinds"].counts(chords, C_MAJOR, 4)
    assert counts.tolist() == [4, 1, 1]
    # six beats of one item each, and as many pseudo-counts
    expected = -6 * profile_divergence(counts, REFERENCE["major"], 6)
    assert total == pytest.approx(expected)
    assert total < 0  # four diatonic beats of six where the reference has three


def test_a_profile_rule_judges_in_the_keys_mode():
    reference = {"major": (0.9, 0.05, 0.05), "minor": (0.1, 0.45, 0.45)}
    rule = ProfileRule("kinds", PROFILES["chord_kinds"], reference)
    a_minor = chord(45, 57, 60, 64)
    assert judge(rule, [a_minor], key=A_MINOR) < judge(rule, [TONIC], key=C_MAJOR)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"major": (0.5, 0.5)}, "needs 3 shares"),
        ({"major": (0.5, 0.5, 0.0), "minor": (0.5, 0.25, 0.25)}, "must be > 0"),
        ({"major": (0.5, 0.25, math.nan), "minor": (0.5, 0.25, 0.25)}, "must be > 0"),
    ],
)
def test_a_profile_rule_refuses_a_bad_reference(reference, message):
    with pytest.raises(RuleError, match=message):
        ProfileRule("kinds", PROFILES["chord_kinds"], reference)


def test_bachs_profiles_rules_ask_for_chromaticism_and_new_chords():
    """On a piece that holds diatonic chords (the tuned agent's habit), the Bach profile rules
    reward a chromatic chord and a new chord, and cost another held beat."""
    diatonic = [frame for _ in range(8) for frame in [TONIC, *[hold(TONIC)] * 7]]
    chromatic = chord(50, 57, 66, 74)
    assert judge(BUILTIN_RULES["chord_profile"], [*diatonic, chromatic]) > 0
    assert judge(BUILTIN_RULES["chord_profile"], [*diatonic, TONIC]) < 0
    assert judge(BUILTIN_RULES["pitch_class_profile"], [*diatonic, chromatic]) > 0
    assert judge(BUILTIN_RULES["pitch_class_profile"], [*diatonic, TONIC]) < 0
    assert judge(BUILTIN_RULES["harmonic_rhythm"], [*diatonic, DOMINANT_SEVENTH]) > 0
    assert judge(BUILTIN_RULES["harmonic_rhythm"], [*diatonic, hold(TONIC)]) < 0


def test_perfect_cadence_rule():
    """Its value as an ending, and a quarter of it on a frame of the last beat (of 4 frames)."""
    rule = BUILTIN_RULES["perfect_cadence"]

    def ending(chords):
        return rule.ending(ChoraleContext(tuple(chords[:-1]), chords[-1], len(chords), C_MAJOR))

    assert ending([SUBDOMINANT, DOMINANT_SEVENTH, TONIC]) == 1.0
    assert judge(rule, [SUBDOMINANT, DOMINANT_SEVENTH, TONIC], length=3) == 0.25
    assert ending([DOMINANT_SEVENTH, SUBDOMINANT, TONIC]) == 0.0  # plagal
    assert judge(rule, [SUBDOMINANT, DOMINANT_SEVENTH, TONIC], length=8) == 0.0  # not the end
    plain = BUILTIN_RULES["cadence"].ending(ChoraleContext((SUBDOMINANT,), TONIC, 2, C_MAJOR))
    assert plain == 1.0  # the plain cadence asks for the final chord only


# ---------------------------------------------------------------------------------- preset
def test_the_character_preset_beside_the_published_one():
    assert PRESETS["chorale"] is CHORALE
    assert CHORALE["chord_in_key"] == 4.0 and CHORALE["cadence"] == 10.0  # as published
    character = PRESETS["chorale_character"]
    assert "chord_in_key" not in character
    added = {"perfect_cadence", "harmonic_rhythm", "pitch_class_profile", "chord_profile"}
    # large_leap: the prior gains nothing by breaking it at the 90th percentile (valid split)
    assert set(character) == (set(CHORALE) - {"chord_in_key", "large_leap"}) | added
    weighted = resolve_rules("chorale_character", ChoraleContext)
    assert all(r.context is ChoraleContext and math.isfinite(w) for r, w in weighted)


def test_the_envs_profile_rewards_are_those_of_its_chorale_recomputed():
    """Played in the env (random valid actions, no prior), each profile rule's reward parts add up
    to minus its weight over ``c`` times the final divergence of the finished chorale."""
    names = ("harmonic_rhythm", "pitch_class_profile", "chord_profile")
    env = gym.make("ChoraleComposition-v0", prior=None, rules="chorale_character", bars=1)
    _, info = env.reset(seed=1)
    rng, totals, terminated = np.random.default_rng(5), dict.fromkeys(names, 0.0), False
    while not terminated:
        strikes = np.flatnonzero(info["action_mask"][:48])
        action = 96 if rng.random() < 0.3 or not strikes.size else int(rng.choice(strikes))
        *_, terminated, _, info = env.step(action)
        for name in names:
            totals[name] += info["rewards"][name]
    chords = sonorities(env.unwrapped.note_state())
    assert len(chords) == 16  # a bar: four beats
    for name in names:
        rule = BUILTIN_RULES[name]
        weight, c = PRESETS["chorale_character"][name], 0.5
        counts = rule.profile.counts(chords, C_MAJOR, 4)
        per_beat = 16 if rule.profile.every_note else 1  # four voices in four frames
        reference = BACH_PROFILES[rule.profile.name]["major"]
        divergence = profile_divergence(counts, reference, 4 * per_beat)  # a chorale's worth
        assert totals[name] == pytest.approx(-weight * 4 * per_beat * divergence / c)


# ------------------------------------------------------------------------------ statistics
def test_character_statistics_of_a_hand_made_piece():
    cadence = piece(
        *beat(TONIC),
        *beat(TONIC),  # the same chord struck again
        *beat(SUBDOMINANT),
        *beat(DOMINANT_SEVENTH),
        TONIC,
        hold(TONIC),
    )
    statistics = evaluate_chorales([cadence], C_MAJOR)
    assert statistics["chord_changes"] == pytest.approx(100 * 4 / 5)  # beats 0, 2, 3, 4 new
    assert statistics["perfect_cadence"] == 100.0
    assert statistics["authentic_cadence"] == 100.0
    plagal = piece(*beat(TONIC), *beat(SUBDOMINANT), hold(SUBDOMINANT), TONIC)
    statistics = evaluate_chorales([cadence, plagal], C_MAJOR)
    assert statistics["perfect_cadence"] == 50.0
    assert statistics["authentic_cadence"] == 100.0
    assert statistics["chord_changes"] == pytest.approx(100 * 6 / 8)  # plagal: beat 8 held

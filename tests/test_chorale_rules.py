"""Four-part writing: the tests on frames, the chorale rules, their preset and plug-in surface,
and the chorale statistics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import musicgym  # noqa: F401  (registers the environments)
from musicgym.metrics import evaluate_chorales
from musicgym.metrics.chorale import chorale_contributions, distinct_pieces
from musicgym.music.harmony import (
    Sonority,
    authentic_cadence,
    chord_in_key,
    doubled_leading_tone,
    find_key,
    hidden_perfect,
    large_leap,
    notes_not_in_key,
    out_of_range,
    parallel_perfects,
    soprano_tokens,
    spacing_violation,
    voice_overlap,
)
from musicgym.music.keys import Key
from musicgym.music.notestate import NoteState
from musicgym.music.tokens import NO_EVENT, NOTE_OFF, pitch_to_token
from musicgym.rules import (
    BUILTIN_RULES,
    PRESETS,
    ChoraleContext,
    FunctionRule,
    RuleContext,
    resolve_rules,
)

C_MAJOR, A_MINOR = Key(0, "major"), Key(9, "minor")


def chord(*pitches: int, held: tuple[int, ...] = ()) -> Sonority:
    ordered = tuple(sorted(pitches))
    return Sonority(ordered, tuple(p not in held for p in ordered))


def piece(*chords: Sonority, lowest: int = 36, count: int = 48) -> NoteState:
    matrix = np.zeros((len(chords), count, 2), np.uint8)
    for t, frame in enumerate(chords):
        for pitch, struck in zip(frame.pitches, frame.struck):
            matrix[t, pitch - lowest] = (1, int(struck))
    return NoteState(matrix, lowest)


# ------------------------------------------------------------------------------ frame tests
@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (chord(48, 55), chord(50, 57), {"fifth"}),  # C3 G3 -> D3 A3
        (chord(48, 60), chord(50, 62), {"octave"}),
        (chord(48, 55), chord(43, 62), set()),  # contrary motion into a compound fifth
        (chord(48, 55), chord(48, 55, held=(48, 55)), set()),  # nothing moves
        (chord(48, 55, 64, 72), chord(50, 57, 65, 74), {"fifth", "octave"}),
        (chord(48, 64), chord(50, 57, 62), set()),  # 2 -> 3 voices: outer voices 16 -> 12
        (chord(48, 60), chord(50, 57, 62), {"octave"}),  # outer voices octave -> octave
    ],
)
def test_parallel_perfects(before, after, expected):
    assert parallel_perfects(before, after) == expected


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (chord(48, 64), chord(50, 74), True),  # both up into an octave, soprano leaps 10
        (chord(48, 73), chord(50, 74), False),  # soprano by step
        (chord(48, 60), chord(50, 62), False),  # already an octave: parallel, not hidden
        (chord(48, 64), chord(47, 71), False),  # contrary motion
    ],
)
def test_hidden_perfect(before, after, expected):
    assert hidden_perfect(before, after) == expected


def test_voice_overlap_spacing_range_leaps():
    assert voice_overlap(chord(48, 55, 60, 67), chord(48, 62, 64, 67))  # tenor above old alto
    assert not voice_overlap(chord(48, 55, 60, 67), chord(47, 55, 62, 67))
    assert not voice_overlap(chord(48, 55, 60), chord(48, 62, 64, 67))  # counts differ
    assert spacing_violation(chord(48, 55, 64, 79))  # alto-soprano 15
    assert not spacing_violation(chord(36, 60, 64, 67))  # bass-tenor may be wide
    assert out_of_range(chord(36, 55, 64, 72)) == 1  # the bass below E2
    assert out_of_range(chord(43, 55, 64, 72)) == 0
    assert large_leap(chord(48, 55, 64, 72), chord(48, 55, 64, 86))
    assert not large_leap(chord(48, 55, 64, 72), chord(36, 55, 64, 72))  # an octave


def test_key_tests():
    assert doubled_leading_tone(chord(47, 59, 62, 67), C_MAJOR)
    assert not doubled_leading_tone(chord(43, 59, 62, 67), C_MAJOR)
    assert chord_in_key(chord(48, 55, 64, 72), C_MAJOR)  # I
    assert chord_in_key(chord(48, 64, 72), C_MAJOR)  # I without its fifth
    assert chord_in_key(chord(43, 53, 59, 67), C_MAJOR)  # V7 without its fifth
    assert not chord_in_key(chord(48, 54, 64, 72), C_MAJOR)  # C F# E
    assert not chord_in_key(chord(48, 60), C_MAJOR)  # one pitch class is no chord
    assert chord_in_key(chord(40, 56, 59, 64), A_MINOR)  # E G# B: V of harmonic minor
    assert notes_not_in_key(chord(40, 56, 59, 64), A_MINOR) == 0  # the raised seventh
    assert notes_not_in_key(chord(48, 54, 63), C_MAJOR) == 2
    assert authentic_cadence(chord(48, 55, 64, 72), C_MAJOR)
    assert not authentic_cadence(chord(48, 55, 64, 76), C_MAJOR)  # E on top
    assert not authentic_cadence(chord(43, 55, 64, 72), C_MAJOR)  # G in the bass
    assert authentic_cadence(chord(45, 57, 61, 69), A_MINOR)  # a Picardy third
    assert authentic_cadence(chord(45, 57, 60, 69), A_MINOR)


def test_soprano_tokens():
    frames = [chord(48, 60), chord(48, 60, held=(48, 60)), chord(48, 62), chord(), chord(90)]
    assert soprano_tokens(frames) == (
        pitch_to_token(60),
        NO_EVENT,
        pitch_to_token(62),
        NOTE_OFF,
        pitch_to_token(78),  # MIDI 90 folded into the tokens' 48..83
    )


# ----------------------------------------------------------------------------------- rules
def context(*chords: Sonority, length: int = 16, key: Key = C_MAJOR) -> ChoraleContext:
    return ChoraleContext(tuple(chords[:-1]), chords[-1], length, key)


@pytest.mark.parametrize(
    ("name", "chords", "expected"),
    [
        ("parallel_fifths", (chord(48, 55), chord(50, 57)), -1.0),
        ("parallel_fifths", (chord(50, 57),), 0.0),  # the first frame has none before it
        ("parallel_octaves", (chord(48, 60), chord(50, 62)), -1.0),
        ("hidden_perfects", (chord(48, 64), chord(50, 74)), -1.0),
        ("voice_crossing", (chord(48, 55, 60, 67), chord(48, 62, 64, 67)), -1.0),
        ("spacing", (chord(48, 55, 64, 79),), -1.0),
        ("voice_range", (chord(36, 55, 64, 84),), -2.0),
        ("four_voices", (chord(48, 55, 64),), -1.0),  # frame 0 is on a beat
        ("four_voices", (chord(48, 55, 64, 72), chord(48, 55, 64)), 0.0),  # frame 1 is not
        ("large_leap", (chord(48, 60), chord(48, 74)), -1.0),
        ("doubled_leading_tone", (chord(47, 59, 62, 67),), -1.0),
        ("chord_in_key", (chord(48, 54, 64, 72),), -1.0),
        ("notes_in_key", (chord(48, 54, 63),), -2.0),
        ("cadence", (chord(48, 55, 64, 72),), 0.0),  # not the last beat
    ],
)
def test_chorale_rules(name, chords, expected):
    assert BUILTIN_RULES[name](context(*chords)) == expected


def test_cadence_rule_pays_over_the_last_beat():
    """A final tonic triad struck on the last beat (frame 12 of 16) and held earns the cadence
    whole, a quarter on each of the beat's frames; struck on its last frame, a quarter."""
    dominant, tonic = chord(43, 55, 62, 71), chord(48, 55, 64, 72)
    rule = BUILTIN_RULES["cadence"]
    held = (dominant,) * 12 + (tonic,) * 4
    paid = [rule(ChoraleContext(held[:t], held[t], 16, C_MAJOR)) for t in range(16)]
    assert paid == [0.0] * 12 + [0.25] * 4
    late = (dominant,) * 15 + (tonic,)
    assert sum(rule(ChoraleContext(late[:t], late[t], 16, C_MAJOR)) for t in range(16)) == 0.25


@pytest.mark.parametrize(
    ("last", "key", "expected"),
    [
        (chord(48, 55, 64, 72), C_MAJOR, 1.0),  # the cadence's ending: all three parts
        (chord(48, 55, 64, 67), C_MAJOR, 2 / 3),  # the fifth in the soprano
        (chord(43, 55, 64, 72), C_MAJOR, 2 / 3),  # the fifth in the bass
        (chord(48, 53, 65, 72), C_MAJOR, 2 / 3),  # C-F: not the tonic triad
        (chord(45, 57, 64, 72), C_MAJOR, 1 / 3),  # A minor's triad: only the C on top
        (chord(45, 57, 61, 69), A_MINOR, 1.0),  # a Picardy third counts
        (chord(), C_MAJOR, 0.0),  # a silent ending
    ],
)
def test_cadence_parts_give_a_third_for_each_part_of_the_ending(last, key, expected):
    rule = BUILTIN_RULES["cadence_parts"]
    ending = ChoraleContext((chord(43, 55, 62, 71),) * 15, last, 16, key)
    assert rule.ending(ending) == pytest.approx(expected)
    assert rule(ending) == pytest.approx(expected / 4)  # a quarter on each frame of the beat
    assert BUILTIN_RULES["cadence"].ending(ending) == float(expected == 1.0)
    assert rule(ChoraleContext((), last, 16, key)) == 0.0  # not the last beat


def test_soprano_rules_are_the_melody_rules_on_the_top_voice():
    chords = (chord(48, 60), chord(48, 67), chord(48, 65))  # soprano leaps C4 -> G4, back down
    soprano = soprano_tokens(chords)
    melody_context = RuleContext(soprano[:-1], soprano[-1], 16, C_MAJOR)
    for name in ("leap_resolution", "preferred_intervals", "key"):
        chorale_value = BUILTIN_RULES[f"soprano_{name}"](context(*chords))
        assert chorale_value == BUILTIN_RULES[name](melody_context)


def test_chorale_preset_and_contexts():
    weighted = resolve_rules("chorale", ChoraleContext)
    assert [(r.name, w) for r, w in weighted] == list(PRESETS["chorale"].items())
    assert all(r.context is ChoraleContext for r, _ in weighted)
    assert all(r.context is RuleContext for r, _ in resolve_rules("jaques2017", RuleContext))


def test_a_plugin_chorale_rule_rewards_in_the_env():
    """A rule of the plug-in surface judging chorales: +1 per struck note on a beat."""
    onsets = FunctionRule(
        "onsets_on_beats",
        lambda ctx: float(sum(ctx.sonority.struck)) if ctx.on_beat else 0.0,
        context=ChoraleContext,
    )
    env = gym.make("ChoraleComposition-v0", prior=None, rules={onsets: 1.0})
    env.reset(seed=0)
    for action in (12, 19, 28):
        assert env.step(action)[1] == 0.0  # judged only when the time step ends
    _, reward, *_ = env.step(96)
    assert reward == 3 / 0.5


def test_parallel_fifths_in_the_env_cost_their_weight():
    env = gym.make("ChoraleComposition-v0", prior=None, rules={"parallel_fifths": 3.0})
    env.reset(seed=0)
    rewards = [env.step(action)[1] for action in (12, 19, 96, 14, 21, 96)]  # C3 G3 | D3 A3
    assert rewards == [0.0, 0.0, 0.0, 0.0, 0.0, -3.0 / 0.5]


# ------------------------------------------------------------------------------ statistics
def test_statistics_of_a_hand_made_piece():
    song = piece(
        chord(48, 55, 64, 72),  # beat: C major, in key
        chord(50, 57, 65, 74),  # parallel fifths and octaves; F in a D minor chord: in key
        chord(50, 57, 65, 74, held=(50, 57, 65, 74)),
        chord(48, 55, 64),  # three voices, spacing fine
        chord(48, 54, 64, 72),  # beat: C F# E C, not in key, F# not in key
        chord(48, 55, 64, 72),  # the last frame: a cadence
    )
    statistics = evaluate_chorales([song], C_MAJOR)
    assert statistics["parallel_fifths"] == pytest.approx(100 * 1 / 5)
    assert statistics["parallel_octaves"] == pytest.approx(100 * 1 / 5)
    assert statistics["four_voices"] == pytest.approx(100 * 5 / 6)
    assert statistics["notes_not_in_key"] == pytest.approx(100 * 1 / 23)
    assert statistics["beats_in_key"] == pytest.approx(100 * 1 / 2)  # frames 0 and 4
    assert statistics["authentic_cadence"] == 100.0
    assert statistics["mean_voices"] == pytest.approx(23 / 6)
    assert statistics["struck_frames"] == pytest.approx(100 * 5 / 6)  # frame 2 only holds
    assert statistics["distinct_pieces"] == 100.0
    counts = np.bincount([p % 12 for f in sonorities_of(song) for p in f], minlength=12)
    p = counts[counts > 0] / counts.sum()
    assert statistics["pitch_class_entropy"] == pytest.approx(float(-(p * np.log2(p)).sum()))


def sonorities_of(note_state: NoteState) -> list[tuple[int, ...]]:
    return [tuple(np.flatnonzero(f[:, 0]) + note_state.lowest_pitch) for f in note_state.matrix]


def test_contributions_sum_to_the_statistics_of_the_set():
    one = piece(chord(48, 55, 64, 72), chord(50, 57, 65, 74))
    two = piece(chord(48, 55, 64), chord(47, 55, 62, 67), chord(48, 55, 64, 72))
    rows = chorale_contributions([one, two], C_MAJOR)
    both = evaluate_chorales([one, two], C_MAJOR)
    for name, value in both.items():
        if name in rows:
            summed = rows[name].sum(0)
            scale = 1.0 if name in ("pitch_class_entropy", "mean_voices") else 100.0
            assert value == pytest.approx(scale * summed[0] / summed[1])
    assert distinct_pieces([one, one, two]) == pytest.approx(200 / 3)


def test_find_key():
    c_major = piece(*(chord(p) for p in (60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60, 60)))
    a_minor = piece(*(chord(p) for p in (57, 59, 60, 62, 64, 65, 68, 69, 64, 68, 57, 57)))
    assert find_key(c_major) == C_MAJOR
    assert find_key(a_minor) == A_MINOR
    assert find_key(piece(chord(), chord())) == C_MAJOR  # silence


def test_the_envs_soprano_rules_are_those_of_its_chorale_recomputed():
    """The env keeps the soprano line as it goes; the rules recomputed from the finished
    chorale's frames give the same parts."""
    from musicgym.music.harmony import sonorities

    rules = {"soprano_leap_resolution": 1.0, "soprano_preferred_intervals": 1.0}
    env = gym.make("ChoraleComposition-v0", prior=None, rules=rules, bars=1)
    _, info = env.reset(seed=0)
    rng, parts, terminated = np.random.default_rng(3), [], False
    while not terminated:
        strikes = np.flatnonzero(info["action_mask"][:48])
        action = 96 if rng.random() < 0.4 or not strikes.size else int(rng.choice(strikes))
        *_, terminated, _, info = env.step(action)
        if action == 96:
            parts.append(info["rewards"])
    chords = sonorities(env.unwrapped.note_state())
    for t, recorded in enumerate(parts):
        context = ChoraleContext(tuple(chords[:t]), chords[t], 16, C_MAJOR)
        for name, weight in rules.items():
            assert recorded[name] == pytest.approx(weight * BUILTIN_RULES[name](context) / 0.5)

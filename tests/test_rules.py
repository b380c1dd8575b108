"""Every built-in rule on hand-made melodies against hand-computed values, rule resolution, and a
rule installed through a real entry point."""

from __future__ import annotations

import sys
import textwrap

import gymnasium as gym
import pytest

import musicgym  # noqa: F401  (registers MusicComposition-v0)
from musicgym.errors import RuleError
from musicgym.music.keys import Key
from musicgym.rules import (
    BUILTIN_RULES,
    PRESETS,
    FunctionRule,
    RewardRule,
    RuleContext,
    available_rules,
    get_rule,
    parse_rules,
    resolve_rules,
)

C = Key.parse("C major")
M = [2, 4, 6, 7, 1, 1, 1, 1]  # a motif of 4 distinct pitches
P = [2, 4, 6, 1]  # half a motif


def context(composition, action, length=32, key="C major"):
    return RuleContext(tuple(composition), action, length, Key.parse(key))


@pytest.mark.parametrize(
    ("composition", "action", "key", "expected"),
    [
        ([], 14, "C major", 0.0),
        ([], 15, "C major", -1.0),  # C#4
        ([], 0, "C major", 0.0),
        ([], 1, "C major", 0.0),
        ([], 20, "C major", -1.0),  # F#4
        ([], 20, "G major", 0.0),
        ([], 19, "G major", -1.0),  # F4
        ([], 17, "C minor", 0.0),  # Eb4
    ],
)
def test_key(composition, action, key, expected):
    assert BUILTIN_RULES["key"](context(composition, action, key=key)) == expected


@pytest.mark.parametrize(
    ("step", "action", "length", "key", "expected"),
    [
        (0, 14, 32, "C major", 1.0),
        (0, 2, 32, "C major", 0.0),  # C3: not the tonic token
        (0, 26, 32, "C major", 0.0),  # C5
        (5, 14, 32, "C major", 0.0),
        (28, 14, 32, "C major", 1.0),  # first step of the last bar
        (29, 1, 32, "C major", 1.0),
        (29, 0, 32, "C major", 0.0),
        (30, 0, 32, "C major", 1.0),
        (31, 1, 32, "C major", 1.0),
        (31, 14, 32, "C major", 0.0),
        (12, 14, 16, "C major", 1.0),
        (0, 21, 32, "G major", 1.0),  # G4 = MIDI 67
        (0, 16, 32, "D major", 1.0),  # D4 = MIDI 62
        (0, 11, 32, "A minor", 0.0),  # A3 is below the tonic token A4
        (0, 23, 32, "A minor", 1.0),
    ],
)
def test_tonic(step, action, length, key, expected):
    composition = [1] * step
    assert BUILTIN_RULES["tonic"](context(composition, action, length, key)) == expected


@pytest.mark.parametrize(
    ("composition", "action", "expected"),
    [
        ([14] * 4, 14, 0.0),
        ([14] * 5, 14, -1.0),
        ([14, 14, 14, 14, 14, 16], 14, 0.0),  # the scan stops at another pitch
        ([14, 1, 14, 1, 14, 14, 14], 14, 0.0),  # 5 with holds: not over 6
        ([14, 1, 14, 14, 14, 14, 14, 14], 14, -1.0),  # 7 with holds
        ([14, 0, 14, 14, 14, 14, 14, 14], 14, -1.0),  # 7 with rests
        ([5, 0], 0, 0.0),
        ([0, 0], 0, -1.0),  # NOTE_OFF repeated more than once
        ([1] * 4, 1, 0.0),
        ([1] * 5, 1, -1.0),
        ([], 14, 0.0),
    ],
)
def test_excessive_repetition(composition, action, expected):
    assert BUILTIN_RULES["excessive_repetition"](context(composition, action)) == expected


@pytest.mark.parametrize(
    ("composition", "action", "expected"),
    [
        ([], 14, 0.0),  # one token: NaN, skipped
        ([14], 14, 0.0),  # no variance: NaN, skipped
        ([2], 4, -0.5),  # rho_1 = -0.5, no pairs at lags 2 and 3
        ([2, 4, 2], 4, -1.5),  # -0.75, 0.5, -0.25
        ([2, 2, 4, 4, 2, 2, 4], 4, -0.75),  # 0.125 and -0.125 are under 0.15
    ],
)
def test_autocorrelation(composition, action, expected):
    assert BUILTIN_RULES["autocorrelation"](context(composition, action)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("composition", "action", "expected"),
    [
        ([2, 4, 6, 1, 1, 1, 1], 1, 3.0),
        ([2, 4, 6, 7, 9, 1, 1], 11, 3.9),  # 6 distinct: 3 + 0.3 * 3
        ([2, 4, 1, 1, 1, 1, 1], 1, 0.0),  # 2 distinct
        ([2, 4, 6, 1, 1, 1], 1, 0.0),  # only 7 tokens
        ([14, 2, 4, 6, 1, 1, 1, 1], 0, 3.0),  # 14 is outside the last 8
        ([14, 2, 14, 2, 1, 1, 1, 1], 0, 0.0),  # 2 distinct in the last 8
    ],
)
def test_motif(composition, action, expected):
    assert BUILTIN_RULES["motif"](context(composition, action)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("melody", "expected"),
    [
        (M + M, 5.0),  # 4 distinct: 4 + 1
        ([*M, 0, *M], 5.0),
        (P * 3, 0.0),  # the earlier occurrence overlaps the last 8 tokens
        (P * 4, 4.0),
        ([2, 4, 1, 1, 1, 1, 1, 1] * 2, 0.0),  # repeated but not a motif
        ([*M, 3, 4, 6, 7, 1, 1, 1, 1], 0.0),
    ],
)
def test_repeated_motif(melody, expected):
    ctx = context(melody[:-1], melody[-1])
    assert BUILTIN_RULES["repeated_motif"](ctx) == expected


@pytest.mark.parametrize(
    ("composition", "action", "key", "expected"),
    [
        ([], 14, "C major", 0.0),
        ([0, 1], 14, "C major", 0.0),
        ([14], 0, "C major", 0.15),
        ([21], 0, "C major", 0.15),  # G4
        ([16], 0, "C major", 0.05),
        ([14], 1, "C major", 0.3),
        ([18], 1, "C major", 0.075),  # E is not "C or G"
        ([14, 1, 1], 21, "C major", 0.1),  # a fifth up from C, holds skipped
        ([21], 28, "C major", 0.1),  # G -> D
        ([21], 14, "C major", 0.1),  # G -> C, down
        ([16], 23, "C major", 0.02),  # D -> A
        ([14], 18, "C major", 0.15),  # C -> E
        ([18], 22, "C major", 0.15),  # E -> G#
        ([18], 14, "C major", 0.15),  # E -> C, down
        ([16], 20, "C major", 0.09),
        ([21], 25, "C major", 0.09),  # G is not "C or E"
        ([14], 16, "C major", 0.08),
        ([14], 19, "C major", 0.07),
        ([14], 23, "C major", 0.05),
        ([14], 25, "C major", -0.3),
        ([14], 27, "C major", -1.0),
        ([14], 26, "C major", 0.0),  # octave
        ([14], 14, "C major", 0.0),
        ([14], 15, "C major", 0.0),
        ([14], 17, "C major", 0.0),
        ([14], 20, "C major", 0.0),
        ([21], 28, "G major", 0.1),  # from the tonic G
        ([14], 21, "G major", 0.02),  # C is neither G nor D in G major
        ([21], 25, "G major", 0.15),  # G -> B, from the tonic
        ([21], 0, "G major", 0.15),
        ([28], 1, "G major", 0.3),  # D is the dominant of G
        ([14], 18, "A minor", 0.15),  # C is the mediant of A minor
        ([11], 18, "A minor", 0.1),  # A -> E
    ],
)
def test_preferred_intervals(composition, action, key, expected):
    rule = BUILTIN_RULES["preferred_intervals"]
    assert rule(context(composition, action, key=key)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("composition", "action", "expected"),
    [
        ([], 14, 0.0),
        ([14], 21, 0.0),  # a leap becomes pending
        ([14, 21], 28, -1.0),  # the same way again: doubled
        ([14, 21], 19, 0.0),
        ([14, 21], 14, 0.0),  # opposite leap too soon: cleared, not resolved
        ([14, 21, 19, 17], 14, 1.0),  # back to the note leapt from
        ([14, 21, 19, 17], 13, 1.0),  # beyond it
        ([14, 21] + [1] * 7, 14, 1.0),  # opposite leap 7 steps later
        ([14, 21] + [1] * 6, 14, 0.0),  # 6 steps later
        ([14, 21, 28], 21, 0.0),  # the doubled leap kept the pending one; a leap down clears
        ([14, 21, 28, 21], 14, 0.0),  # nothing pending any more
        ([14, 21, 28, 24, 20, 17], 14, 1.0),  # steps back to 14 after the doubled leap
        ([14, 21, 28, 26], 14, 0.0),  # a 12-semitone leap down, too soon
        ([14, 0, 0], 21, 0.0),
        ([14, 0, 0, 21, 1], 14, 0.0),
        ([28, 21], 23, 0.0),
        ([28, 21, 23], 28, 1.0),  # descending leap resolved upwards
        ([1, 1], 14, 0.0),
    ],
)
def test_leap_resolution(composition, action, expected):
    assert BUILTIN_RULES["leap_resolution"](context(composition, action)) == expected


@pytest.mark.parametrize(
    ("composition", "action", "length", "expected"),
    [
        ([14, 16, 18, 16, 14, 1, 1], 0, 8, 1.0),  # max 18 once, min 14 twice
        ([14, 16, 18, 16, 12, 1, 1], 0, 8, 2.0),
        ([14, 16, 18, 16, 12, 1, 1], 0, 32, 0.0),  # not the last step
        ([14, 16, 18, 18, 12, 1, 1], 0, 8, 1.0),
        ([0, 1, 1, 1, 1, 1, 1], 1, 8, 0.0),  # no pitch
        ([1] * 7, 14, 8, 2.0),
    ],
)
def test_unique_extremes(composition, action, length, expected):
    assert BUILTIN_RULES["unique_extremes"](context(composition, action, length)) == expected


def test_preset_is_every_builtin_rule_with_the_spec_weights():
    assert PRESETS["jaques2017"] == {
        "key": 1.0,
        "tonic": 3.0,
        "excessive_repetition": 100.0,
        "autocorrelation": 3.0,
        "motif": 1.0,
        "repeated_motif": 1.0,
        "preferred_intervals": 5.0,
        "leap_resolution": 5.0,
        "unique_extremes": 3.0,
    }
    resolved = resolve_rules("jaques2017")
    assert [(r.name, w) for r, w in resolved] == list(PRESETS["jaques2017"].items())


def test_resolve_rules_forms():
    tonic = get_rule("tonic")
    assert resolve_rules(None) == []
    assert [(r.name, w) for r, w in resolve_rules(["key", "tonic"])] == [
        ("key", 1.0),
        ("tonic", 3.0),
    ]
    assert [(r.name, w) for r, w in resolve_rules({"tonic": 2})] == [("tonic", 2.0)]
    assert resolve_rules([tonic])[0].rule is tonic
    assert resolve_rules({tonic: 0.5})[0].weight == 0.5
    custom = FunctionRule("always_one", lambda ctx: 1, default_weight=2.0)
    assert [(r.name, w) for r, w in resolve_rules(["key", custom])] == [
        ("key", 1.0),
        ("always_one", 2.0),
    ]
    assert len(resolve_rules(["jaques2017", custom])) == len(PRESETS["jaques2017"]) + 1


def test_the_text_form_names_presets_rules_and_weights():
    assert parse_rules("jaques2017") == "jaques2017"
    assert parse_rules("key, tonic") == ["key", "tonic"]
    assert parse_rules("key,tonic=3.5") == {"key": 1.0, "tonic": 3.5}
    overridden = parse_rules("chorale,cadence_parts,voice_crossing=3")
    assert overridden == {**PRESETS["chorale"], "cadence_parts": 6.0, "voice_crossing": 3.0}
    assert list(overridden)[:4] == list(PRESETS["chorale"])[:4]  # the preset's order kept
    with pytest.raises(RuleError, match="weight 'x' of 'tonic' is not a number"):
        parse_rules("key,tonic=x")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("no_such_rule", "unknown rule 'no_such_rule'; available rules: autocorrelation"),
        (["key", "nope"], "jaques2017"),
        (["key", "key"], "given more than once"),
        ({"key": "heavy"}, "not a number"),
        ([3], "not a RewardRule"),
        (3, "expected a preset name"),
    ],
)
def test_resolve_rules_errors(rules, message):
    with pytest.raises(RuleError, match=message):
        resolve_rules(rules)


def test_unknown_rule_in_make_names_the_argument():
    with pytest.raises(RuleError, match=r"rules: unknown rule 'tonik'.*tonic"):
        gym.make("MusicComposition-v0", prior=None, rules=["tonik"])


def test_rule_from_an_entry_point(tmp_path, monkeypatch):
    """A throwaway distribution (source, pyproject.toml and its installed dist-info) on sys.path
    provides a rule through the ``musicgym.rules`` group; it is used by name in gym.make."""
    package = tmp_path / "syncopation_rule"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from musicgym.rules import RewardRule

            class Offbeat(RewardRule):
                name = "offbeat"
                default_weight = 2.0

                def __call__(self, context):
                    return 1.0 if context.step % 2 == 1 and context.action > 1 else 0.0
            """
        )
    )
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "syncopation-rule"
            version = "0.1"
            [project.entry-points."musicgym.rules"]
            offbeat = "syncopation_rule:Offbeat"
            """
        )
    )
    dist_info = tmp_path / "syncopation_rule-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: syncopation-rule\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[musicgym.rules]\noffbeat = syncopation_rule:Offbeat\n"
    )
    assert "offbeat" not in available_rules()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "syncopation_rule", raising=False)
    assert "offbeat" in available_rules()

    env = gym.make("MusicComposition-v0", prior=None, rules=["offbeat"], c=0.5)
    env.reset(seed=0)
    _, reward, *_, info = env.step(14)
    assert reward == 0.0
    _, reward, *_, info = env.step(16)
    assert info["rewards"] == {"prior": 0.0, "offbeat": 4.0}  # 2.0 * 1 / 0.5
    assert reward == 4.0


def test_rule_interface_is_abstract():
    with pytest.raises(TypeError):
        RewardRule()  # type: ignore[abstract]

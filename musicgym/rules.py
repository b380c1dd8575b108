"""Reward-rule plugins: the music-theory part ``r_MT(s, a)`` of the reward.

A rule is a :class:`RewardRule`: a ``name``, a ``default_weight``, and a call on a
:class:`RuleContext` (the composition so far, the action, the step, the length, the key) that
returns a float. The environment adds ``weight * rule(context) / c`` for every rule. Rules come
from three places, looked up in this order by :func:`get_rule`:

1. the built-in rules of ``spec/melody-rules.md``;
2. rules registered at run time with :func:`register_rule`;
3. third-party rules in the entry-point group ``musicgym.rules``, e.g. in a ``pyproject.toml``::

       [project.entry-points."musicgym.rules"]
       syncopation = "my_package.rules:Syncopation"   # a RewardRule subclass or instance

The preset ``"jaques2017"`` lists the spec's rules with the spec's values. The weights are the
spec's multipliers (``tonic`` returns 1 and weighs 3, ``excessive_repetition`` returns -1 and weighs
100, ...), so ``weight * value`` is the spec's reward.

Every rule is a function of the context alone: rules with memory (leap resolution) recompute it
from the composition, so the environment and an agent replaying a melody always agree. Rules work
in any key: the spec's C-major sets are transposed (the tonic token is the tonic at or above
MIDI 60; "C or G" is the tonic or the dominant pitch class, "C or E" the tonic or the mediant).

Where we differ from the original RL Tuner code (Jaques et al. 2017):

- The original applies the "in-key fifth" and "in-key third" interval rewards only when no key is
  given, i.e. in C major; ours follow the key.
- The original keeps the leap state (direction, note leapt from, steps since the leap) in mutable
  environment attributes; ours recomputes it from the composition with the same result.
- The original's repetition test has a branch (a count over 8) that can never be reached; ours
  leaves it out, with the same result.
- ``c`` defaults to 0.5 as in both papers, not to the original code's flag default.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import ClassVar, NamedTuple

from musicgym.errors import RuleError
from musicgym.metrics import (
    LEAP_DOUBLED,
    LEAP_RESOLVED,
    autocorrelations,
    has_unique_max,
    has_unique_min,
    in_key_tokens,
    is_excessive_repetition,
    last_pitch_token,
    leap_outcome,
    motif_notes,
    repeats_motif,
    tonic_token,
)
from musicgym.music.keys import Key
from musicgym.music.tokens import NO_EVENT, NOTE_OFF, token_to_pitch

ENTRY_POINT_GROUP = "musicgym.rules"


@dataclass(frozen=True)
class RuleContext:
    """What a rule sees: the melody so far and the action about to be played.

    Args:
        composition: the tokens played before ``action`` (the primer excluded).
        action: the token played now.
        length: the number of tokens in a finished melody (``L``).
        key: the key the melody is in.
    """

    composition: tuple[int, ...]
    action: int
    length: int
    key: Key

    @property
    def step(self) -> int:
        """The 0-based step ``t`` of ``action``: ``len(composition)``."""
        return len(self.composition)

    @property
    def melody(self) -> tuple[int, ...]:
        """``composition + (action,)``."""
        return (*self.composition, self.action)


class RewardRule(ABC):
    """A named music-theory reward. Subclasses set ``name`` and ``default_weight``."""

    name: ClassVar[str]
    default_weight: ClassVar[float] = 1.0

    @abstractmethod
    def __call__(self, context: RuleContext) -> float:
        """The unweighted reward of ``context.action`` after ``context.composition``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, default_weight={self.default_weight})"


class FunctionRule(RewardRule):
    """A rule made of a plain function ``context -> float``."""

    def __init__(
        self, name: str, function: Callable[[RuleContext], float], default_weight: float = 1.0
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.default_weight = default_weight  # type: ignore[misc]
        self.function = function

    def __call__(self, context: RuleContext) -> float:
        return float(self.function(context))


class WeightedRule(NamedTuple):
    """A rule and the weight the environment gives it."""

    rule: RewardRule
    weight: float


# ----------------------------------------------------------------------------- built-in rules


class InKey(RewardRule):
    """-1 when the action is not in key (NOTE_OFF and NO_EVENT are in key)."""

    name = "key"
    default_weight = 1.0

    def __call__(self, context: RuleContext) -> float:
        return 0.0 if context.action in in_key_tokens(context.key) else -1.0


class Tonic(RewardRule):
    """1 for the tonic token on the first step and on the first step of the last bar
    (``t == L - 4``), for NO_EVENT at ``t == L - 3``, and for NO_EVENT or NOTE_OFF after it."""

    name = "tonic"
    default_weight = 3.0

    def __call__(self, context: RuleContext) -> float:
        t, last_bar, action = context.step, context.length - 4, context.action
        if t in (0, last_bar):
            return float(action == tonic_token(context.key))
        if t == last_bar + 1:
            return float(action == NO_EVENT)
        if t > last_bar + 1:
            return float(action in (NO_EVENT, NOTE_OFF))
        return 0.0


class ExcessiveRepetition(RewardRule):
    """-1 when the action is an excessive repetition
    (:func:`~musicgym.metrics.is_excessive_repetition`)."""

    name = "excessive_repetition"
    default_weight = 100.0

    def __call__(self, context: RuleContext) -> float:
        return -1.0 if is_excessive_repetition(context.composition, context.action) else 0.0


class Autocorrelation(RewardRule):
    """Minus the sum of ``|rho_k|`` over lags 1, 2, 3 of the melody so far (action included),
    counting only lags where ``|rho_k| > 0.15`` (NaN lags, from a melody that does not vary, are
    skipped)."""

    name = "autocorrelation"
    default_weight = 3.0
    threshold: ClassVar[float] = 0.15

    def __call__(self, context: RuleContext) -> float:
        magnitudes = map(abs, autocorrelations(context.melody))
        return -sum(m for m in magnitudes if m > self.threshold)  # NaN > x is False


class Motif(RewardRule):
    """``3 + max(0.3 * (u - 3), 0)`` when the last 8 tokens (action included) hold ``u >= 3``
    distinct pitch tokens."""

    name = "motif"
    default_weight = 1.0

    def __call__(self, context: RuleContext) -> float:
        unique = motif_notes(context.melody)
        return 3.0 + max(0.3 * (unique - 3), 0.0) if unique else 0.0


class RepeatedMotif(RewardRule):
    """``4 + max(u - 3, 0)`` when that motif also occurs, token for token, before it."""

    name = "repeated_motif"
    default_weight = 1.0

    def __call__(self, context: RuleContext) -> float:
        melody = context.melody
        if not repeats_motif(melody):
            return 0.0
        return 4.0 + max(motif_notes(melody) - 3, 0)


class PreferredIntervals(RewardRule):
    """The spec's interval preferences from the last pitch token ``p`` (0 when there is none).

    NOTE_OFF: 0.15 after the tonic or dominant, else 0.05. NO_EVENT: 0.3 after the tonic or
    dominant, else 0.075. A pitch, ``i = |a - p|``: a fifth from the tonic or dominant 0.1; a major
    third from the tonic or mediant 0.15; otherwise i = 4: 0.09, 2: 0.08, 5: 0.07, 9: 0.05,
    7: 0.02, 11: -0.3, i > 12: -1.0, anything else 0.
    """

    name = "preferred_intervals"
    default_weight = 5.0
    by_interval: ClassVar[dict[int, float]] = {
        4: 0.09,
        2: 0.08,
        5: 0.07,
        9: 0.05,
        7: 0.02,
        11: -0.3,
    }

    def __call__(self, context: RuleContext) -> float:
        previous = last_pitch_token(context.composition)
        if previous is None:
            return 0.0
        key, action = context.key, context.action
        pitch_class = token_to_pitch(previous) % 12
        on_tonic_or_dominant = pitch_class in (key.tonic, key.dominant)
        if action == NOTE_OFF:
            return 0.15 if on_tonic_or_dominant else 0.05
        if action == NO_EVENT:
            return 0.3 if on_tonic_or_dominant else 0.075
        interval = abs(action - previous)
        if interval == 7 and on_tonic_or_dominant:
            return 0.1
        if interval == 4 and pitch_class in (key.tonic, key.mediant):
            return 0.15
        if interval > 12:
            return -1.0
        return self.by_interval.get(interval, 0.0)


class LeapResolution(RewardRule):
    """1 when the action resolves a pending leap, -1 when it doubles it
    (:class:`~musicgym.metrics.LeapTracker` over the composition, then the action)."""

    name = "leap_resolution"
    default_weight = 5.0

    def __call__(self, context: RuleContext) -> float:
        outcome = leap_outcome(context.composition, context.action)
        return {LEAP_RESOLVED: 1.0, LEAP_DOUBLED: -1.0}.get(outcome, 0.0)


class UniqueExtremes(RewardRule):
    """On the last step only: 1 if the highest token of the melody occurs once, plus 1 if the
    lowest pitch token occurs once."""

    name = "unique_extremes"
    default_weight = 3.0

    def __call__(self, context: RuleContext) -> float:
        if context.step != context.length - 1:
            return 0.0
        melody = context.melody
        return float(has_unique_max(melody) + has_unique_min(melody))


BUILTIN_RULES: dict[str, RewardRule] = {
    rule.name: rule
    for rule in (
        InKey(),
        Tonic(),
        ExcessiveRepetition(),
        Autocorrelation(),
        Motif(),
        RepeatedMotif(),
        PreferredIntervals(),
        LeapResolution(),
        UniqueExtremes(),
    )
}
"""The rules of ``spec/melody-rules.md`` by name."""

PRESETS: dict[str, dict[str, float]] = {
    # Jaques et al. (2017), spec/melody-rules.md: written out, so that a new built-in rule never
    # changes the published preset.
    "jaques2017": {
        "key": 1.0,
        "tonic": 3.0,
        "excessive_repetition": 100.0,
        "autocorrelation": 3.0,
        "motif": 1.0,
        "repeated_motif": 1.0,
        "preferred_intervals": 5.0,
        "leap_resolution": 5.0,
        "unique_extremes": 3.0,
    },
}
"""Named rule sets: preset name -> {rule name: weight}."""

_registered: dict[str, RewardRule] = {}


# ----------------------------------------------------------------------------- registry


def register_rule(rule: RewardRule, *, overwrite: bool = False) -> RewardRule:
    """Make ``rule`` available by its name; returns it (usable as a decorator on instances)."""
    _check_rule(rule, "register_rule")
    if not overwrite and (rule.name in BUILTIN_RULES or rule.name in _registered):
        raise RuleError(f"rules: a rule named {rule.name!r} is already registered")
    _registered[rule.name] = rule
    return rule


def _check_rule(rule: object, where: str) -> RewardRule:
    if isinstance(rule, type) and issubclass(rule, RewardRule):
        rule = rule()
    if not isinstance(rule, RewardRule):
        raise RuleError(f"{where}: {rule!r} is not a RewardRule (subclass or instance)")
    if not isinstance(getattr(rule, "name", None), str) or not rule.name:
        raise RuleError(f"{where}: rule {rule!r} has no name")
    return rule


def _entry_point_rules() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_rules() -> list[str]:
    """Names of every rule :func:`get_rule` finds: built-in, registered, and installed plugins."""
    return sorted({*BUILTIN_RULES, *_registered, *_entry_point_rules()})


def get_rule(name: str) -> RewardRule:
    """The rule called ``name``; raises :class:`RuleError` listing the available ones."""
    if name in BUILTIN_RULES:
        return BUILTIN_RULES[name]
    if name in _registered:
        return _registered[name]
    entry_point = _entry_point_rules().get(name)
    if entry_point is None:
        raise RuleError(
            f"rules: unknown rule {name!r}; available rules: {', '.join(available_rules())}; "
            f"presets: {', '.join(PRESETS)}"
        )
    try:
        loaded = entry_point.load()  # type: ignore[attr-defined]
    except Exception as error:  # a broken plugin must name itself, whatever it raised
        raise RuleError(
            f"rules: the plugin rule {name!r} ({entry_point.value}) failed to load: {error}"  # type: ignore[attr-defined]
        ) from error
    rule = _check_rule(loaded, f"rules: plugin {name!r}")
    if rule.name != name:
        raise RuleError(
            f"rules: the plugin entry point {name!r} loads a rule named {rule.name!r}; "
            "the names must agree"
        )
    return rule


RulesArgument = str | Iterable[str | RewardRule] | Mapping[str | RewardRule, float] | None


def resolve_rules(rules: RulesArgument) -> list[WeightedRule]:
    """The weighted rules a ``rules=`` argument names.

    Accepts a preset name or a rule name; a list of rule names, preset names and rule objects (at
    their default weights); a dict from rule name or rule object to weight; or ``None`` for no rule.
    A rule may appear only once.
    """
    if rules is None:
        return []
    if isinstance(rules, (str, RewardRule)) or (
        isinstance(rules, type) and issubclass(rules, RewardRule)
    ):
        rules = [rules]  # type: ignore[list-item]
    weighted: list[WeightedRule] = []
    if isinstance(rules, Mapping):
        for item, weight in rules.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise RuleError(f"rules: the weight of {item!r} is {weight!r}, not a number")
            if not math.isfinite(weight):
                raise RuleError(f"rules: the weight of {item!r} is {weight!r}, not finite")
            weighted.append(WeightedRule(_as_rule(item), float(weight)))
    else:
        try:
            items = list(rules)
        except TypeError:
            raise RuleError(
                f"rules: expected a preset name, a list of rule names, a dict name -> weight "
                f"or rule objects; got {rules!r}"
            ) from None
        for item in items:
            if isinstance(item, str) and item in PRESETS:
                weighted += [WeightedRule(get_rule(n), w) for n, w in PRESETS[item].items()]
            else:
                rule = _as_rule(item)
                weighted.append(WeightedRule(rule, float(rule.default_weight)))
    names = [w.rule.name for w in weighted]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuleError(f"rules: rule(s) {', '.join(duplicates)} given more than once")
    return weighted


def _as_rule(item: object) -> RewardRule:
    if isinstance(item, str):
        return get_rule(item)
    return _check_rule(item, "rules")


def rule_rewards(
    weighted_rules: Iterable[WeightedRule], context: RuleContext, c: float = 1.0
) -> dict[str, float]:
    """``weight * rule(context) / c`` for every rule, by name."""
    return {rule.name: weight * float(rule(context)) / c for rule, weight in weighted_rules}


def parse_rules(text: str) -> RulesArgument:
    """A ``rules=`` argument from its text form (a command-line option, a config field): a preset
    name, or comma-separated rule names, each optionally ``=weight`` (``"key,tonic=3"``); a name
    without a weight keeps the rule's default weight."""
    if text in PRESETS:
        return text
    weights: dict[str, float] = {}
    plain: list[str] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition("=")
        if not weight:
            plain.append(name)
            continue
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            raise RuleError(f"rules: weight {weight!r} of {name!r} is not a number") from None
    if not weights:
        return plain
    return {**{name: get_rule(name).default_weight for name in plain}, **weights}

"""Reward-rule plugins: the music-theory part ``r_MT`` of the reward, for melodies and chorales.

A rule is a :class:`RewardRule`: a ``name``, a ``default_weight``, the ``context`` class it judges
and a call on that context that returns a float. The melody environment judges every step on a
:class:`RuleContext` (the composition so far, the action, the length, the key;
:mod:`musicgym.rules.melody`); the chorale environment judges every ended time step on a
:class:`ChoraleContext` (the frames so far and the one just ended; :mod:`musicgym.rules.chorale`).
An environment adds ``weight * rule(context) / c`` for every rule, and refuses a rule of the other
context. Rules come from three places, looked up in this order by :func:`get_rule`:

1. the built-in rules (:data:`BUILTIN_RULES`: ``docs/spec/melody-rules.md``,
   ``docs/spec/chorale-rules.md`` and the melody rules on a chorale's soprano line,
   ``soprano_<name>``);
2. rules registered at run time with :func:`register_rule`;
3. third-party rules in the entry-point group ``musicgym.rules``, e.g. in a ``pyproject.toml``::

       [project.entry-points."musicgym.rules"]
       syncopation = "my_package.rules:Syncopation"   # a RewardRule subclass or instance

   (a chorale rule sets ``context = ChoraleContext``).

:data:`PRESETS` names rule sets: ``"jaques2017"`` (the melody rules with Jaques et al.'s weights),
``"chorale"`` (the four-part-writing rules) and ``"chorale_character"`` (those and the rules that
ask for Bach's character: harmonic rhythm, chromaticism as a profile, the final V-I).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

from musicgym.errors import RuleError
from musicgym.rules.base import ChoraleContext, FunctionRule, RewardRule, RuleContext, WeightedRule
from musicgym.rules.chorale import CHORALE, CHORALE_CHARACTER, CHORALE_RULES, SopranoRule
from musicgym.rules.melody import JAQUES2017, MELODY_RULES

ENTRY_POINT_GROUP = "musicgym.rules"

BUILTIN_RULES: dict[str, RewardRule] = {**MELODY_RULES, **CHORALE_RULES}
"""The built-in rules by name: the melody rules, the chorale rules and the soprano rules."""

PRESETS: dict[str, dict[str, float]] = {
    "jaques2017": JAQUES2017,
    "chorale": CHORALE,
    "chorale_character": CHORALE_CHARACTER,
}
"""Named rule sets: preset name -> {rule name: weight}."""

_registered: dict[str, RewardRule] = {}


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


def resolve_rules(rules: RulesArgument, context: type | None = None) -> list[WeightedRule]:
    """The weighted rules a ``rules=`` argument names.

    Accepts a preset name or a rule name; a list of rule names, preset names and rule objects (at
    their default weights); a dict from rule name or rule object to weight; or ``None`` for no rule.
    A rule may appear only once. With ``context`` (:class:`RuleContext` or
    :class:`ChoraleContext`), every rule must judge that context.
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
    for rule, weight in weighted:  # given, a preset's or a rule's default_weight
        if not math.isfinite(weight):
            raise RuleError(f"rules: the weight of {rule.name!r} is {weight!r}, not finite")
    names = [w.rule.name for w in weighted]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuleError(f"rules: rule(s) {', '.join(duplicates)} given more than once")
    if context is not None:
        check_context(weighted, context)
    return weighted


CONTEXTS: dict[type, tuple[str, str]] = {
    RuleContext: ("melody steps (RuleContext)", "jaques2017"),
    ChoraleContext: ("chorales (ChoraleContext)", "chorale"),
}
"""Each context's description and its preset, for messages."""


def check_context(weighted_rules: Iterable[WeightedRule], context: type) -> None:
    """One line naming the rules that judge another context than ``context``."""
    foreign = [w.rule for w in weighted_rules if w.rule.context is not context]
    if not foreign:
        return
    what, preset = CONTEXTS.get(context, (context.__name__, ""))
    groups: dict[str, list[str]] = {}
    for rule in foreign:
        judged = CONTEXTS.get(rule.context, (rule.context.__name__,))[0]
        groups.setdefault(judged, []).append(repr(rule.name))
    others = "; ".join(f"{', '.join(names)} judge {judged}" for judged, names in groups.items())
    hint = f"; this environment's preset is {preset!r}" if preset else ""
    raise RuleError(f"rules: this environment judges {what}, but {others}{hint}")


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
    name, or comma-separated preset and rule names, each rule optionally ``=weight``
    (``"key,tonic=3"``); a name without a weight keeps the rule's default weight, a preset its
    weights, which a rule's ``=weight`` overrides (``"chorale_character,voice_crossing=3"``); the
    names without a weight are :func:`resolve_rules`'s, presets expanded and each rule once."""
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
    return {**{rule.name: weight for rule, weight in resolve_rules(plain)}, **weights}


def spelled_rules(text: str, context: type | None = None) -> str:
    """The text form of the rules ``text`` resolves to now, every rule with its weight
    (``"jaques2017"`` -> ``"key=...,tonic=..."``): what a run keeps, so that a preset changed
    later neither changes its rewards nor lets it resume with other ones."""
    resolved = resolve_rules(parse_rules(text), context)
    return ",".join(f"{rule.name}={_weight_text(weight)}" for rule, weight in resolved)


def _weight_text(weight: float) -> str:
    """A weight as text that reads back the same: ``4``, ``4.5``, ``0.1``."""
    weight = float(weight)
    return str(int(weight)) if weight.is_integer() else repr(weight)


__all__ = [
    "BUILTIN_RULES",
    "ENTRY_POINT_GROUP",
    "PRESETS",
    "ChoraleContext",
    "FunctionRule",
    "RewardRule",
    "RuleContext",
    "RulesArgument",
    "SopranoRule",
    "WeightedRule",
    "available_rules",
    "check_context",
    "get_rule",
    "parse_rules",
    "register_rule",
    "resolve_rules",
    "rule_rewards",
    "spelled_rules",
]

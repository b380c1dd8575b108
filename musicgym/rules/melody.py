"""The melody rules of ``docs/spec/melody-rules.md`` (Jaques et al. 2017's RL Tuner), on
:class:`~musicgym.rules.base.RuleContext`.

The preset ``"jaques2017"`` lists them with the spec's values. The weights are the spec's
multipliers (``tonic`` returns 1 and weighs 3, ``excessive_repetition`` returns -1 and weighs
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

from typing import ClassVar

from musicgym.music.melody import (
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
from musicgym.music.tokens import NO_EVENT, NOTE_OFF, token_to_pitch
from musicgym.rules.base import RewardRule, RuleContext


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
    (:func:`~musicgym.music.melody.is_excessive_repetition`)."""

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
    (:class:`~musicgym.music.melody.LeapTracker` over the composition, then the action)."""

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


MELODY_RULES: dict[str, RewardRule] = {
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
"""The rules of ``docs/spec/melody-rules.md`` by name."""

JAQUES2017: dict[str, float] = {  # written out: a new rule never changes the published preset
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
"""The preset ``"jaques2017"``: Jaques et al. (2017)'s rules and weights
(``docs/spec/melody-rules.md``)."""

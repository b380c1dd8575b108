"""What a reward rule is, and what it sees: the context of a melody step or of a chorale's time
step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from musicgym.music.harmony import Sonority, soprano_tokens
from musicgym.music.keys import Key


@dataclass(frozen=True)
class RuleContext:
    """What a melody rule sees: the melody so far and the action about to be played.

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


@dataclass(frozen=True)
class ChoraleContext:
    """What a chorale rule sees when a time step ends: the frames so far and the one just ended.

    Args:
        composition: the sonorities of the frames before this one (the primer excluded).
        sonority: the frame that has just ended (its notes, low to high).
        length: the number of frames in a finished chorale.
        key: the key the chorale is in.
        resolution: frames per beat (a quarter note); a frame at a multiple of it is on a beat.
        soprano: the soprano line's tokens, kept by the caller (optional).
    """

    composition: tuple[Sonority, ...]
    sonority: Sonority
    length: int
    key: Key
    resolution: int = 4
    soprano: tuple[int, ...] | None = None
    """The top voice of the composition and this frame as melody tokens, when the caller keeps
    it (:func:`musicgym.music.harmony.soprano_tokens` of them otherwise)."""

    @property
    def step(self) -> int:
        """The 0-based index of the frame just ended: ``len(composition)``."""
        return len(self.composition)

    @property
    def previous(self) -> Sonority | None:
        """The frame before this one (``None`` for the first)."""
        return self.composition[-1] if self.composition else None

    @property
    def on_beat(self) -> bool:
        return self.step % self.resolution == 0

    @property
    def is_last(self) -> bool:
        """Whether this is the chorale's last frame."""
        return self.step == self.length - 1

    @property
    def in_last_beat(self) -> bool:
        """Whether this frame is in the chorale's last beat (its last ``resolution`` frames)."""
        return self.step >= self.length - self.resolution

    def soprano_context(self) -> RuleContext:
        """The top voice as a melody step (:func:`musicgym.music.harmony.soprano_tokens`), for
        the melody rules that judge the soprano line."""
        tokens = self.soprano
        if tokens is None:
            tokens = soprano_tokens((*self.composition, self.sonority))
        return RuleContext(tokens[:-1], tokens[-1], self.length, self.key)


class RewardRule(ABC):
    """A named music-theory reward. Subclasses set ``name`` and ``default_weight``, and
    ``context``, the context class they judge: :class:`RuleContext` (a melody step, the default)
    or :class:`ChoraleContext` (a chorale's time step)."""

    name: ClassVar[str]
    default_weight: ClassVar[float] = 1.0
    context: ClassVar[type] = RuleContext

    @abstractmethod
    def __call__(self, context: Any) -> float:
        """The unweighted reward of the step ``context`` describes."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, default_weight={self.default_weight})"


class FunctionRule(RewardRule):
    """A rule made of a plain function ``context -> float`` (of a melody step unless ``context``
    says otherwise)."""

    def __init__(
        self,
        name: str,
        function: Callable[[Any], float],
        default_weight: float = 1.0,
        context: type = RuleContext,
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.default_weight = default_weight  # type: ignore[misc]
        self.context = context  # type: ignore[misc]
        self.function = function

    def __call__(self, context: Any) -> float:
        return float(self.function(context))


class WeightedRule(NamedTuple):
    """A rule and the weight the environment gives it."""

    rule: RewardRule
    weight: float

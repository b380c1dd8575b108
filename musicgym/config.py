"""The settings of ``MusicComposition-v0`` and their defaults, in one place.

:class:`EnvConfig` is what the environment's arguments default to (both envs read it), what the
agents record in their run folders, and what the benchmarks and the demo train on. Its fields
are text and numbers, so that a command line can set them and a run folder can store them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musicgym.checks import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, check_numbers
from musicgym.errors import EnvArgumentError
from musicgym.music.keys import Key
from musicgym.prior import DEFAULT_PRIOR
from musicgym.rules import parse_rules, resolve_rules

ENV_ID = "MusicComposition-v0"


@dataclass
class EnvConfig:
    """The environment an agent composes in (``MusicComposition-v0``)."""

    prior: str = DEFAULT_PRIOR
    """The prior: a shipped name or a checkpoint path. It rewards log p(a|s) and the RL Tuner's
    network starts from its weights."""
    prior_reward: bool = True
    """Whether the environment's reward includes the prior's log p(a|s); --no-prior-reward trains
    on the rules alone (the benchmarks' rules-only agent). rltuner-g always adds log p itself."""
    rules: str = "jaques2017"
    """Reward rules: a preset name, or rule names with optional weights, e.g. 'key,tonic=3'."""
    c: float = 0.5
    """Divisor of the rule rewards."""
    key: str = "C major"
    """Key of the rules and statistics."""
    length: int = 32
    """Tokens per melody (16th notes)."""
    primer: str = ""
    """What each melody starts from, fed to the prior and never scored: '' (silence),
    'random_note' (Magenta's: one random token) or a MIDI file (SB3 baselines only)."""
    seed: int = 1
    """Seed of the agent's and the environment's random numbers."""

    def __post_init__(self) -> None:
        check_numbers(
            self,
            {
                "length": POSITIVE_INT,
                "c": POSITIVE,
                "seed": {**NON_NEGATIVE_INT, "high": 2**32 - 1},
            },
        )
        try:
            Key.parse(self.key)
        except ValueError as error:
            raise EnvArgumentError(f"key: {error}") from None
        resolve_rules(parse_rules(self.rules))

    def env_kwargs(self, prior: Any = None, with_prior: bool = True) -> dict[str, Any]:
        """Keyword arguments of ``gym.make`` / ``gym.make_vec``: ``prior`` (a loaded prior) in
        place of the name, and no prior unless ``with_prior`` and :attr:`prior_reward`."""
        use_prior = with_prior and self.prior_reward
        return {
            "length": self.length,
            "key": self.key,
            "rules": parse_rules(self.rules),
            "c": self.c,
            "primer": self.primer or None,
            "prior": (self.prior if prior is None else prior) if use_prior else None,
        }


DEFAULTS = EnvConfig()
"""The defaults of every environment argument."""

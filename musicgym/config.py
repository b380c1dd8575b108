"""The settings of the environments and their defaults, in one place.

:class:`EnvConfig` is what the environments' arguments default to (the envs read :data:`DEFAULTS`
and :data:`CHORALE_DEFAULTS`), what the agents record in their run folders, and what the
benchmarks and the demo train on. Its fields are text and numbers, so that a command line can set
them and a run folder can store them. ``env`` picks the environment; the settings whose default
differs between the environments (the prior, the rules) default to ``""``, which
:data:`ENV_DEFAULTS` fills in for the chosen environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from musicgym.checks import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, check_numbers
from musicgym.errors import EnvArgumentError
from musicgym.music.keys import parse_keys, several_keys
from musicgym.prior import DEFAULT_PRIOR
from musicgym.rules import ChoraleContext, RuleContext, parse_rules, resolve_rules, spelled_rules

ENV_ID = "MusicComposition-v0"
CHORALE_ENV_ID = "ChoraleComposition-v0"


class EnvDefaults(NamedTuple):
    """What an environment's settings default to where the environments differ."""

    prior: str
    rules: str
    context: type
    """The context its rules judge (:mod:`musicgym.rules`)."""
    size: str
    """The :class:`EnvConfig` field that is its piece's size argument."""


ENV_DEFAULTS: dict[str, EnvDefaults] = {
    ENV_ID: EnvDefaults(DEFAULT_PRIOR, "jaques2017", RuleContext, "length"),
    CHORALE_ENV_ID: EnvDefaults("bach16", "chorale", ChoraleContext, "bars"),
}
"""Every environment of the package by id, and its own defaults."""


@dataclass
class EnvConfig:
    """The environment an agent composes in and its settings."""

    env: str = ENV_ID
    """The environment: MusicComposition-v0 (a melody, token by token) or ChoraleComposition-v0
    (four-part chorales, note by note)."""
    prior: str = ""
    """The prior: a shipped name or a checkpoint path ('': the environment's, melody16c or bach16).
    It rewards log p(a|s) and the RL Tuner's network starts from its weights."""
    prior_reward: bool = True
    """Whether the environment's reward includes the prior's log p(a|s); --no-prior-reward trains
    on the rules alone (the benchmarks' rules-only agent). rltuner-g always adds log p itself."""
    rules: str = ""
    """Reward rules: a preset name, or rule names with optional weights, e.g. 'key,tonic=3' ('':
    the environment's preset, jaques2017 or chorale). A training run keeps them spelled out, every
    rule with its weight, so that a preset changed later changes neither its rewards nor its
    resume."""
    c: float = 0.5
    """Divisor of the rule rewards."""
    key: str = "C major"
    """Key of the rules and statistics; for ChoraleComposition-v0 also several, separated by
    commas ('C major,A minor'), of which each episode draws one (the observation shows it)."""
    length: int = 32
    """Tokens per melody (16th notes; MusicComposition-v0)."""
    bars: int = 4
    """4/4 bars per chorale (ChoraleComposition-v0)."""
    primer: str = ""
    """What each piece starts from, fed to the prior and never scored: '' (silence); for melodies
    'random_note' (Magenta's: one random token) or a MIDI file (SB3 baselines only); for chorales
    a MIDI file or 'chorale:NAME', the first bar of a music21 corpus chorale (e.g. bwv269); with
    --phrases '' (any corpus chorale) or 'chorale:NAME' (that chorale's phrases)."""
    phrases: bool = False
    """ChoraleComposition-v0: train on Bach's phrases (each primed by its chorale before it,
    ending at a fermata, at most --bars bars), so that an ending is rewarded every phrase; the
    agent composes and is evaluated on whole chorales of --bars bars."""
    seed: int = 1
    """Seed of the agent's and the environment's random numbers."""

    def __post_init__(self) -> None:
        if self.env not in ENV_DEFAULTS:
            raise EnvArgumentError(
                f"env: unknown environment {self.env!r}; expected one of {', '.join(ENV_DEFAULTS)}"
            )
        defaults = ENV_DEFAULTS[self.env]
        self.prior = self.prior or defaults.prior
        self.rules = self.rules or defaults.rules
        check_numbers(
            self,
            {
                "length": POSITIVE_INT,
                "bars": POSITIVE_INT,
                "c": POSITIVE,
                "seed": {**NON_NEGATIVE_INT, "high": 2**32 - 1},
            },
        )
        try:
            keys = parse_keys(self.key)
        except ValueError as error:
            raise EnvArgumentError(f"key: {error}") from None
        if several_keys(keys) and self.env != CHORALE_ENV_ID:
            raise EnvArgumentError(f"key: only {CHORALE_ENV_ID} draws its episodes' keys")
        resolve_rules(parse_rules(self.rules), defaults.context)
        if self.phrases and self.env != CHORALE_ENV_ID:
            raise EnvArgumentError(f"phrases: only {CHORALE_ENV_ID} has phrase episodes")

    @property
    def judged_key(self) -> str | None:
        """The key the statistics judge the pieces in: :attr:`key`, or where it names several
        keys ``None`` (each chorale in the key it is in)."""
        return None if several_keys(parse_keys(self.key)) else self.key

    def env_kwargs(
        self,
        prior: Any = None,
        with_prior: bool = True,
        observation: str = "plain",
        training: bool = False,
    ) -> dict[str, Any]:
        """Keyword arguments of ``gym.make`` / ``gym.make_vec`` of :attr:`env`: ``prior`` (a
        loaded prior) in place of the name, and no prior in the reward unless ``with_prior`` and
        :attr:`prior_reward`. With ``observation="prior"`` the environment always has the prior
        (an agent reads it from the observation), weighted 0 in the reward where it is left
        out. ``training``: the environment an agent learns in, of phrase episodes where
        :attr:`phrases` (else the one it composes and is evaluated in: whole pieces)."""
        use_prior = with_prior and self.prior_reward
        loaded = self.prior if prior is None else prior
        kwargs = {
            "key": self.key,
            "rules": parse_rules(self.rules),
            "c": self.c,
            "primer": self.primer or None,
            "prior": loaded if use_prior else None,
        }
        if observation != "plain":
            kwargs.update(prior=loaded, observation=observation, prior_weight=float(use_prior))
        if training and self.phrases:
            kwargs["phrases"] = True
        size = ENV_DEFAULTS[self.env].size
        return {size: getattr(self, size), **kwargs}


def run_rules(rules: str, env: str) -> str:
    """The rules ``rules`` of environment ``env`` as a training run keeps them: spelled out,
    every rule with its weight as it resolves now (:func:`musicgym.rules.spelled_rules`)."""
    return spelled_rules(rules, ENV_DEFAULTS[env].context)


DEFAULTS = EnvConfig()
"""The defaults of every argument of ``MusicComposition-v0``."""
CHORALE_DEFAULTS = EnvConfig(env=CHORALE_ENV_ID)
"""The defaults of every argument of ``ChoraleComposition-v0``."""

"""Agents that compose melodies or chorales: the RL Tuner, SB3 baselines, and the prior and random
references.

:func:`load` gives every one of them the same interface
(:class:`~musicgym.agents.common.Composer`)::

    agent = agents.load("runs/q")          # a run folder of `musicgym agent train`
    agent = agents.load("prior")           # sample the shipped prior ("prior:PATH" for another)
    agent = agents.load("random")          # uniform tokens
    melodies = agent.compose(16, seed=0, greedy=False)   # 16 lists of 32 tokens

An agent of ``ChoraleComposition-v0`` composes note-states (``task_of(agent.config.env)`` says so)::

    agent = agents.load("prior", env="ChoraleComposition-v0")   # bach16, 4 bars
    chorales = agent.compose(16, seed=0)                         # 16 NoteStates

:data:`ALGORITHMS` (``musicgym.agents.registry``) is what ``musicgym agent train --algo`` trains.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Generic

from musicgym.agents.common import Composer, load_prior, read_agent_info
from musicgym.agents.registry import ALGORITHMS
from musicgym.config import DEFAULTS, ENV_ID, EnvConfig
from musicgym.prior import MelodyPrior, NoteAxisPrior
from musicgym.tasks import Piece, Task, task_of


def _environment(config: EnvConfig | None, settings: dict[str, Any]) -> EnvConfig:
    if config is not None and settings:
        raise TypeError("give either config or EnvConfig settings, not both")
    return config if config is not None else EnvConfig(**settings)


class PriorAgent(Generic[Piece]):
    """Composes by sampling the prior as its environment's task does
    (:meth:`musicgym.tasks.Task.sample_prior`: melodies token by token from the ``log p(a | s)``
    the environment rewards, chorales decision by decision; ``greedy``: its most likely choice
    each time).

    ``prior`` is a shipped name, a checkpoint path or a loaded prior (default: ``config.prior``);
    ``config`` the environment (or its settings as keywords, e.g. ``length=16``,
    ``env="ChoraleComposition-v0"``)."""

    def __init__(
        self,
        prior: str | os.PathLike | MelodyPrior | NoteAxisPrior | None = None,
        config: EnvConfig | None = None,
        **settings: Any,
    ) -> None:
        self.config = _environment(config, settings)
        self.task: Task[Piece] = task_of(self.config.env)
        self.prior = load_prior(self.config.prior if prior is None else prior)

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[Piece]:
        return self.task.sample_prior(self.prior, n, seed, greedy, self.config)


class RandomAgent(Generic[Piece]):
    """Composes pieces of uniformly random (valid) actions of its environment's task
    (:meth:`musicgym.tasks.Task.sample_random`; ``greedy`` changes nothing)."""

    def __init__(self, config: EnvConfig | None = None, **settings: Any) -> None:
        self.config = _environment(config, settings)
        self.task: Task[Piece] = task_of(self.config.env)

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[Piece]:
        return self.task.sample_random(n, seed, self.config)


def load(
    path: str | os.PathLike,
    length: int = DEFAULTS.length,
    env: str = ENV_ID,
    bars: int = DEFAULTS.bars,
) -> Composer[Any]:
    """The agent at ``path``: a run folder of ``musicgym agent train`` (any algorithm of
    :data:`ALGORITHMS`), an RL Tuner checkpoint file, ``"prior"`` / ``"prior:NAME_OR_PATH"``, or
    ``"random"`` (the last two compose for ``env``'s task: melodies of ``length`` tokens or
    chorales of ``bars`` bars)."""
    text = str(path)
    if text == "random":
        return RandomAgent(env=env, length=length, bars=bars)
    if text == "prior" or text.startswith("prior:"):
        return PriorAgent(
            config=EnvConfig(env, prior=text.partition(":")[2], length=length, bars=bars)
        )
    path = Path(path)
    if path.is_file():
        from musicgym.agents.rl_tuner import RLTuner

        return RLTuner.load(path)[0]
    info = read_agent_info(path)
    if info["algo"] not in ALGORITHMS:
        from musicgym.errors import CheckpointError

        raise CheckpointError(
            f"{path}: made by {info['algo']!r}, which no algorithm of agents.ALGORITHMS is"
        )
    return ALGORITHMS[info["algo"]].load_agent(path, info)


__all__ = [
    "ALGORITHMS",
    "Composer",
    "PriorAgent",
    "RandomAgent",
    "load",
]

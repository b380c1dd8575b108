"""Agents that compose melodies: the RL Tuner, SB3 baselines, and the prior and random references.

:func:`load` gives every one of them the same interface (:class:`~agents.common.Composer`)::

    agent = agents.load("runs/q")          # a run folder of `musicgym agent train`
    agent = agents.load("prior")           # sample the shipped prior ("prior:PATH" for another)
    agent = agents.load("random")          # uniform tokens
    melodies = agent.compose(16, seed=0, greedy=False)   # 16 lists of 32 tokens

:data:`ALGORITHMS` (``agents.registry``) is what ``musicgym agent train --algo`` trains.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from agents.common import Composer, load_prior, read_agent_info
from agents.registry import ALGORITHMS
from musicgym.config import DEFAULTS
from musicgym.envs.stepper import TokenStepper
from musicgym.prior import MelodyPrior


class PriorAgent:
    """Composes by sampling the prior token by token from the same ``log p(a | s)`` the
    environment rewards in ``key`` (``greedy``: its most likely token)."""

    def __init__(
        self,
        prior: str | os.PathLike | MelodyPrior = DEFAULTS.prior,
        length: int = DEFAULTS.length,
        key: str = DEFAULTS.key,
    ) -> None:
        self.prior, self.length, self.key = load_prior(prior), length, key

    @torch.no_grad()
    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed)
        stepper = TokenStepper(self.prior, n, self.key)
        melodies = []
        for _ in range(self.length):
            log_probs = stepper.action_log_probs().float()
            if greedy:
                tokens = log_probs.argmax(1)
            else:
                tokens = torch.multinomial(log_probs.exp(), 1, generator=generator)[:, 0]
            melodies.append(tokens)
            stepper.play(tokens)
        return torch.stack(melodies, 1).tolist()


class RandomAgent:
    """Composes uniformly random tokens (``greedy`` changes nothing)."""

    def __init__(self, length: int = DEFAULTS.length) -> None:
        self.length = length

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[list[int]]:
        from musicgym.music.tokens import NUM_TOKENS

        return np.random.default_rng(seed).integers(0, NUM_TOKENS, (n, self.length)).tolist()


def load(path: str | os.PathLike, length: int = DEFAULTS.length) -> Composer:
    """The agent at ``path``: a run folder of ``musicgym agent train`` (any algorithm of
    :data:`ALGORITHMS`), an RL Tuner checkpoint file, ``"prior"`` / ``"prior:NAME_OR_PATH"``, or
    ``"random"`` (``length`` is the melody length of the last two)."""
    text = str(path)
    if text == "random":
        return RandomAgent(length)
    if text == "prior" or text.startswith("prior:"):
        return PriorAgent(text.partition(":")[2] or DEFAULTS.prior, length)
    path = Path(path)
    if path.is_file():
        from agents.rl_tuner import RLTuner

        return RLTuner.load(path)[0]
    info = read_agent_info(path)
    if info["algo"] not in ALGORITHMS:
        from musicgym.errors import CheckpointError

        raise CheckpointError(
            f"{path}: made by {info['algo']!r}, which no algorithm of agents.ALGORITHMS is"
        )
    return ALGORITHMS[info["algo"]].load_agent(path, info)


__all__ = ["ALGORITHMS", "Composer", "PriorAgent", "RandomAgent", "load"]

"""Agents that compose melodies or chorales: the RL Tuner, SB3 baselines, and the prior and random
references.

:func:`load` gives every one of them the same interface
(:class:`~musicgym.agents.common.Composer`)::

    agent = agents.load("runs/q")          # a run folder of `musicgym agent train`
    agent = agents.load("prior")           # sample the shipped prior ("prior:PATH" for another)
    agent = agents.load("random")          # uniform tokens
    melodies = agent.compose(16, seed=0, greedy=False)   # 16 lists of 32 tokens

An agent of ``ChoraleComposition-v0`` composes note-states (its ``env`` says so)::

    agent = agents.load("prior", env="ChoraleComposition-v0")   # bach16, 4 bars
    chorales = agent.compose(16, seed=0)                         # 16 NoteStates

:data:`ALGORITHMS` (``musicgym.agents.registry``) is what ``musicgym agent train --algo`` trains.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from musicgym.agents.common import Composer, load_prior, read_agent_info
from musicgym.agents.registry import ALGORITHMS
from musicgym.config import CHORALE_DEFAULTS, CHORALE_ENV_ID, DEFAULTS, ENV_ID
from musicgym.envs.stepper import TokenStepper
from musicgym.music.notestate import NoteState
from musicgym.prior import MelodyPrior, NoteAxisPrior


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


class ChoralePriorAgent:
    """Composes chorales by sampling the prior decision by decision
    (:func:`musicgym.envs.chorale.sample_chorales`: exact samples of its factorisation;
    ``greedy``: its most likely decision each time)."""

    env = CHORALE_ENV_ID

    def __init__(
        self, prior: str | os.PathLike | NoteAxisPrior = CHORALE_DEFAULTS.prior, bars: int = 4
    ) -> None:
        from musicgym.envs.decisions import load_note_axis_prior

        self.prior, self.bars = load_note_axis_prior(load_prior(prior)), bars

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[NoteState]:
        from musicgym.envs.decisions import sample_chorales

        return sample_chorales(self.prior, n, self.bars, seed, greedy=greedy)


class ChoraleRandomAgent:
    """Composes chorales of uniformly random valid decisions (``greedy`` changes nothing)."""

    env = CHORALE_ENV_ID

    def __init__(self, bars: int = 4) -> None:
        self.bars = bars

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[NoteState]:
        from musicgym.envs.decisions import (
            BEATS_PER_BAR,
            PITCH_AXIS,
            RESOLUTION,
            DecisionStepper,
            compose_chorales,
        )

        rng = np.random.default_rng(seed)
        lowest, count = PITCH_AXIS
        stepper = DecisionStepper(count, n)

        def choose(stepper: DecisionStepper, active: np.ndarray) -> np.ndarray:
            return np.array([rng.choice(np.flatnonzero(m)) for m in stepper.valid_actions()])

        frames = self.bars * BEATS_PER_BAR * RESOLUTION
        return compose_chorales(stepper, frames, choose, lowest, RESOLUTION)


class RandomAgent:
    """Composes uniformly random tokens (``greedy`` changes nothing)."""

    def __init__(self, length: int = DEFAULTS.length) -> None:
        self.length = length

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[list[int]]:
        from musicgym.music.tokens import NUM_TOKENS

        return np.random.default_rng(seed).integers(0, NUM_TOKENS, (n, self.length)).tolist()


def load(
    path: str | os.PathLike,
    length: int = DEFAULTS.length,
    env: str = ENV_ID,
    bars: int = CHORALE_DEFAULTS.bars,
) -> Composer:
    """The agent at ``path``: a run folder of ``musicgym agent train`` (any algorithm of
    :data:`ALGORITHMS`), an RL Tuner checkpoint file, ``"prior"`` / ``"prior:NAME_OR_PATH"``, or
    ``"random"`` (the last two compose for ``env``: melodies of ``length`` tokens or chorales of
    ``bars`` bars)."""
    text = str(path)
    chorale = env == CHORALE_ENV_ID
    if text == "random":
        return ChoraleRandomAgent(bars) if chorale else RandomAgent(length)
    if text == "prior" or text.startswith("prior:"):
        if chorale:
            return ChoralePriorAgent(text.partition(":")[2] or CHORALE_DEFAULTS.prior, bars)
        return PriorAgent(text.partition(":")[2] or DEFAULTS.prior, length)
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
    "ChoralePriorAgent",
    "ChoraleRandomAgent",
    "Composer",
    "PriorAgent",
    "RandomAgent",
    "load",
]

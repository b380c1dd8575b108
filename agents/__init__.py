"""Agents that compose melodies: the RL Tuner, SB3 baselines, and the prior and random references.

:func:`load` gives every one of them the same interface (:class:`~agents.common.Composer`)::

    agent = agents.load("runs/q")          # a run folder of `musicgym agent train`
    agent = agents.load("prior")           # sample the shipped prior ("prior:PATH" for another)
    agent = agents.load("random")          # uniform tokens
    melodies = agent.compose(16, seed=0, greedy=False)   # 16 lists of 32 tokens

:data:`ALGORITHMS` names what ``musicgym agent train --algo`` trains.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from agents.common import Composer, EnvConfig, load_prior, read_agent_info
from musicgym.prior import DEFAULT_PRIOR

ALGORITHMS = (
    "rltuner-q",
    "rltuner-psi",
    "rltuner-g",
    "sb3-dqn",
    "sb3-ppo",
    "sb3-a2c",
    "sb3-qrdqn",
    "sb3-recurrentppo",
)
"""The algorithms ``musicgym agent train --algo`` trains."""


class PriorAgent:
    """Composes by sampling the prior token by token from the same ``log p(a | s)`` the
    environment rewards in ``key`` (``greedy``: its most likely token)."""

    def __init__(
        self,
        prior: str | os.PathLike | object = DEFAULT_PRIOR,
        length: int = 32,
        key: str = "C major",
    ) -> None:
        self.prior, self.length, self.key = load_prior(prior), length, key  # type: ignore[arg-type]

    @torch.no_grad()
    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[list[int]]:
        from agents.action_scores import next_sounding, score_melody_actions
        from musicgym.actions import token_frames
        from musicgym.prior import token_axis

        generator = torch.Generator().manual_seed(seed)
        prior = self.prior
        state = prior.initial_state(n)
        sounding = torch.full((n,), -1, dtype=torch.long)
        melodies = []
        for _ in range(self.length):
            log_probs = score_melody_actions(prior, state.time_out, sounding, self.key)
            if greedy:
                tokens = log_probs.argmax(1)
            else:
                tokens = torch.multinomial(log_probs.exp(), 1, generator=generator)[:, 0]
            melodies.append(tokens)
            frames = token_frames(tokens, sounding, *token_axis(prior, self.key))
            state = prior.advance(state, frames)
            sounding = next_sounding(sounding, tokens)
        return torch.stack(melodies, 1).tolist()


class RandomAgent:
    """Composes uniformly random tokens (``greedy`` changes nothing)."""

    def __init__(self, length: int = 32) -> None:
        self.length = length

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[list[int]]:
        from musicgym.tokens import NUM_TOKENS

        return np.random.default_rng(seed).integers(0, NUM_TOKENS, (n, self.length)).tolist()


def load(path: str | os.PathLike, length: int = 32) -> Composer:
    """The agent at ``path``: a run folder of ``musicgym agent train`` (any algorithm), an RL Tuner
    checkpoint file, ``"prior"`` / ``"prior:NAME_OR_PATH"``, or ``"random"`` (``length`` is the
    melody length of the last two)."""
    text = str(path)
    if text == "random":
        return RandomAgent(length)
    if text == "prior" or text.startswith("prior:"):
        return PriorAgent(text.partition(":")[2] or DEFAULT_PRIOR, length)
    path = Path(path)
    if path.is_file():
        from agents.rl_tuner import RLTuner

        return RLTuner.load(path)[0]
    info = read_agent_info(path)
    algo = info["algo"]
    if algo.startswith("rltuner-"):
        from agents.rl_tuner import RLTuner

        return RLTuner.load(path / info.get("checkpoint", "agent.pt"))[0]
    from agents.baselines import SB3Agent

    return SB3Agent.load(path, algo.removeprefix("sb3-"), EnvConfig(**info["env"]))


__all__ = ["ALGORITHMS", "Composer", "PriorAgent", "RandomAgent", "load"]

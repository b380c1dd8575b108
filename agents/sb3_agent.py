"""A trained Stable-Baselines3 model as a composer (:class:`SB3Agent`): it plays its
environment's task and reads each piece when its episode ends.
``musicgym.agents.baselines.load_agent`` loads one from a run folder."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm

import musicgym  # noqa: F401  (registers the environments)
from musicgym.config import EnvConfig
from musicgym.tasks import task_of


class SB3Agent:
    """A trained SB3 model as a composer: it plays its environment's task (without the rules,
    which the observation does not depend on; :meth:`musicgym.tasks.Task.playback_kwargs`),
    ``n`` pieces at once. ``prior``: a loaded prior in place of ``env.prior``'s name (for a
    model that observes the prior)."""

    def __init__(self, model: BaseAlgorithm, env: EnvConfig, prior: Any = None) -> None:
        self.model, self.env, self.length, self.prior = model, env, env.length, prior

    @property
    def config(self) -> EnvConfig:
        """The environment it composes for (:class:`~musicgym.agents.common.Composer`)."""
        return self.env

    @property
    def maskable(self) -> bool:
        """Whether the model takes action masks (sb3-contrib's Maskable algorithms)."""
        return "action_masks" in inspect.signature(self.model.predict).parameters

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[Any]:
        """``n`` pieces of the task's type: ``model.predict`` with ``deterministic=greedy`` (and
        the valid actions, for a maskable model), each piece read when its episode ends."""
        kwargs = playback_kwargs(self.env, type(self.model), self.maskable, self.prior)
        envs = gym.make_vec(
            self.env.env, num_envs=n, vectorization_mode="vector_entry_point", **kwargs
        )
        with _seeded(self.model, seed):
            observations, _ = envs.reset(seed=seed)
            lstm_states, starts = None, np.ones(n, bool)
            pieces: list[Any] = [None] * n
            while any(piece is None for piece in pieces):
                extra = {"action_masks": envs.unwrapped.action_masks()} if self.maskable else {}
                actions, lstm_states = self.model.predict(
                    observations,
                    state=lstm_states,
                    episode_start=starts,
                    deterministic=greedy,
                    **extra,
                )
                actions = np.asarray(actions).reshape(n)
                observations, _, terminations, truncations, _ = envs.step(actions)
                starts = np.logical_or(terminations, truncations)
                for i in np.flatnonzero(starts):
                    if pieces[i] is None:
                        pieces[i] = envs.unwrapped.piece(int(i))
        envs.close()
        return pieces


def playback_kwargs(
    env: EnvConfig, algorithm: type, masked: bool, prior: Any = None
) -> dict[str, Any]:
    """``gym.make_vec`` arguments of the environment in which a trained ``algorithm`` composes:
    its task's (:meth:`musicgym.tasks.Task.playback_kwargs`), with the prior (``prior``, else
    ``env.prior``) observed where the algorithm reads the ``"prior"`` observation
    (:mod:`musicgym.agents.ppo_kl`)."""
    kwargs = task_of(env.env).playback_kwargs(env, masked=masked)
    if getattr(algorithm, "observation", "plain") == "prior":
        observing = env.env_kwargs(prior, with_prior=False, observation="prior")
        kwargs.update({name: observing[name] for name in ("prior", "observation", "prior_weight")})
    return kwargs


@contextmanager
def _seeded(model: BaseAlgorithm, seed: int) -> Iterator[None]:
    """``predict`` samples from torch (policies) and numpy (DQN's epsilon): seed both, and leave
    the caller's random state (e.g. a training run's) as it was."""
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    action_space_state = model.action_space.np_random.bit_generator.state
    torch.manual_seed(seed)
    np.random.seed(seed)
    model.action_space.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        model.action_space.np_random.bit_generator.state = action_space_state

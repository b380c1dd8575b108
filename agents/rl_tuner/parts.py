"""What the RL Tuner needs of each environment, as one object per environment (its *part*).

The learner (network, targets, replay sampling, loop, checkpoints) is one for every environment;
what differs lives in a :class:`TunerPart`: the features the Q-network reads beside the prior's
summary, how the ``"prior"`` observation becomes :class:`States`, and the replay memory that stores
transitions and draws them back (:class:`Replay`). :data:`PARTS` maps each environment id to its
part: :mod:`musicgym.agents.rl_tuner.melody` and :mod:`musicgym.agents.rl_tuner.chorale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Protocol

import numpy as np
import torch

from musicgym.errors import EnvArgumentError

Observations = dict[str, np.ndarray]
"""A batch of ``"prior"`` observations (:func:`musicgym.envs.batched.prior_observation_space`)."""


class States(Protocol):
    """``M`` states as the Q-network reads them (tensors on one device)."""

    summary: torch.Tensor
    """``(M, K, H)``: the frozen prior's summary φ(s)."""
    log_probs: torch.Tensor
    """``(M, A)``: the frozen prior's ``log p(a | s)``."""
    mask: torch.Tensor | None
    """``(M, A)`` bool: the valid actions, or ``None`` where every action is."""
    sounding: torch.Tensor
    """``(M,)``: what a trainable readout needs beside the summary (melodies: the sounding
    note)."""
    outcomes: torch.Tensor | None
    """``(M, A, rule_outcomes)``: what each action does to the rules, or ``None``."""


@dataclass
class Transitions:
    """A batch drawn from a replay memory."""

    states: Any
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    next_states: Any
    gamma: float | torch.Tensor
    """The discount of each transition (chorales: only where a time step ends)."""


class Replay(Protocol):
    """A replay memory of one environment's transitions, fed by the training loop."""

    def __len__(self) -> int: ...

    def begin(self, observations: Observations, infos: dict[str, Any]) -> None:
        """The pieces that the environments' reset started (its ``infos`` tell what each piece
        starts from: ``infos["primer"]``)."""
        ...

    def store(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        stepped: np.ndarray,
        next_observations: Observations,
        infos: dict[str, Any],
    ) -> None:
        """One vector step: the ``stepped`` slots played ``actions``; the others were reset by
        the environments' next-step autoreset (their ``next_observations`` and ``infos`` start a
        piece)."""
        ...

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device
    ) -> Transitions: ...

    def nbytes(self) -> int:
        """Bytes a checkpoint of it takes, about."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], prior: Any, device: torch.device) -> None:
        """Restore a :meth:`state_dict`; what it left out is recomputed with the frozen
        ``prior``."""
        ...

    def digest(self) -> str:
        """A hash of what the replay cached from the prior (a resumed run checks it)."""
        ...


class TunerPart(Protocol):
    """What the RL Tuner needs of one environment (see the module docstring)."""

    model_tag: str
    """The model tag of its checkpoints."""
    num_actions: int
    feature_size: int
    """Features :meth:`extra_features` gives per state."""
    resumable: bool
    """Whether its runs resume exactly (its replay checkpoints)."""
    rule_outcomes: int
    """The rule outcomes its states give per action (``rule_features``; 0: none)."""
    steps_together: bool
    """Whether every episode takes the same number of steps, so that the environments step
    together and every vector step has as many updates due (the compiled learner then takes
    them in calls of :data:`~musicgym.agents.rl_tuner.targets.UPDATES_PER_CALL`)."""

    def extra_features(self, states: Any) -> torch.Tensor:
        """``(M, feature_size)``: the environment's features of ``states`` (beside the prior's
        summary)."""
        ...

    def observed_states(self, observations: Observations, device: torch.device) -> Any:
        """The states of a batch of ``"prior"`` observations."""
        ...

    def make_replay(self, capacity: int, num_envs: int) -> Replay: ...

    def replay_bytes(self, capacity: int) -> int:
        """Bytes a replay of ``capacity`` transitions takes in memory."""
        ...


PARTS: dict[str, str] = {
    "MusicComposition-v0": "musicgym.agents.rl_tuner.melody:MelodyPart",
    "ChoraleComposition-v0": "musicgym.agents.rl_tuner.chorale:ChoralePart",
}
"""Each environment id and its part (``module:class``, built with ``(prior, config)``)."""


def part_class(env: str) -> type:
    """The class of the part of the environment ``env``."""
    if env not in PARTS:
        raise EnvArgumentError(f"env: the RL Tuner knows no environment {env!r}")
    module, _, name = PARTS[env].partition(":")
    return getattr(import_module(module), name)


def env_of_model_tag(tag: Any) -> str | None:
    """The environment whose part writes checkpoints tagged ``tag`` (``None``: no part does)."""
    return next((env for env in PARTS if part_class(env).model_tag == tag), None)


def make_part(prior: Any, config: Any) -> TunerPart:
    """The part of ``config.env``, for ``prior`` and ``config``."""
    return part_class(config.env)(prior, config)


def tensor(values: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values)).to(device)

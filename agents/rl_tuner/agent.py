"""The RL Tuner agent: its networks (online, target, frozen prior), acting, composing and
checkpoints. It reads the prior only through the environment's ``"prior"`` observation."""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from musicgym.agents.common import load_prior, make_vector_env
from musicgym.agents.rl_tuner.config import BEFORE, RENAMED, RLTunerConfig, torch_device
from musicgym.agents.rl_tuner.network import QNetwork
from musicgym.agents.rl_tuner.parts import Observations, env_of_model_tag, make_part
from musicgym.agents.rl_tuner.targets import masked_values, policy_logits
from musicgym.errors import CheckpointError, EnvArgumentError
from musicgym.fileio import file_in, load_checkpoint_file
from musicgym.prior import prior_checkpoint, prior_from_checkpoint

CHECKPOINT = "agent.pt"


@dataclass
class Episodes:
    """Pieces an agent played in its environment, their returns and, where recorded, their
    steps: ``states`` (the states of every step, in order), ``actions`` ``(S,)`` and
    ``episode`` ``(S,)``, the piece each step belongs to."""

    pieces: list[Any]
    returns: np.ndarray
    states: Any = None
    actions: torch.Tensor | None = None
    episode: torch.Tensor | None = None


def concatenate_states(batches: list[Any], keep: torch.Tensor) -> Any:
    """One batch of states (a dataclass of tensors) of ``batches`` in order, the rows ``keep``
    (bool) only."""
    first = batches[0]
    values = {}
    for field in fields(first):
        parts = [getattr(batch, field.name) for batch in batches]
        values[field.name] = (
            None if parts[0] is None else torch.cat(parts)[keep.to(parts[0].device)]
        )
    return type(first)(**values)


def check_prior_observation(envs: Any) -> None:
    """One line when ``envs`` do not give the ``"prior"`` observation the RL Tuner reads."""
    if getattr(envs.unwrapped, "observation_mode", None) != "prior":
        raise EnvArgumentError(
            "env: the RL Tuner reads the prior's summary and log p from the environment's "
            "observation: make it with observation='prior' (and a prior)"
        )


class RLTuner:
    """The networks of a run (online, target, frozen prior), acting and composing.

    Use :func:`musicgym.agents.rl_tuner.train` to train one and :meth:`load` to read a
    checkpoint; :meth:`compose` is the agent interface of :func:`musicgym.agents.load`.
    """

    def __init__(self, config: RLTunerConfig, prior: Any) -> None:
        self.config = config
        self.device = torch_device(config.device)
        self.prior = load_prior(prior)  # frozen: the environment's, saved with the run
        if isinstance(self.prior, torch.nn.Module):
            self.prior.to(self.device)
        self.part = make_part(self.prior, config)
        self.model_tag = self.part.model_tag
        self.q_network = QNetwork(self.prior, config, self.part).to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.updates = 0
        """Gradient steps taken."""
        self.steps_per_second = 0.0
        """Environment steps per second of the last training run."""
        self.checkpoint_size = self.replay_size = 0
        """Bytes of the last training run's final checkpoint, and of its replay memory."""

    @property
    def env(self) -> str:
        """The environment id it composes in."""
        return self.config.env

    def make_envs(self, num_envs: int, training: bool = False) -> Any:
        """``num_envs`` environments of the run's settings with the ``"prior"`` observation (the
        rules-only reward for G, which adds ``log p`` itself); ``training``: those it learns in
        (phrase episodes where the run trains on phrases), else those it composes in."""
        config = self.config
        with_prior = config.algo != "g"
        return make_vector_env(
            config, self.prior, num_envs, with_prior, observation="prior", training=training
        )

    @torch.no_grad()
    def act_logits(self, observations: Observations) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Policy logits ``(M, A)`` (Q, Ψ, or G + log p; ``-inf`` for invalid actions) of a
        batch of observations, and their mask (``None`` where every action is valid)."""
        states = self.part.observed_states(observations, self.device)
        values = policy_logits(self.config.algo, self.q_network(states), states.log_probs)
        return values, states.mask

    @torch.no_grad()
    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[Any]:
        """``n`` pieces composed side by side in the environment: each action the argmax
        (``greedy``) or a sample of the policy's softmax among the valid actions; the
        environment's primers drawn from ``seed`` too."""
        return self.play(n, seed, greedy).pieces

    @torch.no_grad()
    def play(
        self,
        n: int,
        seed: int = 0,
        greedy: bool = False,
        record: bool = False,
        training: bool = False,
    ) -> Episodes:
        """:meth:`compose`'s ``n`` episodes: their pieces, returns and (``record``) every state
        and action of them; ``training``: in the environments it learns in (:meth:`make_envs`)."""
        generator = torch.Generator().manual_seed(seed)
        envs = self.make_envs(n, training)
        observations, _ = envs.reset(seed=seed)
        pieces: list[Any] = [None] * n
        returns = np.zeros(n)
        steps: list[tuple[Any, torch.Tensor, np.ndarray]] = []
        while any(piece is None for piece in pieces):
            playing = np.array([piece is None for piece in pieces])
            logits, mask = self.act_logits(observations)
            logits = masked_values(logits, mask).cpu()
            if greedy:
                actions = logits.argmax(1)
            else:
                actions = torch.multinomial(F.softmax(logits, 1), 1, generator=generator)[:, 0]
            if record:
                states = self.part.observed_states(observations, self.device)
                steps.append((states, actions, playing))
            observations, rewards, terminations, _, _ = envs.step(actions.numpy())
            returns[playing] += rewards[playing]
            for i in np.flatnonzero(terminations):
                if pieces[i] is None:
                    pieces[i] = envs.unwrapped.piece(i)
        envs.close()
        if not record:
            return Episodes(pieces, returns)
        keep = torch.from_numpy(np.concatenate([playing for _, _, playing in steps]))
        episode = torch.arange(n).repeat(len(steps))[keep]
        actions = torch.cat([actions for _, actions, _ in steps])[keep]
        states = concatenate_states([states for states, _, _ in steps], keep)
        return Episodes(pieces, returns, states, actions.to(self.device), episode.to(self.device))

    # ------------------------------------------------------------------------- checkpoints
    def checkpoint(self, **extra: Any) -> dict[str, Any]:
        """A plain checkpoint dict: config, prior and networks (and ``extra``)."""
        return {
            "model": self.model_tag,
            "config": asdict(self.config),
            "prior": prior_checkpoint(self.prior),
            "q_state_dict": _cpu(self.q_network.state_dict()),
            "target_state_dict": _cpu(self.target_network.state_dict()),
            **extra,
        }

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: str | None = None
    ) -> tuple[RLTuner, dict[str, Any]]:
        """The agent of a checkpoint file (or a run folder holding ``agent.pt``) and the
        checkpoint dict, on ``device`` (default: the run's, or the CPU where that is absent);
        :class:`CheckpointError` if it is missing, damaged or not ours."""
        path = Path(path)
        if path.is_dir():
            path = path / CHECKPOINT
        checkpoint = load_checkpoint_file(path)
        env = env_of_model_tag(checkpoint.get("model"))
        if env is None:
            raise CheckpointError(
                f"{path}: not a checkpoint of the RL Tuner ({checkpoint.get('model')!r})"
            )
        try:
            known = {f.name for f in fields(RLTunerConfig)}
            saved = {RENAMED.get(k, k): v for k, v in checkpoint["config"].items()}
            settings = {k: v for k, v in {**BEFORE, **saved}.items() if k in known}
            settings["env"] = env
            if device is not None:
                settings["device"] = device
            elif str(settings.get("device", "cpu")).startswith("cuda"):
                settings["device"] = "cuda" if torch.cuda.is_available() else "cpu"
            agent = cls(
                RLTunerConfig(**settings), prior_from_checkpoint(_prior_of(checkpoint), path)
            )
            agent.q_network.load_state_dict(_renamed_weights(checkpoint["q_state_dict"]))
            agent.target_network.load_state_dict(_renamed_weights(checkpoint["target_state_dict"]))
            agent.updates = int(checkpoint.get("updates", 0))
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(f"{path}: does not fit the RL Tuner ({first})") from None
        return agent, checkpoint


def load_agent(folder: str | os.PathLike, info: dict[str, Any]) -> RLTuner:
    """The agent of an RL Tuner run folder (``info``: its ``agent.json``; the registry's load),
    of either environment."""
    return RLTuner.load(file_in(folder, info.get("checkpoint", CHECKPOINT), "checkpoint"))[0]


def _prior_of(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The prior's checkpoint dict inside an RL Tuner checkpoint (older ones kept a Bi-axial
    LSTM's config and weights apart)."""
    if "prior" in checkpoint:
        return checkpoint["prior"]
    return {
        "model": "biaxial-lstm",
        "config": checkpoint["prior_config"],
        "state_dict": checkpoint["prior_state_dict"],
    }


def _renamed_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Older checkpoints named the trainable copy of the note axis ``note_axis``."""
    return {k.replace("note_axis.", "readout.", 1): v for k, v in state_dict.items()}


def _cpu(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state_dict.items()}

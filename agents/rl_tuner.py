"""The RL Tuner (Jaques et al. 2017): a recurrent DQN primed from the prior; Q, Ψ and G targets.

Read top to bottom like CleanRL's ``dqn.py``: the hyperparameters (:class:`RLTunerConfig`), the
Q-network, the replay memory, the targets, then :func:`train`. Everything is importable and
tested (``tests/test_agents.py``).

**The Q-network** is the frozen prior's action scores plus a learned, per-state term:
``Q(s, ·) = log p(· | s) + head(φ(s))`` (Q, Ψ), ``G(s, ·) = head(φ(s))`` (G, whose policy adds
``log p`` itself). ``head`` is a small MLP whose last layer starts at zero, so before training the
network *is* the prior, and its 38 outputs are unnormalised: each state's values rise and fall
independently (a softmax-normalised head cannot lift one action without pushing the others down).
``φ(s)`` is what the prior knows of the melody and where it is: the prior's summary ``(K, H)``
(:meth:`musicgym.prior.MelodyPrior.summary`: the Bi-axial LSTM's time-axis output, a row per
pitch; the Note RNN's LSTM output, one row), each row's ``H`` values projected to
``summary_features`` by one linear map tied across rows, the step, and the last ``context``
tokens. ``--train-readout`` also fine-tunes a copy of the prior's weights above its summary
(the Bi-axial's note axis; about 20x slower updates) in place of the frozen ``log p``.

The agent sees the prior only through :class:`musicgym.prior.MelodyPrior`, played by
:class:`musicgym.envs.stepper.TokenStepper` (the environment's own stepper), so any prior works.

**Cheap updates.** The summary is the frozen prior's, so ``φ(s)`` and ``log p(·|s)`` are fixed
per state: they are computed once while acting (``log p`` is the environment's own, read from it
when it has the prior) and kept with the replay (summaries in float16; the memory they need is
checked at the start). An update is then one MLP pass over ``2 * batch_size`` cached states.

**The replay memory** keeps melodies row by row (tokens, rewards, and every state's cached
``φ`` parts); a transition is a (row, step) pair and batches are drawn uniformly from all of them.
Checkpoints keep the tokens, rewards and ``log p``; the summaries are recomputed from the tokens on
``--resume`` (the frozen prior gives the same numbers: a digest saved with the checkpoint checks it
bit for bit, and a mismatch, as on a GPU whose kernels depend on the batch shape, is reported in
one line).

**Checkpoints and resume.** ``agent.pt`` is one file, written atomically, that holds everything
the rest of the run depends on: networks, optimizer, replay memory, the random generators (numpy,
torch, every sub-environment's), the melodies in progress (the environment's and the agent's),
the pending-update counter and the next evaluation and checkpoint steps. ``--resume`` continues
bit for bit as if the run had not stopped; it refuses other settings, except ``steps`` (which
also stretches the epsilon schedule, a fraction of it), ``max_minutes``, ``threads``, ``device``
and how often to evaluate and checkpoint. SIGINT / SIGTERM finish the step, write the
checkpoint and stop (``musicgym.runs``).

**Targets** (``spec/melody-rules.md``): Q: ``r + γ max_a' Q⁻(s', a')`` (or double DQN, the online
network's argmax valued by the target network); Ψ: ``r + γ logsumexp_a' Ψ⁻(s', a')``; G: the
environment gives the rules-only reward ``r_MT / c`` (``prior=None``) and the target is
``r_MT/c + γ logsumexp_a' (G⁻(s', a') + log p(a'|s'))``. The policies: argmax / softmax of Q,
softmax(Ψ), softmax(G + log p).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicgym.agents.common import (
    RUN_FILES,
    SESSION_FIELDS,
    EnvConfig,
    RunConfig,
    check_same_prior,
    load_prior,
    make_vector_env,
    prior_fingerprint,
    set_torch_threads,
    write_agent_info,
)
from musicgym.checks import (
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    check_device,
    check_numbers,
)
from musicgym.config import CHORALE_ENV_ID
from musicgym.envs.stepper import TokenStepper, melody_statistics, melody_summaries, sounding_before
from musicgym.errors import CheckpointError, EnvArgumentError
from musicgym.fileio import load_checkpoint_file, save_checkpoint_file
from musicgym.music.tokens import NUM_TOKENS
from musicgym.prior import (
    MelodyPrior,
    prior_checkpoint,
    prior_from_checkpoint,
    require,
    transposition,
)
from musicgym.runs import (
    StopSignals,
    check_output_folder,
    check_resume_settings,
    claim_run_folder,
)

CHECKPOINT = "agent.pt"
REPLAY_CHECKPOINT = "replay.pt"
MODEL_TAG = "rl-tuner"
Algorithm = Literal["q", "psi", "g"]
MEMORY_SHARE = 0.8
"""The replay memory may take at most this share of the memory available at the start."""
RESUMABLE = (*SESSION_FIELDS, "device", "eval_interval", "eval_melodies", "checkpoint_interval")
"""The settings ``--resume`` may change; the others decide the run and must stay the run's."""
RENAMED = {"train_note_axis": "train_readout", "pitch_features": "summary_features"}
"""Settings of checkpoints of older versions under their new names."""


@dataclass
class RLTunerConfig(RunConfig):
    """Hyperparameters of the RL Tuner (the published settings where there are any)."""

    algo: Algorithm = "q"
    """Learning target: q (Q-learning), psi (Ψ-learning) or g (G-learning)."""
    num_envs: int = 16
    """Melodies composed side by side in the batched vector env."""
    gamma: float = 0.5
    """Discount factor."""
    learning_rate: float = 1e-3
    """Learning rate of the optimizer."""
    optimizer: Literal["adam", "adadelta"] = "adam"
    """adam, or adadelta (the Bi-axial + DQN paper's, with --learning-rate 1)."""
    buffer_size: int = 100_000
    """Replay memory size in transitions (the cached prior summaries take ~12 KB each for the
    Bi-axial LSTM)."""
    batch_size: int = 32
    """Transitions per gradient step, drawn independently."""
    learning_starts: int = 1_000
    """Environment steps before the first gradient step."""
    train_frequency: int = 4
    """Environment steps per gradient step (Magenta: 5)."""
    eta: float = 0.01
    """Soft target update rate: θ⁻ ← (1 - eta) θ⁻ + eta θ after every gradient step."""
    double_q: bool = False
    """Double DQN (algo q only): the online network picks the next action, the target values it."""
    loss: Literal["huber", "mse"] = "mse"
    """TD loss: mse (Magenta's) weighs the rare large errors (+6 tonic, -200 repetition) fully."""
    max_grad_norm: float = 5.0
    """Gradient norm clipping (0: none)."""
    clip: Literal["per-variable", "global"] = "per-variable"
    """Clip each parameter tensor's gradient norm (Magenta's) or all of them together."""
    exploration: Literal["egreedy", "boltzmann"] = "egreedy"
    """egreedy: a uniform action with probability epsilon, else greedy; boltzmann: sample the
    softmax of the policy logits divided by --temperature."""
    start_e: float = 1.0
    """Epsilon at the start."""
    end_e: float = 0.1
    """Epsilon at the end of its annealing."""
    exploration_fraction: float = 0.5
    """Fraction of --steps over which epsilon anneals linearly from --start-e to --end-e."""
    temperature: float = 1.0
    """Temperature of Boltzmann exploration."""
    head_size: int = 256
    """Hidden units of the per-state term's MLP."""
    context: int = 8
    """Recent tokens the per-state term reads beside the prior's summary."""
    summary_features: int = 8
    """Features the per-state term takes from each row of the prior's summary (one linear map,
    tied across rows: the Bi-axial LSTM's pitches)."""
    train_readout: bool = False
    """Fine-tune a copy of the prior's weights above its summary too (q, psi; the Bi-axial's
    note axis: about 20x slower updates)."""
    device: str = "cpu"
    """Torch device of the networks and the prior (cpu, cuda, cuda:1, ...)."""
    eval_interval: int = 10_000
    """Environment steps between evaluations (statistics under music/ in TensorBoard)."""
    eval_melodies: int = 32
    """Melodies composed at each evaluation."""
    checkpoint_interval: int = 10_000
    """Environment steps between checkpoints (one is always written at the end)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        counts = ("num_envs", "batch_size", "train_frequency", "head_size", "context")
        counts += ("summary_features", "eval_interval", "eval_melodies", "checkpoint_interval")
        check_numbers(
            self,
            {
                **{name: POSITIVE_INT for name in counts},
                "buffer_size": POSITIVE_INT,
                "learning_starts": NON_NEGATIVE_INT,
                "gamma": FRACTION,
                "learning_rate": POSITIVE,
                "eta": {"above": 0, "high": 1},
                "max_grad_norm": NON_NEGATIVE,
                "start_e": FRACTION,
                "end_e": FRACTION,
                "exploration_fraction": FRACTION,
                "temperature": POSITIVE,
            },
        )
        if self.algo not in ("q", "psi", "g"):
            raise ValueError(f"algo: expected q, psi or g, got {self.algo!r}")
        if self.buffer_size < self.length:
            raise ValueError("buffer_size must hold at least one melody")
        if not self.is_chorale and self.primer not in ("", "random_note"):
            raise ValueError(f"primer: the RL Tuner takes '' or 'random_note', not {self.primer!r}")
        if self.is_chorale and self.primer == "random_note":
            raise ValueError("primer: 'random_note' is a melody primer; chorales take a MIDI file")
        if self.train_readout and self.is_chorale:
            raise ValueError("train_readout: only on MusicComposition-v0")
        if self.train_readout and self.algo == "g":
            raise ValueError("train_readout: G-learning adds the frozen prior's log p itself")


def torch_device(name: str) -> torch.device:
    """``name`` as a device, or a one-line error when it is unknown or absent here."""
    return check_device(name, error=EnvArgumentError)


# ------------------------------------------------------------------------------------ network
@dataclass
class States:
    """``M`` states as the Q-network reads them (tensors on one device)."""

    summary: torch.Tensor
    """``(M, K, H)``: the frozen prior's summary of the melody so far."""
    log_probs: torch.Tensor
    """``(M, 38)``: the frozen prior's ``log p(a | s)``."""
    context: torch.Tensor
    """``(M, C)``: the last ``C`` tokens played, oldest first; -1 before the melody's start."""
    step: torch.Tensor
    """``(M,)``: tokens played so far."""
    sounding: torch.Tensor
    """``(M,)``: the sounding note's token, -1 for none."""


class QNetwork(nn.Module):
    """``values(s, ·) = base(s, ·) + head(φ(s))``; see the module docstring. ``base`` is the frozen
    prior's ``log p`` (q, psi), 0 (g), or a trainable copy of the prior's readout, ``log p_θ``.

    ``φ(s)`` is the prior's summary (each row projected) and :meth:`extra_features`: a melody's
    step and recent tokens here; another environment's network (``musicgym.agents.chorale_tuner``)
    gives its own ``extra_size`` features and ``num_actions`` values.
    """

    def __init__(
        self,
        prior: MelodyPrior,
        config: RLTunerConfig,
        extra_size: int | None = None,
        num_actions: int = NUM_TOKENS,
    ) -> None:
        super().__init__()
        self.algo, self.length = config.algo, config.length
        rows, hidden = prior.summary_shape
        self.pitch_summary = nn.Linear(hidden, config.summary_features)  # tied across rows
        if extra_size is None:
            extra_size = config.length + config.context * NUM_TOKENS
        features = rows * config.summary_features + extra_size
        self.head = nn.Sequential(
            nn.Linear(features, config.head_size),
            nn.ReLU(),
            nn.Linear(config.head_size, num_actions),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.readout: Any = None
        if config.train_readout:
            for capability in ("summary_log_probs", "readout_parameters"):
                require(prior, capability, "--train-readout", config.prior)
            self.readout = copy.deepcopy(prior).eval().requires_grad_(False)
            for parameter in self.readout.readout_parameters():
                parameter.requires_grad_(True)
            self.transpose = transposition(prior, config.key)

    def train(self, mode: bool = True) -> QNetwork:
        """The readout always runs without dropout (values must be deterministic)."""
        super().train(mode)
        if self.readout is not None:
            self.readout.eval()
        return self

    def features(self, states: Any) -> torch.Tensor:
        """``φ(s)`` ``(M, F)``: the prior's summary (each row projected by one linear map, tied
        across rows), flattened, and :meth:`extra_features`."""
        rows = self.pitch_summary(states.summary.float()).flatten(1)
        return torch.cat([rows, self.extra_features(states)], 1)

    def extra_features(self, states: States) -> torch.Tensor:
        """The step (one-hot) and the recent tokens (one-hot each), flattened."""
        recent = F.one_hot(states.context + 1, NUM_TOKENS + 1)[..., 1:]  # -1 reads all zeros
        step = F.one_hot(states.step.clamp(max=self.length - 1), self.length)
        return torch.cat([step.float(), recent.flatten(1).float()], 1)

    def forward(self, states: States) -> torch.Tensor:
        """Values ``(M, 38)``."""
        term = self.head(self.features(states))
        if self.readout is not None:
            transpose = torch.full_like(states.sounding, self.transpose)
            base = self.readout.summary_log_probs(
                states.summary.float(), states.sounding, transpose
            )
            return base.float() + term
        if self.algo == "g":
            return term
        return states.log_probs + term


def soft_update(target: nn.Module, online: nn.Module, eta: float) -> None:
    """``θ⁻ ← (1 - eta) θ⁻ + eta θ`` for every parameter."""
    with torch.no_grad():
        for target_param, param in zip(target.parameters(), online.parameters(), strict=True):
            target_param.lerp_(param, eta)


# ------------------------------------------------------------------------------------- targets
def policy_logits(
    algo: Algorithm, values: torch.Tensor, prior_log_probs: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits of the policy: Q or Ψ themselves; G + log p for G-learning."""
    if algo == "g":
        assert prior_log_probs is not None, "G-learning's policy needs the prior's log p"
        return values + prior_log_probs
    return values


def td_target(
    algo: Algorithm,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    gamma: float | torch.Tensor,
    next_target_values: torch.Tensor,
    next_prior_log_probs: torch.Tensor | None = None,
    next_online_values: torch.Tensor | None = None,
    next_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The TD target ``(B,)`` of each algorithm (``spec/melody-rules.md``).

    q: ``r + γ max_a' Q⁻(s', a')``, or with ``next_online_values`` (double DQN)
    ``r + γ Q⁻(s', argmax_a' Q(s', a'))``; psi: ``r + γ logsumexp_a' Ψ⁻(s', a')``;
    g: ``r + γ logsumexp_a' (G⁻(s', a') + log p(a'|s'))`` (``r`` is then ``r_MT / c``).
    ``dones`` (1 at the last step) drop the bootstrap term. ``gamma`` may be one per sample;
    ``next_mask`` ``(B, A)``, the valid actions in ``s'``, restricts the max, argmax and
    logsumexp to them.
    """
    if next_mask is not None:
        next_target_values = masked_values(next_target_values, next_mask)
        if next_online_values is not None:
            next_online_values = masked_values(next_online_values, next_mask)
    if algo == "q":
        if next_online_values is None:
            next_value = next_target_values.max(1).values
        else:
            best = next_online_values.argmax(1, keepdim=True)
            next_value = next_target_values.gather(1, best)[:, 0]
    elif algo == "psi":
        next_value = torch.logsumexp(next_target_values, 1)
    elif algo == "g":
        assert next_prior_log_probs is not None, "G-learning's target needs the prior's log p"
        next_value = torch.logsumexp(next_target_values + next_prior_log_probs, 1)
    else:
        raise ValueError(f"unknown algorithm {algo!r}")
    return rewards + gamma * (1.0 - dones.float()) * next_value


def masked_values(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``values`` with ``-inf`` where ``mask`` is false (none without a mask)."""
    return values if mask is None else values.masked_fill(~mask, -math.inf)


def explore(
    logits: torch.Tensor,
    epsilon: float,
    rng: np.random.Generator,
    config: RLTunerConfig,
    mask: torch.Tensor | None = None,
) -> np.ndarray:
    """Actions ``(M,)`` from policy ``logits`` ``(M, A)``: Boltzmann (softmax of ``logits /
    temperature``) or epsilon-greedy (the argmax, else with probability ``epsilon`` a uniform
    action), only among the valid actions of ``mask`` where given."""
    logits = masked_values(logits, mask)
    if config.exploration == "boltzmann":
        return torch.multinomial(F.softmax(logits / config.temperature, 1), 1)[:, 0].numpy()
    actions = logits.argmax(1).numpy()
    explored = rng.random(len(actions)) < epsilon
    if mask is None:
        actions[explored] = rng.integers(0, logits.shape[1], explored.sum())
    else:
        for i in np.flatnonzero(explored):
            actions[i] = rng.choice(np.flatnonzero(mask[i].numpy()))
    return actions


# -------------------------------------------------------------------------------------- replay
def recent_tokens(tokens: torch.Tensor, steps: torch.Tensor, context: int) -> torch.Tensor:
    """``(M, K)``: of each melody ``tokens[m]`` ``(L,)``, the ``K = context`` tokens before
    ``steps[m]``, oldest first, -1 before the start."""
    offsets = torch.arange(-context, 0, device=tokens.device)
    positions = steps[:, None] + offsets  # (M, K)
    picked = tokens.gather(1, positions.clamp(min=0))
    return torch.where(positions >= 0, picked, torch.full_like(picked, -1))


class StateReplay:
    """Replay memory of melodies and their cached states; a transition is (row, step).

    ``tokens[i, t]`` is the token played at step ``t`` of row ``i`` (-1 not yet), ``rewards[i,
    t]`` its reward, ``filled[i]`` how many steps the row holds, ``primers[i]`` its random-note
    primer (-1 none). ``summaries[i, t]`` (float16) and ``log_probs[i, t]`` are the frozen prior's
    summary and ``log p(·|s_t)`` in the state before step ``t``; the state after a stored step is
    always stored too (or the melody ended there). Rows are reused oldest first.
    """

    def __init__(
        self, capacity: int, length: int, summary_shape: tuple[int, int], context: int
    ) -> None:
        self.rows, self.length, self.context = max(1, capacity // length), length, context
        self.tokens = np.full((self.rows, length), -1, np.int8)
        self.rewards = np.zeros((self.rows, length), np.float32)
        self.filled = np.zeros(self.rows, np.int64)
        self.primers = np.full(self.rows, -1, np.int8)
        self.summaries = np.zeros((self.rows, length, *summary_shape), np.float16)
        self.log_probs = np.zeros((self.rows, length, NUM_TOKENS), np.float32)
        self.next_row = 0

    @staticmethod
    def nbytes(capacity: int, length: int, summary_shape: tuple[int, int]) -> int:
        """Bytes the arrays of a replay memory of ``capacity`` transitions take."""
        rows, summary = max(1, capacity // length), summary_shape[0] * summary_shape[1]
        return rows * length * (summary * 2 + NUM_TOKENS * 4 + 5) + rows * 9

    def __len__(self) -> int:
        """Transitions held."""
        return int(self.filled.sum())

    def start(self, primer: int = -1) -> int:
        """A row for a new melody (the oldest one is overwritten)."""
        row = self.next_row
        self.next_row = (row + 1) % self.rows
        self.tokens[row], self.filled[row], self.primers[row] = -1, 0, primer
        return row

    def write_states(
        self, rows: np.ndarray, steps: np.ndarray, summaries: torch.Tensor, log_probs: torch.Tensor
    ) -> None:
        """Cache the states before step ``steps[j]`` of ``rows[j]``."""
        self.summaries[rows, steps] = summaries.detach().to("cpu", torch.float16).numpy()
        self.log_probs[rows, steps] = log_probs.detach().to("cpu", torch.float32).numpy()

    def add(self, rows: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Append one step to each of ``rows``."""
        steps = self.filled[rows]
        self.tokens[rows, steps] = actions
        self.rewards[rows, steps] = rewards
        self.filled[rows] += 1

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, steps)`` of ``batch_size`` transitions drawn independently and uniformly."""
        rows = rng.choice(self.rows, batch_size, p=self.filled / self.filled.sum())
        steps = (rng.random(batch_size) * self.filled[rows]).astype(np.int64)
        return rows, steps

    def states(self, rows: np.ndarray, steps: np.ndarray, device: torch.device) -> States:
        """The cached states before step ``steps[j]`` of ``rows[j]`` (``steps`` may be
        ``length``: a terminal state, read as the last one; its value is never used)."""
        steps = np.minimum(steps, self.length - 1)
        tokens = torch.from_numpy(self.tokens[rows].astype(np.int64))
        steps_t = torch.from_numpy(steps)
        sounding = sounding_before(tokens).gather(1, steps_t[:, None])[:, 0]
        return States(
            summary=torch.from_numpy(self.summaries[rows, steps]).to(device),
            log_probs=torch.from_numpy(self.log_probs[rows, steps]).to(device),
            context=recent_tokens(tokens, steps_t, self.context).to(device),
            step=steps_t.to(device),
            sounding=sounding.to(device),
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything but the summaries, which :meth:`recompute_summaries` restores."""
        return {
            "tokens": torch.from_numpy(self.tokens.copy()),
            "rewards": torch.from_numpy(self.rewards.copy()),
            "filled": torch.from_numpy(self.filled.copy()),
            "primers": torch.from_numpy(self.primers.copy()),
            "log_probs": torch.from_numpy(self.log_probs.copy()),
            "next_row": self.next_row,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokens[:] = state["tokens"].numpy()
        self.rewards[:] = state["rewards"].numpy()
        self.filled[:] = state["filled"].numpy()
        self.primers[:] = state["primers"].numpy()
        self.log_probs[:] = state["log_probs"].numpy()
        self.next_row = int(state["next_row"])

    def recompute_summaries(
        self, prior: MelodyPrior, key: str, device: torch.device, chunk: int = 256
    ) -> None:
        """Play every stored melody (after its primer) through the frozen prior again, those
        just started included, and cache its summaries."""
        for primed in (False, True):
            rows = np.flatnonzero((self.primers >= 0) == primed)
            for begin in range(0, len(rows), chunk):
                part = rows[begin : begin + chunk]
                tokens = torch.from_numpy(self.tokens[part].astype(np.int64))
                if primed:
                    primer = torch.from_numpy(self.primers[part].astype(np.int64))[:, None]
                    tokens = torch.cat([primer, tokens], 1)
                summaries = melody_summaries(prior, tokens.to(device), key, device)
                summaries = summaries[:, int(primed) : int(primed) + self.length]
                self.summaries[part] = summaries.to("cpu", torch.float16).numpy()

    def summary_digest(self, current_rows: np.ndarray) -> str:
        """A hash of the cached summaries that can be read: every step up to the next state of
        each row that holds a melody (``current_rows``: those being composed)."""
        digest = hashlib.blake2b(digest_size=16)
        in_use = np.union1d(np.flatnonzero(self.filled > 0), current_rows)
        for row in in_use:
            digest.update(self.summaries[row, : min(self.filled[row], self.length - 1) + 1])
        return digest.hexdigest()


def check_replay_memory(config: RLTunerConfig, prior: MelodyPrior) -> None:
    """A one-line error when the replay memory would not fit in the memory available now."""
    need = StateReplay.nbytes(config.buffer_size, config.length, prior.summary_shape)
    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        available = int(meminfo[meminfo.index("MemAvailable:") + 1]) * 1024
    except (OSError, ValueError, IndexError):
        return  # not Linux: nothing to check against
    if need > MEMORY_SHARE * available:
        raise EnvArgumentError(
            f"buffer_size: {config.buffer_size} transitions need {need / 2**30:.1f} GiB of replay "
            f"memory (cached prior summaries), more than {MEMORY_SHARE:.0%} of the "
            f"{available / 2**30:.1f} GiB available; lower --buffer-size"
        )


# ------------------------------------------------------------------------------ the agent itself
class Melodies:
    """``M`` melodies being composed: the prior played over them (a
    :class:`~musicgym.envs.stepper.TokenStepper`), their tokens and steps."""

    def __init__(self, agent: RLTuner, count: int) -> None:
        self.agent, self.count = agent, count
        device = agent.device
        self.stepper = TokenStepper(agent.prior, count, agent.config.key, device)
        self.tokens = torch.full((count, agent.length), -1, dtype=torch.long, device=device)
        self.step = torch.zeros(count, dtype=torch.long, device=device)

    def restart(self, rows: np.ndarray, primers: list[list[int]]) -> None:
        """Start the melodies ``rows`` afresh, each fed its primer tokens first."""
        if not len(rows):
            return
        self.stepper.restart(rows.tolist(), primers)
        index = torch.as_tensor(rows, dtype=torch.long, device=self.agent.device)
        self.tokens[index], self.step[index] = -1, 0

    def play(self, tokens: torch.Tensor) -> None:
        """Every melody plays its token (those that ended are restarted by :meth:`restart`)."""
        self.stepper.play(tokens)
        rows = torch.arange(self.count, device=tokens.device)
        self.tokens[rows, self.step.clamp(max=self.agent.length - 1)] = tokens
        self.step = self.step + 1

    def state_dict(self) -> dict[str, Any]:
        """The melodies and the prior's state over them (its tensors), for a checkpoint."""
        return {
            "stepper": self.stepper.state_dict(),
            "tokens": self.tokens.cpu(),
            "step": self.step.cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "stepper" not in state:
            raise CheckpointError(
                "the melodies in progress were saved by an older musicgym (before the prior "
                "protocol); start a new run"
            )
        self.stepper.load_state_dict(state["stepper"])
        device = self.agent.device
        self.tokens, self.step = state["tokens"].to(device), state["step"].to(device)

    def states(self, log_probs: torch.Tensor) -> States:
        """The current states, with the prior's ``log p`` of them (from the env or the agent)."""
        return States(
            summary=self.stepper.summary(),
            log_probs=log_probs,
            context=recent_tokens(self.tokens, self.step, self.agent.config.context),
            step=self.step,
            sounding=self.stepper.sounding,
        )


class RLTuner:
    """The networks of a run (online, target, frozen prior), acting and composing.

    Use :func:`train` to train one and :meth:`load` to read a checkpoint; :meth:`compose` is the
    agent interface of :func:`musicgym.agents.load`.
    """

    model_tag: ClassVar[str] = MODEL_TAG
    """The checkpoint's model tag."""

    def __init__(self, config: RLTunerConfig, prior: Any) -> None:
        self.config, self.length = config, config.length
        self.device = torch_device(config.device)
        self.prior = self.frozen_prior(prior)  # frozen: features, log p, music/log_p
        if isinstance(self.prior, nn.Module):
            self.prior.to(self.device)
        self.q_network = self.make_network(self.prior, config).to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.updates = 0
        """Gradient steps taken."""
        self.steps_per_second = 0.0
        """Environment steps per second of the last :func:`train` call."""

    def frozen_prior(self, prior: Any) -> Any:
        """The loaded, frozen prior of a name, path or model
        (:func:`musicgym.agents.common.load_prior`)."""
        return load_prior(prior)

    def make_network(self, prior: Any, config: RLTunerConfig) -> QNetwork:
        """The online network (the target network is its copy)."""
        return QNetwork(prior, config)

    @torch.no_grad()
    def act_logits(self, states: States) -> torch.Tensor:
        """Policy logits ``(M, 38)``: Q, Ψ, or G + log p."""
        return policy_logits(self.config.algo, self.q_network(states), states.log_probs)

    @torch.no_grad()
    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[list[int]]:
        """``n`` melodies: each token the argmax (``greedy``) or a sample of the policy's softmax
        (Q, Ψ, or G + log p), all ``n`` composed side by side (a random-note primer drawn from
        ``seed`` too)."""
        generator = torch.Generator().manual_seed(seed)
        melodies = Melodies(self, n)
        if self.config.primer == "random_note":
            primers = torch.randint(0, NUM_TOKENS - 1, (n, 1), generator=generator).tolist()
            melodies.restart(np.arange(n), primers)
        for _ in range(self.length):
            log_probs = melodies.stepper.action_log_probs().float()
            logits = self.act_logits(melodies.states(log_probs)).cpu()
            if greedy:
                tokens = logits.argmax(1)
            else:
                tokens = torch.multinomial(F.softmax(logits, 1), 1, generator=generator)[:, 0]
            melodies.play(tokens.to(self.device))
        return melodies.tokens.tolist()

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
    def load(cls, path: str | os.PathLike, device: str | None = None) -> tuple[Any, dict[str, Any]]:
        """The agent of a checkpoint file (or a run folder holding ``agent.pt``) and the
        checkpoint dict, on ``device`` (default: the run's, or the CPU where that is absent);
        :class:`CheckpointError` if it is missing, damaged or not ours."""
        path = Path(path)
        if path.is_dir():
            path = path / CHECKPOINT
        checkpoint = load_checkpoint_file(path)
        if checkpoint.get("model") != cls.model_tag:
            raise CheckpointError(f"{path}: not a checkpoint of {cls.__name__} ({cls.model_tag})")
        try:
            known = {f.name for f in fields(RLTunerConfig)}
            saved = {RENAMED.get(k, k): v for k, v in checkpoint["config"].items()}
            settings = {k: v for k, v in saved.items() if k in known}
            if device is not None:
                settings["device"] = device
            elif str(settings.get("device", "cpu")).startswith("cuda"):
                settings["device"] = "cuda" if torch.cuda.is_available() else "cpu"
            config = RLTunerConfig(**settings)
            agent = cls(config, prior_from_checkpoint(_prior_of(checkpoint), path))
            agent.q_network.load_state_dict(_renamed_weights(checkpoint["q_state_dict"]))
            agent.target_network.load_state_dict(_renamed_weights(checkpoint["target_state_dict"]))
            agent.updates = int(checkpoint.get("updates", 0))
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(f"{path}: does not fit the RL Tuner ({first})") from None
        return agent, checkpoint


def load_agent(folder: str | os.PathLike, info: dict[str, Any]) -> Any:
    """The agent of an RL Tuner run folder (``info``: its ``agent.json``; the registry's load),
    of either environment."""
    if info.get("config", {}).get("env") == CHORALE_ENV_ID:
        from musicgym.agents.chorale_tuner import load_agent as load_chorale_agent

        return load_chorale_agent(folder, info)
    return RLTuner.load(Path(folder) / info.get("checkpoint", CHECKPOINT))[0]


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


def linear_schedule(start: float, end: float, duration: float, step: int) -> float:
    """``start`` moving linearly to ``end`` over ``duration`` steps, then ``end``."""
    if duration <= 0:
        return end
    return start + min(step / duration, 1.0) * (end - start)


# ------------------------------------------------------------------------------- the update
def td_loss(
    agent: RLTuner, replay: StateReplay, batch: tuple[np.ndarray, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TD loss of a replay batch and the Q-values of its actions ``(B,)``."""
    device = agent.device
    rows, steps = batch
    states = replay.states(rows, steps, device)
    next_states = replay.states(rows, steps + 1, device)
    actions = torch.from_numpy(replay.tokens[rows, steps].astype(np.int64)).to(device)
    rewards = torch.from_numpy(replay.rewards[rows, steps]).to(device)
    dones = torch.from_numpy(steps == replay.length - 1).to(device)
    return transition_loss(agent, states, actions, rewards, dones, next_states)


def transition_loss(
    agent: RLTuner,
    states: Any,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    next_states: Any,
    gamma: float | torch.Tensor | None = None,
    next_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TD loss of transitions (states as the network reads them; ``gamma`` default the
    config's, ``next_mask`` the valid actions in ``s'``) and the Q-values of their actions."""
    config = agent.config
    q_values = agent.q_network(states).gather(1, actions[:, None])[:, 0]
    with torch.no_grad():
        next_target = agent.target_network(next_states)
        next_online = None
        if config.double_q and config.algo == "q":
            next_online = agent.q_network(next_states)
        target = td_target(
            config.algo,
            rewards,
            dones,
            config.gamma if gamma is None else gamma,
            next_target,
            next_states.log_probs,
            next_online,
            next_mask,
        )
    loss_fn = F.smooth_l1_loss if config.loss == "huber" else F.mse_loss
    return loss_fn(q_values, target), q_values.detach()


def make_optimizer(config: RLTunerConfig, network: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in network.parameters() if p.requires_grad]
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=config.learning_rate)
    return torch.optim.Adam(params, lr=config.learning_rate)


def clip_gradients(config: RLTunerConfig, network: nn.Module) -> None:
    """Clip by norm, each parameter tensor alone (Magenta) or all together."""
    if config.max_grad_norm <= 0:
        return
    params = [p for p in network.parameters() if p.grad is not None]
    if config.clip == "global":
        nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    else:
        for param in params:
            nn.utils.clip_grad_norm_(param, config.max_grad_norm)


def gradient_step(
    agent: RLTuner, replay: StateReplay, optimizer: torch.optim.Optimizer, rng: np.random.Generator
) -> tuple[float, float]:
    """One update of the online network and the soft target update; (loss, mean Q)."""
    loss, q_values = td_loss(agent, replay, replay.sample(agent.config.batch_size, rng))
    apply_gradients(agent, optimizer, loss)
    return loss.item(), q_values.mean().item()


def apply_gradients(agent: RLTuner, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimizer step on ``loss`` (gradients clipped) and the soft target update."""
    optimizer.zero_grad()
    loss.backward()
    clip_gradients(agent.config, agent.q_network)
    optimizer.step()
    soft_update(agent.target_network, agent.q_network, agent.config.eta)
    agent.updates += 1


# ------------------------------------------------------------------------------ training loop
def _primers(infos: dict[str, Any], slots: np.ndarray, primed: bool) -> list[list[int]]:
    """The primers the env drew for ``slots`` (from its ``info["primer"]``)."""
    if not primed:
        return [[] for _ in slots]
    return [list(infos["primer"][i]) for i in slots]


def train(
    config: RLTunerConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    prior: MelodyPrior | None = None,
    progress: bool = True,
    log: bool = True,
) -> RLTuner:
    """Train an RL Tuner for ``config.steps`` environment steps; checkpoints, TensorBoard events
    and ``agent.json`` go to ``out``. ``resume`` continues the run of ``out/agent.pt`` exactly up
    to ``config.steps`` (``config`` must be the run's but for :data:`RESUMABLE`); ``overwrite``
    replaces a run there (without either, a folder holding a run is refused). ``prior``
    overrides ``config.prior`` with a loaded model. SIGINT / SIGTERM write a checkpoint and
    raise :class:`musicgym.errors.Interrupted`. On ``ChoraleComposition-v0`` the run is
    :func:`musicgym.agents.chorale_tuner.train`'s."""
    if config.is_chorale:
        from musicgym.agents.chorale_tuner import train as train_chorales

        return train_chorales(  # type: ignore[return-value]
            config, out, resume=resume, overwrite=overwrite, prior=prior, progress=progress, log=log
        )
    torch_device(config.device)
    with (
        claim_run_folder(out, resume=resume, overwrite=overwrite, run_files=RUN_FILES),
        StopSignals() as stop,
    ):
        return _train(config, Path(out), resume, prior, progress, log, stop)


def _train(
    config: RLTunerConfig,
    out: Path,
    resume: bool,
    prior: MelodyPrior | None,
    progress: bool,
    log: bool,
    stop: StopSignals,
) -> RLTuner:

    set_torch_threads(config.threads)
    agent, checkpoint = _agent_of_run(config, out, resume, prior)
    config = agent.config
    run = TrainingRun(agent, out, checkpoint)
    return run_training(run, out, log, progress, stop, evaluate, "; continue with --resume")


def run_training(
    run: Any,
    out: Path,
    log: bool,
    progress: bool,
    stop: StopSignals,
    evaluate: Any,
    resume_hint: str = "",
) -> Any:
    """The training loop of a run (a :class:`TrainingRun` or another environment's run with the
    same members): act and step, learn, log, evaluate with ``evaluate(agent, writer, step)``,
    checkpoint; until the steps, the minutes or a signal end it."""
    from tqdm.auto import tqdm

    agent, config = run.agent, run.config
    writer = _summary_writer(out, config) if log else None
    bar = tqdm(total=config.steps, initial=run.global_step, disable=not progress, unit="step")
    start_time, start_step = time.time(), run.global_step
    deadline = start_time + 60 * config.max_minutes if config.max_minutes > 0 else math.inf
    while run.global_step < config.steps and time.time() < deadline and not stop.requested:
        infos = run.act_and_step()
        bar.update(run.global_step - bar.n)
        if writer and "_episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                writer.add_scalar(
                    "charts/episodic_return", infos["episode"]["r"][i], run.global_step
                )

        # ---- learn: one gradient step per train_frequency environment steps
        for loss, mean_q in run.learn():
            if agent.updates % 100 == 1:  # the first, then every 100th
                sps = (run.global_step - start_step) / max(time.time() - start_time, 1e-9)
                bar.set_postfix(loss=f"{loss:.3g}", q=f"{mean_q:.3g}")
                if writer:
                    writer.add_scalar("losses/td_loss", loss, run.global_step)
                    writer.add_scalar("losses/q_values", mean_q, run.global_step)
                    writer.add_scalar("charts/SPS", sps, run.global_step)
                    if config.exploration == "egreedy":
                        writer.add_scalar("charts/epsilon", run.epsilon, run.global_step)

        if run.global_step >= min(run.next_eval, config.steps):
            run.next_eval += config.eval_interval
            if writer:
                evaluate(agent, writer, run.global_step)
        if run.global_step >= run.next_checkpoint:
            run.next_checkpoint += config.checkpoint_interval
            run.save()
    agent.steps_per_second = (run.global_step - start_step) / max(time.time() - start_time, 1e-9)
    run.save()
    bar.close()
    run.envs.close()
    if writer:
        writer.close()
    if stop.requested and run.global_step < config.steps:
        raise stop.interrupted(
            f"at step {run.global_step}: checkpoint written to {out / CHECKPOINT}{resume_hint}"
        )
    return agent


def _agent_of_run(
    config: RLTunerConfig, out: Path, resume: bool, prior: MelodyPrior | None
) -> tuple[RLTuner, dict[str, Any]]:
    """A new agent, or the run's (its settings checked against ``config``, those of
    :data:`RESUMABLE` taken from ``config``) and its checkpoint."""
    if not resume:
        torch.manual_seed(config.seed)
        agent = RLTuner(config, load_prior(prior if prior is not None else config.prior))
        check_replay_memory(config, agent.prior)
        return agent, {}
    agent, checkpoint = RLTuner.load(out / CHECKPOINT, device=config.device)
    saved = {RENAMED.get(k, k): v for k, v in checkpoint["config"].items()}
    check_resume_settings(out, saved, config, RESUMABLE)
    if prior is not None:
        check_same_prior(out, prior_fingerprint(agent.prior), load_prior(prior))
    # The run's settings, except how long (and where) to go on.
    session = {k: getattr(config, k) for k in RESUMABLE}
    agent.config = RLTunerConfig(**{**asdict(agent.config), **session})
    check_replay_memory(agent.config, agent.prior)
    return agent, checkpoint


def _summary_writer(out: Path, config: RLTunerConfig) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out))
    writer.add_text("hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in asdict(config).items()))
    return writer


def evaluate(agent: RLTuner, writer: Any, step: int) -> None:
    """Statistics of freshly composed melodies under music/, a few of them heard and seen."""
    from musicgym.music.audio import log_compositions

    config = agent.config
    composed = agent.compose(config.eval_melodies, seed=config.seed)
    for name, value in melody_statistics(agent.prior, composed, config.key).items():
        writer.add_scalar(f"music/{name}", value, step)
    log_compositions(writer, composed, step)


class TrainingRun:
    """What a training run carries from step to step: the optimizer, the replay memory, the
    random generators, the environments and the agent's melodies in progress, the counters; and
    its checkpoint, one file with all of it (see the module docstring).

    The env rewards log p + rules (q, psi) or the rules alone (g: the agent adds log p). Where it
    scores with the prior, its ``log p(a|s)`` of the next actions is the agent's too.
    """

    def __init__(self, agent: RLTuner, out: Path, checkpoint: dict[str, Any]) -> None:
        from gymnasium.wrappers.vector import RecordEpisodeStatistics

        config = self.config = agent.config
        self.agent, self.out = agent, out
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.optimizer = make_optimizer(config, agent.q_network)
        self.replay = StateReplay(
            config.buffer_size, config.length, agent.prior.summary_shape, config.context
        )
        check_output_folder(out, need_bytes=_checkpoint_bytes(agent, self.optimizer, self.replay))
        self.global_step, self.epsilon = 0, config.start_e
        resumed: dict[str, Any] = checkpoint.get("resume", {})
        if checkpoint:
            self._restore_learner(checkpoint, resumed)
        self.info = {
            "env": EnvConfig(**{f.name: getattr(config, f.name) for f in fields(EnvConfig)}),
            "checkpoint": CHECKPOINT,
            "config": asdict(config),
        }
        write_agent_info(out, f"rltuner-{config.algo}", **self.info, trained_steps=self.global_step)

        with_prior = config.algo != "g"
        envs = make_vector_env(config, agent.prior, config.num_envs, with_prior=with_prior)
        self.env_scores = with_prior and config.prior_reward
        self.envs = RecordEpisodeStatistics(envs)
        _, infos = self.envs.reset(seed=config.seed + (0 if resumed else self.global_step))
        self.slots, self.primed = np.arange(config.num_envs), bool(config.primer)
        self.melodies = Melodies(agent, config.num_envs)
        self.melodies.restart(self.slots, _primers(infos, self.slots, self.primed))
        self.log_probs = self.prior_log_probs()
        self.resetting = np.zeros(config.num_envs, bool)  # next-step autoreset: only resets
        self.next_eval = (self.global_step // config.eval_interval + 1) * config.eval_interval
        interval = config.checkpoint_interval
        self.next_checkpoint = (self.global_step // interval + 1) * interval
        self.updates_due = 0
        if resumed:
            self._restore_melodies(resumed)
        else:
            primers = [_primer_token(infos, i, self.primed) for i in self.slots]
            self.rows = np.array([self.replay.start(primer) for primer in primers])
            summaries = self.melodies.stepper.summary()
            self.replay.write_states(self.rows, np.zeros_like(self.rows), summaries, self.log_probs)

    def _restore_learner(self, checkpoint: dict[str, Any], resumed: dict[str, Any]) -> None:
        """The optimizer, counters, generators and replay memory of a checkpoint."""
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.global_step, self.agent.updates = int(checkpoint["step"]), int(checkpoint["updates"])
        self.rng.bit_generator.state = checkpoint["rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        if "replay" in checkpoint:
            self.replay.load_state_dict(checkpoint["replay"])
        elif (self.out / REPLAY_CHECKPOINT).is_file():  # written by an older version
            self.replay.load_state_dict(load_checkpoint_file(self.out / REPLAY_CHECKPOINT))
        self.replay.recompute_summaries(self.agent.prior, self.config.key, self.agent.device)
        if not resumed:
            _warn(
                f"{self.out / CHECKPOINT}: written by an older musicgym without the state of the "
                "melodies in progress: resumed, but not exactly the run it would have been"
                + ("" if len(self.replay) else " (and with an empty replay memory)")
            )

    def _restore_melodies(self, resumed: dict[str, Any]) -> None:
        """The melodies in progress and the counters: where the run stopped."""
        self.envs.unwrapped.set_state(resumed["env"])  # type: ignore[attr-defined]
        _set_episode_statistics(self.envs, resumed["episode_statistics"])
        self.melodies.load_state_dict(resumed["melodies"])
        self.log_probs = resumed["log_probs"].to(self.agent.device)
        self.rows = np.array(resumed["rows"], np.int64)
        self.resetting = np.array(resumed["resetting"], bool)
        self.updates_due = int(resumed["updates_due"])
        self.next_eval, self.next_checkpoint = resumed["next_eval"], resumed["next_checkpoint"]
        if self.replay.summary_digest(self.rows) != resumed.get("summary_digest"):
            _warn(
                f"{self.out}: the prior's summaries recomputed for the replay memory differ in "
                f"the last bits from those computed while acting (device {self.config.device}): "
                "the resumed run is not bit-identical to an uninterrupted one"
            )

    def prior_log_probs(self) -> torch.Tensor:
        """The prior's ``log p(a|s)`` of the melodies' next actions (the env's, where it has
        them)."""
        if self.env_scores:
            log_probs = self.envs.unwrapped.action_log_probs()  # type: ignore[attr-defined]
            return torch.as_tensor(log_probs, dtype=torch.float32, device=self.agent.device)
        return self.melodies.stepper.action_log_probs().float()

    def choose_actions(self) -> np.ndarray:
        """The actions of every melody: epsilon-greedy or Boltzmann on the policy logits."""
        config = self.config
        logits = self.agent.act_logits(self.melodies.states(self.log_probs)).cpu()
        duration = config.exploration_fraction * config.steps
        if config.exploration == "egreedy":
            self.epsilon = linear_schedule(config.start_e, config.end_e, duration, self.global_step)
        return explore(logits, self.epsilon, self.rng, config)

    def act_and_step(self) -> dict[str, Any]:
        """Act, step the envs, follow the melodies and store the transitions; the envs' infos.
        A slot that was resetting played nothing and starts afresh."""
        actions = self.choose_actions()
        _, rewards, terminations, _, infos = self.envs.step(actions)
        stepped, restarted = ~self.resetting, np.flatnonzero(self.resetting)
        self.melodies.play(torch.as_tensor(actions, dtype=torch.long, device=self.agent.device))
        self.melodies.restart(restarted, _primers(infos, restarted, self.primed))
        self.log_probs = self.prior_log_probs()
        replay, rows = self.replay, self.rows
        replay.add(rows[stepped], actions[stepped], rewards[stepped])
        for i in restarted:
            rows[i] = replay.start(_primer_token(infos, i, self.primed))
        going_on = ~terminations  # the next state of a stepped slot, or a new melody's first
        summaries = self.melodies.stepper.summary()
        replay.write_states(
            rows[going_on], replay.filled[rows[going_on]], summaries[going_on],
            self.log_probs[going_on],
        )  # fmt: skip
        self.resetting = terminations.copy()
        new_steps = int(stepped.sum())
        self.global_step += new_steps
        if self.global_step >= self.config.learning_starts:
            self.updates_due += new_steps
        return infos

    def learn(self) -> Iterator[tuple[float, float]]:
        """The gradient steps now due; (loss, mean Q) of each."""
        while self.updates_due >= self.config.train_frequency:
            self.updates_due -= self.config.train_frequency
            yield gradient_step(self.agent, self.replay, self.optimizer, self.rng)

    def save(self) -> None:
        """One file, everything the rest of the run depends on (see the module docstring)."""
        agent = self.agent
        extra = {
            "optimizer": self.optimizer.state_dict(),
            "step": self.global_step,
            "updates": agent.updates,
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "prior_fingerprint": prior_fingerprint(agent.prior),
            "replay": self.replay.state_dict(),
            "resume": {
                "env": self.envs.unwrapped.get_state(),  # type: ignore[attr-defined]
                "episode_statistics": _episode_statistics(self.envs),
                "melodies": self.melodies.state_dict(),
                "log_probs": self.log_probs.cpu(),
                "rows": self.rows.tolist(),
                "resetting": self.resetting.tolist(),
                "updates_due": self.updates_due,
                "next_eval": self.next_eval,
                "next_checkpoint": self.next_checkpoint,
                "summary_digest": self.replay.summary_digest(self.rows),
            },
        }
        save_checkpoint_file(agent.checkpoint(**extra), self.out / CHECKPOINT)
        (self.out / REPLAY_CHECKPOINT).unlink(missing_ok=True)  # an older version's, now stale
        algo = f"rltuner-{self.config.algo}"
        write_agent_info(self.out, algo, **self.info, trained_steps=self.global_step)


def _warn(message: str) -> None:
    print(f"musicgym: warning: {message}", file=sys.stderr)


STATISTICS = ("episode_count", "episode_returns", "episode_lengths", "prev_dones")
"""What ``RecordEpisodeStatistics`` keeps of the episodes in progress (its clock aside)."""


def _episode_statistics(envs: Any) -> dict[str, Any]:
    return {name: torch.as_tensor(np.asarray(getattr(envs, name))) for name in STATISTICS}


def _set_episode_statistics(envs: Any, state: dict[str, Any]) -> None:
    envs.episode_count = int(state["episode_count"])
    for name in STATISTICS[1:]:
        setattr(envs, name, state[name].numpy().copy())


def _checkpoint_bytes(agent: RLTuner, optimizer: torch.optim.Optimizer, replay: StateReplay) -> int:
    """About how large ``agent.pt`` grows: prior, networks and Adam's moments, the replay memory
    without its cached summaries."""
    networks = sum(p.numel() for p in agent.q_network.parameters())
    prior = sum(v.numel() for v in prior_checkpoint(agent.prior)["state_dict"].values())
    replay_bytes = replay.tokens.nbytes + replay.rewards.nbytes + replay.log_probs.nbytes
    return 4 * (prior + 4 * networks) + replay_bytes + 2**20


def _primer_token(infos: dict[str, Any], slot: int, primed: bool) -> int:
    """The random-note primer token of ``slot``'s new melody, -1 for none."""
    return int(infos["primer"][slot][0]) if primed else -1

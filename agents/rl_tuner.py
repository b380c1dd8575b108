"""The RL Tuner (Jaques et al. 2017): a recurrent DQN primed from the prior; Q, Ψ and G targets.

Read top to bottom like CleanRL's ``dqn.py``: the hyperparameters (:class:`RLTunerConfig`), the
Q-network, the replay memory, the targets, then :func:`train`. Everything is importable and
tested (``tests/test_agents.py``).

**The Q-network** is the frozen prior's action scores plus a learned, per-state term:
``Q(s, ·) = log p(· | s) + head(φ(s))`` (Q, Ψ), ``G(s, ·) = head(φ(s))`` (G, whose policy adds
``log p`` itself). ``head`` is a small MLP whose last layer starts at zero, so before training the
network *is* the prior, and its 38 outputs are unnormalised: each state's values rise and fall
independently (a softmax-normalised head cannot lift one action without pushing the others down).
``φ(s)`` is what the prior knows of the melody and where it is: the prior's time-axis output
``(N, H)`` (its recurrent summary of the melody so far, each pitch's ``H`` values projected to
``pitch_features`` by one linear map tied across pitches), the step, and the last ``context``
tokens. ``--train-note-axis`` also fine-tunes a copy of the prior's note axis in place of the
frozen ``log p`` (the whole network but its time axis; about 20x slower updates).

**Cheap updates.** The time axis stays the prior's, so ``φ(s)`` and ``log p(·|s)`` are fixed per
state: they are computed once while acting (``log p`` is the environment's own, read from it when
it has the prior) and kept with the replay (time-axis outputs in float16; the memory they need is
checked at the start). An update is then one MLP pass over ``2 * batch_size`` cached states.

**The replay memory** keeps melodies row by row (tokens, rewards, and every state's cached
``φ`` parts); a transition is a (row, step) pair and batches are drawn uniformly from all of them.
Checkpoints keep the tokens, rewards and ``log p``; the time-axis outputs are recomputed from the
tokens on ``--resume`` (the frozen prior gives the same numbers: a digest saved with the checkpoint
checks it bit for bit, and a mismatch, as on a GPU whose kernels depend on the batch shape, is
reported in one line).

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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.action_scores import (
    melody_statistics,
    next_sounding,
    score_melody_actions,
    sounding_before,
    time_axis_outputs,
)
from agents.common import (
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
from musicgym.actions import token_frames
from musicgym.checks import (
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    check_device,
    check_numbers,
)
from musicgym.errors import CheckpointError, EnvArgumentError
from musicgym.fileio import load_checkpoint_file, save_checkpoint_file
from musicgym.prior import token_axis
from musicgym.runs import (
    StopSignals,
    check_output_folder,
    check_resume_settings,
    claim_run_folder,
)
from musicgym.tokens import NUM_TOKENS
from priors.model import BiaxialConfig, BiaxialLSTM, BiaxialState

CHECKPOINT = "agent.pt"
REPLAY_CHECKPOINT = "replay.pt"
MODEL_TAG = "rl-tuner"
Algorithm = Literal["q", "psi", "g"]
MEMORY_SHARE = 0.8
"""The replay memory may take at most this share of the memory available at the start."""
RESUMABLE = (*SESSION_FIELDS, "device", "eval_interval", "eval_melodies", "checkpoint_interval")
"""The settings ``--resume`` may change; the others decide the run and must stay the run's."""


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
    """Replay memory size in transitions (the cached time-axis outputs take ~12 KB each)."""
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
    """Recent tokens the per-state term reads beside the prior's time-axis output."""
    pitch_features: int = 8
    """Features the per-state term takes from each pitch's time-axis output (one linear map,
    tied across pitches as in the Bi-axial LSTM)."""
    train_note_axis: bool = False
    """Fine-tune a copy of the prior's note axis too (q, psi): the whole network but the time
    axis, about 20x slower updates."""
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
        counts += ("pitch_features", "eval_interval", "eval_melodies", "checkpoint_interval")
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
        if self.primer not in ("", "random_note"):
            raise ValueError(f"primer: the RL Tuner takes '' or 'random_note', not {self.primer!r}")
        if self.train_note_axis and self.algo == "g":
            raise ValueError("train_note_axis: G-learning adds the frozen prior's log p itself")


def torch_device(name: str) -> torch.device:
    """``name`` as a device, or a one-line error when it is unknown or absent here."""
    return check_device(name, error=EnvArgumentError)


# ------------------------------------------------------------------------------------ network
@dataclass
class States:
    """``M`` states as the Q-network reads them (tensors on one device)."""

    time_out: torch.Tensor
    """``(M, N, H)``: the frozen prior's time-axis output (its summary of the melody so far)."""
    log_probs: torch.Tensor
    """``(M, 38)``: the frozen prior's ``log p(a | s)``."""
    context: torch.Tensor
    """``(M, K)``: the last ``K`` tokens played, oldest first; -1 before the melody's start."""
    step: torch.Tensor
    """``(M,)``: tokens played so far."""
    sounding: torch.Tensor
    """``(M,)``: the sounding note's token, -1 for none."""


class QNetwork(nn.Module):
    """``values(s, ·) = base(s, ·) + head(φ(s))``; see the module docstring. ``base`` is the frozen
    prior's ``log p`` (q, psi), 0 (g), or a trainable copy of the note axis' ``log p_θ``."""

    def __init__(self, prior: BiaxialLSTM, config: RLTunerConfig) -> None:
        super().__init__()
        self.algo, self.length, self.key = config.algo, config.length, config.key
        hidden = prior.config.time_sizes[-1]
        self.pitch_summary = nn.Linear(hidden, config.pitch_features)
        features = (
            prior.num_pitches * config.pitch_features + config.length + config.context * NUM_TOKENS
        )
        self.head = nn.Sequential(
            nn.Linear(features, config.head_size),
            nn.ReLU(),
            nn.Linear(config.head_size, NUM_TOKENS),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.note_axis: BiaxialLSTM | None = None
        if config.train_note_axis:
            self.note_axis = copy.deepcopy(prior).eval()
            self.note_axis.requires_grad_(True)
            self.note_axis.time_lstms.requires_grad_(False)

    def train(self, mode: bool = True) -> QNetwork:
        """The note axis always runs without dropout (values must be deterministic)."""
        super().train(mode)
        if self.note_axis is not None:
            self.note_axis.eval()
        return self

    def features(self, states: States) -> torch.Tensor:
        """``φ(s)`` ``(M, F)``: the time-axis output (each pitch's projected by one linear map,
        tied across pitches), the step and the recent tokens, flattened."""
        pitches = self.pitch_summary(states.time_out.float()).flatten(1)
        recent = F.one_hot(states.context + 1, NUM_TOKENS + 1)[..., 1:]  # -1 reads all zeros
        step = F.one_hot(states.step.clamp(max=self.length - 1), self.length)
        return torch.cat([pitches, step.float(), recent.flatten(1).float()], 1)

    def forward(self, states: States) -> torch.Tensor:
        """Values ``(M, 38)``."""
        term = self.head(self.features(states))
        if self.note_axis is not None:
            time_out = states.time_out.float()
            return score_melody_actions(self.note_axis, time_out, states.sounding, self.key) + term
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
    gamma: float,
    next_target_values: torch.Tensor,
    next_prior_log_probs: torch.Tensor | None = None,
    next_online_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """The TD target ``(B,)`` of each algorithm (``spec/melody-rules.md``).

    q: ``r + γ max_a' Q⁻(s', a')``, or with ``next_online_values`` (double DQN)
    ``r + γ Q⁻(s', argmax_a' Q(s', a'))``; psi: ``r + γ logsumexp_a' Ψ⁻(s', a')``;
    g: ``r + γ logsumexp_a' (G⁻(s', a') + log p(a'|s'))`` (``r`` is then ``r_MT / c``).
    ``dones`` (1 at the last step) drop the bootstrap term.
    """
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
    primer (-1 none). ``time_out[i, t]`` (float16) and ``log_probs[i, t]`` are the frozen prior's
    time-axis output and ``log p(·|s_t)`` in the state before step ``t``; the state after a stored
    step is always stored too (or the melody ended there). Rows are reused oldest first.
    """

    def __init__(
        self, capacity: int, length: int, num_pitches: int, hidden: int, context: int
    ) -> None:
        self.rows, self.length, self.context = max(1, capacity // length), length, context
        self.tokens = np.full((self.rows, length), -1, np.int8)
        self.rewards = np.zeros((self.rows, length), np.float32)
        self.filled = np.zeros(self.rows, np.int64)
        self.primers = np.full(self.rows, -1, np.int8)
        self.time_out = np.zeros((self.rows, length, num_pitches, hidden), np.float16)
        self.log_probs = np.zeros((self.rows, length, NUM_TOKENS), np.float32)
        self.next_row = 0

    @staticmethod
    def nbytes(capacity: int, length: int, num_pitches: int, hidden: int) -> int:
        """Bytes the arrays of a replay memory of ``capacity`` transitions take."""
        rows = max(1, capacity // length)
        return rows * length * (num_pitches * hidden * 2 + NUM_TOKENS * 4 + 5) + rows * 9

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
        self, rows: np.ndarray, steps: np.ndarray, time_out: torch.Tensor, log_probs: torch.Tensor
    ) -> None:
        """Cache the states before step ``steps[j]`` of ``rows[j]``."""
        self.time_out[rows, steps] = time_out.detach().to("cpu", torch.float16).numpy()
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
            time_out=torch.from_numpy(self.time_out[rows, steps]).to(device),
            log_probs=torch.from_numpy(self.log_probs[rows, steps]).to(device),
            context=recent_tokens(tokens, steps_t, self.context).to(device),
            step=steps_t.to(device),
            sounding=sounding.to(device),
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything but the time-axis outputs, which :meth:`recompute_time_out` restores."""
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

    @torch.no_grad()
    def recompute_time_out(self, prior: BiaxialLSTM, key: str, chunk: int = 256) -> None:
        """Run the frozen prior's time axis over every stored melody (after its primer), those
        just started included."""
        for primed in (False, True):
            rows = np.flatnonzero((self.primers >= 0) == primed)
            for begin in range(0, len(rows), chunk):
                part = rows[begin : begin + chunk]
                tokens = torch.from_numpy(self.tokens[part].astype(np.int64))
                if primed:
                    primer = torch.from_numpy(self.primers[part].astype(np.int64))[:, None]
                    tokens = torch.cat([primer, tokens], 1)
                outputs = time_axis_outputs(prior, tokens.to(prior.device), key)
                outputs = outputs[:, int(primed) : int(primed) + self.length]
                self.time_out[part] = outputs.to("cpu", torch.float16).numpy()

    def time_out_digest(self, current_rows: np.ndarray) -> str:
        """A hash of the cached time-axis outputs that can be read: every step up to the next
        state of each row that holds a melody (``current_rows``: those being composed)."""
        digest = hashlib.blake2b(digest_size=16)
        in_use = np.union1d(np.flatnonzero(self.filled > 0), current_rows)
        for row in in_use:
            digest.update(self.time_out[row, : min(self.filled[row], self.length - 1) + 1])
        return digest.hexdigest()


def check_replay_memory(config: RLTunerConfig, prior: BiaxialLSTM) -> None:
    """A one-line error when the replay memory would not fit in the memory available now."""
    need = StateReplay.nbytes(
        config.buffer_size, config.length, prior.num_pitches, prior.config.time_sizes[-1]
    )
    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        available = int(meminfo[meminfo.index("MemAvailable:") + 1]) * 1024
    except (OSError, ValueError, IndexError):
        return  # not Linux: nothing to check against
    if need > MEMORY_SHARE * available:
        raise EnvArgumentError(
            f"buffer_size: {config.buffer_size} transitions need {need / 2**30:.1f} GiB of replay "
            f"memory (cached time-axis outputs), more than {MEMORY_SHARE:.0%} of the "
            f"{available / 2**30:.1f} GiB available; lower --buffer-size"
        )


# ------------------------------------------------------------------------------ the agent itself
class Melodies:
    """``M`` melodies being composed: the frozen prior's state over each, and its tokens."""

    def __init__(self, agent: RLTuner, count: int) -> None:
        self.agent, self.count = agent, count
        device = agent.device
        self.prior_state = agent.prior.initial_state(count)
        self.sounding = torch.full((count,), -1, dtype=torch.long, device=device)
        self.tokens = torch.full((count, agent.length), -1, dtype=torch.long, device=device)
        self.step = torch.zeros(count, dtype=torch.long, device=device)

    @torch.no_grad()
    def restart(self, rows: np.ndarray, primers: list[list[int]]) -> None:
        """Start the melodies ``rows`` afresh, each fed its primer tokens first."""
        if not len(rows):
            return
        agent, prior = self.agent, self.agent.prior
        index = torch.as_tensor(rows, dtype=torch.long, device=agent.device)
        state = prior.initial_state(len(rows))
        sounding = torch.full((len(rows),), -1, dtype=torch.long, device=agent.device)
        for t in range(max(map(len, primers), default=0)):
            assert all(len(p) == len(primers[0]) for p in primers), "primers of one length"
            tokens = torch.tensor([p[t] for p in primers], device=agent.device)
            state = prior.advance(state, agent.frames(tokens, sounding))
            sounding = next_sounding(sounding, tokens)
        self.prior_state = prior.assign_state(self.prior_state, index, state)
        self.sounding[index], self.tokens[index], self.step[index] = sounding, -1, 0

    @torch.no_grad()
    def play(self, tokens: torch.Tensor) -> None:
        """Every melody plays its token (those that ended are restarted by :meth:`restart`)."""
        frames = self.agent.frames(tokens, self.sounding)
        self.prior_state = self.agent.prior.advance(self.prior_state, frames)
        self.sounding = next_sounding(self.sounding, tokens)
        rows = torch.arange(self.count, device=tokens.device)
        self.tokens[rows, self.step.clamp(max=self.agent.length - 1)] = tokens
        self.step = self.step + 1

    def state_dict(self) -> dict[str, Any]:
        """The melodies and the prior's state over them (its tensors), for a checkpoint."""
        state = self.prior_state
        return {
            "hidden": [[h.cpu(), c.cpu()] for h, c in state.hidden],
            "time_out": state.time_out.cpu(),
            "prior_step": state.step.cpu(),
            "sounding": self.sounding.cpu(),
            "tokens": self.tokens.cpu(),
            "step": self.step.cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.agent.device
        self.prior_state = BiaxialState(
            [(h.to(device), c.to(device)) for h, c in state["hidden"]],
            state["time_out"].to(device),
            state["prior_step"].to(device),
        )
        self.sounding = state["sounding"].to(device)
        self.tokens, self.step = state["tokens"].to(device), state["step"].to(device)

    def states(self, log_probs: torch.Tensor) -> States:
        """The current states, with the prior's ``log p`` of them (from the env or the agent)."""
        return States(
            time_out=self.prior_state.time_out,
            log_probs=log_probs,
            context=recent_tokens(self.tokens, self.step, self.agent.config.context),
            step=self.step,
            sounding=self.sounding,
        )


class RLTuner:
    """The networks of a run (online, target, frozen prior), acting and composing.

    Use :func:`train` to train one and :meth:`load` to read a checkpoint; :meth:`compose` is the
    agent interface of :func:`agents.load`.
    """

    def __init__(self, config: RLTunerConfig, prior: BiaxialLSTM) -> None:
        self.config, self.length = config, config.length
        self.device = torch_device(config.device)
        self.prior = load_prior(prior).to(self.device)  # frozen: features, log p, music/log_p
        self.q_network = QNetwork(self.prior, config).to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.updates = 0
        """Gradient steps taken."""
        self.steps_per_second = 0.0
        """Environment steps per second of the last :func:`train` call."""

    def frames(self, tokens: torch.Tensor, sounding: torch.Tensor) -> torch.Tensor:
        """The prior frames ``tokens`` produce after ``sounding``, in the run's key."""
        return token_frames(tokens, sounding, *token_axis(self.prior, self.config.key))

    @torch.no_grad()
    def prior_log_probs(self, melodies: Melodies) -> torch.Tensor:
        """The frozen prior's ``log p(a | s)`` ``(M, 38)`` of the melodies' next actions."""
        time_out = melodies.prior_state.time_out
        return score_melody_actions(self.prior, time_out, melodies.sounding, self.config.key)

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
            logits = self.act_logits(melodies.states(self.prior_log_probs(melodies))).cpu()
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
            "model": MODEL_TAG,
            "config": asdict(self.config),
            "prior_config": asdict(self.prior.config),
            "prior_state_dict": _cpu(self.prior.state_dict()),
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
        if checkpoint.get("model") != MODEL_TAG:
            raise CheckpointError(f"{path}: not an RL Tuner checkpoint")
        try:
            known = {f.name for f in fields(RLTunerConfig)}
            settings = {k: v for k, v in checkpoint["config"].items() if k in known}
            if device is not None:
                settings["device"] = device
            elif str(settings.get("device", "cpu")).startswith("cuda"):
                settings["device"] = "cuda" if torch.cuda.is_available() else "cpu"
            config = RLTunerConfig(**settings)
            prior = BiaxialLSTM(BiaxialConfig(**checkpoint["prior_config"]))
            prior.load_state_dict(checkpoint["prior_state_dict"])
            agent = cls(config, prior)
            agent.q_network.load_state_dict(checkpoint["q_state_dict"])
            agent.target_network.load_state_dict(checkpoint["target_state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(f"{path}: does not fit the RL Tuner ({first})") from None
        return agent, checkpoint


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
    config, device = agent.config, agent.device
    rows, steps = batch
    states = replay.states(rows, steps, device)
    next_states = replay.states(rows, steps + 1, device)
    actions = torch.from_numpy(replay.tokens[rows, steps].astype(np.int64)).to(device)
    rewards = torch.from_numpy(replay.rewards[rows, steps]).to(device)
    dones = torch.from_numpy(steps == replay.length - 1).to(device)
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
            config.gamma,
            next_target,
            next_states.log_probs,
            next_online,
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
    optimizer.zero_grad()
    loss.backward()
    clip_gradients(agent.config, agent.q_network)
    optimizer.step()
    soft_update(agent.target_network, agent.q_network, agent.config.eta)
    agent.updates += 1
    return loss.item(), q_values.mean().item()


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
    prior: BiaxialLSTM | None = None,
    progress: bool = True,
    log: bool = True,
) -> RLTuner:
    """Train an RL Tuner for ``config.steps`` environment steps; checkpoints, TensorBoard events
    and ``agent.json`` go to ``out``. ``resume`` continues the run of ``out/agent.pt`` exactly up
    to ``config.steps`` (``config`` must be the run's but for :data:`RESUMABLE`); ``overwrite``
    replaces a run there (without either, a folder holding a run is refused). ``prior``
    overrides ``config.prior`` with a loaded model. SIGINT / SIGTERM write a checkpoint and
    raise :class:`musicgym.errors.Interrupted`."""
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
    prior: BiaxialLSTM | None,
    progress: bool,
    log: bool,
    stop: StopSignals,
) -> RLTuner:
    from tqdm.auto import tqdm

    set_torch_threads(config.threads)
    checkpoint: dict[str, Any] = {}
    if resume:
        agent, checkpoint = RLTuner.load(out / CHECKPOINT, device=config.device)
        check_resume_settings(out, checkpoint["config"], config, RESUMABLE)
        if prior is not None:
            check_same_prior(out, prior_fingerprint(agent.prior), load_prior(prior))
        # The run's settings, except how long (and where) to go on.
        session = {k: getattr(config, k) for k in RESUMABLE}
        agent.config = config = RLTunerConfig(**{**asdict(agent.config), **session})
    else:
        torch.manual_seed(config.seed)
        agent = RLTuner(config, load_prior(prior if prior is not None else config.prior))
    check_replay_memory(config, agent.prior)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    optimizer = make_optimizer(config, agent.q_network)
    hidden = agent.prior.config.time_sizes[-1]
    replay = StateReplay(
        config.buffer_size, config.length, agent.prior.num_pitches, hidden, config.context
    )
    check_output_folder(out, need_bytes=_checkpoint_bytes(agent, optimizer, replay))
    global_step = 0
    resumed: dict[str, Any] = checkpoint.get("resume", {})
    if checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        global_step, agent.updates = int(checkpoint["step"]), int(checkpoint["updates"])
        rng.bit_generator.state = checkpoint["rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        if "replay" in checkpoint:
            replay.load_state_dict(checkpoint["replay"])
        elif (out / REPLAY_CHECKPOINT).is_file():  # written by an older version
            replay.load_state_dict(load_checkpoint_file(out / REPLAY_CHECKPOINT))
        replay.recompute_time_out(agent.prior, config.key)
        if not resumed:
            _warn(
                f"{out / CHECKPOINT}: written by an older musicgym without the state of the "
                "melodies in progress: resumed, but not exactly the run it would have been"
                + ("" if len(replay) else " (and with an empty replay memory)")
            )
    info = {
        "env": EnvConfig(**{f.name: getattr(config, f.name) for f in fields(EnvConfig)}),
        "checkpoint": CHECKPOINT,
        "config": asdict(config),
    }
    write_agent_info(out, f"rltuner-{config.algo}", **info, trained_steps=global_step)
    writer = None
    if log:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out))
        writer.add_text(
            "hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in asdict(config).items())
        )

    # The env rewards log p + rules (q, psi) or the rules alone (g: the agent adds log p). Where
    # it scores with the prior, its log p(a|s) of the next actions is the agent's too.
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    with_prior = config.algo != "g"
    envs = make_vector_env(config, agent.prior, config.num_envs, with_prior=with_prior)
    env_scores = with_prior and config.prior_reward
    envs = RecordEpisodeStatistics(envs)
    _, infos = envs.reset(seed=config.seed + (0 if resumed else global_step))
    slots = np.arange(config.num_envs)
    primed = bool(config.primer)
    melodies = Melodies(agent, config.num_envs)
    melodies.restart(slots, _primers(infos, slots, primed))

    def prior_log_probs() -> torch.Tensor:
        if env_scores:
            log_probs = envs.unwrapped.action_log_probs()  # type: ignore[attr-defined]
            return torch.as_tensor(log_probs, dtype=torch.float32, device=agent.device)
        return agent.prior_log_probs(melodies)

    log_probs = prior_log_probs()
    resetting = np.zeros(config.num_envs, bool)  # next-step autoreset: this step only resets
    next_eval = (global_step // config.eval_interval + 1) * config.eval_interval
    next_checkpoint = (global_step // config.checkpoint_interval + 1) * config.checkpoint_interval
    updates_due, epsilon = 0, config.start_e
    if resumed:  # the melodies in progress, the counters: where the run stopped
        envs.unwrapped.set_state(resumed["env"])  # type: ignore[attr-defined]
        _set_episode_statistics(envs, resumed["episode_statistics"])
        melodies.load_state_dict(resumed["melodies"])
        log_probs = resumed["log_probs"].to(agent.device)
        rows = np.array(resumed["rows"], np.int64)
        resetting = np.array(resumed["resetting"], bool)
        updates_due = int(resumed["updates_due"])
        next_eval, next_checkpoint = int(resumed["next_eval"]), int(resumed["next_checkpoint"])
        if replay.time_out_digest(rows) != resumed["time_out_digest"]:
            _warn(
                f"{out}: the prior's time-axis outputs recomputed for the replay memory differ "
                f"in the last bits from those computed while acting (device {config.device}): "
                "the resumed run is not bit-identical to an uninterrupted one"
            )
    else:
        rows = np.array([replay.start(_primer_token(infos, i, primed)) for i in slots])
        replay.write_states(rows, np.zeros_like(rows), melodies.prior_state.time_out, log_probs)

    def save() -> None:
        """One file, everything the rest of the run depends on (see the module docstring)."""
        extra = {
            "optimizer": optimizer.state_dict(),
            "step": global_step,
            "updates": agent.updates,
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "prior_fingerprint": prior_fingerprint(agent.prior),
            "replay": replay.state_dict(),
            "resume": {
                "env": envs.unwrapped.get_state(),  # type: ignore[attr-defined]
                "episode_statistics": _episode_statistics(envs),
                "melodies": melodies.state_dict(),
                "log_probs": log_probs.cpu(),
                "rows": rows.tolist(),
                "resetting": resetting.tolist(),
                "updates_due": updates_due,
                "next_eval": next_eval,
                "next_checkpoint": next_checkpoint,
                "time_out_digest": replay.time_out_digest(rows),
            },
        }
        save_checkpoint_file(agent.checkpoint(**extra), out / CHECKPOINT)
        (out / REPLAY_CHECKPOINT).unlink(missing_ok=True)  # an older version's, now stale
        write_agent_info(out, f"rltuner-{config.algo}", **info, trained_steps=global_step)

    def evaluate(writer) -> None:
        """Statistics of freshly composed melodies under music/, a few of them heard and seen."""
        from musicgym.audio import log_compositions

        composed = agent.compose(config.eval_melodies, seed=config.seed)
        for name, value in melody_statistics(agent.prior, composed, config.key).items():
            writer.add_scalar(f"music/{name}", value, global_step)
        log_compositions(writer, composed, global_step)

    bar = tqdm(total=config.steps, initial=global_step, disable=not progress, unit="step")
    start_time, start_step = time.time(), global_step
    deadline = start_time + 60 * config.max_minutes if config.max_minutes > 0 else math.inf
    while global_step < config.steps and time.time() < deadline and not stop.requested:
        # ---- act: epsilon-greedy or Boltzmann on the policy logits
        logits = agent.act_logits(melodies.states(log_probs)).cpu()
        if config.exploration == "boltzmann":
            scaled = logits / config.temperature
            actions = torch.multinomial(F.softmax(scaled, 1), 1)[:, 0].numpy()
        else:
            epsilon = linear_schedule(
                config.start_e,
                config.end_e,
                config.exploration_fraction * config.steps,
                global_step,
            )
            actions = logits.argmax(1).numpy()
            explore = rng.random(config.num_envs) < epsilon
            actions[explore] = rng.integers(0, NUM_TOKENS, explore.sum())
        _, rewards, terminations, _, infos = envs.step(actions)

        # ---- follow the melodies; a slot that was resetting played nothing and starts afresh
        stepped = ~resetting
        restarted = np.flatnonzero(resetting)
        melodies.play(torch.as_tensor(actions, dtype=torch.long, device=agent.device))
        melodies.restart(restarted, _primers(infos, restarted, primed))
        log_probs = prior_log_probs()
        replay.add(rows[stepped], actions[stepped], rewards[stepped])
        for i in restarted:
            rows[i] = replay.start(_primer_token(infos, i, primed))
        going_on = ~terminations  # the next state of a stepped slot, or a new melody's first
        steps = replay.filled[rows[going_on]]
        time_out = melodies.prior_state.time_out
        replay.write_states(rows[going_on], steps, time_out[going_on], log_probs[going_on])
        resetting = terminations.copy()
        new_steps = int(stepped.sum())
        global_step += new_steps
        bar.update(new_steps)
        if writer and "_episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)

        # ---- learn: one gradient step per train_frequency environment steps
        if global_step >= config.learning_starts:
            updates_due += new_steps
        while updates_due >= config.train_frequency:
            updates_due -= config.train_frequency
            loss, mean_q = gradient_step(agent, replay, optimizer, rng)
            if agent.updates % 100 == 1:  # the first, then every 100th
                sps = (global_step - start_step) / max(time.time() - start_time, 1e-9)
                bar.set_postfix(loss=f"{loss:.3g}", q=f"{mean_q:.3g}")
                if writer:
                    writer.add_scalar("losses/td_loss", loss, global_step)
                    writer.add_scalar("losses/q_values", mean_q, global_step)
                    writer.add_scalar("charts/SPS", sps, global_step)
                    if config.exploration == "egreedy":
                        writer.add_scalar("charts/epsilon", epsilon, global_step)

        if global_step >= min(next_eval, config.steps):
            next_eval += config.eval_interval
            if writer:
                evaluate(writer)
        if global_step >= next_checkpoint:
            next_checkpoint += config.checkpoint_interval
            save()
    agent.steps_per_second = (global_step - start_step) / max(time.time() - start_time, 1e-9)
    save()
    bar.close()
    envs.close()
    if writer:
        writer.close()
    if stop.requested and global_step < config.steps:
        raise stop.interrupted(
            f"at step {global_step}: checkpoint written to {out / CHECKPOINT}; continue with "
            "--resume"
        )
    return agent


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
    without its cached time-axis outputs."""
    networks = sum(p.numel() for p in agent.q_network.parameters())
    prior = sum(p.numel() for p in agent.prior.parameters())
    replay_bytes = replay.tokens.nbytes + replay.rewards.nbytes + replay.log_probs.nbytes
    return 4 * (prior + 4 * networks) + replay_bytes + 2**20


def _primer_token(infos: dict[str, Any], slot: int, primed: bool) -> int:
    """The random-note primer token of ``slot``'s new melody, -1 for none."""
    return int(infos["primer"][slot][0]) if primed else -1

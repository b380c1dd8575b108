"""The RL Tuner (Jaques et al. 2017): a recurrent DQN primed from the prior; Q, Ψ and G targets.

Read top to bottom like CleanRL's ``dqn.py``: the hyperparameters (:class:`RLTunerConfig`), the
Q-network, the replay memory, the targets, then :func:`train`. Everything is importable and
tested (``tests/test_agents.py``).

**The Q-network** is a copy of the prior (a :class:`~priors.model.BiaxialLSTM`) with an affine
head: the value of token ``a`` is ``scale * log p_θ(a | s) + bias[a]``, where ``log p_θ`` scores
the 38 candidate next frames from the network's own recurrent state over the melody so far and
renormalises them exactly as the environment computes the prior's ``log p(a | s)``
(:func:`agents.action_scores.score_melody_actions`). ``scale = 1`` and ``bias = 0`` at the start,
so before training the network *is* the prior: its greedy action is the prior's most likely one.
The head lets the values leave ``(-inf, 0]``, which log-probabilities cannot.

By default (``train_time_axis=False``) the time axis stays the prior's and only the note axis and
the head learn: the time axis dominates the cost of an update (a replayed state is recomputed over
the whole melody so far) while the note axis, which turns the time axis's summary of the past into
the 38 action values, carries the decision. ``--train-time-axis`` fine-tunes the whole network.

**The replay memory** keeps melodies, not recurrent states (the time axis's state is ~100 KB per
step): row ``i`` holds the tokens one melody has played so far and the reward of each step, and a
transition is a (row, step) pair. The recurrent state before step ``t`` is recomputed exactly by
running the network over the row's first ``t`` tokens (melodies start from silence: no primer).
For G-learning a row also keeps the frozen prior's ``log p(·|s')`` of every next state, computed
while acting. A batch is ``batch_size`` transitions from ``melodies_per_batch`` melodies, so that
one time-axis pass serves several transitions (sequence replay, as in DRQN and R2D2).

**Targets** (``spec/melody-rules.md``): Q: ``r + γ max_a' Q⁻(s', a')`` (or double DQN, the online
network's argmax valued by the target network); Ψ: ``r + γ logsumexp_a' Ψ⁻(s', a')``; G: the
environment gives the rules-only reward ``r_MT / c`` (``prior=None``) and the target is
``r_MT/c + γ logsumexp_a' (G⁻(s', a') + log p(a'|s'))``. The policies: argmax / softmax of Q,
softmax(Ψ), softmax(G + log p).
"""

from __future__ import annotations

import copy
import math
import os
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
    SESSION_FIELDS,
    EnvConfig,
    RunConfig,
    load_prior,
    make_vector_env,
    set_torch_threads,
    write_agent_info,
)
from musicgym.actions import token_frames
from musicgym.errors import CheckpointError
from musicgym.fileio import load_checkpoint_file, save_checkpoint_file
from musicgym.tokens import NUM_TOKENS
from priors.model import BiaxialConfig, BiaxialLSTM

CHECKPOINT = "agent.pt"
REPLAY_CHECKPOINT = "replay.pt"
MODEL_TAG = "rl-tuner"
Algorithm = Literal["q", "psi", "g"]


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
    """Replay memory size in transitions."""
    batch_size: int = 32
    """Transitions per gradient step."""
    melodies_per_batch: int = 8
    """Melodies the transitions of a batch are drawn from (one time-axis pass each)."""
    learning_starts: int = 1_000
    """Environment steps before the first gradient step."""
    train_frequency: int = 32
    """Environment steps per gradient step (an update costs about 30 environment steps' worth of
    CPU, so 32 keeps 50,000 steps within the hour on 2 cores)."""
    eta: float = 0.01
    """Soft target update rate: θ⁻ ← (1 - eta) θ⁻ + eta θ after every gradient step."""
    double_q: bool = False
    """Double DQN (algo q only): the online network picks the next action, the target values it."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss."""
    max_grad_norm: float = 10.0
    """Gradient norm clipping."""
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
    train_time_axis: bool = False
    """Fine-tune the time axis too (about 5x slower updates); by default it stays the prior's."""
    eval_interval: int = 10_000
    """Environment steps between evaluations (statistics under music/ in TensorBoard)."""
    eval_melodies: int = 32
    """Melodies composed at each evaluation."""
    checkpoint_interval: int = 10_000
    """Environment steps between checkpoints (one is always written at the end)."""

    def __post_init__(self) -> None:
        if self.algo not in ("q", "psi", "g"):
            raise ValueError(f"algo: expected q, psi or g, got {self.algo!r}")
        if self.batch_size % self.melodies_per_batch:
            raise ValueError("batch_size must be a multiple of melodies_per_batch")
        if self.buffer_size < self.length:
            raise ValueError("buffer_size must hold at least one melody")


# ------------------------------------------------------------------------------------ network
class QNetwork(nn.Module):
    """The prior's architecture and weights with an affine head on its action log-probabilities:
    ``value[a] = scale * log p_θ(a | s) + bias[a]`` (identity at the start)."""

    def __init__(self, prior: BiaxialLSTM, train_time_axis: bool = False) -> None:
        super().__init__()
        self.body = copy.deepcopy(prior).eval()
        self.body.requires_grad_(True)
        self.body.time_lstms.requires_grad_(train_time_axis)
        self.scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(NUM_TOKENS))

    def train(self, mode: bool = True) -> QNetwork:
        """The body always runs without dropout (Q-values must be deterministic)."""
        super().train(mode)
        self.body.eval()
        return self

    def forward(self, time_out: torch.Tensor, sounding: torch.Tensor) -> torch.Tensor:
        """Values ``(M, 38)`` of the states given by their time-axis outputs ``(M, N, H)`` and
        sounding notes ``(M,)``."""
        return self.scale * score_melody_actions(self.body, time_out, sounding) + self.bias

    def time_out(self, melodies: torch.Tensor) -> torch.Tensor:
        """``(M, T + 1, N, H)``: time-axis outputs before each position of ``melodies``."""
        return time_axis_outputs(self.body, melodies)


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
class MelodyReplay:
    """Replay memory of melodies; a transition is (row, step). See the module docstring.

    ``melodies[i, t]`` is the token played at step ``t`` of row ``i`` (-1 not yet), ``rewards[i,
    t]`` its reward, ``filled[i]`` how many steps the row holds; ``next_log_probs[i, t]`` (G only)
    the frozen prior's ``log p(·|s_{t+1})``. Rows are reused oldest first.
    """

    def __init__(self, capacity: int, length: int, keep_log_probs: bool = False) -> None:
        self.rows, self.length = max(1, capacity // length), length
        self.melodies = np.full((self.rows, length), -1, np.int8)
        self.rewards = np.zeros((self.rows, length), np.float32)
        self.filled = np.zeros(self.rows, np.int64)
        self.next_log_probs = (
            np.zeros((self.rows, length, NUM_TOKENS), np.float32) if keep_log_probs else None
        )
        self.next_row = 0

    def __len__(self) -> int:
        """Transitions held."""
        return int(self.filled.sum())

    def start(self) -> int:
        """A row for a new melody (the oldest one is overwritten)."""
        row = self.next_row
        self.next_row = (row + 1) % self.rows
        self.melodies[row] = -1
        self.filled[row] = 0
        return row

    def add(
        self,
        rows: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_log_probs: np.ndarray | None = None,
    ) -> None:
        """Append one step to each of ``rows``."""
        steps = self.filled[rows]
        self.melodies[rows, steps] = actions
        self.rewards[rows, steps] = rewards
        if self.next_log_probs is not None and next_log_probs is not None:
            self.next_log_probs[rows, steps] = next_log_probs
        self.filled[rows] += 1

    def sample(
        self, batch_size: int, melodies_per_batch: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, which, steps)``: ``melodies_per_batch`` rows drawn in proportion to the steps
        they hold, and ``batch_size`` transitions, ``which[j]`` indexing ``rows``."""
        rows = rng.choice(self.rows, melodies_per_batch, p=self.filled / self.filled.sum())
        which = np.repeat(np.arange(melodies_per_batch), batch_size // melodies_per_batch)
        steps = (rng.random(batch_size) * self.filled[rows[which]]).astype(np.int64)
        return rows, which, steps

    def state_dict(self) -> dict[str, Any]:
        state = {
            "melodies": torch.from_numpy(self.melodies.copy()),
            "rewards": torch.from_numpy(self.rewards.copy()),
            "filled": torch.from_numpy(self.filled.copy()),
            "next_row": self.next_row,
        }
        if self.next_log_probs is not None:
            state["next_log_probs"] = torch.from_numpy(self.next_log_probs.copy())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.melodies[:] = state["melodies"].numpy()
        self.rewards[:] = state["rewards"].numpy()
        self.filled[:] = state["filled"].numpy()
        self.next_row = int(state["next_row"])
        if self.next_log_probs is not None and "next_log_probs" in state:
            self.next_log_probs[:] = state["next_log_probs"].numpy()


# ------------------------------------------------------------------------------ the agent itself
class RLTuner:
    """The networks of a run (online, target, frozen prior), acting and composing.

    Use :func:`train` to train one and :meth:`load` to read a checkpoint; :meth:`compose` is the
    agent interface of :func:`agents.load`.
    """

    def __init__(self, config: RLTunerConfig, prior: BiaxialLSTM) -> None:
        self.config, self.length = config, config.length
        self.prior = load_prior(prior)  # frozen: G's log p, music/log_p
        self.q_network = QNetwork(self.prior, config.train_time_axis)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.updates = 0
        """Gradient steps taken."""
        self.steps_per_second = 0.0
        """Environment steps per second of the last :func:`train` call."""

    # ------------------------------------------------------------------------- acting
    def initial_state(self, batch_size: int) -> dict[str, Any]:
        """Recurrent state of ``batch_size`` melodies before their first token."""
        with torch.no_grad():
            state = {
                "prior": self.prior.initial_state(batch_size),
                "sounding": torch.full((batch_size,), -1, dtype=torch.long),
            }
            if self.config.train_time_axis:
                state["q"] = self.q_network.body.initial_state(batch_size)
        return state

    def reset_rows(self, state: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
        """``state`` with the melodies ``rows`` started afresh."""
        if not len(rows):
            return state
        index = torch.as_tensor(rows, dtype=torch.long)
        fresh = self.initial_state(len(rows))
        state = dict(state)
        state["prior"] = self.prior.assign_state(state["prior"], index, fresh["prior"])
        state["sounding"] = state["sounding"].index_copy(0, index, fresh["sounding"])
        if "q" in state:
            state["q"] = self.q_network.body.assign_state(state["q"], index, fresh["q"])
        return state

    @torch.no_grad()
    def prior_log_probs(self, state: dict[str, Any]) -> torch.Tensor:
        """The frozen prior's ``log p(a | s)`` ``(M, 38)`` in ``state``."""
        return score_melody_actions(self.prior, state["prior"].time_out, state["sounding"])

    @torch.no_grad()
    def act_logits(
        self, state: dict[str, Any], prior_log_probs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(policy logits (M, 38), the prior's log p (M, 38) for G, else None)`` in ``state``;
        pass ``prior_log_probs`` if already known."""
        time_out = state["q"].time_out if "q" in state else state["prior"].time_out
        values = self.q_network(time_out, state["sounding"])
        if self.config.algo == "g" and prior_log_probs is None:
            prior_log_probs = self.prior_log_probs(state)
        return policy_logits(self.config.algo, values, prior_log_probs), prior_log_probs

    @torch.no_grad()
    def advance(self, state: dict[str, Any], tokens: torch.Tensor) -> dict[str, Any]:
        """``state`` after every melody plays its token."""
        prior = self.prior
        frames = token_frames(tokens, state["sounding"], prior.lowest_pitch, prior.num_pitches)
        advanced = {
            "prior": prior.advance(state["prior"], frames),
            "sounding": next_sounding(state["sounding"], tokens),
        }
        if "q" in state:
            advanced["q"] = self.q_network.body.advance(state["q"], frames)
        return advanced

    @torch.no_grad()
    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[list[int]]:
        """``n`` melodies: each token the argmax (``greedy``) or a sample of the policy's softmax
        (Q, Ψ, or G + log p), all ``n`` composed side by side."""
        generator = torch.Generator().manual_seed(seed)
        state, melodies = self.initial_state(n), []
        for _ in range(self.length):
            logits, _ = self.act_logits(state)
            if greedy:
                tokens = logits.argmax(1)
            else:
                tokens = torch.multinomial(F.softmax(logits, 1), 1, generator=generator)[:, 0]
            melodies.append(tokens)
            state = self.advance(state, tokens)
        return torch.stack(melodies, 1).tolist()

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
    def load(cls, path: str | os.PathLike) -> tuple[RLTuner, dict[str, Any]]:
        """The agent of a checkpoint file (or a run folder holding ``agent.pt``) and the
        checkpoint dict; :class:`CheckpointError` if it is missing, damaged or not ours."""
        path = Path(path)
        if path.is_dir():
            path = path / CHECKPOINT
        checkpoint = load_checkpoint_file(path)
        if checkpoint.get("model") != MODEL_TAG:
            raise CheckpointError(f"{path}: not an RL Tuner checkpoint")
        try:
            known = {f.name for f in fields(RLTunerConfig)}
            config = RLTunerConfig(**{k: v for k, v in checkpoint["config"].items() if k in known})
            prior = BiaxialLSTM(BiaxialConfig(**checkpoint["prior_config"]))
            prior.load_state_dict(checkpoint["prior_state_dict"])
            agent = cls(config, prior)
            agent.q_network.load_state_dict(checkpoint["q_state_dict"])
            agent.target_network.load_state_dict(checkpoint["target_state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{path}: does not fit the RL Tuner ({error})") from None
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
    agent: RLTuner,
    replay: MelodyReplay,
    batch: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TD loss of a replay batch and the Q-values of its actions ``(B,)``."""
    config = agent.config
    rows, which, steps = batch
    melodies = torch.from_numpy(replay.melodies[rows].astype(np.int64))  # (K, L), -1 padded
    span = int(steps.max()) + 1  # tokens needed: s_t and s_{t+1} for every sampled t
    melodies = melodies[:, :span]
    which_t, steps_t = torch.from_numpy(which), torch.from_numpy(steps)
    actions = melodies[which_t, steps_t]
    rewards = torch.from_numpy(replay.rewards[rows[which], steps])
    dones = torch.from_numpy(steps == replay.length - 1)
    sounding = sounding_before(melodies)  # (K, span + 1)

    with torch.set_grad_enabled(config.train_time_axis):
        time_out = agent.q_network.time_out(melodies)  # (K, span + 1, N, H)
    values = agent.q_network(time_out[which_t, steps_t], sounding[which_t, steps_t])
    q_values = values.gather(1, actions[:, None])[:, 0]

    with torch.no_grad():
        # Without time-axis training all three networks share the prior's time axis.
        target_out = agent.target_network.time_out(melodies) if config.train_time_axis else time_out
        next_state = (which_t, steps_t + 1)
        next_sounding_ = sounding[next_state]
        next_target = agent.target_network(target_out[next_state], next_sounding_)
        next_online = None
        if config.double_q and config.algo == "q":
            next_online = agent.q_network(time_out[next_state].detach(), next_sounding_)
        next_log_probs = None
        if config.algo == "g":
            assert replay.next_log_probs is not None
            next_log_probs = torch.from_numpy(replay.next_log_probs[rows[which], steps])
        target = td_target(
            config.algo, rewards, dones, config.gamma, next_target, next_log_probs, next_online
        )
    loss_fn = F.smooth_l1_loss if config.loss == "huber" else F.mse_loss
    return loss_fn(q_values, target), q_values.detach()


def make_optimizer(config: RLTunerConfig, network: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in network.parameters() if p.requires_grad]
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=config.learning_rate)
    return torch.optim.Adam(params, lr=config.learning_rate)


# ------------------------------------------------------------------------------ training loop
def train(
    config: RLTunerConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    prior: BiaxialLSTM | None = None,
    progress: bool = True,
    log: bool = True,
) -> RLTuner:
    """Train an RL Tuner for ``config.steps`` environment steps; checkpoints, TensorBoard events
    and ``agent.json`` go to ``out``. ``resume`` continues from ``out/agent.pt`` (and its replay
    memory) up to ``config.steps``. ``prior`` overrides ``config.prior`` with a loaded model."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_torch_threads(config.threads)
    checkpoint: dict[str, Any] = {}
    if resume:
        agent, checkpoint = RLTuner.load(out / CHECKPOINT)
        # The run's settings, except how long (and on how many threads) to go on.
        session = {k: getattr(config, k) for k in SESSION_FIELDS}
        agent.config = config = RLTunerConfig(**{**asdict(agent.config), **session})
    else:
        agent = RLTuner(config, load_prior(prior if prior is not None else config.prior))
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    optimizer = make_optimizer(config, agent.q_network)
    replay = MelodyReplay(config.buffer_size, config.length, keep_log_probs=config.algo == "g")
    global_step = 0
    if checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        global_step, agent.updates = int(checkpoint["step"]), int(checkpoint["updates"])
        rng.bit_generator.state = checkpoint["rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        if (out / REPLAY_CHECKPOINT).is_file():
            replay.load_state_dict(load_checkpoint_file(out / REPLAY_CHECKPOINT))
    info = {
        "env": EnvConfig(**{f.name: getattr(config, f.name) for f in fields(EnvConfig)}),
        "checkpoint": CHECKPOINT,
    }
    write_agent_info(out, f"rltuner-{config.algo}", **info, trained_steps=global_step)
    writer = None
    if log:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out))
        writer.add_text(
            "hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in asdict(config).items())
        )

    # The env rewards log p + rules (q, psi) or the rules alone (g: the agent adds log p).
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    envs = make_vector_env(config, agent.prior, config.num_envs, with_prior=config.algo != "g")
    envs = RecordEpisodeStatistics(envs)
    envs.reset(seed=config.seed + global_step)
    state = agent.initial_state(config.num_envs)
    rows = np.array([replay.start() for _ in range(config.num_envs)])
    resetting = np.zeros(config.num_envs, bool)  # next-step autoreset: this step only resets

    def save() -> None:
        extra = {
            "optimizer": optimizer.state_dict(),
            "step": global_step,
            "updates": agent.updates,
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }
        save_checkpoint_file(replay.state_dict(), out / REPLAY_CHECKPOINT)
        save_checkpoint_file(agent.checkpoint(**extra), out / CHECKPOINT)
        write_agent_info(out, f"rltuner-{config.algo}", **info, trained_steps=global_step)

    def evaluate() -> dict[str, float]:
        melodies = agent.compose(config.eval_melodies, seed=config.seed)
        return melody_statistics(agent.prior, melodies, config.key)

    bar = tqdm(total=config.steps, initial=global_step, disable=not progress, unit="step")
    start_time, start_step = time.time(), global_step
    next_eval = (global_step // config.eval_interval + 1) * config.eval_interval
    next_checkpoint = (global_step // config.checkpoint_interval + 1) * config.checkpoint_interval
    updates_due, prior_log_probs = 0, None
    deadline = start_time + 60 * config.max_minutes if config.max_minutes > 0 else math.inf
    while global_step < config.steps and time.time() < deadline:
        # ---- act: epsilon-greedy or Boltzmann on the policy logits
        logits, prior_log_probs = agent.act_logits(state, prior_log_probs)
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
        state = agent.advance(state, torch.as_tensor(actions, dtype=torch.long))
        state = agent.reset_rows(state, np.flatnonzero(resetting))
        prior_log_probs = agent.prior_log_probs(state) if config.algo == "g" else None
        next_log_probs = prior_log_probs[stepped].numpy() if prior_log_probs is not None else None
        replay.add(rows[stepped], actions[stepped], rewards[stepped], next_log_probs)
        for i in np.flatnonzero(terminations):
            rows[i] = replay.start()
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
            batch = replay.sample(config.batch_size, config.melodies_per_batch, rng)
            loss, q_values = td_loss(agent, replay, batch)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.q_network.parameters(), config.max_grad_norm)
            optimizer.step()
            soft_update(agent.target_network, agent.q_network, config.eta)
            agent.updates += 1
            if agent.updates % 10 == 0:
                sps = (global_step - start_step) / max(time.time() - start_time, 1e-9)
                bar.set_postfix(loss=f"{loss.item():.3g}", q=f"{q_values.mean().item():.3g}")
                if writer:
                    writer.add_scalar("losses/td_loss", loss.item(), global_step)
                    writer.add_scalar("losses/q_values", q_values.mean().item(), global_step)
                    writer.add_scalar("charts/SPS", sps, global_step)
                    if config.exploration == "egreedy":
                        writer.add_scalar("charts/epsilon", epsilon, global_step)

        if global_step >= min(next_eval, config.steps):
            next_eval += config.eval_interval
            if writer:
                for name, value in evaluate().items():
                    writer.add_scalar(f"music/{name}", value, global_step)
        if global_step >= next_checkpoint:
            next_checkpoint += config.checkpoint_interval
            save()
    agent.steps_per_second = (global_step - start_step) / max(time.time() - start_time, 1e-9)
    save()
    bar.close()
    envs.close()
    if writer:
        writer.close()
    return agent

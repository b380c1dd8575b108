"""The RL Tuner on ``ChoraleComposition-v0``: Q, Ψ and G learning over note-axis decisions.

The same learner as :mod:`musicgym.agents.rl_tuner` (its settings
:class:`~musicgym.agents.rl_tuner.RLTunerConfig`, its network, targets, exploration, optimizer and
soft updates), over another environment's states. What differs, and lives here:

* **States.** A state is a decision inside a frame: the frozen prior's summary of the frames so
  far (one per frame: the Bi-axial LSTM's time-axis output), the notes decided in this frame, the
  lowest pitch still open, the frame's place in the bar, and the prior's ``log p`` of the ``2N +
  1`` actions (``-inf`` for the invalid ones). :class:`ChoraleQNetwork` reads the first four as
  ``φ(s)``: ``Q(s, ·) = log p(· | s) + head(φ(s))``, the head zero-initialised as the melody
  tuner's, so before training the network *is* the prior's note axis.
* **Masks.** The invalid actions (pitches at or below the last one written in the frame) are left
  out of the max and the logsumexp of the targets, of the greedy choice and of exploration
  (:func:`musicgym.agents.rl_tuner.explore`, :func:`musicgym.agents.rl_tuner.td_target` with
  ``next_mask``).
* **Discount per frame.** ``gamma`` discounts once per time step (frame), as in the melody env
  where a step is a 16th note: inside a frame the decisions are not discounted, so the rules,
  judged when a time step ends, reach back to every decision of their frame.
* **Replay.** Transitions are kept one by one (a frame takes a varying number of decisions): each
  state keeps its frame's index into a store of the frames' summaries (float16, one per frame,
  not per decision), its decided notes (bit-packed), its open pitch, its bar position and its
  ``log p``. A frame summary overwritten by newer frames invalidates the old transitions that
  read it; batches draw among the valid ones.

The agent keeps its own :class:`~musicgym.envs.chorale.DecisionStepper` over the prior, as the
melody tuner keeps its token stepper; the env's ``log p`` is read from it where the env has the
prior (q, psi), the agent's own otherwise (g). Checkpoints (``agent.pt``: networks, settings,
prior) are written every ``checkpoint_interval`` steps and at the end; ``--resume`` of a chorale
run is refused (the melody tuner's exact resume is not built for this env yet).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from musicgym.agents.common import (
    RUN_FILES,
    EnvConfig,
    make_vector_env,
    set_torch_threads,
    write_agent_info,
)
from musicgym.agents.rl_tuner import (
    CHECKPOINT,
    MEMORY_SHARE,
    QNetwork,
    RLTuner,
    RLTunerConfig,
    apply_gradients,
    explore,
    linear_schedule,
    make_optimizer,
    masked_values,
    policy_logits,
    run_training,
    torch_device,
    transition_loss,
)
from musicgym.config import CHORALE_ENV_ID
from musicgym.envs.decisions import (
    BEATS_PER_BAR,
    DecisionStepper,
    compose_chorales,
    end_action,
    load_note_axis_prior,
    parse_primer,
    valid_actions,
)
from musicgym.errors import EnvArgumentError, RunFolderError
from musicgym.fileio import save_checkpoint_file
from musicgym.music.notestate import NoteState
from musicgym.prior import NoteAxisPrior, prior_checkpoint, require
from musicgym.runs import StopSignals, check_output_folder, claim_run_folder

MODEL_TAG = "rl-tuner-chorale"
FRAMES_PER_TRANSITION = 4
"""The replay keeps one frame summary per this many transitions (a frame of four voices takes
five decisions)."""


# --------------------------------------------------------------------------------- states
@dataclass
class ChoraleStates:
    """``M`` decision states as the Q-network reads them (tensors on one device)."""

    summary: torch.Tensor
    """``(M, K, H)``: the frozen prior's summary of the frames before this one."""
    log_probs: torch.Tensor
    """``(M, 2N + 1)``: the prior's ``log p(a | s)``, ``-inf`` for the invalid actions."""
    decided: torch.Tensor
    """``(M, N, 2)``: the (play, articulate) bits decided in this frame."""
    next_pitch: torch.Tensor
    """``(M,)``: the lowest pitch still open in this frame."""
    position: torch.Tensor
    """``(M,)``: the frame's index in the chorale."""

    @property
    def mask(self) -> torch.Tensor:
        """``(M, 2N + 1)`` bool: the valid actions."""
        return torch.from_numpy(
            valid_actions(self.next_pitch.cpu().numpy(), self.decided.shape[1])
        ).to(self.next_pitch.device)


class ChoraleQNetwork(QNetwork):
    """:class:`~musicgym.agents.rl_tuner.QNetwork` over chorale decisions: ``φ(s)`` adds to the
    prior's summary the frame's decided notes, the open pitch (one-hot) and the bar position
    (one-hot); ``2N + 1`` values."""

    def __init__(self, prior: NoteAxisPrior, config: RLTunerConfig) -> None:
        self.num_pitches = prior.num_pitches
        self.steps_per_bar = BEATS_PER_BAR * prior.resolution
        extra = 2 * self.num_pitches + (self.num_pitches + 1) + self.steps_per_bar
        super().__init__(prior, config, extra, end_action(self.num_pitches) + 1)  # type: ignore[arg-type]

    def extra_features(self, states: ChoraleStates) -> torch.Tensor:  # type: ignore[override]
        open_pitch = F.one_hot(states.next_pitch, self.num_pitches + 1).float()
        position = F.one_hot(states.position % self.steps_per_bar, self.steps_per_bar).float()
        return torch.cat([states.decided.float().flatten(1), open_pitch, position], 1)


# --------------------------------------------------------------------------------- replay
class ChoraleReplay:
    """Transitions of chorale decisions, and the summaries of their frames (see the module
    docstring). ``capacity`` transitions, ``capacity / FRAMES_PER_TRANSITION`` frames."""

    def __init__(self, capacity: int, summary_shape: tuple[int, int], num_pitches: int) -> None:
        self.capacity, self.num_pitches = capacity, num_pitches
        self.frame_capacity = max(1, capacity // FRAMES_PER_TRANSITION)
        self.summaries = np.zeros((self.frame_capacity, *summary_shape), np.float16)
        self.frames_written = 0
        actions = end_action(num_pitches) + 1
        packed = (2 * num_pitches + 7) // 8
        self.sides: dict[str, dict[str, np.ndarray]] = {
            side: {
                "frame": np.zeros(capacity, np.int64),
                "decided": np.zeros((capacity, packed), np.uint8),
                "next_pitch": np.zeros(capacity, np.int64),
                "position": np.zeros(capacity, np.int64),
                "log_probs": np.zeros((capacity, actions), np.float32),
            }
            for side in ("state", "next")
        }
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.dones = np.zeros(capacity, bool)
        self.count = 0
        """Transitions written so far (the oldest are overwritten past ``capacity``)."""

    @staticmethod
    def nbytes(capacity: int, summary_shape: tuple[int, int], num_pitches: int) -> int:
        """Bytes the arrays of a replay of ``capacity`` transitions take."""
        frames = max(1, capacity // FRAMES_PER_TRANSITION)
        per_side = 8 * 3 + (2 * num_pitches + 7) // 8 + 4 * (2 * num_pitches + 1)
        return frames * 2 * summary_shape[0] * summary_shape[1] + capacity * (2 * per_side + 13)

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def add_frame(self, summary: torch.Tensor) -> int:
        """Keep a frame's summary ``(K, H)``; its index."""
        index = self.frames_written
        self.summaries[index % self.frame_capacity] = summary.to("cpu", torch.float16).numpy()
        self.frames_written += 1
        return index

    def add(
        self,
        state: dict[str, np.ndarray],
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        next_state: dict[str, np.ndarray],
    ) -> None:
        """Append transitions (``state`` and ``next_state``: :meth:`record` of each)."""
        slots = (self.count + np.arange(len(actions))) % self.capacity
        for side, record in (("state", state), ("next", next_state)):
            for name, values in record.items():
                self.sides[side][name][slots] = values
        self.actions[slots], self.rewards[slots], self.dones[slots] = actions, rewards, dones
        self.count += len(actions)

    @staticmethod
    def record(
        frames: np.ndarray,
        decided: np.ndarray,
        next_pitch: np.ndarray,
        position: np.ndarray,
        log_probs: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """One side of ``M`` transitions: frame indices, decided bits ``(M, N, 2)``, open
        pitches, positions and ``log p`` ``(M, 2N + 1)``."""
        return {
            "frame": np.asarray(frames, np.int64),
            "decided": np.packbits(np.asarray(decided, np.uint8).reshape(len(frames), -1), 1),
            "next_pitch": np.asarray(next_pitch, np.int64),
            "position": np.asarray(position, np.int64),
            "log_probs": np.asarray(log_probs, np.float32),
        }

    def valid(self, slots: np.ndarray) -> np.ndarray:
        """Whether the frames both sides of ``slots`` read are still kept."""
        oldest = self.frames_written - self.frame_capacity
        return (self.sides["state"]["frame"][slots] >= oldest) & (
            self.sides["next"]["frame"][slots] >= oldest
        )

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` transitions drawn uniformly among the valid ones."""
        chosen = rng.integers(0, len(self), batch_size)
        for _ in range(100):
            stale = ~self.valid(chosen)
            if not stale.any():
                break
            chosen[stale] = rng.integers(0, len(self), stale.sum())
        return chosen

    def states(self, slots: np.ndarray, side: str, device: torch.device) -> ChoraleStates:
        """The ``"state"`` or ``"next"`` states of the transitions ``slots``."""
        kept = self.sides[side]
        bits = np.unpackbits(kept["decided"][slots], 1)[:, : 2 * self.num_pitches]
        frames = kept["frame"][slots] % self.frame_capacity
        return ChoraleStates(
            summary=torch.from_numpy(self.summaries[frames]).to(device),
            log_probs=torch.from_numpy(kept["log_probs"][slots]).to(device),
            decided=torch.from_numpy(bits.reshape(-1, self.num_pitches, 2)).float().to(device),
            next_pitch=torch.from_numpy(kept["next_pitch"][slots]).to(device),
            position=torch.from_numpy(kept["position"][slots]).to(device),
        )


def check_replay_memory(config: RLTunerConfig, prior: NoteAxisPrior) -> None:
    """A one-line error when the replay would not fit in the memory available now."""
    shape = prior.summary_shape  # type: ignore[attr-defined]
    need = ChoraleReplay.nbytes(config.buffer_size, shape, prior.num_pitches)
    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        available = int(meminfo[meminfo.index("MemAvailable:") + 1]) * 1024
    except (OSError, ValueError, IndexError):
        return
    if need > MEMORY_SHARE * available:
        raise EnvArgumentError(
            f"buffer_size: {config.buffer_size} transitions need {need / 2**30:.1f} GiB of replay "
            f"memory, more than {MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB available; "
            "lower --buffer-size"
        )


# ---------------------------------------------------------------------------------- agent
class Chorales:
    """``B`` chorales being composed by the agent: its decision stepper over the prior, and each
    stream's frame index in the replay's summary store and in its chorale."""

    def __init__(self, agent: ChoraleTuner, count: int) -> None:
        self.agent, self.count = agent, count
        self.stepper = DecisionStepper(agent.prior.num_pitches, count, agent.prior, agent.device)
        self.position = np.zeros(count, np.int64)

    def restart(self, rows: np.ndarray) -> None:
        self.stepper.restart(rows.tolist(), [self.agent.primer] * len(rows))
        self.position[rows] = 0

    def states(self, log_probs: torch.Tensor) -> ChoraleStates:
        device = self.agent.device
        return ChoraleStates(
            summary=self.stepper.summary(),
            log_probs=log_probs,
            decided=torch.from_numpy(self.stepper.frame).float().to(device),
            next_pitch=torch.from_numpy(self.stepper.next_pitch.copy()).to(device),
            position=torch.from_numpy(self.position.copy()).to(device),
        )


class ChoraleTuner(RLTuner):
    """The networks of a chorale run (online, target, frozen prior), acting and composing: an
    :class:`~musicgym.agents.rl_tuner.RLTuner` over chorale decisions, whose :meth:`compose` gives
    note-states (the agent interface of :func:`musicgym.agents.load`)."""

    model_tag: ClassVar[str] = MODEL_TAG
    env = CHORALE_ENV_ID

    def __init__(self, config: RLTunerConfig, prior: Any) -> None:
        super().__init__(config, prior)
        resolution = self.prior.resolution
        self.frames = self.length = config.bars * BEATS_PER_BAR * resolution
        axis = (self.prior.lowest_pitch, self.prior.num_pitches, resolution)
        primer = parse_primer(config.primer or None, *axis, "primer")
        self.primer = np.zeros((0, axis[1], 2), np.uint8) if primer is None else primer

    def frozen_prior(self, prior: Any) -> NoteAxisPrior:
        """The note-axis prior of a name, path or model, frozen; it must have a summary."""
        loaded = load_note_axis_prior(prior)
        assert loaded is not None
        require(loaded, "summary", "the chorale RL Tuner's Q-network", self.config.prior)
        if isinstance(loaded, torch.nn.Module):
            loaded.eval().requires_grad_(False)
        return loaded

    def make_network(self, prior: Any, config: RLTunerConfig) -> ChoraleQNetwork:
        return ChoraleQNetwork(prior, config)

    @torch.no_grad()
    def act_logits(self, states: ChoraleStates) -> torch.Tensor:  # type: ignore[override]
        """Policy logits ``(M, 2N + 1)``, ``-inf`` for the invalid actions."""
        values = self.q_network(states)
        return masked_values(policy_logits(self.config.algo, values, states.log_probs), states.mask)

    @torch.no_grad()
    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[NoteState]:  # type: ignore[override]
        """``n`` chorales: each decision the argmax (``greedy``) or a sample of the policy's
        softmax among the valid actions, all ``n`` side by side."""
        generator = torch.Generator().manual_seed(seed)
        chorales = Chorales(self, n)
        chorales.restart(np.arange(n))

        def choose(stepper: DecisionStepper, active: np.ndarray) -> np.ndarray:
            log_probs = stepper.action_log_probs().float()
            logits = self.act_logits(chorales.states(log_probs)).cpu()
            if greedy:
                actions = logits.argmax(1)
            else:
                actions = torch.multinomial(F.softmax(logits, 1), 1, generator=generator)[:, 0]
            return actions.numpy()

        return _compose(chorales, self.frames, choose, self.prior)


def _compose(chorales: Chorales, frames: int, choose: Any, prior: NoteAxisPrior) -> list[NoteState]:
    """:func:`musicgym.envs.chorale.compose_chorales` keeping ``chorales.position`` in step."""
    stepper = chorales.stepper

    def counted(stepper: DecisionStepper, active: np.ndarray) -> np.ndarray:
        actions = choose(stepper, active)
        ending = active & (actions == end_action(stepper.num_pitches))
        chorales.position[ending] += 1
        return actions

    return compose_chorales(stepper, frames, counted, prior.lowest_pitch, prior.resolution)


def load_agent(folder: str | os.PathLike, info: dict[str, Any]) -> ChoraleTuner:
    """The agent of a chorale RL Tuner run folder."""
    return ChoraleTuner.load(Path(folder) / info.get("checkpoint", CHECKPOINT))[0]


# ------------------------------------------------------------------------------- training
def gradient_step(
    agent: ChoraleTuner,
    replay: ChoraleReplay,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """One update of the online network (targets masked, discounted once per frame) and the
    soft target update; (loss, mean Q)."""
    device = agent.device
    slots = replay.sample(agent.config.batch_size, rng)
    next_states = replay.states(slots, "next", device)
    actions = torch.from_numpy(replay.actions[slots]).to(device)
    ends_frame = actions == end_action(agent.prior.num_pitches)
    loss, q_values = transition_loss(
        agent,
        replay.states(slots, "state", device),
        actions,
        torch.from_numpy(replay.rewards[slots]).to(device),
        torch.from_numpy(replay.dones[slots]).to(device),
        next_states,
        gamma=torch.where(ends_frame, agent.config.gamma, 1.0),
        next_mask=next_states.mask,
    )
    apply_gradients(agent, optimizer, loss)
    return loss.item(), q_values.mean().item()


class ChoraleRun:
    """What a chorale training run carries from step to step: the environments, the agent's
    chorales, the replay, the optimizer, the generators and the counters."""

    def __init__(self, agent: ChoraleTuner, out: Path) -> None:
        from gymnasium.wrappers.vector import RecordEpisodeStatistics

        config = self.config = agent.config
        self.agent, self.out = agent, out
        self.rng = np.random.default_rng(config.seed)
        self.optimizer = make_optimizer(config, agent.q_network)
        shape = agent.prior.summary_shape  # type: ignore[attr-defined]
        self.replay = ChoraleReplay(config.buffer_size, shape, agent.prior.num_pitches)
        check_output_folder(out, need_bytes=_checkpoint_bytes(agent))
        self.global_step, self.epsilon = 0, config.start_e
        self.info = {
            "env": EnvConfig(**{f.name: getattr(config, f.name) for f in fields(EnvConfig)}),
            "checkpoint": CHECKPOINT,
            "config": asdict(config),
        }
        write_agent_info(out, f"rltuner-{config.algo}", **self.info, trained_steps=0)
        with_prior = config.algo != "g"
        envs = make_vector_env(config, agent.prior, config.num_envs, with_prior=with_prior)
        self.env_scores = with_prior and config.prior_reward
        self.envs = RecordEpisodeStatistics(envs)
        self.envs.reset(seed=config.seed)
        self.chorales = Chorales(agent, config.num_envs)
        self.chorales.restart(np.arange(config.num_envs))
        self.frames = np.zeros(config.num_envs, np.int64)
        """Each stream's frame index in the replay's summary store."""
        self.frames = self._new_frames(np.arange(config.num_envs), self.frames)
        self.log_probs = self.prior_log_probs()
        self.resetting = np.zeros(config.num_envs, bool)
        self.updates_due = 0
        self.next_checkpoint = config.checkpoint_interval
        self.next_eval = config.eval_interval

    def _new_frames(self, rows: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """``frames`` with the streams ``rows`` at a new frame, its summary kept."""
        summaries = self.chorales.stepper.summary()
        frames = frames.copy()
        for i in rows:
            frames[i] = self.replay.add_frame(summaries[i])
        return frames

    def prior_log_probs(self) -> torch.Tensor:
        if self.env_scores:
            log_probs = self.envs.unwrapped.action_log_probs()  # type: ignore[attr-defined]
            return torch.as_tensor(log_probs, dtype=torch.float32, device=self.agent.device)
        return self.chorales.stepper.action_log_probs().float()

    def _record(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        stepper = self.chorales.stepper
        return ChoraleReplay.record(
            self.frames[rows],
            stepper.frame[rows],
            stepper.next_pitch[rows],
            self.chorales.position[rows],
            self.log_probs[rows].cpu().numpy(),
        )

    def choose_actions(self) -> np.ndarray:
        config = self.config
        states = self.chorales.states(self.log_probs)
        with torch.no_grad():
            values = self.agent.q_network(states)
        logits = policy_logits(config.algo, values, states.log_probs)
        if config.exploration == "egreedy":
            duration = config.exploration_fraction * config.steps
            self.epsilon = linear_schedule(config.start_e, config.end_e, duration, self.global_step)
        return explore(logits.cpu(), self.epsilon, self.rng, config, states.mask.cpu())

    def act_and_step(self) -> dict[str, Any]:
        """Act, step the envs, follow the chorales and store the transitions."""
        actions = self.choose_actions()
        _, rewards, terminations, _, infos = self.envs.step(actions)
        active = ~self.resetting
        rows = np.flatnonzero(active)
        before = self._record(rows)
        ended = self.chorales.stepper.decide(actions, active)
        ended_rows = np.array(sorted(ended), np.int64)
        self.chorales.position[ended_rows] += 1
        restarted = np.flatnonzero(self.resetting)
        self.chorales.restart(restarted)
        new_frame = np.union1d(ended_rows[~terminations[ended_rows]], restarted)
        self.frames = self._new_frames(new_frame.astype(np.int64), self.frames)
        self.log_probs = self.prior_log_probs()
        after = self._record(rows)
        dones = terminations[rows]
        self.replay.add(before, actions[rows], rewards[rows], dones, after)
        self.resetting = terminations.copy()
        self.global_step += len(rows)
        if self.global_step >= self.config.learning_starts:
            self.updates_due += len(rows)
        return infos

    def learn(self) -> list[tuple[float, float]]:
        done = []
        while self.updates_due >= self.config.train_frequency:
            self.updates_due -= self.config.train_frequency
            done.append(gradient_step(self.agent, self.replay, self.optimizer, self.rng))
        return done

    def save(self) -> None:
        extra = {"step": self.global_step, "updates": self.agent.updates}
        save_checkpoint_file(self.agent.checkpoint(**extra), self.out / CHECKPOINT)
        algo = f"rltuner-{self.config.algo}"
        write_agent_info(self.out, algo, **self.info, trained_steps=self.global_step)


def _checkpoint_bytes(agent: ChoraleTuner) -> int:
    networks = sum(p.numel() for p in agent.q_network.parameters())
    prior = sum(v.numel() for v in prior_checkpoint(agent.prior)["state_dict"].values())
    return 4 * (prior + 2 * networks) + 2**20


def evaluate(agent: ChoraleTuner, writer: Any, step: int) -> None:
    """Chorale statistics of freshly composed chorales under music/."""
    from musicgym.envs.decisions import chorale_statistics

    config = agent.config
    composed = agent.compose(config.eval_melodies, seed=config.seed)
    for name, value in chorale_statistics(agent.prior, composed, config.key).items():
        writer.add_scalar(f"music/{name}", value, step)


def train(
    config: RLTunerConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    prior: NoteAxisPrior | None = None,
    progress: bool = True,
    log: bool = True,
) -> ChoraleTuner:
    """Train the RL Tuner on ``ChoraleComposition-v0`` for ``config.steps`` decisions into
    ``out`` (``agent.pt``, TensorBoard events, ``agent.json``); SIGINT / SIGTERM write the
    checkpoint and stop. ``resume`` is refused (see the module docstring)."""
    torch_device(config.device)
    if resume:
        raise RunFolderError(
            f"{out}: --resume is not supported for ChoraleComposition-v0 runs yet; start a new "
            "run (--overwrite replaces this one)"
        )
    with (
        claim_run_folder(out, resume=False, overwrite=overwrite, run_files=RUN_FILES),
        StopSignals() as stop,
    ):
        return _train(config, Path(out), prior, progress, log, stop)


def _train(
    config: RLTunerConfig,
    out: Path,
    prior: NoteAxisPrior | None,
    progress: bool,
    log: bool,
    stop: StopSignals,
) -> ChoraleTuner:
    set_torch_threads(config.threads)
    torch.manual_seed(config.seed)
    agent = ChoraleTuner(config, prior if prior is not None else config.prior)
    check_replay_memory(config, agent.prior)
    return run_training(ChoraleRun(agent, out), out, log, progress, stop, evaluate)

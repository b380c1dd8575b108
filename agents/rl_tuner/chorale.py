"""The RL Tuner on ``ChoraleComposition-v0``: its features of a decision state and its replay.

* **Features.** A state is a decision inside a frame. Beside the prior's summary of the frames so
  far, the Q-network reads the notes decided in this frame, the lowest pitch still open (one-hot)
  and the frame's place in the bar (one-hot), all from the environment's plain observation.
* **Masks.** The invalid actions (pitches at or below the last one written in the frame) are left
  out of the max and the logsumexp of the targets, of the greedy choice and of exploration; the
  ``"prior"`` observation's ``"action_mask"`` gives them.
* **Discount per frame.** ``gamma`` discounts once per time step (frame), as in the melody env
  where a step is a 16th note: inside a frame the decisions are not discounted, so the rules,
  judged when a time step ends, reach back to every decision of their frame.
* **Replay.** Transitions are kept one by one (a frame takes a varying number of decisions): each
  state keeps its frame's index into a store of the frames' summaries (float16, one per frame,
  not per decision), its decided notes (bit-packed), its open pitch, its bar position and its
  ``log p``. A frame summary overwritten by newer frames invalidates the old transitions that
  read it; batches draw among the valid ones. The frame store is not checkpointed (hundreds of
  MB), so a chorale run does not resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from musicgym.agents.rl_tuner.config import RLTunerConfig
from musicgym.agents.rl_tuner.parts import Observations, Transitions, tensor
from musicgym.envs.decisions import BEATS_PER_BAR, end_action, valid_actions
from musicgym.errors import EnvArgumentError
from musicgym.prior import NoteAxisPrior

FRAMES_PER_TRANSITION = 4
"""The replay keeps one frame summary per this many transitions (a frame of four voices takes
five decisions)."""


@dataclass
class ChoraleStates:
    """``M`` decision states as the Q-network reads them (tensors on one device)."""

    summary: torch.Tensor
    """``(M, K, H)``: the frozen prior's summary of the frames before this one."""
    log_probs: torch.Tensor
    """``(M, 2N + 1)``: the prior's ``log p(a | s)`` (invalid actions: any value)."""
    decided: torch.Tensor
    """``(M, N, 2)``: the (play, articulate) bits decided in this frame."""
    next_pitch: torch.Tensor
    """``(M,)``: the lowest pitch still open in this frame."""
    position: torch.Tensor
    """``(M,)``: the frame's position in its bar."""
    mask: torch.Tensor
    """``(M, 2N + 1)`` bool: the valid actions."""
    sounding = None
    outcomes = None


class ChoralePart:
    """The RL Tuner's part of ``ChoraleComposition-v0`` (see the module docstring)."""

    model_tag = "rl-tuner-chorale"
    resumable = False
    rule_outcomes = 0

    def __init__(self, prior: NoteAxisPrior, config: RLTunerConfig) -> None:
        for name in ("train_readout", "rule_features"):
            if getattr(config, name):
                raise EnvArgumentError(f"{name}: only on MusicComposition-v0")
        self.prior, self.config = prior, config
        self.num_pitches = N = prior.num_pitches
        self.steps_per_bar = BEATS_PER_BAR * prior.resolution
        self.num_actions = end_action(N) + 1
        self.feature_size = 2 * N + (N + 1) + self.steps_per_bar

    def extra_features(self, states: ChoraleStates) -> torch.Tensor:
        open_pitch = F.one_hot(states.next_pitch, self.num_pitches + 1).float()
        position = F.one_hot(states.position % self.steps_per_bar, self.steps_per_bar).float()
        return torch.cat([states.decided.float().flatten(1), open_pitch, position], 1)

    def decode(self, observations: Observations) -> dict[str, np.ndarray]:
        """The decided notes ``(M, N, 2)``, open pitches and bar positions of the plain
        observations (their first ``3N + 1`` values and the bar one-hot before the progress)."""
        plain, N, bar = observations["observation"], self.num_pitches, self.steps_per_bar
        return {
            "decided": plain[:, : 2 * N].reshape(-1, N, 2).astype(np.uint8),
            "next_pitch": plain[:, 2 * N : 3 * N + 1].argmax(1),
            "position": plain[:, -bar - 1 : -1].argmax(1),
        }

    def observed_states(self, observations: Observations, device: torch.device) -> ChoraleStates:
        decoded = self.decode(observations)
        return ChoraleStates(
            summary=tensor(observations["prior_summary"], device),
            log_probs=tensor(observations["prior_log_probs"], device),
            decided=tensor(decoded["decided"], device).float(),
            next_pitch=tensor(decoded["next_pitch"], device),
            position=tensor(decoded["position"], device),
            mask=tensor(observations["action_mask"].astype(bool), device),
        )

    def make_replay(self, capacity: int, num_envs: int) -> ChoraleReplay:
        return ChoraleReplay(self, capacity, num_envs)

    def replay_bytes(self, capacity: int) -> int:
        (K, H), N = self.prior.summary_shape, self.num_pitches  # type: ignore[attr-defined]
        frames = max(1, capacity // FRAMES_PER_TRANSITION)
        per_side = 8 * 3 + (2 * N + 7) // 8 + 4 * (2 * N + 1)
        return frames * 2 * K * H + capacity * (2 * per_side + 13)


class ChoraleReplay:
    """Transitions of chorale decisions, and the summaries of their frames (see the module
    docstring). ``capacity`` transitions, ``capacity / FRAMES_PER_TRANSITION`` frames."""

    def __init__(self, part: ChoralePart, capacity: int, num_envs: int) -> None:
        self.part, self.capacity, self.num_pitches = part, capacity, part.num_pitches
        self.gamma = part.config.gamma
        self.frame_capacity = max(1, capacity // FRAMES_PER_TRANSITION)
        summary_shape = part.prior.summary_shape  # type: ignore[attr-defined]
        self.summaries = np.zeros((self.frame_capacity, *summary_shape), np.float16)
        self.frames_written = 0
        packed = (2 * self.num_pitches + 7) // 8
        self.sides: dict[str, dict[str, np.ndarray]] = {
            side: {
                "frame": np.zeros(capacity, np.int64),
                "decided": np.zeros((capacity, packed), np.uint8),
                "next_pitch": np.zeros(capacity, np.int64),
                "position": np.zeros(capacity, np.int64),
                "log_probs": np.zeros((capacity, part.num_actions), np.float32),
            }
            for side in ("state", "next")
        }
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.dones = np.zeros(capacity, bool)
        self.count = 0
        """Transitions written so far (the oldest are overwritten past ``capacity``)."""
        self.frames = np.zeros(num_envs, np.int64)
        """Each environment's current frame: its index in the summary store."""
        self.current: dict[str, np.ndarray] = {}
        """The record of each environment's current state."""

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def _add_frames(self, slots: np.ndarray, observations: Observations) -> None:
        """Keep the summaries of the frames that the environments ``slots`` start."""
        frames = self.frames_written + np.arange(len(slots))
        summaries = observations["prior_summary"][slots].astype(np.float16)
        self.summaries[frames % self.frame_capacity] = summaries
        self.frames[slots] = frames
        self.frames_written += len(slots)

    def _record(self, observations: Observations) -> dict[str, np.ndarray]:
        """One side of every environment's transition: its frame index, decided bits (packed),
        open pitch, bar position and ``log p``."""
        decoded = self.part.decode(observations)
        return {
            "frame": self.frames.copy(),
            "decided": np.packbits(decoded["decided"].reshape(len(self.frames), -1), 1),
            "next_pitch": decoded["next_pitch"],
            "position": decoded["position"],
            "log_probs": observations["prior_log_probs"],
        }

    def begin(self, observations: Observations, infos: dict[str, Any]) -> None:
        self._add_frames(np.arange(len(self.frames)), observations)
        self.current = self._record(observations)

    def store(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        stepped: np.ndarray,
        next_observations: Observations,
        infos: dict[str, Any],
    ) -> None:
        rows = np.flatnonzero(stepped)
        before = {name: values[rows] for name, values in self.current.items()}
        ended = stepped & (actions == self.part.num_actions - 1) & ~terminations
        self._add_frames(np.flatnonzero(ended | ~stepped), next_observations)
        self.current = self._record(next_observations)
        after = {name: values[rows] for name, values in self.current.items()}
        slots = (self.count + np.arange(len(rows))) % self.capacity
        for side, record in (("state", before), ("next", after)):
            for name, values in record.items():
                self.sides[side][name][slots] = values
        self.actions[slots], self.rewards[slots] = actions[rows], rewards[rows]
        self.dones[slots] = terminations[rows]
        self.count += len(rows)

    def _valid(self, slots: np.ndarray) -> np.ndarray:
        """Whether the frames both sides of ``slots`` read are still kept."""
        oldest = self.frames_written - self.frame_capacity
        return (self.sides["state"]["frame"][slots] >= oldest) & (
            self.sides["next"]["frame"][slots] >= oldest
        )

    def states(self, slots: np.ndarray, side: str, device: torch.device) -> ChoraleStates:
        """The ``"state"`` or ``"next"`` states of the transitions ``slots``."""
        kept, N = self.sides[side], self.num_pitches
        bits = np.unpackbits(kept["decided"][slots], 1)[:, : 2 * N]
        frames = kept["frame"][slots] % self.frame_capacity
        return ChoraleStates(
            summary=tensor(self.summaries[frames], device),
            log_probs=tensor(kept["log_probs"][slots], device),
            decided=tensor(bits.reshape(-1, N, 2), device).float(),
            next_pitch=tensor(kept["next_pitch"][slots], device),
            position=tensor(kept["position"][slots], device),
            mask=tensor(valid_actions(kept["next_pitch"][slots], N), device),
        )

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device
    ) -> Transitions:
        """``batch_size`` transitions drawn uniformly among the valid ones."""
        chosen = rng.integers(0, len(self), batch_size)
        for _ in range(100):
            stale = ~self._valid(chosen)
            if not stale.any():
                break
            chosen[stale] = rng.integers(0, len(self), stale.sum())
        actions = tensor(self.actions[chosen], device)
        ends_frame = actions == self.part.num_actions - 1
        return Transitions(
            states=self.states(chosen, "state", device),
            actions=actions,
            rewards=tensor(self.rewards[chosen], device),
            dones=tensor(self.dones[chosen], device),
            next_states=self.states(chosen, "next", device),
            gamma=torch.where(ends_frame, self.gamma, 1.0),
        )

    def nbytes(self) -> int:
        return 0  # not checkpointed

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError("a chorale run's replay is not checkpointed")

    def load_state_dict(self, state: dict[str, Any], prior: Any, device: torch.device) -> None:
        raise NotImplementedError("a chorale run's replay is not checkpointed")

    def digest(self) -> str:
        return ""

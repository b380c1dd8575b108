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
  read it; batches draw among the valid ones. Each kept frame also knows its piece and time step,
  and the replay keeps the notes of those pieces' frames (bit-packed), so that checkpoints leave
  the summaries out (hundreds of MB) and ``--resume`` recomputes them with the frozen prior from
  the primer and the notes (a digest saved with the checkpoint checks them bit for bit), as the
  melody replay does from its tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from musicgym.agents.rl_tuner.config import RLTunerConfig
from musicgym.agents.rl_tuner.parts import Observations, Transitions, tensor
from musicgym.envs.decisions import BEATS_PER_BAR, end_action, parse_primer, valid_actions
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
    resumable = True
    rule_outcomes = 0

    def __init__(self, prior: NoteAxisPrior, config: RLTunerConfig) -> None:
        for name in ("train_readout", "rule_features"):
            if getattr(config, name):
                raise EnvArgumentError(f"{name}: only on MusicComposition-v0")
        self.prior, self.config = prior, config
        self.num_pitches = N = prior.num_pitches
        self.steps_per_bar = BEATS_PER_BAR * prior.resolution
        self.num_actions = end_action(N) + 1
        self.piece_length = config.bars * self.steps_per_bar
        """Frames per chorale."""
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
        if self.config.phrases:  # its chorales all start from the run's one primer
            raise EnvArgumentError(
                "phrases: the RL Tuner's replay keeps one primer for every chorale, and a phrase "
                "episode's primer is its own; train on phrases with dpo or sb3-*"
            )
        return ChoraleReplay(self, capacity, num_envs)

    def replay_bytes(self, capacity: int) -> int:
        (K, H), N = self.prior.summary_shape, self.num_pitches  # type: ignore[attr-defined]
        frames = max(1, capacity // FRAMES_PER_TRANSITION)
        packed = (2 * N + 7) // 8
        per_side = 8 * 3 + packed + 4 * (2 * N + 1)
        pieces = (frames // self.piece_length + 2 * self.config.num_envs) * self.piece_length
        return frames * (2 * K * H + 16) + capacity * (2 * per_side + 13) + pieces * packed

    def primer(self) -> np.ndarray:
        """The frames ``(T, N, 2)`` every chorale starts from (the run's ``primer``, read as the
        environment reads it; ``T = 0`` for none)."""
        prior, N = self.prior, self.num_pitches
        frames = parse_primer(
            self.config.primer or None, prior.lowest_pitch, N, prior.resolution, "primer"
        )
        return np.zeros((0, N, 2), np.uint8) if frames is None else frames


class ChoraleReplay:
    """Transitions of chorale decisions, and the summaries of their frames (see the module
    docstring). ``capacity`` transitions, ``F = capacity / FRAMES_PER_TRANSITION`` frames.

    Frames are numbered in the order they start (``frames_written`` so far); frame ``g`` is kept
    in slot ``g % F``, where the newer frames overwrite it. Each kept frame knows its piece (a row
    of ``piece_frames``) and its time step ``t`` there: its summary is the prior's after the
    primer and the piece's frames ``0 .. t - 1``, whose notes ``piece_frames`` keeps (packed) as
    long as a kept frame or an environment's current frame is of that piece. So it keeps at most
    ``F // piece_length + 2 num_envs`` pieces: those begun and finished since the oldest kept
    frame (``piece_length`` frames each), and per environment the piece it was composing then
    and the one it composes now.
    """

    def __init__(self, part: ChoralePart, capacity: int, num_envs: int) -> None:
        self.part, self.capacity, self.num_pitches = part, capacity, part.num_pitches
        self.gamma = part.config.gamma
        self.frame_capacity = F = max(1, capacity // FRAMES_PER_TRANSITION)
        summary_shape = part.prior.summary_shape  # type: ignore[attr-defined]
        self.summaries = np.zeros((F, *summary_shape), np.float16)
        self.frame_pieces = np.zeros(F, np.int64)
        """The piece row of the frame in each slot."""
        self.frame_steps = np.zeros(F, np.int64)
        """The time step of the frame in each slot, in its piece."""
        self.frames_written = 0
        packed = (2 * self.num_pitches + 7) // 8
        pieces = F // part.piece_length + 2 * num_envs
        self.piece_frames = np.zeros((pieces, part.piece_length - 1, packed), np.uint8)
        """The notes of each frame of each piece (bit-packed) that a later frame follows."""
        self.piece_last = np.full(pieces, -1, np.int64)
        """The newest frame of each piece (-1: none); a piece is free once it is no longer kept."""
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
        """Each environment's current frame (its number)."""
        self.pieces = np.zeros(num_envs, np.int64)
        """Each environment's piece row."""
        self.steps = np.zeros(num_envs, np.int64)
        """Each environment's current time step in its piece."""
        self.current: dict[str, np.ndarray] = {}
        """The record of each environment's current state."""

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def _oldest_frame(self) -> int:
        """The number of the oldest frame whose summary is kept."""
        return max(0, self.frames_written - self.frame_capacity)

    def _add_frames(self, slots: np.ndarray, observations: Observations, new: np.ndarray) -> None:
        """Keep the summaries of the frames that the environments ``slots`` start: the next
        frame of their piece, or the first of a new one where ``new``."""
        frames = self.frames_written + np.arange(len(slots))
        self.frames_written += len(slots)
        self.steps[slots] += 1
        starting = slots[new]
        in_use = self.piece_last >= self._oldest_frame()  # a kept frame is of it
        in_use[self.pieces[np.setdiff1d(np.arange(len(self.pieces)), starting)]] = True
        self.pieces[starting] = np.flatnonzero(~in_use)[: len(starting)]
        self.steps[starting], self.piece_frames[self.pieces[starting]] = 0, 0
        kept = frames % self.frame_capacity
        self.summaries[kept] = observations["prior_summary"][slots].astype(np.float16)
        self.frame_pieces[kept], self.frame_steps[kept] = self.pieces[slots], self.steps[slots]
        self.piece_last[self.pieces[slots]] = frames
        self.frames[slots] = frames

    def _record(self, observations: Observations) -> dict[str, np.ndarray]:
        """One side of every environment's transition: its frame number, decided bits (packed),
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
        everyone = np.arange(len(self.frames))
        self._add_frames(everyone, observations, np.ones(len(everyone), bool))
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
        ending = np.flatnonzero(ended)  # their frame's notes: those decided before "end"
        self.piece_frames[self.pieces[ending], self.steps[ending]] = self.current["decided"][ending]
        starting = np.flatnonzero(ended | ~stepped)
        self._add_frames(starting, next_observations, ~stepped[starting])
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
        oldest = self._oldest_frame()
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

    # ----------------------------------------------------------------------------- checkpoint
    def nbytes(self) -> int:
        return sum(values.nbytes for values, _ in self._arrays().values())

    def _arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        """Every array a checkpoint keeps (all but the summaries) by name, and its rows in use
        (the others are as new)."""
        transitions, frames = len(self), min(self.frames_written, self.frame_capacity)
        pieces = int(np.union1d(self.frame_pieces[:frames], self.pieces).max()) + 1
        arrays = {
            f"{side}_{name}": (values, transitions)
            for side, kept in self.sides.items()
            for name, values in kept.items()
        }
        arrays |= {name: (getattr(self, name), transitions) for name in ("actions", "rewards")}
        arrays |= {"dones": (self.dones, transitions)}
        arrays |= {name: (getattr(self, name), frames) for name in ("frame_pieces", "frame_steps")}
        arrays |= {name: (getattr(self, name), pieces) for name in ("piece_frames", "piece_last")}
        arrays |= {name: (getattr(self, name), len(self.frames)) for name in ("frames", "pieces")}
        arrays |= {"steps": (self.steps, len(self.frames))}
        return arrays | {f"current_{name}": (v, len(v)) for name, v in self.current.items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything but the summaries, which :meth:`load_state_dict` recomputes from the
        pieces' notes; only the rows in use (a short run's checkpoint holds its own transitions,
        not the whole capacity)."""
        arrays = self._arrays().items()
        saved = {name: torch.from_numpy(values[:used].copy()) for name, (values, used) in arrays}
        return saved | {"count": self.count, "frames_written": self.frames_written}

    def load_state_dict(self, state: dict[str, Any], prior: Any, device: torch.device) -> None:
        self.current = {
            name.removeprefix("current_"): values.numpy().copy()
            for name, values in state.items()
            if name.startswith("current_")
        }
        for name, (values, _) in self._arrays().items():
            values[: len(state[name])] = state[name].numpy()
        self.count, self.frames_written = int(state["count"]), int(state["frames_written"])
        self._recompute_summaries(prior, device)

    @torch.no_grad()
    def _recompute_summaries(self, prior: Any, device: torch.device, chunk: int = 256) -> None:
        """Play the primer and the notes of every kept piece through the frozen prior again, as
        the environment played them, and keep the summaries of the kept frames."""
        kept = self.frame_pieces[: min(self.frames_written, self.frame_capacity)]  # by slot
        primer = torch.as_tensor(self.part.primer(), dtype=torch.float32, device=device)
        pieces, N = np.unique(kept), self.num_pitches
        for begin in range(0, len(pieces), chunk):
            batch = pieces[begin : begin + chunk]
            slots = np.flatnonzero(np.isin(kept, batch))
            which = np.searchsorted(batch, kept[slots])  # each slot's piece in `batch`
            steps = self.frame_steps[slots]
            bits = np.unpackbits(self.piece_frames[batch], 2)[..., : 2 * N]
            notes = torch.as_tensor(
                bits.reshape(len(batch), -1, N, 2), dtype=torch.float32, device=device
            )
            state = prior.initial_state(len(batch))
            for frame in primer:
                state = prior.advance(state, frame.repeat(len(batch), 1, 1))
            for t in range(int(steps.max()) + 1):
                now = steps == t
                if now.any():
                    summaries = prior.summary(state).to("cpu", torch.float32).numpy()
                    self.summaries[slots[now]] = summaries[which[now]].astype(np.float16)
                if t < steps.max():
                    state = prior.advance(state, notes[:, t])

    def digest(self) -> str:
        """A hash of the kept frames' summaries."""
        kept = min(self.frames_written, self.frame_capacity)
        return hashlib.blake2b(self.summaries[:kept].tobytes(), digest_size=16).hexdigest()

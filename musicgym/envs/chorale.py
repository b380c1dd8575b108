"""``ChoraleComposition-v0``: compose four-part chorales note by note, along the prior's own
factorisation of a frame.

:class:`DecisionStepper` is the one place where decisions are played into a
:class:`~musicgym.prior.NoteAxisPrior` (the environment, the agents and the statistics use it):
it keeps, for ``B`` streams, the notes decided in the current frame, the prior's state and note
axis, and gives the exact ``log p`` of every next decision. :class:`ChoraleBatch` is ``B``
chorales composed side by side (frames, rules, observations); :class:`ChoraleCompositionEnv` is
that batch at ``B = 1`` and :class:`ChoraleCompositionVectorEnv` at ``B = num_envs``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from musicgym.checks import check_device
from musicgym.config import CHORALE_DEFAULTS
from musicgym.envs.batched import (
    RENDER_MODES,
    BatchedEnv,
    BatchedVectorEnv,
    check_render_mode,
    parse_key,
)
from musicgym.envs.stepper import from_tensor_tree, tensor_tree
from musicgym.errors import CheckpointError, EnvArgumentError, MidiError
from musicgym.music.harmony import Sonority, sonority, soprano_token, soprano_tokens
from musicgym.music.keys import Key, pitch_name
from musicgym.music.notestate import NoteState
from musicgym.prior import MelodyPrior, NoteAxisPrior, resolve_prior
from musicgym.rules import ChoraleContext, RulesArgument, WeightedRule, resolve_rules, rule_rewards

BEATS_PER_BAR = 4
"""Quarter-note beats in a 4/4 bar."""
HISTORY = 8
"""Frames the observation shows by default (half a bar of 16th notes)."""
PITCH_AXIS = (36, 48)
"""``(lowest MIDI pitch, pitches)`` of the action axis of an env without a prior: the shipped
chorale prior's, MIDI 36..83."""
RESOLUTION = 4
"""Frames per quarter note of an env without a prior (16th notes, the shipped prior's)."""
INVALID_ACTIONS = ("raise", "end")
INVALID_ACTION_PENALTY = 10.0
"""What the reward part ``"invalid_action"`` takes off when ``invalid_action="end"`` replaces an
invalid action by "end the time step"."""

PriorArgument = str | os.PathLike | NoteAxisPrior | None
PrimerArgument = str | os.PathLike | NoteState | None


# ------------------------------------------------------------------------------------ actions
def end_action(num_pitches: int) -> int:
    """The action "end this time step": ``2 N``."""
    return 2 * num_pitches


def describe_action(action: int, num_pitches: int, lowest_pitch: int) -> str:
    """``"strike E4"``, ``"hold E4"`` or ``"end"``."""
    if action == end_action(num_pitches):
        return "end"
    verb = "hold" if action >= num_pitches else "strike"
    return f"{verb} {pitch_name(lowest_pitch + action % num_pitches)}"


def valid_actions(next_pitch: np.ndarray, num_pitches: int) -> np.ndarray:
    """``(B, 2 N + 1)`` bool: the actions each stream may take, its lowest undecided pitch
    ``next_pitch`` ``(B,)``: strike or hold a pitch at or above it, or end the time step."""
    notes = np.arange(num_pitches)[None, :] >= np.asarray(next_pitch)[:, None]
    return np.concatenate([notes, notes, np.ones((len(notes), 1), bool)], 1)


def decision_log_probs(note_log_probs: torch.Tensor) -> torch.Tensor:
    """``(B, 2 N + 1)`` float64 ``log p(a | s)`` of every action from the prior's
    :meth:`~musicgym.prior.NoteAxisPrior.note_log_probs` ``(B, N, 3)``: striking or holding pitch
    ``p`` is "not played" at every undecided pitch below ``p`` and (played, articulated) or
    (played, held) at ``p``; "end" is "not played" at every undecided pitch. ``-inf`` for the
    invalid actions; ``exp`` of a row sums to 1."""
    scores = note_log_probs.double()
    silent = torch.where(torch.isfinite(scores[..., 0]), scores[..., 0], 0.0)  # (B, N)
    below = silent.cumsum(1) - silent  # every undecided pitch below p not played
    return torch.cat(
        [below + scores[..., 1], below + scores[..., 2], silent.sum(1, keepdim=True)], 1
    )


class DecisionStepper:
    """``B`` streams composed decision by decision: the notes decided in each stream's current
    frame and, with a prior, the prior's state and note axis over them.

    Args:
        num_pitches: ``N``, the pitch axis' size (the prior's, if any).
        batch_size: ``B``.
        prior: a loaded :class:`~musicgym.prior.NoteAxisPrior`, or ``None`` (bookkeeping only).
        device: where the prior's tensors live.
    """

    def __init__(
        self,
        num_pitches: int,
        batch_size: int,
        prior: NoteAxisPrior | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.num_pitches, self.batch_size, self.prior = num_pitches, batch_size, prior
        self.device = torch.device(device)
        self.next_pitch = np.zeros(batch_size, np.int64)
        """``(B,)``: each stream's lowest undecided pitch in its current frame."""
        self.frame = np.zeros((batch_size, num_pitches, 2), np.uint8)
        """``(B, N, 2)``: the (play, articulate) bits decided in each stream's current frame."""
        self._valid: np.ndarray | None = None
        if prior is not None:
            self.state = prior.initial_state(batch_size)
            self.note_axis = prior.start_note_axis(self.state)

    @property
    def num_actions(self) -> int:
        return 2 * self.num_pitches + 1

    def valid_actions(self) -> np.ndarray:
        """``(B, 2 N + 1)`` bool (:func:`valid_actions`; read-only, computed once per
        decision)."""
        if self._valid is None:
            self._valid = valid_actions(self.next_pitch, self.num_pitches)
            self._valid.flags.writeable = False
        return self._valid

    @torch.no_grad()
    def restart(self, index: Sequence[int], primers: Sequence[np.ndarray]) -> None:
        """Start the streams ``index`` afresh, each fed its primer frames ``(T_i, N, 2)`` (of any
        lengths; never scored)."""
        if not len(index):
            return
        slots = np.asarray(index, np.int64)
        self.next_pitch[slots], self.frame[slots], self._valid = 0, 0, None
        if self.prior is None:
            return
        prior, count = self.prior, len(index)
        state = prior.initial_state(count)
        lengths = np.array([len(p) for p in primers])
        for t in range(int(lengths.max(initial=0))):
            rows = np.flatnonzero(lengths > t)
            frames = torch.as_tensor(
                np.stack([primers[i][t] for i in rows]), dtype=torch.float32, device=self.device
            )
            if len(rows) == count:
                state = prior.advance(state, frames)
            else:
                picked = torch.as_tensor(rows, device=self.device)
                part = prior.advance(prior.select_state(state, picked), frames)
                state = prior.assign_state(state, picked, part)
        slots_t = torch.as_tensor(slots, device=self.device)
        self.state = prior.assign_state(self.state, slots_t, state)
        pitches = np.full(self.batch_size, -1)
        pitches[slots] = self.num_pitches  # their note axes start over
        self._decide_notes(pitches, np.zeros((self.batch_size, 2)))

    def _decide_notes(self, pitches: np.ndarray, bits: np.ndarray) -> None:
        assert self.prior is not None
        self.note_axis = self.prior.decide_notes(
            self.state,
            self.note_axis,
            torch.as_tensor(pitches, dtype=torch.long, device=self.device),
            torch.as_tensor(bits, dtype=torch.float32, device=self.device),
        )

    @torch.no_grad()
    def action_log_probs(self) -> torch.Tensor:
        """``(B, 2 N + 1)`` float64: the prior's ``log p(a | s)`` of every stream's next action
        (:func:`decision_log_probs`)."""
        assert self.prior is not None, "a DecisionStepper without a prior scores nothing"
        return decision_log_probs(self.prior.note_log_probs(self.state, self.note_axis))

    @torch.no_grad()
    def decide(self, actions: np.ndarray, active: np.ndarray) -> dict[int, np.ndarray]:
        """Every ``active`` stream takes its (valid) action; the frames that end, by stream
        (``(N, 2)`` uint8 each). Inactive streams decide nothing."""
        N, end = self.num_pitches, end_action(self.num_pitches)
        actions = np.asarray(actions, np.int64)
        ending = active & (actions == end)
        noting = active & (actions != end)
        pitches = np.where(ending, N, np.where(noting, actions % N, -1))
        bits = np.zeros((self.batch_size, 2))
        bits[noting, 0], bits[noting, 1] = 1.0, actions[noting] < N
        rows = np.flatnonzero(noting)
        self.frame[rows, pitches[rows]] = bits[rows]
        self.next_pitch[rows] = pitches[rows] + 1
        self._valid = None
        if self.prior is not None:
            self._decide_notes(pitches, bits)
        ended = {int(i): self.frame[i].copy() for i in np.flatnonzero(ending)}
        if ended and self.prior is not None:
            index = np.array(list(ended))
            frames = torch.as_tensor(self.frame[index], dtype=torch.float32, device=self.device)
            if len(index) == self.batch_size:
                self.state = self.prior.advance(self.state, frames)
            else:
                picked = torch.as_tensor(index, device=self.device)
                part = self.prior.advance(self.prior.select_state(self.state, picked), frames)
                self.state = self.prior.assign_state(self.state, picked, part)
        self.frame[ending], self.next_pitch[ending], self._valid = 0, 0, None
        return ended

    @torch.no_grad()
    def summary(self) -> torch.Tensor:
        """``(B, K, H)``: the prior's summary of every stream's frames so far (its
        ``summary``)."""
        assert self.prior is not None
        return self.prior.summary(self.state)  # type: ignore[attr-defined]

    def state_dict(self) -> dict[str, Any]:
        """The streams' state as CPU tensors and lists (for a checkpoint read back with
        ``weights_only``); :meth:`load_state_dict` restores it bit for bit."""
        saved: dict[str, Any] = {
            "next_pitch": torch.from_numpy(self.next_pitch.copy()),
            "frame": torch.from_numpy(self.frame.copy()),
        }
        if self.prior is not None:
            saved["prior_state"] = tensor_tree(self.state)
            saved["note_axis"] = tensor_tree(self.note_axis)
        return saved

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self._valid = None
        self.next_pitch = saved["next_pitch"].numpy().copy()
        self.frame = saved["frame"].numpy().copy()
        if self.prior is not None and "prior_state" in saved:
            template = self.prior.initial_state(self.batch_size)
            self.state = from_tensor_tree(template, saved["prior_state"])
            axis = self.prior.start_note_axis(self.state)
            self.note_axis = from_tensor_tree(axis, saved["note_axis"])


# ------------------------------------------------------------------------------ whole chorales
ActionChooser = Callable[[DecisionStepper, np.ndarray], np.ndarray]
"""``choose(stepper, active)``: the next action ``(B,)`` of every stream of ``stepper`` (valid
where ``active``)."""


def compose_chorales(
    stepper: DecisionStepper,
    frames: int,
    choose: ActionChooser,
    lowest_pitch: int,
    resolution: int,
) -> list[NoteState]:
    """One chorale of ``frames`` frames per stream of ``stepper`` (as the caller left it, e.g.
    restarted with primers), each action from ``choose``; a stream stops deciding once its
    chorale is complete."""
    pieces: list[list[np.ndarray]] = [[] for _ in range(stepper.batch_size)]
    active = np.ones(stepper.batch_size, bool)
    while active.any():
        for i, frame in stepper.decide(choose(stepper, active), active).items():
            pieces[i].append(frame)
            active[i] = len(pieces[i]) < frames
    matrices = [np.array(p, np.uint8).reshape(-1, stepper.num_pitches, 2) for p in pieces]
    return [NoteState(m, lowest_pitch, resolution, "composed chorale") for m in matrices]


def sample_chorales(
    prior: NoteAxisPrior,
    count: int,
    bars: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    greedy: bool = False,
) -> list[NoteState]:
    """``count`` chorales of ``bars`` bars sampled from ``prior`` decision by decision (ancestral
    sampling of its own factorisation: exact samples of the prior), seeded; ``greedy``: the most
    likely decision each time."""
    generator = torch.Generator().manual_seed(seed)
    stepper = DecisionStepper(prior.num_pitches, count, prior, device)

    def choose(stepper: DecisionStepper, active: np.ndarray) -> np.ndarray:
        log_probs = stepper.action_log_probs()
        if greedy:
            return log_probs.argmax(1).cpu().numpy()
        probabilities = log_probs.exp().float().cpu()
        return torch.multinomial(probabilities, 1, generator=generator)[:, 0].numpy()

    frames = bars * BEATS_PER_BAR * prior.resolution
    return compose_chorales(stepper, frames, choose, prior.lowest_pitch, prior.resolution)


@torch.no_grad()
def frame_log_likelihoods(
    prior: NoteAxisPrior, pieces: Sequence[NoteState], device: str | torch.device = "cpu"
) -> list[np.ndarray]:
    """The prior's log-likelihood of every frame of every piece ``(T_i,)``, each scored from
    silence by :meth:`~musicgym.prior.FramePrior.score_frames` and advanced frame by frame
    (pieces moved onto the prior's pitch axis, which must hold their notes); what the
    environment's ``"prior"`` rewards of a time step add up to."""
    moved = [p.with_range(prior.lowest_pitch, prior.num_pitches) for p in pieces]
    longest = max((p.num_steps for p in moved), default=0)
    matrices = torch.zeros(len(moved), longest, prior.num_pitches, 2)
    for i, piece in enumerate(moved):
        matrices[i, : piece.num_steps] = torch.from_numpy(piece.matrix.astype(np.float32))
    matrices = matrices.to(device)
    state, scores = prior.initial_state(len(moved)), []
    for t in range(longest):
        scores.append(prior.score_frames(state, matrices[:, t, None])[:, 0].cpu())
        state = prior.advance(state, matrices[:, t])
    table = torch.stack(scores, 1).double().numpy() if scores else np.zeros((len(moved), 0))
    return [table[i, : piece.num_steps] for i, piece in enumerate(moved)]


def chorale_statistics(
    prior: NoteAxisPrior | None, pieces: Sequence[NoteState], keys: Any = None
) -> dict[str, float]:
    """Every statistic of :func:`musicgym.metrics.evaluate_chorales` (each piece judged in
    ``keys``: one for all, one each, or ``None`` for the key :func:`~musicgym.metrics.find_key`
    finds) and, with a prior, ``log_p_per_frame``, the mean log-likelihood of their frames."""
    from musicgym.metrics import evaluate_chorales

    statistics = evaluate_chorales(pieces, keys)
    if prior is not None:
        frames = np.concatenate(frame_log_likelihoods(prior, pieces))
        statistics["log_p_per_frame"] = float(frames.mean()) if frames.size else math.nan
    return statistics


# ------------------------------------------------------------------------------------ primers
def parse_primer(
    primer: PrimerArgument, lowest_pitch: int, num_pitches: int, resolution: int, what: str
) -> np.ndarray | None:
    """A primer argument checked once: ``None`` or its frames ``(T, N, 2)`` on the pitch axis,
    from a :class:`NoteState` (of the prior's resolution, its notes on the axis), a MIDI file
    (read at the prior's resolution; every note must lie on the axis) or ``"chorale:NAME"``, the
    first bar of a music21 corpus chorale."""
    highest = lowest_pitch + num_pitches - 1
    axis = f"{lowest_pitch}..{highest}"
    if primer is None:
        return None
    if isinstance(primer, NoteState):
        if primer.resolution != resolution:
            raise EnvArgumentError(
                f"{what}: a note-state of {primer.resolution} steps per quarter note; the prior "
                f"composes at {resolution}"
            )
        sounding = np.flatnonzero(primer.matrix[..., 0].any(0)) + primer.lowest_pitch
        if sounding.size and (sounding.min() < lowest_pitch or sounding.max() > highest):
            raise EnvArgumentError(
                f"{what}: notes MIDI {sounding.min()}..{sounding.max()}, more than the prior's "
                f"pitch axis {axis} holds"
            )
        return primer.with_range(lowest_pitch, num_pitches).matrix.copy()
    if isinstance(primer, str) and primer.startswith("chorale:"):
        from musicgym.music.corpus import corpus_chorale

        name = primer.removeprefix("chorale:")
        chorale = corpus_chorale(name, resolution, lowest_pitch, num_pitches, what)
        return chorale.matrix[: BEATS_PER_BAR * resolution].copy()
    if isinstance(primer, (str, os.PathLike)):
        path = Path(primer)
        if not path.is_file():
            raise EnvArgumentError(
                f"{what}: {str(primer)!r} is neither 'chorale:NAME' nor an existing MIDI file"
            )
        from musicgym.music.midi import read_midi

        try:
            note_state = read_midi(
                path,
                resolution=resolution,
                lowest_pitch=lowest_pitch,
                num_pitches=num_pitches,
                out_of_range="error",
            )
        except MidiError as error:
            raise EnvArgumentError(f"{what}: {error} (the prior's pitch axis is {axis})") from None
        return note_state.matrix.copy()
    raise EnvArgumentError(
        f"{what}: expected None, a NoteState, a MIDI file or 'chorale:NAME'; got {primer!r}"
    )


# -------------------------------------------------------------------------------------- batch
class ChoraleBatch:
    """``B`` chorales composed side by side: their frames, rule rewards and prior scores.

    Each chorale is its primer (fed to the prior, shown in the observation, never judged) followed
    by its composition, ``bars`` 4/4 bars of frames. The decisions go through a
    :class:`DecisionStepper`; the ``log p`` of every next action of every chorale is computed once
    per step, in one prior call, and cached. The rules judge each frame when its time step ends.

    Args:
        num_chorales: ``B``.
        bars: bars per finished composition.
        weighted_rules: from :func:`musicgym.rules.resolve_rules`, judging chorales.
        c: the divisor of the rule rewards.
        prior: a loaded note-axis prior, or ``None`` (the prior part of the reward is then 0).
        pitch_axis: ``(lowest MIDI pitch, N)``: the prior's, or the actions' without one.
        resolution: frames per quarter note (the prior's).
        history: frames the observation shows.
        invalid_action: ``"raise"``, or ``"end"`` to end the time step instead.
        device: where the prior's tensors live.
    """

    def __init__(
        self,
        num_chorales: int,
        bars: int,
        weighted_rules: list[WeightedRule],
        c: float,
        prior: NoteAxisPrior | None,
        pitch_axis: tuple[int, int],
        resolution: int,
        history: int,
        invalid_action: str = "raise",
        device: str | torch.device = "cpu",
    ) -> None:
        self.num_chorales, self.c, self.history = num_chorales, c, history
        self.lowest_pitch, self.num_pitches = pitch_axis
        self.resolution, self.steps_per_bar = resolution, BEATS_PER_BAR * resolution
        self.length = bars * self.steps_per_bar
        """Frames per finished chorale."""
        self.weighted_rules, self.invalid_action = weighted_rules, invalid_action
        self.prior = prior
        self.stepper = DecisionStepper(self.num_pitches, num_chorales, prior, device)
        self.primers = [np.zeros((0, self.num_pitches, 2), np.uint8)] * num_chorales
        self.compositions: list[list[np.ndarray]] = [[] for _ in range(num_chorales)]
        self.sonorities: list[list[Sonority]] = [[] for _ in range(num_chorales)]
        self.keys = [Key()] * num_chorales
        self.log_probs = np.zeros((num_chorales, self.num_actions))  # (B, 2N + 1)
        self.recent = np.zeros((num_chorales, history, self.num_pitches, 2), np.uint8)
        """``(B, K, N, 2)``: each chorale's last ``K`` frames, most recent first."""
        self.sopranos: list[list[int]] = [[] for _ in range(num_chorales)]
        """Each chorale's soprano line as melody tokens (for the soprano rules)."""
        self._no_judgement = {rule.name: 0.0 for rule, _ in weighted_rules}

    @property
    def num_actions(self) -> int:
        return 2 * self.num_pitches + 1

    @property
    def observation_size(self) -> int:
        N = self.num_pitches
        return 2 * N + (N + 1) + self.history * 2 * N + self.steps_per_bar + 1

    # ------------------------------------------------------------------------------ episodes
    def reset(
        self, index: Sequence[int], primers: Sequence[np.ndarray], keys: Sequence[Key]
    ) -> None:
        """Start new chorales in the slots ``index``, and score every chorale's next action."""
        for i, primer, key in zip(index, primers, keys, strict=True):
            self.primers[i], self.keys[i] = primer, key
            self.compositions[i], self.sonorities[i], self.sopranos[i] = [], [], []
            self.recent[i] = self._recent_frames(i)
        if len(index):
            self.stepper.restart(index, primers)
            self._score()

    def done(self, i: int) -> bool:
        return len(self.compositions[i]) >= self.length

    def ends(self, actions: np.ndarray, active: np.ndarray) -> np.ndarray:
        """``(B,)``: the ``active`` chorales whose action ends their last frame (an invalid
        action too, under ``invalid_action="end"``)."""
        frames = np.array([len(c) for c in self.compositions])
        ending = self._played(np.asarray(actions, np.int64), active) == end_action(self.num_pitches)
        return active & ending & (frames + 1 >= self.length)

    def _played(self, actions: np.ndarray, active: np.ndarray) -> np.ndarray:
        """The actions as played: an invalid one as "end" (``invalid_action="end"``; with
        ``"raise"`` the env has refused it already)."""
        invalid = active & ~self.valid_actions()[np.arange(self.num_chorales), actions]
        return np.where(invalid, end_action(self.num_pitches), actions)

    def _score(self) -> None:
        if self.prior is not None:
            self.log_probs = self.stepper.action_log_probs().cpu().numpy()

    def valid_actions(self) -> np.ndarray:
        return self.stepper.valid_actions()

    def step(
        self, actions: np.ndarray, active: np.ndarray, score: bool = True
    ) -> list[dict[str, float]]:
        """Take ``actions[i]`` in every ``active`` chorale (invalid ones as "end" under
        ``invalid_action="end"``); their reward parts (``{}`` for inactive ones)."""
        asked = np.asarray(actions, np.int64)
        actions = self._played(asked, active)
        invalid = actions != asked
        prior_parts = self.log_probs[np.arange(self.num_chorales), actions]
        ended = self.stepper.decide(actions, active)
        parts: list[dict[str, float]] = []
        for i in range(self.num_chorales):
            if not active[i]:
                parts.append({})
                continue
            part = {"prior": float(prior_parts[i]) if self.prior is not None else 0.0}
            if self.invalid_action == "end":
                part["invalid_action"] = -INVALID_ACTION_PENALTY * float(invalid[i])
            part.update(self._judge(i, ended.get(i)))
            parts.append(part)
        if score:
            self._score()
        return parts

    def _judge(self, i: int, frame: np.ndarray | None) -> dict[str, float]:
        """The rules' parts: of the frame that chorale ``i`` has just ended (0 when none)."""
        if frame is None:
            return dict(self._no_judgement)
        chord = sonority(frame, self.lowest_pitch)
        chords = self.sonorities[i]
        self.sopranos[i].append(soprano_token(chord, chords[-1] if chords else None))
        context = ChoraleContext(
            tuple(chords),
            chord,
            self.length,
            self.keys[i],
            self.resolution,
            tuple(self.sopranos[i]),
        )
        self.compositions[i].append(frame)
        self.recent[i, 1:], self.recent[i, 0] = self.recent[i, :-1], frame
        chords.append(chord)
        return rule_rewards(self.weighted_rules, context, self.c)

    # --------------------------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """Everything the chorales' future depends on, as tensors and lists (for ``torch.save``
        with ``weights_only`` loading); :meth:`set_state` restores it bit for bit."""
        return {
            "primers": [torch.from_numpy(p.copy()) for p in self.primers],
            "compositions": [
                torch.from_numpy(np.array(c, np.uint8).reshape(-1, self.num_pitches, 2))
                for c in self.compositions
            ],
            "keys": [key.name for key in self.keys],
            "log_probs": torch.from_numpy(self.log_probs.copy()),
            "stepper": self.stepper.state_dict(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` of a batch of the same size and prior."""
        if len(state["primers"]) != self.num_chorales:
            raise EnvArgumentError(
                f"state: {len(state['primers'])} chorales, this batch has {self.num_chorales}"
            )
        self.primers = [p.numpy().copy() for p in state["primers"]]
        self.compositions = [list(c.numpy().copy()) for c in state["compositions"]]
        self.sonorities = [[sonority(f, self.lowest_pitch) for f in c] for c in self.compositions]
        self.sopranos = [list(soprano_tokens(chords)) for chords in self.sonorities]
        self.recent = np.stack([self._recent_frames(i) for i in range(self.num_chorales)])
        self.keys = [Key.parse(name) for name in state["keys"]]
        self.log_probs = state["log_probs"].numpy().copy()
        self.stepper.load_state_dict(state["stepper"])

    # ---------------------------------------------------------------------------- observation
    def _recent_frames(self, i: int) -> np.ndarray:
        """``(K, N, 2)``: chorale ``i``'s last ``K`` frames, most recent first (its primer's
        before its composition's), zeros before the start."""
        frames = self.compositions[i][-self.history :][::-1]
        if len(frames) < self.history:
            frames += list(self.primers[i][::-1][: self.history - len(frames)])
        recent = np.zeros((self.history, self.num_pitches, 2), np.uint8)
        if frames:
            recent[: len(frames)] = np.stack(frames)
        return recent

    def observations(self) -> np.ndarray:
        """``(B, observation_size)``: every chorale's observation (see
        :class:`ChoraleCompositionEnv`), in one pass over the batch."""
        B, N = self.num_chorales, self.num_pitches
        positions = np.array([len(c) for c in self.compositions])
        parts = [
            self.stepper.frame.reshape(B, 2 * N),
            np.eye(N + 1, dtype=np.uint8)[self.stepper.next_pitch],
            self.recent.reshape(B, -1),
            np.eye(self.steps_per_bar, dtype=np.uint8)[positions % self.steps_per_bar],
        ]
        progress = (positions / self.length)[:, None]
        return np.concatenate([*parts, progress], 1).astype(np.float32)

    def observation(self, i: int) -> np.ndarray:
        """The observation of chorale ``i``."""
        return self.observations()[i]

    def info(self, i: int, reward_parts: dict[str, float] | None = None) -> dict[str, Any]:
        """``info`` of chorale ``i``: its valid actions, frames composed, key and (after a step)
        reward parts."""
        info: dict[str, Any] = {
            "action_mask": self.valid_actions()[i].copy(),
            "frames": len(self.compositions[i]),
            "key": self.keys[i].name,
        }
        if reward_parts is not None:
            info["rewards"] = reward_parts
        return info

    def note_state(self, i: int, include_primer: bool = False) -> NoteState:
        """Chorale ``i``'s frames composed so far (after its primer, if ``include_primer``)."""
        frames = list(self.compositions[i])
        if include_primer:
            frames = list(self.primers[i]) + frames
        matrix = np.array(frames, np.uint8).reshape(-1, self.num_pitches, 2)
        return NoteState(matrix, self.lowest_pitch, self.resolution, "ChoraleComposition-v0")

    def render_ansi(self, i: int) -> str:
        """One line per frame: its step (``|`` at a bar), its notes low to high (``~`` held), and
        the current frame's notes so far."""

        def notes(frame: np.ndarray) -> str:
            index = np.flatnonzero(frame[:, 0])
            names = [pitch_name(self.lowest_pitch + n) for n in index]
            words = [name + ("" if frame[n, 1] else "~") for name, n in zip(names, index)]
            return " ".join(words) or "."

        lines = [
            f"{t:4d}{'|' if t % self.steps_per_bar == 0 else ' '} {notes(frame)}"
            for t, frame in enumerate(self.compositions[i])
        ]
        if not self.done(i):
            lines.append(f"{len(self.compositions[i]):4d}> {notes(self.stepper.frame[i])} ...")
        return "\n".join(lines)

    def render_rgb(self, i: int) -> np.ndarray:
        """The composition as a four-voice piano roll (voices coloured, bass to soprano)."""
        from musicgym.music.pianoroll import piano_roll_rgb  # matplotlib only when rendering

        piece = self.note_state(i)
        if not piece.num_steps:  # one silent step for an empty chorale
            piece = NoteState.empty(1, self.lowest_pitch, self.num_pitches, self.resolution)
        return piano_roll_rgb(piece, voices=True)


# ------------------------------------------------------------------------------ environments
def _check_arguments(bars: Any, c: Any, history: Any, invalid_action: Any) -> None:
    if isinstance(bars, bool) or not isinstance(bars, (int, np.integer)) or bars < 1:
        raise EnvArgumentError(f"bars: expected a positive integer, got {bars!r}")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
        raise EnvArgumentError(f"c: expected a positive number, got {c!r}")
    if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or history < 1:
        raise EnvArgumentError(f"history: expected a positive integer, got {history!r}")
    if invalid_action not in INVALID_ACTIONS:
        raise EnvArgumentError(
            f"invalid_action: expected one of {INVALID_ACTIONS}, got {invalid_action!r}"
        )


def load_note_axis_prior(
    prior: PriorArgument, device: str | torch.device = "cpu"
) -> NoteAxisPrior | None:
    """The loaded prior of a ``prior`` argument (``None`` stays ``None``), which must be a
    :class:`~musicgym.prior.NoteAxisPrior`; one line naming it otherwise."""
    if prior is None:
        return None
    if isinstance(prior, (str, os.PathLike)):
        loaded, name = resolve_prior(prior, device), str(prior)
    elif isinstance(prior, (NoteAxisPrior, MelodyPrior)):
        loaded, name = prior, type(prior).__name__
    else:
        raise EnvArgumentError(
            f"prior: expected a shipped name, a checkpoint path, a NoteAxisPrior or None; got "
            f"{type(prior).__name__}"
        )
    if not isinstance(loaded, NoteAxisPrior):
        raise CheckpointError(
            f"prior {name}: a {type(loaded).__name__} scores melody tokens only; "
            "ChoraleComposition-v0 needs a NoteAxisPrior (a frame prior decided note by note, "
            "e.g. the Bi-axial LSTM bach16)"
        )
    return loaded


def check_voice_ranges(lowest_pitch: int, num_pitches: int) -> None:
    """One line when the pitch axis cannot hold the four voices' ranges (MIDI 40..79)."""
    from musicgym.music.harmony import VOICE_RANGES

    low = min(r[0] for r in VOICE_RANGES.values())
    high = max(r[1] for r in VOICE_RANGES.values())
    if lowest_pitch > low or lowest_pitch + num_pitches - 1 < high:
        raise EnvArgumentError(
            f"prior: its pitch axis {lowest_pitch}..{lowest_pitch + num_pitches - 1} cannot hold "
            f"the voices' ranges, MIDI {low}..{high} (bass to soprano)"
        )


class _Chorales:
    """What the single and the vector chorale env share: their arguments and their hooks."""

    _batch: ChoraleBatch

    def _setup(
        self,
        num_chorales: int,
        bars: int,
        key: str | Key,
        prior: PriorArgument,
        rules: RulesArgument,
        c: float,
        primer: PrimerArgument,
        device: str | torch.device,
        history: int,
        invalid_action: str,
    ) -> tuple[spaces.Discrete, spaces.Box]:
        """Check and keep the arguments, make the batch; the action and observation spaces of
        one chorale."""
        _check_arguments(bars, c, history, invalid_action)
        check_device(device, error=EnvArgumentError)
        self.bars, self.c = int(bars), float(c)
        self.key = parse_key(key)
        self.weighted_rules = resolve_rules(rules, ChoraleContext)
        loaded = load_note_axis_prior(prior, device)
        axis = PITCH_AXIS if loaded is None else (loaded.lowest_pitch, loaded.num_pitches)
        resolution = RESOLUTION if loaded is None else loaded.resolution
        check_voice_ranges(*axis)
        self._batch = ChoraleBatch(
            num_chorales,
            self.bars,
            self.weighted_rules,
            self.c,
            loaded,
            axis,
            resolution,
            int(history),
            invalid_action,
            device,
        )
        self.primer = self.parse_primer(primer)
        self.num_pitches, self.lowest_pitch = self._batch.num_pitches, self._batch.lowest_pitch
        size = self._batch.observation_size
        return spaces.Discrete(self._batch.num_actions), spaces.Box(0.0, 1.0, (size,), np.float32)

    def parse_primer(self, primer: PrimerArgument, what: str = "primer") -> np.ndarray | None:
        batch = self._batch
        return parse_primer(primer, batch.lowest_pitch, batch.num_pitches, batch.resolution, what)

    def draw_primer(self, primer: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        if primer is None:
            return np.zeros((0, self._batch.num_pitches, 2), np.uint8)
        return primer

    def check_actions(self, actions: np.ndarray, active: np.ndarray, what: str) -> np.ndarray:
        """Integers in the action space, and valid where ``active`` unless
        ``invalid_action="end"``; one line naming the first bad one."""
        batch, checked = self._batch, np.zeros(len(actions), np.int64)
        valid = batch.valid_actions()
        for i, action in enumerate(actions):
            name = what if what == "action" else f"{what}[{i}]"
            if isinstance(action, np.ndarray) and action.shape == ():
                action = action[()]
            if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
                raise EnvArgumentError(f"{name}: expected an integer action, got {action!r}")
            if not 0 <= action < batch.num_actions:
                raise EnvArgumentError(
                    f"{name}: {action} is outside the action space 0..{batch.num_actions - 1}"
                )
            if active[i] and not valid[i, action] and batch.invalid_action == "raise":
                lowest = pitch_name(batch.lowest_pitch + int(batch.stepper.next_pitch[i]))
                meaning = describe_action(action, batch.num_pitches, batch.lowest_pitch)
                raise EnvArgumentError(
                    f"{name}: {action} ({meaning}) is not valid now: this time step's notes go up "
                    f"from {lowest} (info['action_mask'] and action_masks() give the valid ones)"
                )
            checked[i] = action
        return checked

    def action_masks(self) -> np.ndarray:
        """The valid actions (sb3-contrib's ``MaskablePPO`` convention): ``(2 N + 1,)`` bool for
        the single env, ``(num_envs, 2 N + 1)`` for the vector env."""
        masks = self._batch.valid_actions().copy()
        return masks[0] if isinstance(self, BatchedEnv) else masks

    def action_log_probs(self) -> np.ndarray:
        """The prior's ``log p(a | s)`` of every action (``-inf`` for the invalid ones; zeros
        without a prior): ``(2 N + 1,)`` for the single env, ``(num_envs, 2 N + 1)`` for the
        vector env."""
        log_probs = self._batch.log_probs.copy()
        return log_probs[0] if isinstance(self, BatchedEnv) else log_probs

    def note_state(self, i: int = 0, include_primer: bool = False) -> NoteState:
        """The chorale composed so far (of sub-environment ``i``), as a note-state."""
        return self._batch.note_state(i, include_primer)

    def to_midi(self, path: str | os.PathLike, include_primer: bool = False, i: int = 0) -> None:
        """Write the chorale composed so far (after its primer if ``include_primer``; of
        sub-environment ``i``) to a MIDI file."""
        from musicgym.music.midi import write_midi

        write_midi(self.note_state(i, include_primer), path)


class ChoraleCompositionEnv(_Chorales, BatchedEnv):
    """Compose a four-part chorale note by note, rewarded by a prior and by four-part writing.

    ## Description

    An agent writes a chorale of ``bars`` 4/4 bars of 16th-note frames (four by default). It
    writes each frame (time step) the way the Bi-axial LSTM prior decides one: note by note from
    the lowest pitch up. One action names the next sounding pitch above the last one written in
    this time step, struck or held, or ends the time step; a time step takes as many actions as
    it has notes, plus one. So the frozen prior's ``log p(a | s)`` of every action is exact and
    normalised, and the decisions of a time step add up to the prior's log-likelihood of its
    frame. The four-part-writing rules (``spec/chorale-rules.md``) judge each frame when its time
    step ends, so an agent learns to write Bach-like four-part harmony while staying close to
    what the prior finds likely.

    ## Action Space

    ``Discrete(2 N + 1)`` over the prior's pitch axis of ``N`` pitches from MIDI ``lowest`` up
    (``bach16``: ``N = 48``, MIDI 36..83, 97 actions):

    | action          | meaning |
    |-----------------|---------|
    | ``p < N``       | strike pitch ``lowest + p`` (articulated) |
    | ``N + p``       | hold pitch ``lowest + p`` (played on, not struck again) |
    | ``2 N``         | end this time step: the pitches not written are silent |

    Only pitches above the last one written in this time step are valid ("end" always is):
    ``info["action_mask"]`` and :meth:`action_masks` give the valid actions (sb3-contrib's
    ``MaskablePPO`` reads the latter); an invalid action raises ``EnvArgumentError`` (or, with
    ``invalid_action="end"``, for agents that cannot mask, ends the time step instead with the
    reward part ``"invalid_action"`` of ``-INVALID_ACTION_PENALTY``).

    ## Observation Space

    A flat ``Box(0, 1, (2N + (N + 1) + 2NK + 16 + 1,), float32)``, ``K = history`` (default 8):

    | part                   | size      | content                                          |
    |------------------------|-----------|--------------------------------------------------|
    | this time step's notes | ``2 N``   | (play, articulate) of each pitch written so far  |
    | next pitch             | ``N + 1`` | one-hot of the lowest pitch still open (``N``:   |
    |                        |           | none)                                            |
    | the frames before      | ``2 N K`` | (play, articulate) of the last ``K`` frames,     |
    |                        |           | most recent first, the primer's included (zeros  |
    |                        |           | before the start)                                |
    | position in the bar    | 16        | one-hot of ``t mod 16`` of this frame ``t``      |
    | progress               | 1         | ``t / (16 bars)``                                |

    ## Rewards

    ``log p(a | s) + sum_i w_i r_i / c``, a Python ``float``.

    * ``log p(a | s)`` (part ``"prior"``) under the frozen prior, a
      :class:`musicgym.prior.NoteAxisPrior` fed the primer and the frames so far: striking or
      holding pitch ``p`` is the sum of ``log P(not played)`` over the open pitches below ``p`` and
      ``log P(played, struck or held)`` at ``p``; "end" the sum of ``log P(not played)`` over the
      open pitches (:func:`decision_log_probs`; :meth:`action_log_probs` gives all of them, one
      note-axis pass). 0 when ``prior=None``.
    * ``r_i`` are the rules (:mod:`musicgym.rules.chorale`), by default the preset
      ``"chorale"``; each judges the frame when its time step ends (the "end" action), so their
      parts are 0 on the other steps. They see the composition only, not the primer.

    ``info["rewards"]`` holds every part by name (they sum to the reward); ``info["action_mask"]``
    the valid actions; ``info["frames"]`` the frames composed; ``info["key"]`` the key.

    ## Starting State

    An empty chorale at the start of a bar. The primer, if any, is fed to the prior and shown in
    the observation: ``None``, a :class:`~musicgym.music.notestate.NoteState`, a MIDI file, or
    ``"chorale:NAME"``, the first bar of a chorale of music21's corpus (e.g.
    ``"chorale:bwv269"``); its notes must lie on the prior's pitch axis, at its resolution.

    ## Episode End

    The episode terminates when the last frame's time step ends (``16 * bars`` frames). A time
    step takes at most ``N + 1`` actions, so an episode at most ``16 * bars * (N + 1)``. There is
    no truncation. ``step`` after the end, or before ``reset``, raises
    ``gymnasium.error.ResetNeeded``.

    ## Arguments

    ```python
    gym.make("ChoraleComposition-v0", bars=4, key="C major", prior="bach16", rules="chorale",
             c=0.5, primer=None, render_mode=None, device="cpu", history=8,
             invalid_action="raise")
    ```

    The defaults are :data:`musicgym.config.CHORALE_DEFAULTS`.

    * ``bars``: 4/4 bars per chorale.
    * ``key``: the key of the rules (any name :meth:`musicgym.music.keys.Key.parse` reads); per
      episode with ``reset(options={"key": ...})``.
    * ``prior``: a shipped prior name, a checkpoint path, a loaded ``NoteAxisPrior`` (its pitch
      axis must hold the voices' ranges, MIDI 40..79), or ``None`` for a rules-only env (whose
      action axis is :data:`PITCH_AXIS`). It is loaded when the env is made: the action space
      depends on its pitch axis.
    * ``rules``: a preset name, rule names, a dict name -> weight, or rule objects judging
      chorales (:func:`musicgym.rules.resolve_rules`).
    * ``c``: divisor of the rule rewards.
    * ``primer``: see Starting State; per episode with ``reset(options={"primer": ...})``.
    * ``render_mode``: ``"ansi"`` (one line per frame), ``"human"`` (that text printed after every
      reset and step) or ``"rgb_array"`` (a four-voice piano roll, voices coloured).
    * ``device``: where the prior runs.
    * ``history``: frames shown in the observation.
    * ``invalid_action``: ``"raise"``, or ``"end"`` (see Action Space).

    ## Version History

    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": RENDER_MODES, "render_fps": 16}

    def __init__(
        self,
        bars: int = CHORALE_DEFAULTS.bars,
        key: str | Key = CHORALE_DEFAULTS.key,
        prior: PriorArgument = CHORALE_DEFAULTS.prior,
        rules: RulesArgument = CHORALE_DEFAULTS.rules,
        c: float = CHORALE_DEFAULTS.c,
        primer: PrimerArgument = None,
        render_mode: str | None = None,
        device: str | torch.device = "cpu",
        history: int = HISTORY,
        invalid_action: str = "raise",
    ) -> None:
        check_render_mode(render_mode)
        self.render_mode = render_mode
        arguments = (bars, key, prior, rules, c, primer, device, history, invalid_action)
        self.action_space, self.observation_space = self._setup(1, *arguments)
        self._needs_reset = True


class ChoraleCompositionVectorEnv(_Chorales, BatchedVectorEnv):
    """``num_envs`` copies of :class:`ChoraleCompositionEnv` scored together: one batched prior
    call per step for all of them. Same arguments as the single env, plus ``num_envs`` and
    ``autoreset_mode`` (default next-step, Gymnasium 1.x); it returns exactly what
    ``SyncVectorEnv`` of the single env returns for the same seeds and actions (up to the prior's
    own batch-size rounding)."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": RENDER_MODES,
        "render_fps": 16,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        bars: int = CHORALE_DEFAULTS.bars,
        key: str | Key = CHORALE_DEFAULTS.key,
        prior: PriorArgument = CHORALE_DEFAULTS.prior,
        rules: RulesArgument = CHORALE_DEFAULTS.rules,
        c: float = CHORALE_DEFAULTS.c,
        primer: PrimerArgument = None,
        render_mode: str | None = None,
        device: str | torch.device = "cpu",
        history: int = HISTORY,
        invalid_action: str = "raise",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ) -> None:
        self._start_vector(num_envs, autoreset_mode, render_mode)
        arguments = (bars, key, prior, rules, c, primer, device, history, invalid_action)
        single_action, single_observation = self._setup(self.num_envs, *arguments)
        self.single_action_space, self.single_observation_space = single_action, single_observation
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

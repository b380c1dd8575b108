"""Playing a chorale's decisions into a note-axis prior: the one decision stepper of the
environment and the agents.

A chorale is composed frame by frame, each frame note by note along the prior's own factorisation:
from the lowest pitch up, strike or hold a pitch at or above the last one decided, or end the
time step (:func:`end_action`). :class:`DecisionStepper` keeps, for ``B`` streams, the notes
decided in the current frame, the :class:`~musicgym.prior.NoteAxisPrior`'s state and note axis,
and gives the exact ``log p`` of every next decision. ``ChoraleComposition-v0``, the chorale RL
Tuner and the chorale reference agents all decide through it, so the environment's reward and an
agent's ``log p`` are one computation.

:func:`compose_chorales` and :func:`sample_chorales` compose whole chorales with it;
:func:`frame_log_likelihoods` and :func:`chorale_statistics` judge finished ones;
:func:`parse_primer`, :func:`load_note_axis_prior` and :func:`check_voice_ranges` check the
arguments a chorale is composed from.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicgym.envs.stepper import from_tensor_tree, tensor_tree
from musicgym.errors import CheckpointError, EnvArgumentError, MidiError
from musicgym.metrics.chorale import evaluate_chorales
from musicgym.music.harmony import BEATS_PER_BAR, VOICE_RANGES
from musicgym.music.keys import pitch_name
from musicgym.music.notestate import NoteState
from musicgym.prior import MelodyPrior, NoteAxisPrior, resolve_prior

PITCH_AXIS = (36, 48)
"""``(lowest MIDI pitch, pitches)`` of the action axis of an env without a prior: the shipped
chorale prior's, MIDI 36..83."""
RESOLUTION = 4
"""Frames per quarter note of an env without a prior (16th notes, the shipped prior's)."""

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
    ``keys``: one for all, one each, or ``None`` for the key
    :func:`~musicgym.music.harmony.find_key` finds) and, with a prior, ``log_p_per_frame``, the
    mean log-likelihood of their frames."""
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


# ------------------------------------------------------------------------------------- priors
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
    low = min(r[0] for r in VOICE_RANGES.values())
    high = max(r[1] for r in VOICE_RANGES.values())
    if lowest_pitch > low or lowest_pitch + num_pitches - 1 < high:
        raise EnvArgumentError(
            f"prior: its pitch axis {lowest_pitch}..{lowest_pitch + num_pitches - 1} cannot hold "
            f"the voices' ranges, MIDI {low}..{high} (bass to soprano)"
        )

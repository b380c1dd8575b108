"""``log p(a | s)`` of the 38 melody actions under a Bi-axial LSTM: exact, differentiable, fast.

The environment (:class:`musicgym.env.MelodyBatch`) scores an action by the prior's
log-likelihood of the next frame the action produces (NOTE_OFF: silence; NO_EVENT: the sounding
note held, or silence; a pitch: that note struck), renormalised over the *distinct* frames (when
nothing sounds NOTE_OFF and NO_EVENT share the silent frame's probability equally). The agents need
the same numbers, but as torch tensors with gradients (the RL Tuner's Q-network is such a scorer)
and at a fraction of the cost, because they are computed for every action, every training sample
and every evaluation melody. This module computes them:

* :func:`candidate_frames` and :func:`renormalise` are the environment's two steps written on
  batched tensors; ``tests/test_agents.py`` checks them against the environment's own numbers.
* :func:`score_melody_actions` is the fast path. Every candidate frame has at most one sounding
  note, so up to that note it *is* the silent frame: the note axis runs once over the silent frame
  and each candidate only runs the notes above its own (about 2.5 times less work than scoring 38
  full frames, with the same result to float rounding).
* :class:`MelodyPrior` wraps a Bi-axial LSTM so that an environment gets the fast path too.

Tokens are those of :mod:`musicgym.tokens`; ``sounding`` is the token of the note that sounds
before the action, ``-1`` for none.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from musicgym.actions import candidate_notes, renormalise, token_frames
from musicgym.tokens import FIRST_PITCH_TOKEN, NOTE_OFF
from priors.model import BiaxialLSTM, BiaxialState


# ------------------------------------------------------------------------------ token bookkeeping
def next_sounding(sounding: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The sounding note after playing ``tokens`` ``(M,)`` from ``sounding`` ``(M,)``."""
    after = torch.where(tokens == NOTE_OFF, torch.full_like(sounding, -1), sounding)
    return torch.where(tokens >= FIRST_PITCH_TOKEN, tokens, after)


def sounding_before(melodies: torch.Tensor) -> torch.Tensor:
    """``(M, T + 1)``: the sounding note before each position of ``melodies`` ``(M, T)`` (the
    last column is after the last token). Padding tokens (``< 0``) change nothing."""
    M, T = melodies.shape
    sounding = torch.full((M,), -1, dtype=torch.long, device=melodies.device)
    columns = [sounding]
    for t in range(T):
        token = melodies[:, t]
        sounding = torch.where(token >= 0, next_sounding(sounding, token), sounding)
        columns.append(sounding)
    return torch.stack(columns, 1)


# ----------------------------------------------------------------------------------- fast scorer
SCORE_GROUPS = 4
"""Candidate frames are scored in this many groups by the note they play (see
:func:`score_single_note_frames`); more groups skip more shared work but make more calls."""


def _note_axis_from(
    model: BiaxialLSTM,
    inputs: torch.Tensor,
    start: list[tuple[torch.Tensor, torch.Tensor]] | None,
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Run the note-axis LSTMs over ``inputs`` ``(R, L, H + 2)`` from the per-layer ``(h, c)``
    ``start`` states (each ``(R, h)``; zeros if ``None``); returns the head's logits ``(R, L, 2)``
    and the final per-layer states. Eval mode only: no dropout between layers."""
    x, final = inputs, []
    for layer, lstm in enumerate(model.note_lstms):
        state = None
        if start is not None:
            h, c = start[layer]
            state = (h[None].contiguous(), c[None].contiguous())
        x, (h, c) = lstm(x, state)
        final.append((h[0], c[0]))
    return model.head(x), final


def score_single_note_frames(
    model: BiaxialLSTM,
    time_out: torch.Tensor,
    notes: torch.Tensor,
    bits: torch.Tensor,
    groups: int = SCORE_GROUPS,
) -> torch.Tensor:
    """``(M, C)`` log-likelihoods of frames with at most one sounding note each, given the
    time-axis outputs ``time_out`` ``(M, N, H)``; frame ``(m, c)`` plays only note
    ``notes[m, c]`` (``N`` for silence) with bits ``bits[m, c]``.

    Equal to ``model.score_frames`` of the dense frames (up to float rounding) in eval mode, i.e.
    without dropout. Below its note a frame *is* the silent frame, so the note axis runs once over
    the silent frame, and the frames are split into ``groups`` by their note: each group continues
    from the silent run's state at its lowest note instead of starting from note 0.
    """
    M, N, _ = time_out.shape
    C = notes.shape[1]
    sounding = notes < N
    lowest = int(notes[sounding].min()) if sounding.any() else N
    bounds = torch.linspace(lowest, N, groups + 1).round().long().unique().tolist()
    # The silent frame, in segments, keeping every layer's state at each group boundary.
    silent_input = F.pad(time_out, (0, 2))  # (M, N, H + 2): nothing plays below any note
    segment_logits, boundary_states, state = [], {}, None
    for begin, end in zip([0, *bounds[:-1]], bounds):
        if end > begin:
            logits, state = _note_axis_from(model, silent_input[:, begin:end], state)
            segment_logits.append(logits)
        boundary_states[end] = state
    silent_logits = torch.cat(segment_logits, 1)  # (M, N, 2)
    silent_notes = F.logsigmoid(-silent_logits[..., 0])  # (M, N): log P(note n silent)
    below = F.pad(silent_notes.cumsum(1), (1, 0))  # (M, N + 1): notes < n all silent
    scores = below[:, N, None].expand(M, C).clone()  # silent frames
    for begin, end in itertools.pairwise(bounds):
        row, column = torch.nonzero(sounding & (notes >= begin) & (notes < end), as_tuple=True)
        if not len(row):
            continue
        length = N - begin
        frames = torch.zeros(len(row), length + 1, 2, dtype=time_out.dtype)
        offset = notes[row, column] - begin
        frames[torch.arange(len(row)), offset] = bits[row, column].to(time_out.dtype)
        inputs = torch.cat([time_out[row, begin:], F.pad(frames, (0, 0, 1, 0))[:, :length]], -1)
        start = [(h[row], c[row]) for h, c in boundary_states[begin]]
        logits, _ = _note_axis_from(model, inputs, start)  # (R, length, 2)
        suffix = _frame_log_likelihood(logits, frames[:, :length])
        scores = scores.index_put((row, column), below[row, begin] + suffix)
    return scores


def _frame_log_likelihood(logits: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """``priors.model.frame_log_likelihood`` of note rows ``(R, L, 2)``, summed over notes."""
    terms = -F.binary_cross_entropy_with_logits(logits, frames, reduction="none")
    return (terms[..., 0] + terms[..., 1] * frames[..., 0]).sum(-1)


def score_melody_actions(
    model: BiaxialLSTM, time_out: torch.Tensor, sounding: torch.Tensor
) -> torch.Tensor:
    """``log p(a | s)`` ``(M, 38)`` of the 38 actions in each state: the time-axis output
    ``time_out`` ``(M, N, H)`` from which the next frame is scored, and the sounding note."""
    notes, bits = candidate_notes(sounding, model.lowest_pitch, model.num_pitches)
    scores = score_single_note_frames(model, time_out, notes, bits)
    return renormalise(scores, sounding < 0)


def time_axis_outputs(model: BiaxialLSTM, melodies: torch.Tensor) -> torch.Tensor:
    """``(M, T + 1, N, H)``: the time-axis output before each position of ``melodies`` ``(M, T)``
    (from which that position's frame is scored) and after the last, in one pass; equal to what
    ``initial_state`` and ``advance`` give. Positions after padding (``< 0``) read silence."""
    M, T = melodies.shape
    sounding = sounding_before(melodies)
    played = melodies.clamp(min=0).reshape(-1)
    frames = token_frames(
        played, sounding[:, :-1].reshape(-1), model.lowest_pitch, model.num_pitches
    ).reshape(M, T, model.num_pitches, 2)
    frames = frames * (melodies >= 0)[..., None, None]
    previous = F.pad(frames, (0, 0, 0, 0, 1, 0))  # (M, T + 1, N, 2): silence, then each frame
    steps = torch.arange(T + 1, device=melodies.device).expand(M, T + 1)
    time_out, _ = model._time_axis(model.input_features(previous, steps))
    return time_out


# ------------------------------------------------------------------------ a prior for the env
class MelodyPrior:
    """A :class:`~priors.model.BiaxialLSTM` as a ``FramePrior`` whose ``score_frames`` takes the
    fast path for frames with at most one sounding note (all of the environment's candidates) and
    the model's own for any other. Pass it as an environment's ``prior=``."""

    def __init__(self, model: BiaxialLSTM) -> None:
        self.model = model
        self.lowest_pitch = model.lowest_pitch
        self.num_pitches = model.num_pitches
        self.resolution = model.resolution

    def initial_state(self, batch_size: int) -> BiaxialState:
        return self.model.initial_state(batch_size)

    def advance(self, state: BiaxialState, frames: torch.Tensor) -> BiaxialState:
        return self.model.advance(state, frames)

    @torch.no_grad()
    def score_frames(self, state: BiaxialState, candidates: torch.Tensor) -> torch.Tensor:
        B, C, N, _ = candidates.shape
        playing = candidates[..., 0] > 0  # (B, C, N)
        sound = candidates.abs().sum(-1) > 0
        if self.model.training or (sound.sum(-1) > 1).any() or (sound & ~playing).any():
            return self.model.score_frames(state, candidates)
        notes = torch.where(sound.any(-1), sound.float().argmax(-1), N)
        bits = candidates.float().gather(
            2, notes.clamp(max=N - 1)[..., None, None].expand(B, C, 1, 2)
        )
        return score_single_note_frames(self.model, state.time_out, notes, bits[:, :, 0])

    def select_state(self, state: BiaxialState, index: torch.Tensor) -> BiaxialState:
        return self.model.select_state(state, index)

    def assign_state(self, state: BiaxialState, index: torch.Tensor, new: BiaxialState) -> Any:
        return self.model.assign_state(state, index, new)


@torch.no_grad()
def melody_log_probs(model: BiaxialLSTM, melodies: Sequence[Sequence[int]]) -> torch.Tensor:
    """``(M, T)`` ``log p(a_t | s_t)`` of every token of equally long ``melodies`` under ``model``,
    as the environment's ``"prior"`` reward part computes it (no primer)."""
    tokens = torch.as_tensor([list(m) for m in melodies], dtype=torch.long)
    M, T = tokens.shape
    time_out = time_axis_outputs(model, tokens)[:, :T]  # (M, T, N, H)
    sounding = sounding_before(tokens)[:, :T]
    log_probs = score_melody_actions(
        model, time_out.reshape(M * T, *time_out.shape[2:]), sounding.reshape(-1)
    )
    return log_probs.gather(1, tokens.reshape(-1, 1)).reshape(M, T)

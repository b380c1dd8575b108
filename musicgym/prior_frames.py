"""The 38 melody actions as prior frames, and their renormalised log-probabilities, on tensors.

Under a model of frames, an action's prior score is the log-likelihood of the next frame it
produces (NOTE_OFF: silence; NO_EVENT: the sounding note held, or silence if none sounds; a pitch
token: that note struck). :class:`FrameMelodyPrior` makes a frame model a
:class:`musicgym.prior.MelodyPrior` with these functions, batched over states and differentiable,
so the environment's reward and an agent's ``log p(a | s)`` are one computation. ``sounding`` is
the token of the note that sounds before the action, ``-1`` for none.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from musicgym.music.tokens import (
    FIRST_PITCH_TOKEN,
    LOWEST_MELODY_PITCH,
    NO_EVENT,
    NOTE_OFF,
    NUM_TOKENS,
)

LowestPitch = int | torch.Tensor
"""The MIDI pitch that melody tokens map onto index 0 of the prior's axis: one for all states, or
``(B,)`` one per state (the axis' lowest pitch less :func:`musicgym.prior.transposition`)."""


def candidate_notes(
    sounding: torch.Tensor, lowest_pitch: LowestPitch, num_pitches: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 38 candidate frames of each state in sparse form: ``notes`` ``(B, 38)``, the index on
    the pitch axis of the frame's one sounding note (``num_pitches`` for a silent frame), and
    ``bits`` ``(B, 38, 2)``, its (play, articulate)."""
    B = sounding.shape[0]
    offset = LOWEST_MELODY_PITCH - FIRST_PITCH_TOKEN - torch.as_tensor(lowest_pitch)
    offset = offset.to(sounding.device).reshape(-1, 1)  # token -> pitch-axis index, (1|B, 1)
    tokens = torch.arange(NUM_TOKENS, device=sounding.device)
    notes = (tokens + offset).expand(B, NUM_TOKENS).clone()
    notes[:, NOTE_OFF] = num_pitches
    notes[:, NO_EVENT] = torch.where(sounding >= 0, sounding + offset[:, 0], num_pitches)
    bits = torch.ones(B, NUM_TOKENS, 2, device=sounding.device)
    bits[:, NO_EVENT, 1] = 0.0  # a held note plays without articulating
    bits[notes == num_pitches] = 0.0
    return notes, bits


def candidate_frames(
    sounding: torch.Tensor, lowest_pitch: LowestPitch, num_pitches: int
) -> torch.Tensor:
    """``(B, 38, N, 2)``: the next frame each token would produce after ``sounding`` ``(B,)``, on
    the prior's pitch axis ``lowest_pitch .. lowest_pitch + N - 1``."""
    notes, bits = candidate_notes(sounding, lowest_pitch, num_pitches)
    frames = torch.zeros(*notes.shape, num_pitches + 1, 2, device=sounding.device)
    frames.scatter_(2, notes[..., None, None].expand(*notes.shape, 1, 2), bits[:, :, None])
    return frames[:, :, :num_pitches]  # the extra row took the silent frames' "note"


def token_frames(
    tokens: torch.Tensor, sounding: torch.Tensor, lowest_pitch: LowestPitch, num_pitches: int
) -> torch.Tensor:
    """``(B, N, 2)``: the frame token ``tokens[i]`` produces after ``sounding[i]`` (row
    ``tokens[i]`` of :func:`candidate_frames`, without building the other 37)."""
    notes, bits = candidate_notes(sounding, lowest_pitch, num_pitches)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    notes, bits = notes[rows, tokens], bits[rows, tokens]  # (B,), (B, 2)
    frames = torch.zeros(tokens.shape[0], num_pitches + 1, 2, device=sounding.device)
    frames[rows, notes] = bits
    return frames[:, :num_pitches]


def renormalise(scores: torch.Tensor, silent: torch.Tensor) -> torch.Tensor:
    """``log p(a | s)`` ``(B, 38)`` from the 38 candidate frames' log-likelihoods ``scores``.

    Normalised over the *distinct* frames: where nothing sounds (``silent`` ``(B,)``), NOTE_OFF
    and NO_EVENT produce the same silent frame, which counts once in the normaliser and whose
    probability the two tokens share equally (each gets ``log p - log 2``). So ``exp`` of every
    row sums to 1.
    """
    distinct = scores.clone()
    distinct[:, NOTE_OFF] = torch.where(silent, -math.inf, scores[:, NOTE_OFF])
    log_probs = scores - torch.logsumexp(distinct, 1, keepdim=True)
    shared = torch.where(silent, math.log(2.0), 0.0).to(scores.dtype)
    return torch.cat([log_probs[:, :2] - shared[:, None], log_probs[:, 2:]], 1)


class FrameMelodyPrior:
    """Mixed into a :class:`~musicgym.prior.FramePrior`, makes it a
    :class:`~musicgym.prior.MelodyPrior`: a token is played as the frame it produces
    (:func:`token_frames`), and the 38 actions are scored as their candidate frames, renormalised
    (:func:`renormalise`, in float64).

    The frame model adds ``summary(state)`` (and ``summary_shape``); one that scores candidate
    frames from its summary, ``score_candidates(summary, candidates)``, also gets
    :meth:`summary_log_probs`, which lets an agent fine-tune the scorer above the summary.
    """

    lowest_pitch: int
    num_pitches: int

    def _token_lowest(self, transpose: torch.Tensor) -> torch.Tensor:
        """Where each stream's tokens map onto the pitch axis."""
        return self.lowest_pitch - transpose

    def play(
        self, state: Any, tokens: torch.Tensor, sounding: torch.Tensor, transpose: torch.Tensor
    ) -> Any:
        frames = token_frames(tokens, sounding, self._token_lowest(transpose), self.num_pitches)
        return self.advance(state, frames)  # type: ignore[attr-defined]

    def action_log_probs(
        self, state: Any, sounding: torch.Tensor, transpose: torch.Tensor
    ) -> torch.Tensor:
        candidates = candidate_frames(sounding, self._token_lowest(transpose), self.num_pitches)
        scores = self.score_frames(state, candidates)  # type: ignore[attr-defined]  # (B, 38)
        return renormalise(scores.double(), sounding < 0)

    def summary_log_probs(
        self, summary: torch.Tensor, sounding: torch.Tensor, transpose: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`action_log_probs` from the summary alone, differentiable in the scorer's
        weights."""
        candidates = candidate_frames(sounding, self._token_lowest(transpose), self.num_pitches)
        scores = self.score_candidates(summary, candidates)  # type: ignore[attr-defined]
        return renormalise(scores.double(), sounding < 0)

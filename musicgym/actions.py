"""The 38 melody actions as prior frames, and their renormalised log-probabilities, on tensors.

An action's prior score is the log-likelihood of the next frame it produces (NOTE_OFF: silence;
NO_EVENT: the sounding note held, or silence if none sounds; a pitch token: that note struck).
:class:`musicgym.env.MelodyBatch` and the agents both use these functions, batched over states
and differentiable, so the environment's reward and an agent's ``log p(a | s)`` are one
computation. ``sounding`` is the token of the note that sounds before the action, ``-1`` for none.
"""

from __future__ import annotations

import math

import torch

from musicgym.tokens import FIRST_PITCH_TOKEN, LOWEST_MELODY_PITCH, NO_EVENT, NOTE_OFF, NUM_TOKENS

LowestPitch = int | torch.Tensor
"""The MIDI pitch that melody tokens map onto index 0 of the prior's axis: one for all states, or
``(B,)`` one per state (see :func:`musicgym.prior.token_axis`)."""


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

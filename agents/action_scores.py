"""``log p(a | s)`` of the 38 melody actions under a Bi-axial LSTM over whole melodies, as tensors.

The environment (:class:`musicgym.env.MelodyBatch`) rewards an action with the prior's
log-likelihood of the next frame it produces, renormalised over the distinct frames. The agents
need the same numbers as torch tensors with gradients (the RL Tuner's Q-network is such a scorer),
for every action of every training sample and evaluation melody. They are one computation with the
environment's: the candidate frames and the renormalisation are :mod:`musicgym.actions`, and the
scores are the model's own :meth:`~priors.model.BiaxialLSTM.score_candidates` (exact, sharing the
note-axis prefix below each candidate's note). This module adds the token bookkeeping over
melodies and the time axis over whole melodies in one pass.

Tokens are those of :mod:`musicgym.tokens`; ``sounding`` is the token of the note that sounds
before the action, ``-1`` for none. ``key`` is the melodies' key: a key-normalised prior scores
them transposed into C (:func:`musicgym.prior.token_axis`), as the environment does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from musicgym.actions import candidate_frames, renormalise, token_frames
from musicgym.keys import Key
from musicgym.prior import token_axis
from musicgym.tokens import FIRST_PITCH_TOKEN, NOTE_OFF
from priors.model import BiaxialLSTM


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


def score_melody_actions(
    model: BiaxialLSTM,
    time_out: torch.Tensor,
    sounding: torch.Tensor,
    key: Key | str = "C major",
) -> torch.Tensor:
    """``log p(a | s)`` ``(M, 38)`` of the 38 actions in each state: the time-axis output
    ``time_out`` ``(M, N, H)`` from which the next frame is scored, and the sounding note."""
    candidates = candidate_frames(sounding, *token_axis(model, key))
    return renormalise(model.score_candidates(time_out, candidates), sounding < 0)


def time_axis_outputs(
    model: BiaxialLSTM, melodies: torch.Tensor, key: Key | str = "C major"
) -> torch.Tensor:
    """``(M, T + 1, N, H)``: the time-axis output before each position of ``melodies`` ``(M, T)``
    (from which that position's frame is scored) and after the last, in one pass; equal to what
    ``initial_state`` and ``advance`` give. Positions after padding (``< 0``) read silence."""
    M, T = melodies.shape
    sounding = sounding_before(melodies)
    played = melodies.clamp(min=0).reshape(-1)
    frames = token_frames(played, sounding[:, :-1].reshape(-1), *token_axis(model, key))
    frames = frames.reshape(M, T, model.num_pitches, 2)
    frames = frames * (melodies >= 0)[..., None, None]
    previous = F.pad(frames, (0, 0, 0, 0, 1, 0))  # (M, T + 1, N, 2): silence, then each frame
    steps = torch.arange(T + 1, device=melodies.device).expand(M, T + 1)
    time_out, _ = model._time_axis(model.input_features(previous, steps))
    return time_out


def melody_statistics(
    model: BiaxialLSTM, melodies: Sequence[Sequence[int]], key: str = "C major"
) -> dict[str, float]:
    """Every statistic of :func:`musicgym.metrics.evaluate_melodies` and ``log_p``, the mean
    ``log p(a|s)`` of the melodies' tokens under ``model``."""
    from musicgym.metrics import evaluate_melodies

    statistics = evaluate_melodies(melodies, key)
    statistics["log_p"] = float(melody_log_probs(model, melodies, key).double().mean())
    return statistics


@torch.no_grad()
def melody_log_probs(
    model: BiaxialLSTM,
    melodies: Sequence[Sequence[int]],
    key: Key | str = "C major",
    chunk: int = 2048,
) -> torch.Tensor:
    """``(M, T)`` ``log p(a_t | s_t)`` of every token of equally long ``melodies`` under ``model``,
    as the environment's ``"prior"`` reward part computes it (no primer). The states are scored
    ``chunk`` at a time (38 candidate frames each), which bounds the memory (1,000 melodies of 32
    tokens at once took 11 GB)."""
    tokens = torch.as_tensor([list(m) for m in melodies], dtype=torch.long)
    M, T = tokens.shape
    time_out = time_axis_outputs(model, tokens, key)[:, :T].reshape(M * T, model.num_pitches, -1)
    sounding = sounding_before(tokens)[:, :T].reshape(-1)
    actions = tokens.reshape(-1, 1)
    scores = [
        score_melody_actions(model, time_out[i : i + chunk], sounding[i : i + chunk], key).gather(
            1, actions[i : i + chunk]
        )
        for i in range(0, M * T, chunk)
    ]
    return torch.cat(scores).reshape(M, T)

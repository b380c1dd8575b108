"""A small prior for tests: a fixed random table, honest to ``musicgym.prior.FramePrior``.

P(frame | previous frame, step) factorises over notes: play is Bernoulli with a logit from a table
by bar position plus a coupling to the previous frame, and articulate given play likewise, so the
probabilities of all frames sum to 1 (as the Bi-axial LSTM's do). Its arithmetic is elementwise per
stream, so it returns the same bits at any batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from musicgym.prior_frames import FrameMelodyPrior


class TablePrior(FrameMelodyPrior):
    """A frame prior over MIDI ``lowest_pitch .. lowest_pitch + num_pitches - 1``, and through
    :class:`~musicgym.prior_frames.FrameMelodyPrior` a melody prior (its summary: the last
    frame)."""

    resolution = 4

    def __init__(self, lowest_pitch: int = 36, num_pitches: int = 60, seed: int = 0) -> None:
        self.lowest_pitch, self.num_pitches = lowest_pitch, num_pitches
        generator = torch.Generator().manual_seed(seed)
        self.bias = torch.randn(16, num_pitches, 2, generator=generator) - 2.0  # (16, N, 2)
        self.coupling = 2.0 * torch.randn(num_pitches, 2, generator=generator)  # (N, 2)

    def initial_state(self, batch_size: int) -> dict[str, torch.Tensor]:
        return {
            "previous": torch.zeros(batch_size, self.num_pitches, 2),
            "step": torch.zeros(batch_size, dtype=torch.long),
        }

    @property
    def summary_shape(self) -> tuple[int, int]:
        return self.num_pitches, 2

    def summary(self, state: dict) -> torch.Tensor:
        return state["previous"]

    def advance(self, state: dict, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"previous": frames.float().clone(), "step": state["step"] + 1}

    def frame_logits(self, state: dict) -> torch.Tensor:
        """``(B, N, 2)`` logits of play and of articulate-given-play."""
        bar_position = state["step"] % 16
        return self.bias[bar_position] + self.coupling * state["previous"][..., :1]

    def score_frames(self, state: dict, candidates: torch.Tensor) -> torch.Tensor:
        logits = self.frame_logits(state).unsqueeze(1)  # (B, 1, N, 2)
        play, articulate = candidates[..., 0].float(), candidates[..., 1].float()
        log_play = play * F.logsigmoid(logits[..., 0]) + (1 - play) * F.logsigmoid(-logits[..., 0])
        log_articulate = play * (
            articulate * F.logsigmoid(logits[..., 1])
            + (1 - articulate) * F.logsigmoid(-logits[..., 1])
        )
        return (log_play + log_articulate).sum(-1)  # (B, C)

    def select_state(self, state: dict, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: value[index] for name, value in state.items()}

    def assign_state(self, state: dict, index: torch.Tensor, new: dict) -> dict[str, torch.Tensor]:
        assigned = {name: value.clone() for name, value in state.items()}
        for name, value in assigned.items():
            value[index] = new[name]
        return assigned

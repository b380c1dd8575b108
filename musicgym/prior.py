"""What the environment needs of a prior, and how it finds one without importing ``priors``.

The environment scores an action by the prior's log-probability of the next frame the action
produces. It only needs a recurrent state over frames and a batched score of candidate next
frames; :class:`FramePrior` states that protocol. ``priors.model.BiaxialLSTM`` implements it, and
the ``priors`` package registers a loader in the entry-point group ``musicgym.prior_loaders`` that
turns a shipped name (``"bach16"``) or a checkpoint path into a model, resolved only when an
environment first needs it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from musicgym.errors import CheckpointError
from musicgym.keys import Key

DEFAULT_PRIOR = "melody16c"
LOADER_GROUP = "musicgym.prior_loaders"


@runtime_checkable
class FramePrior(Protocol):
    """A model of the next note-state frame given the frames so far, scored incrementally.

    A *frame* is one time step of a note-state, ``(N, 2)`` play/articulate bits over the prior's
    pitch axis ``lowest_pitch .. lowest_pitch + num_pitches - 1``. Frames are counted from 0, the
    first step of a bar at ``resolution`` steps per quarter note.
    """

    lowest_pitch: int
    num_pitches: int
    resolution: int

    def initial_state(self, batch_size: int) -> Any:
        """The state of ``batch_size`` streams before frame 0, from which frame 0 is scored."""
        ...

    def advance(self, state: Any, frames: torch.Tensor) -> Any:
        """Feed each stream its next frame, ``(B, N, 2)``, and return the new state.

        The state may be updated in place; callers use the returned one.
        """
        ...

    def score_frames(self, state: Any, candidates: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` log-probabilities of ``C`` candidate next frames ``(B, C, N, 2)``."""
        ...

    def select_state(self, state: Any, index: torch.Tensor) -> Any:
        """The state of the streams ``index`` (a 1-D long tensor), e.g. to reset or reorder them."""
        ...

    def assign_state(self, state: Any, index: torch.Tensor, new: Any) -> Any:
        """``state`` with the streams ``index`` replaced by the streams of ``new``; returned."""
        ...


def token_axis(prior: FramePrior, key: Key | str = "C major") -> tuple[int, int]:
    """``(lowest_pitch, num_pitches)`` to map melody tokens in ``key`` onto ``prior``'s pitch axis.

    A prior trained on music transposed to C major / A minor says so by a true ``key_normalised``
    attribute (optional in :class:`FramePrior`); music in another key is then moved by
    :attr:`Key.shift_to_c` before it is scored, which is mapping tokens as if the axis started
    that many semitones lower. Every other prior reads tokens at their own pitch.
    """
    shift = Key.parse(key).shift_to_c if getattr(prior, "key_normalised", False) else 0
    return prior.lowest_pitch - shift, prior.num_pitches


def resolve_prior(prior: str | Path | FramePrior, device: str | torch.device = "cpu") -> FramePrior:
    """A loaded prior: ``prior`` itself if it already is one, otherwise the model that a registered
    loader makes of a shipped name or a checkpoint path."""
    if isinstance(prior, FramePrior):
        return prior
    loaders = sorted(entry_points(group=LOADER_GROUP), key=lambda ep: ep.name)
    if not loaders:
        raise CheckpointError(
            f"no prior loader is installed to load {str(prior)!r} (entry-point group "
            f"{LOADER_GROUP}); install musicgym with its priors package, or pass prior=None "
            "for a rules-only env"
        )
    return loaders[0].load()(prior, device=device)

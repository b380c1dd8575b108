"""What the environments and the agents need of a prior, and how a checkpoint finds its loader.

A prior is a model of the next melody token given the tokens so far, run over a batch of
*streams* (melodies) side by side. :class:`MelodyPrior` states that protocol: advance the streams
by tokens, the normalised log-probabilities of the 38 actions, and the recurrent summary a
Q-network reads. The environment, the RL Tuner, ``PriorAgent`` and the benchmarks use nothing else
(through :class:`musicgym.envs.stepper.TokenStepper`, the one place that plays tokens into a prior).

Two ways to be one:

* a model of tokens implements it directly (``musicgym.priors.note_rnn.NoteRNN``, Jaques et
  al.'s Note RNN);
* a model of note-state frames implements :class:`FramePrior` and mixes in
  :class:`musicgym.prior_frames.FrameMelodyPrior`, which turns tokens into frames and scores the 38
  candidate frames (``musicgym.priors.model.BiaxialLSTM``, the Bi-axial LSTM).

``ChoraleComposition-v0`` composes whole frames note by note: its prior is a
:class:`NoteAxisPrior`, a :class:`FramePrior` that also scores the notes of a frame one pitch at a
time, from the lowest up (the Bi-axial LSTM's note axis), through
:class:`musicgym.envs.decisions.DecisionStepper`.

Checkpoints are plain dicts whose ``"model"`` entry is the model's tag. :func:`resolve_prior`
reads the checkpoint (a path, or a shipped name found through the entry-point group
``musicgym.shipped_priors``) and calls the loader registered for that tag in the group
``musicgym.prior_loaders``; ``priors`` registers its models there, and another package may add
its own.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from musicgym.errors import CheckpointError
from musicgym.fileio import load_checkpoint_file
from musicgym.music.keys import Key

DEFAULT_PRIOR = "melody16c"
LOADER_GROUP = "musicgym.prior_loaders"
"""Entry points named by a checkpoint's model tag: ``loader(checkpoint, path, device)``."""
SHIPPED_GROUP = "musicgym.shipped_priors"
"""Entry points of functions that return ``{name: checkpoint path}`` of the priors they ship."""


@runtime_checkable
class MelodyPrior(Protocol):
    """A model of the next melody token, over ``B`` streams scored incrementally.

    Tokens are the 38 of :mod:`musicgym.music.tokens`. ``sounding`` ``(B,)`` is the token of the
    note sounding before a stream's next token (-1 for none; a model of tokens may ignore it);
    ``transpose`` ``(B,)`` the semitones each stream's pitches move before the model reads them
    (:func:`transposition`). The prior reads pitches on its axis ``lowest_pitch .. lowest_pitch +
    num_pitches - 1`` at ``resolution`` steps per quarter note. The state is opaque to callers.
    """

    lowest_pitch: int
    num_pitches: int
    resolution: int
    summary_shape: tuple[int, int]
    """``(K, H)``: the shape of :meth:`summary` per stream."""

    def initial_state(self, batch_size: int) -> Any:
        """The state of ``batch_size`` streams before their first token."""
        ...

    def play(
        self, state: Any, tokens: torch.Tensor, sounding: torch.Tensor, transpose: torch.Tensor
    ) -> Any:
        """Feed each stream its next token ``(B,)``; the new state (the old may be reused)."""
        ...

    def action_log_probs(
        self, state: Any, sounding: torch.Tensor, transpose: torch.Tensor
    ) -> torch.Tensor:
        """``log p(a | s)`` ``(B, 38)`` of every stream's next token; ``exp`` of a row sums to 1."""
        ...

    def summary(self, state: Any) -> torch.Tensor:
        """``(B, K, H)``: what the model knows of each stream, as a Q-network reads it (e.g. its
        recurrent output); the next token's distribution depends on the stream only through it
        and ``sounding``."""
        ...

    def select_state(self, state: Any, index: torch.Tensor) -> Any:
        """The state of the streams ``index`` (a 1-D long tensor)."""
        ...

    def assign_state(self, state: Any, index: torch.Tensor, new: Any) -> Any:
        """``state`` with the streams ``index`` replaced by the streams of ``new``; returned
        (``state`` may be updated in place: callers use the returned one)."""
        ...


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
        """``state`` with the streams ``index`` replaced by the streams of ``new``; returned
        (``state`` may be updated in place: callers use the returned one)."""
        ...


NOTE_CHOICES = ("not played", "played, articulated", "played, held")
"""What a :class:`NoteAxisPrior` scores at one pitch of a frame, in the order of the last axis of
:meth:`NoteAxisPrior.note_log_probs`."""


@runtime_checkable
class NoteAxisPrior(FramePrior, Protocol):
    """A frame prior that decides a frame note by note, from the lowest pitch up: its
    ``score_frames`` is the sum, over the pitches, of the log-probability of each pitch's choice
    (:data:`NOTE_CHOICES`) given the choices below it.

    The *note axis* of ``B`` streams (opaque to callers) is where each stream stands inside its
    next frame: which pitches are decided (all up to some pitch, none at the start) and how. The
    frame's context is the frame state ``state`` passed with it (the one :meth:`advance` gives
    after the frame before). ``ChoraleComposition-v0`` plays its decisions through these three
    methods only, so its ``log p(a|s)`` is the prior's own factorisation: the log-probabilities of
    a frame's decisions sum to :meth:`score_frames` of that frame.
    """

    def start_note_axis(self, state: Any) -> Any:
        """The note axis of every stream of ``state`` before its next frame's lowest pitch."""
        ...

    def note_log_probs(self, state: Any, note_axis: Any) -> torch.Tensor:
        """``(B, N, 3)``: for every pitch ``n`` above the decided ones, the log-probabilities of
        its three :data:`NOTE_CHOICES` given the decided pitches and given that the undecided
        pitches below ``n`` are not played; ``-inf`` at decided pitches. ``exp`` of each row
        above the decided pitches sums to 1."""
        ...

    def decide_notes(
        self, state: Any, note_axis: Any, pitches: torch.Tensor, bits: torch.Tensor
    ) -> Any:
        """The note axis after each stream decides the undecided pitches up to its index
        ``pitches`` ``(B,)``: those below not played, ``pitches`` itself with the ``(play,
        articulate)`` ``bits`` ``(B, 2)``. ``pitches`` equal to ``N`` ends the frame (every
        undecided pitch not played): that stream's note axis starts over, before the lowest pitch
        of the frame after (to be read with the state :meth:`advance` gives); -1 leaves that
        stream's note axis as it is. The old note axis may be reused."""
        ...


def transposition(prior: MelodyPrior | FramePrior, key: Key | str = "C major") -> int:
    """Semitones that melody pitches in ``key`` move before ``prior`` reads them.

    A prior trained on music transposed to C major / A minor says so by a true ``key_normalised``
    attribute (optional in the protocols); music in another key is then moved by
    :attr:`Key.shift_to_c`. Every other prior reads tokens at their own pitch (0).
    """
    return Key.parse(key).shift_to_c if getattr(prior, "key_normalised", False) else 0


# ------------------------------------------------------------------------------ checkpoints
def shipped_checkpoints() -> dict[str, Path]:
    """Every shipped prior's checkpoint by name, from the functions of :data:`SHIPPED_GROUP`."""
    shipped: dict[str, Path] = {}
    for entry in sorted(entry_points(group=SHIPPED_GROUP), key=lambda ep: ep.name):
        shipped.update({name: Path(path) for name, path in entry.load()().items()})
    return shipped


def checkpoint_path(prior: str | os.PathLike) -> Path:
    """A shipped name's checkpoint (a name has no ``/`` and no ``.pt``), else the path itself."""
    text = str(prior)
    if os.sep in text or "/" in text or text.endswith(".pt"):
        return Path(prior)
    shipped = shipped_checkpoints()
    if text not in shipped:
        names = ", ".join(sorted(shipped)) or "none installed"
        raise CheckpointError(f"{text}: no shipped prior of that name (shipped: {names})")
    return shipped[text]


def prior_from_checkpoint(
    checkpoint: dict[str, Any], path: str | os.PathLike = "", device: str | torch.device = "cpu"
) -> MelodyPrior:
    """The frozen model of a checkpoint dict, made by the loader registered for its model tag."""
    tag = checkpoint.get("model")
    loaders = {entry.name: entry for entry in entry_points(group=LOADER_GROUP)}
    if not isinstance(tag, str) or tag not in loaders:
        known = ", ".join(sorted(loaders)) or "none installed"
        what = f"model {tag!r}" if isinstance(tag, str) else "no model tag"
        raise CheckpointError(
            f"{path or 'checkpoint'}: {what}, which no installed prior loader knows "
            f"(entry-point group {LOADER_GROUP}: {known})"
        )
    model = loaders[tag].load()(checkpoint, path, device)
    model.eval()
    model.requires_grad_(False)
    return model


def prior_checkpoint(prior: Any) -> dict[str, Any]:
    """The plain checkpoint dict of a loaded prior (its model tag, config and weights on the CPU)
    that :func:`prior_from_checkpoint` reads back; a run keeps its prior in it."""
    try:
        return {
            "model": prior.model_tag,
            "config": asdict(prior.config),
            "state_dict": {k: v.detach().cpu().clone() for k, v in prior.state_dict().items()},
        }
    except (AttributeError, TypeError) as error:
        raise CheckpointError(
            f"prior {type(prior).__name__}: cannot be saved with the run (it needs a model_tag, "
            f"a dataclass config and a state_dict: {error})"
        ) from None


def resolve_prior(
    prior: str | os.PathLike | MelodyPrior, device: str | torch.device = "cpu"
) -> MelodyPrior:
    """A loaded prior: ``prior`` itself if it already is one, else the frozen model of a shipped
    name or a checkpoint path, made by the loader of its checkpoint's model tag."""
    if isinstance(prior, MelodyPrior):
        return prior
    if isinstance(prior, FramePrior):
        raise CheckpointError(
            f"prior {type(prior).__name__}: a FramePrior only; mix in "
            "musicgym.prior_frames.FrameMelodyPrior to make it a MelodyPrior"
        )
    path = checkpoint_path(prior)
    return prior_from_checkpoint(load_checkpoint_file(path), path, device)


def require(prior: Any, capability: str, what: str, where: str = "prior") -> None:
    """One line naming the prior and what it lacks when ``prior`` has no ``capability`` (a
    method an agent needs beyond :class:`MelodyPrior`)."""
    if not callable(getattr(prior, capability, None)):
        raise CheckpointError(
            f"{where}: {type(prior).__name__} has no {capability}(), which {what} needs"
        )

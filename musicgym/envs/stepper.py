"""Playing melody tokens into a prior: the one token stepper of the environment and the agents.

:class:`TokenStepper` holds ``B`` melodies being played into a :class:`~musicgym.prior.MelodyPrior`
side by side: the prior's state over each, the note sounding in each, and how far each melody's
pitches move before the prior reads them (its key, for a key-normalised prior). It feeds primers,
plays tokens, and gives the prior's ``log p(a | s)`` of the 38 next actions and its summary of
each melody. ``MusicComposition-v0``, the RL Tuner and ``PriorAgent`` all play through it, so the
environment's reward and an agent's ``log p`` are one computation.

:func:`melody_log_probs` and :func:`melody_summaries` run it over whole stored melodies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from musicgym.config import DEFAULTS
from musicgym.errors import EnvArgumentError
from musicgym.music.keys import Key
from musicgym.music.tokens import (
    FIRST_PITCH_TOKEN,
    HIGHEST_MELODY_PITCH,
    LOWEST_MELODY_PITCH,
    NOTE_OFF,
)
from musicgym.prior import MelodyPrior, transposition


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


def check_prior_range(prior: MelodyPrior, key: Key | str = DEFAULTS.key) -> MelodyPrior:
    """``prior`` if its pitch axis holds the melody tokens' MIDI 48..83 once moved by
    :func:`musicgym.prior.transposition` for ``key``; else one clear line."""
    shift = transposition(prior, key)
    low, high = prior.lowest_pitch, prior.lowest_pitch + prior.num_pitches - 1
    if low > LOWEST_MELODY_PITCH + shift or high < HIGHEST_MELODY_PITCH + shift:
        moved = f" moved by {shift:+d} semitones into C for {Key.parse(key)}" if shift else ""
        raise EnvArgumentError(
            f"prior: its pitch range {low}..{high} does not hold the melody tokens' MIDI "
            f"{LOWEST_MELODY_PITCH}..{HIGHEST_MELODY_PITCH}{moved}"
        )
    return prior


class TokenStepper:
    """``batch_size`` melodies played into ``prior`` token by token (see the module docstring).

    Args:
        prior: a loaded :class:`~musicgym.prior.MelodyPrior`.
        batch_size: ``B``.
        key: every melody's key until :meth:`restart` gives it another.
        device: where the prior's tensors live.
    """

    def __init__(
        self,
        prior: MelodyPrior,
        batch_size: int,
        key: Key | str = DEFAULTS.key,
        device: str | torch.device = "cpu",
    ) -> None:
        self.prior, self.batch_size, self.device = prior, batch_size, torch.device(device)
        check_prior_range(prior, key)
        self.state = prior.initial_state(batch_size)
        self.sounding = torch.full((batch_size,), -1, dtype=torch.long, device=self.device)
        """``(B,)``: the token of the note sounding in each melody, -1 for none."""
        shift = transposition(prior, key)
        self.transpose = torch.full((batch_size,), shift, dtype=torch.long, device=self.device)
        """``(B,)``: semitones each melody's pitches move before the prior reads them."""

    @torch.no_grad()
    def restart(
        self,
        index: Sequence[int],
        primers: Sequence[Sequence[int]],
        keys: Sequence[Key | str] | None = None,
    ) -> None:
        """Start the melodies ``index`` afresh (in ``keys``, if given), each fed its primer
        tokens (of any lengths; the prior never scores them)."""
        if not len(index):
            return
        prior, count = self.prior, len(index)
        slots = torch.as_tensor(list(index), dtype=torch.long, device=self.device)
        if keys is not None:
            for key in set(keys):
                check_prior_range(prior, key)
            shifts = [transposition(prior, key) for key in keys]
            self.transpose[slots] = torch.tensor(shifts, dtype=torch.long, device=self.device)
        transpose = self.transpose[slots]
        state = prior.initial_state(count)
        sounding = torch.full((count,), -1, dtype=torch.long, device=self.device)
        lengths = torch.tensor([len(p) for p in primers])
        for t in range(max(map(len, primers), default=0)):
            rows = torch.nonzero(lengths > t).flatten().to(self.device)
            tokens = torch.tensor(
                [primers[i][t] for i in rows.tolist()], dtype=torch.long, device=self.device
            )
            if len(rows) == count:
                state = prior.play(state, tokens, sounding, transpose)
            else:
                part = prior.select_state(state, rows)
                part = prior.play(part, tokens, sounding[rows], transpose[rows])
                state = prior.assign_state(state, rows, part)
            sounding[rows] = next_sounding(sounding[rows], tokens)
        self.state = prior.assign_state(self.state, slots, state)
        self.sounding[slots] = sounding

    @torch.no_grad()
    def play(self, tokens: torch.Tensor) -> None:
        """Every melody plays its token ``(B,)``."""
        tokens = tokens.to(self.device)
        self.state = self.prior.play(self.state, tokens, self.sounding, self.transpose)
        self.sounding = next_sounding(self.sounding, tokens)

    @torch.no_grad()
    def action_log_probs(self) -> torch.Tensor:
        """``(B, 38)``: the prior's ``log p(a | s)`` of every melody's next token."""
        return self.prior.action_log_probs(self.state, self.sounding, self.transpose)

    @torch.no_grad()
    def summary(self) -> torch.Tensor:
        """``(B, K, H)``: the prior's summary of every melody (what a Q-network reads)."""
        return self.prior.summary(self.state)

    def state_dict(self) -> dict[str, Any]:
        """The melodies' state as CPU tensors and lists (for a checkpoint read back with
        ``weights_only``); :meth:`load_state_dict` restores it bit for bit."""
        return {
            "prior_state": tensor_tree(self.state),
            "sounding": self.sounding.cpu().clone(),
            "transpose": self.transpose.cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        template = self.prior.initial_state(self.batch_size)
        self.state = from_tensor_tree(template, state["prior_state"])
        self.sounding = state["sounding"].to(self.device).clone()
        self.transpose = state["transpose"].to(self.device).clone()


# ------------------------------------------------------------------------- whole melodies
@torch.no_grad()
def melody_pass(
    prior: MelodyPrior,
    melodies: torch.Tensor,
    key: Key | str = DEFAULTS.key,
    *,
    log_probs: bool = False,
    summaries: bool = False,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Play ``melodies`` ``(M, T)`` through a :class:`TokenStepper` and keep, in the state
    before each position and after the last, the prior's ``"log_probs"`` ``(M, T + 1, 38)`` and
    ``"summaries"`` ``(M, T + 1, K, H)``, as asked. Padding (``< 0``) plays NOTE_OFF."""
    M, T = melodies.shape
    stepper = TokenStepper(prior, M, key, device)
    kept: dict[str, list[torch.Tensor]] = {"log_probs": [], "summaries": []}
    for t in range(T + 1):
        if log_probs:
            kept["log_probs"].append(stepper.action_log_probs())
        if summaries:
            kept["summaries"].append(stepper.summary())
        if t < T:
            stepper.play(melodies[:, t].clamp(min=NOTE_OFF))
    return {name: torch.stack(values, 1) for name, values in kept.items() if values}


def melody_summaries(
    prior: MelodyPrior,
    melodies: torch.Tensor,
    key: Key | str = DEFAULTS.key,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``(M, T + 1, K, H)``: the prior's summary before each token of ``melodies`` ``(M, T)``
    and after the last, as the stepper gives them while composing."""
    return melody_pass(prior, melodies, key, summaries=True, device=device)["summaries"]


def melody_log_probs(
    prior: MelodyPrior,
    melodies: Sequence[Sequence[int]],
    key: Key | str = DEFAULTS.key,
    chunk: int = 256,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``(M, T)`` ``log p(a_t | s_t)`` of every token of equally long ``melodies`` under
    ``prior``, as the environment's ``"prior"`` reward part computes it (no primer); ``chunk``
    melodies at a time (which bounds the memory)."""
    tokens = torch.as_tensor([list(m) for m in melodies], dtype=torch.long)
    scores = []
    for begin in range(0, len(tokens), chunk):
        part = tokens[begin : begin + chunk].to(device)
        all_log_probs = melody_pass(prior, part, key, log_probs=True, device=device)["log_probs"]
        scores.append(all_log_probs[:, :-1].gather(2, part[..., None])[..., 0].cpu())
    return torch.cat(scores)


def melody_statistics(
    prior: MelodyPrior, melodies: Sequence[Sequence[int]], key: str = DEFAULTS.key
) -> dict[str, float]:
    """Every statistic of :func:`musicgym.metrics.evaluate_melodies` and ``log_p``, the mean
    ``log p(a|s)`` of the melodies' tokens under ``prior``."""
    from musicgym.metrics import evaluate_melodies

    statistics = evaluate_melodies(melodies, key)
    statistics["log_p"] = float(melody_log_probs(prior, melodies, key).double().mean())
    return statistics


# ---------------------------------------------------------------------- states as tensors
def tensor_tree(value: Any) -> Any:
    """A prior's state (dataclasses, dicts, tuples and lists of tensors) as dicts, lists and CPU
    tensors."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: tensor_tree(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {name: tensor_tree(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [tensor_tree(item) for item in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    return value


def from_tensor_tree(template: Any, saved: Any) -> Any:
    """The inverse of :func:`tensor_tree`, shaped (types, devices) like ``template``."""
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        fields = {
            f.name: from_tensor_tree(getattr(template, f.name), saved[f.name])
            for f in dataclasses.fields(template)
        }
        return dataclasses.replace(template, **fields)
    if isinstance(template, dict):
        return {name: from_tensor_tree(item, saved[name]) for name, item in template.items()}
    if isinstance(template, (list, tuple)):
        items = [from_tensor_tree(t, s) for t, s in zip(template, saved, strict=True)]
        return type(template)(items)
    if isinstance(template, torch.Tensor):
        if saved.shape != template.shape:
            raise EnvArgumentError(
                f"state: a prior state of shape {tuple(saved.shape)}, expected "
                f"{tuple(template.shape)}"
            )
        return saved.to(template.device, template.dtype)
    return saved

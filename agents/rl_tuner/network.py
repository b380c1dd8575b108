"""The RL Tuner's Q-network: the frozen prior's ``log p`` plus a learned per-state term.

``Q(s, ·) = log p(· | s) + head(φ(s))`` (Q, Ψ), ``G(s, ·) = head(φ(s))`` (G, whose policy adds
``log p`` itself). ``head`` is a small MLP whose last layer starts at zero, so before training the
network *is* the prior; its outputs are unnormalised, so each state's values rise and fall
independently. ``φ(s)`` is the prior's summary ``(K, H)`` (each row's ``H`` values projected to
``summary_features`` by one linear map tied across rows: the Bi-axial LSTM's pitches) beside the
environment's own features of the state (``TunerPart.extra_features`` of
:mod:`musicgym.agents.rl_tuner.parts`).
``--rule-features`` adds ``outcomes(s, ·) . w`` to the head's term: each action's rule outcomes
(:data:`~musicgym.music.melody.RULE_OUTCOMES`) weighed by one weight each (learned; DPG sets
them).
``--train-readout`` also fine-tunes a copy of the prior's weights above its summary in place of
the frozen ``log p``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from musicgym.agents.rl_tuner.config import RLTunerConfig
from musicgym.agents.rl_tuner.parts import States, TunerPart
from musicgym.prior import require, transposition


class _FeatureLinear(torch.autograd.Function):
    """``linear(cat([learned, given], 1), weight, bias)`` whose gradient goes back to the
    ``learned`` features only: ``grad @ weight[:, :L]``, not the whole ``grad @ weight`` sliced
    afterwards. The numbers are autograd's for ``nn.Linear`` over the concatenation."""

    @staticmethod
    def forward(learned, given, weight, bias):  # type: ignore[override]
        return F.linear(torch.cat([learned, given], 1), weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        learned, given, weight, _ = inputs
        ctx.save_for_backward(learned, given, weight)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        learned, given, weight = ctx.saved_tensors  # (all three gradients always: compiled
        # under torch.func, ``ctx.needs_input_grad`` reads false for the weight and bias)
        grad_learned = grad.mm(weight[:, : learned.shape[1]])
        grad_weight = grad.t().mm(torch.cat([learned, given], 1))
        return grad_learned, None, grad_weight, grad.sum(0)


class FeatureLinear(nn.Linear):
    """The head's first layer: ``nn.Linear`` over ``φ(s)`` given in two parts, ``(learned,
    given)``: the prior's summary projected by ``pitch_summary`` (which takes a gradient) and
    the environment's features (one-hot codes of the state, which take none). Autograd over the
    concatenation computes the gradient of every column; compiled (``--compile``), this layer
    computes the learned columns' alone (a third to a half of the head's first product
    backward). Eager, autograd's own is faster (a Function's Python costs more than the
    product it skips) and gives the same numbers."""

    def forward(self, parts: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        learned, given = parts
        if torch.compiler.is_compiling():
            return _FeatureLinear.apply(learned, given, self.weight, self.bias)
        return super().forward(torch.cat(parts, 1))


class QNetwork(nn.Module):
    """``values(s, ·) = base(s, ·) + head(φ(s))``: ``base`` is the frozen prior's ``log p`` (q,
    psi), 0 (g), or a trainable copy of the prior's readout, ``log p_θ`` (see the module
    docstring)."""

    def __init__(self, prior: Any, config: RLTunerConfig, part: TunerPart) -> None:
        super().__init__()
        self.algo, self.part = config.algo, part
        rows, hidden = prior.summary_shape
        self.pitch_summary = nn.Linear(hidden, config.summary_features)  # tied across rows
        features = rows * config.summary_features + part.feature_size
        self.head = nn.Sequential(
            FeatureLinear(features, config.head_size),
            nn.ReLU(),
            nn.Linear(config.head_size, part.num_actions),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.rule_weights: nn.Parameter | None = None
        if part.rule_outcomes:  # nats per rule outcome of an action, starting at 0
            self.rule_weights = nn.Parameter(torch.zeros(part.rule_outcomes))
        self.readout: Any = None
        if config.train_readout:
            for capability in ("summary_log_probs", "readout_parameters"):
                require(prior, capability, "--train-readout", config.prior)
            self.readout = copy.deepcopy(prior).eval().requires_grad_(False)
            for parameter in self.readout.readout_parameters():
                parameter.requires_grad_(True)
            self.transpose = transposition(prior, config.key)

    def train(self, mode: bool = True) -> QNetwork:
        """The readout always runs without dropout (values must be deterministic)."""
        super().train(mode)
        if self.readout is not None:
            self.readout.eval()
        return self

    def feature_parts(self, states: States) -> tuple[torch.Tensor, torch.Tensor]:
        """``φ(s)`` in the two parts :class:`FeatureLinear` reads: the prior's summary (each row
        projected), flattened, and the environment's own features."""
        rows = self.pitch_summary(states.summary.float()).flatten(1)
        return rows, self.part.extra_features(states)

    def features(self, states: States) -> torch.Tensor:
        """``φ(s)`` ``(M, F)``."""
        return torch.cat(self.feature_parts(states), 1)

    def forward(self, states: States) -> torch.Tensor:
        """Values ``(M, A)``."""
        term = self.head(self.feature_parts(states))
        if self.rule_weights is not None:
            term = term + states.outcomes @ self.rule_weights
        if self.readout is not None:
            transpose = torch.full_like(states.sounding, self.transpose)
            base = self.readout.summary_log_probs(
                states.summary.float(), states.sounding, transpose
            )
            return base.float() + term
        if self.algo == "g":
            return term
        return states.log_probs + term


def soft_update(target: list[torch.Tensor], online: list[torch.Tensor], eta: float) -> None:
    """``θ⁻ ← (1 - eta) θ⁻ + eta θ`` for the target network's parameters ``target`` and the
    online network's ``online`` (in the same order; one fused call)."""
    with torch.no_grad():
        torch._foreach_lerp_(target, online, eta)

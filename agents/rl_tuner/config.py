"""The RL Tuner's settings: one dataclass, one docstring per field (the CLI is made from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from musicgym.agents.common import SESSION_FIELDS, RunConfig
from musicgym.checks import (
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    check_device,
    check_numbers,
)
from musicgym.errors import EnvArgumentError

Target = Literal["q", "psi", "g"]
"""The learning target: Q-learning, Ψ-learning or G-learning."""
RESUMABLE = (
    *SESSION_FIELDS,
    "device",
    "eval_interval",
    "eval_melodies",
    "checkpoint_interval",
    "checkpoint_replay",
)
"""The settings ``--resume`` may change; the others decide the run and must stay the run's."""
RENAMED = {"train_note_axis": "train_readout", "pitch_features": "summary_features"}
"""Settings of checkpoints of older versions under their new names."""
BEFORE = {"piece_position": False}
"""Settings that checkpoints of older versions lack, as those runs had them."""


@dataclass
class RLTunerConfig(RunConfig):
    """Hyperparameters of the RL Tuner (the published settings where there are any)."""

    algo: Target = "q"
    """Learning target: q (Q-learning), psi (Ψ-learning) or g (G-learning)."""
    num_envs: int = 16
    """Melodies composed side by side in the batched vector env."""
    gamma: float = 0.5
    """Discount factor."""
    learning_rate: float = 1e-3
    """Learning rate of the optimizer."""
    optimizer: Literal["adam", "adadelta"] = "adam"
    """adam, or adadelta (the Bi-axial + DQN paper's, with --learning-rate 1)."""
    buffer_size: int = 100_000
    """Replay memory size in transitions (the cached prior summaries take ~12 KB each for the
    Bi-axial LSTM)."""
    batch_size: int = 32
    """Transitions per gradient step, drawn independently."""
    learning_starts: int = 1_000
    """Environment steps before the first gradient step."""
    train_frequency: int = 4
    """Environment steps per gradient step (Magenta: 5)."""
    eta: float = 0.01
    """Soft target update rate: θ⁻ ← (1 - eta) θ⁻ + eta θ after every gradient step."""
    double_q: bool = False
    """Double DQN (algo q only): the online network picks the next action, the target values it."""
    loss: Literal["huber", "mse"] = "mse"
    """TD loss: mse (Magenta's) weighs the rare large errors (+6 tonic, -200 repetition) fully."""
    max_grad_norm: float = 5.0
    """Gradient norm clipping (0: none)."""
    clip: Literal["per-variable", "global"] = "per-variable"
    """Clip each parameter tensor's gradient norm (Magenta's) or all of them together."""
    exploration: Literal["egreedy", "boltzmann"] = "egreedy"
    """egreedy: a uniform action with probability epsilon, else greedy; boltzmann: sample the
    softmax of the policy logits divided by --temperature."""
    start_e: float = 1.0
    """Epsilon at the start."""
    end_e: float = 0.1
    """Epsilon at the end of its annealing."""
    exploration_fraction: float = 0.5
    """Fraction of --steps over which epsilon anneals linearly from --start-e to --end-e."""
    temperature: float = 1.0
    """Temperature of Boltzmann exploration."""
    head_size: int = 256
    """Hidden units of the per-state term's MLP."""
    context: int = 8
    """Recent tokens the per-state term reads beside the prior's summary."""
    summary_features: int = 8
    """Features the per-state term takes from each row of the prior's summary (one linear map,
    tied across rows: the Bi-axial LSTM's pitches)."""
    piece_position: bool = True
    """Chorales: the per-state term also reads where in the piece the frame is (one-hot of
    ``t / length`` over the piece's frames: a whole chorale's time step ``t``), as it reads a
    melody's step, so that endings are learned where the cadence rules judge them. Runs saved
    before it existed keep it off."""
    ending_share: float = 0.0
    """Chorales: the share of each batch drawn among the decisions of the pieces' last beats,
    where the cadence rules pay (about 1 decision in 60 of a chorale; uniform draws give them
    few samples a run). The rest is drawn uniformly, as without it."""
    rule_features: bool = False
    """Add to each action's value a learned weight of each of its rule outcomes. Melodies:
    resolves or doubles the pending leap, repeats excessively, starts on the tonic, leaves the
    key, makes a motif or repeats one, some of which the recent tokens cannot show (a leap many
    steps ago) or show only by counting. Chorales: a note makes parallel fifths or octaves with
    a voice below; "end" closes a frame with parallels, hidden perfects, a voice crossing, a beat
    without four voices, and in the last beat the cadence's parts and the whole cadence
    (:data:`~musicgym.agents.rl_tuner.chorale.RULE_OUTCOMES`)."""
    rule_learning_rate: float = 0.05
    """Learning rate of the rule outcomes' weights: Adam moves a weight by about this much a
    step, and a weight must reach several nats."""
    train_readout: bool = False
    """Fine-tune a copy of the prior's weights above its summary too (q, psi; the Bi-axial's
    note axis: about 20x slower updates)."""
    compile: bool = False
    """Compile the learner's whole step (both networks' forward, the gradients, the clipping,
    the optimizer's step and the soft target update) into one function with torch.compile:
    cheaper updates (measured in benchmarks/RESULTS.md), after up to a minute of compiling; it
    needs a C++ compiler. Not bit for bit the numbers of a run without it."""
    device: str = "cpu"
    """Torch device of the networks and the prior (cpu, cuda, cuda:1, ...)."""
    eval_interval: int = 10_000
    """Environment steps between evaluations (statistics under music/ in TensorBoard)."""
    eval_melodies: int = 32
    """Melodies composed at each evaluation."""
    checkpoint_interval: int = 10_000
    """Environment steps between checkpoints (one is always written at the end)."""
    checkpoint_replay: bool = False
    """Put the replay memory (SB3: the replay buffer of DQN, QR-DQN) in every checkpoint, not
    only in the one written at the end, on a signal or after --max-minutes: a run killed without
    warning then resumes exactly, at the cost of writing the replay every --checkpoint-interval
    (tens to hundreds of MB)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        counts = ("num_envs", "batch_size", "train_frequency", "head_size", "context")
        counts += ("summary_features", "eval_interval", "eval_melodies", "checkpoint_interval")
        check_numbers(
            self,
            {
                **{name: POSITIVE_INT for name in counts},
                "buffer_size": POSITIVE_INT,
                "learning_starts": NON_NEGATIVE_INT,
                "gamma": FRACTION,
                "learning_rate": POSITIVE,
                "rule_learning_rate": POSITIVE,
                "eta": {"above": 0, "high": 1},
                "max_grad_norm": NON_NEGATIVE,
                "start_e": FRACTION,
                "end_e": FRACTION,
                "exploration_fraction": FRACTION,
                "ending_share": FRACTION,
                "temperature": POSITIVE,
            },
        )
        if self.algo not in ("q", "psi", "g"):
            raise ValueError(f"algo: expected q, psi or g, got {self.algo!r}")
        if self.train_readout and self.algo == "g":
            raise ValueError("train_readout: G-learning adds the frozen prior's log p itself")


def torch_device(name: str) -> torch.device:
    """``name`` as a device, or a one-line error when it is unknown or absent here."""
    return check_device(name, error=EnvArgumentError)

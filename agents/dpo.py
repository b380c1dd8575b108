"""Direct preference optimisation of the prior on pairs ranked by the environment's return.

Online DPO (Rafailov et al. 2023; NotaGen's CLaMP-DPO, 2025, ranks by a scorer, ours is the
environment), ``--algo dpo``, in rounds:

1. the current policy plays ``2 * pairs`` pieces in the environment (``observation="prior"``);
2. piece ``i`` and piece ``i + pairs`` form a pair, the one of the higher return the winner
   ``y_w`` (ties are left out; a round whose returns are all equal updates nothing, and says so);
3. ``epochs`` Adam steps on ``-log sigmoid(beta [(log pi(y_w) - log p(y_w)) - (log pi(y_l) -
   log p(y_l))])``, ``log pi(y)`` the sum of the policy's log-probabilities of the piece's actions
   and ``p`` the frozen prior (the reference).

The policy is the RL Tuner's network read as logits, ``log p(·|s) + head(φ(s))`` with the head
starting at zero, so it starts as the prior and a run folder is an RL Tuner's: ``agents.load``
composes with it (softmax of the logits). A checkpoint at the end of every round (network,
optimizer, generators, round); ``--resume`` goes on from the last one exactly; SIGINT / SIGTERM
stop at the end of the round in progress, ``--max-minutes`` after it. The rounds
(:class:`RoundsConfig`, :func:`train`, :func:`play_round`) serve every fine-tuner that plays the
prior's pieces in rounds: a subclass says how many pieces a round plays and its loss (``dpg`` is
the other).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from musicgym.agents.common import (
    RUN_FILES,
    SESSION_FIELDS,
    EnvConfig,
    RunConfig,
    load_prior,
    set_torch_threads,
    training_reference,
    warn,
    write_agent_info,
)
from musicgym.agents.rl_tuner.agent import CHECKPOINT, Episodes, RLTuner
from musicgym.agents.rl_tuner.config import RLTunerConfig
from musicgym.agents.rl_tuner.targets import clip_gradients, make_optimizer, masked_values
from musicgym.checks import NON_NEGATIVE, POSITIVE, POSITIVE_INT, check_numbers
from musicgym.fileio import save_checkpoint_file
from musicgym.runs import StopSignals, check_resume_settings, claim_run_folder
from musicgym.tasks import task_of


@dataclass
class RoundsConfig(RunConfig):
    """Settings shared by the fine-tuners that play the prior's pieces in rounds and update on
    them (DPO here, DPG in :mod:`musicgym.agents.dpg`); ``--steps``: environment steps to play,
    all rounds together."""

    epochs: int = 4
    """Adam steps on each round's pieces."""
    learning_rate: float = 1e-3
    """Learning rate of Adam."""
    max_grad_norm: float = 5.0
    """Gradient norm clipping, each parameter tensor alone."""
    head_size: int = 256
    """Hidden units of the head above the prior's log p."""
    context: int = 8
    """Recent tokens the head reads beside the prior's summary (melodies)."""
    summary_features: int = 8
    """Features the head takes from each row of the prior's summary."""
    learning_rate_decay: float = 0.0
    """Each round's learning rates are the first ones times 1 / sqrt(1 + decay x round): the
    policy settles (0: constant)."""
    rule_features: bool = False
    """Melodies: each action's rule outcomes (resolves or doubles the pending leap, repeats
    excessively, starts on the tonic, leaves the key, makes a motif or repeats one) weighed into
    its logit, a learned weight each."""
    rule_learning_rate: float = 0.05
    """Learning rate of the rule outcomes' weights (nats: they must move several)."""

    ALGO: ClassVar[str] = ""
    """The ``--algo`` name of the fine-tuner, and the prefix of its checkpoint's settings."""
    RESUMABLE: ClassVar[tuple[str, ...]] = SESSION_FIELDS
    """The settings ``--resume`` may change (``steps``: how many environment steps to reach)."""
    COUNTS: ClassVar[tuple[str, ...]] = ("epochs", "head_size", "context", "summary_features")
    """The settings that must be whole numbers >= 1."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_numbers(
            self,
            {
                **{name: POSITIVE_INT for name in self.COUNTS},
                "learning_rate": POSITIVE,
                "rule_learning_rate": POSITIVE,
                "max_grad_norm": NON_NEGATIVE,
                "learning_rate_decay": NON_NEGATIVE,
            },
        )

    @property
    def pieces_per_round(self) -> int:
        """Pieces played in each round."""
        raise NotImplementedError

    def start_round(self, agent: RLTuner, state: dict[str, Any]) -> None:
        """Set what the fine-tuner fixes in the policy before a round is played (DPG: the tilt of
        each action's rule outcomes); nothing by default."""

    def objective(self, agent: RLTuner, episodes: Episodes, state: dict[str, Any]) -> Objective:
        """The loss of this round's ``episodes`` as a function of the policy's and the prior's
        log-likelihoods of them (``state``: the run's round, steps and the fine-tuner's own)."""
        raise NotImplementedError

    def tuner_config(self) -> RLTunerConfig:
        """The RL Tuner settings of the policy's network and environment (its logits: Q)."""
        environment = {f.name: getattr(self, f.name) for f in fields(EnvConfig)}
        network = ("head_size", "context", "summary_features", "rule_features")
        network += ("learning_rate", "rule_learning_rate", "max_grad_norm")
        return RLTunerConfig(
            **environment,
            **{name: getattr(self, name) for name in network},
            algo="q",
            num_envs=self.pieces_per_round,
            steps=self.steps,
            threads=self.threads,
            clip="per-variable",
        )


Figures = dict[str, float | str]
Objective = Callable[["Likelihoods"], tuple["torch.Tensor | None", Figures]]
"""A round's loss of the policy's and the prior's :class:`Likelihoods` of its pieces: the loss
(``None``: nothing to learn from this round, said in its figures' ``"why"``) and figures for
TensorBoard."""


@dataclass
class DPOConfig(RoundsConfig):
    """Settings of online DPO."""

    pairs: int = 32
    """Pairs of pieces ranked per round (2 x pairs pieces played)."""
    beta: float = 0.1
    """DPO's temperature: how far from the prior a preference may move the policy."""

    ALGO: ClassVar[str] = "dpo"
    COUNTS: ClassVar[tuple[str, ...]] = (*RoundsConfig.COUNTS, "pairs")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_numbers(self, {"beta": NON_NEGATIVE})

    @property
    def pieces_per_round(self) -> int:
        return 2 * self.pairs

    def objective(self, agent: RLTuner, episodes: Episodes, state: dict[str, Any]) -> Objective:
        def loss(steps: Likelihoods) -> tuple[torch.Tensor | None, Figures]:
            policy, prior = steps.per_piece(steps.policy), steps.per_piece(steps.prior)
            return dpo_loss(policy, prior, episodes.returns, self.beta)

        return loss


class Likelihoods(NamedTuple):
    """The log-likelihoods of every step of a round's pieces: the policy's ``(S,)`` (with
    gradients) and the prior's ``(S,)``; ``episode`` ``(S,)``, the piece of each step."""

    policy: torch.Tensor
    prior: torch.Tensor
    episode: torch.Tensor
    pieces: int

    def per_piece(self, steps: torch.Tensor) -> torch.Tensor:
        """``(pieces,)``: the sums of the values of ``steps`` ``(S,)`` over each piece."""
        return torch.zeros(self.pieces, device=steps.device).index_add(0, self.episode, steps)


def log_likelihoods(agent: RLTuner, episodes: Episodes) -> Likelihoods:
    """The policy's and the prior's log-likelihoods of every action of ``episodes``."""
    states, actions = episodes.states, episodes.actions
    logits = masked_values(agent.q_network(states), states.mask)
    policy = F.log_softmax(logits, 1).gather(1, actions[:, None])[:, 0]
    prior = states.log_probs.gather(1, actions[:, None])[:, 0]
    return Likelihoods(policy, prior, episodes.episode, len(episodes.pieces))


def dpo_loss(
    policy: torch.Tensor, prior: torch.Tensor, returns: np.ndarray, beta: float
) -> tuple[torch.Tensor | None, Figures]:
    """DPO's loss over the pairs ``(i, i + pairs)`` of pieces with their ``policy`` and
    ``prior`` log-likelihoods, the higher ``returns`` the winner; ``None`` if every pair ties."""
    pairs = len(returns) // 2
    first, second = returns[:pairs], returns[pairs : 2 * pairs]
    ranked = np.flatnonzero(first != second)
    if not len(ranked):
        return None, {
            "ranked_pairs": 0.0,
            "why": "every pair's returns are equal; nothing to prefer",
        }
    winner = np.where(first[ranked] > second[ranked], ranked, ranked + pairs)
    loser = np.where(first[ranked] > second[ranked], ranked + pairs, ranked)
    margin = (policy - prior)[winner] - (policy - prior)[loser]
    loss = -F.logsigmoid(beta * margin).mean()
    figures: Figures = {
        "ranked_pairs": float(len(ranked)),
        "margin": float(margin.mean().detach()),
        "accuracy": float((margin > 0).float().mean()),
    }
    return loss, figures


def train(
    config: RoundsConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    prior: Any = None,
    progress: bool = True,
) -> RLTuner:
    """Play and update in rounds until ``config.steps`` environment steps are played, into
    ``out`` (``agent.pt``, an RL Tuner checkpoint, TensorBoard events and ``agent.json``); the
    fine-tuner is ``config``'s class (:class:`DPOConfig`, or DPG's)."""
    out = Path(out)
    algo = config.ALGO
    with (
        claim_run_folder(out, resume=resume, overwrite=overwrite, run_files=RUN_FILES),
        StopSignals() as stop,
    ):
        set_torch_threads(config.threads)
        state: dict[str, Any] = {"round": 0, "played": 0}
        if resume:  # the run's network, prior and state, its settings checked
            agent, checkpoint = RLTuner.load(out / CHECKPOINT)
            saved = checkpoint.get(f"{algo}_config", {})
            check_resume_settings(out, saved, config, config.RESUMABLE)
            state = {**checkpoint.get("rounds", {}), "round": int(checkpoint["round"])}
            state["played"] = int(checkpoint["step"])
        else:
            torch.manual_seed(config.seed)
            agent = RLTuner(config.tuner_config(), load_prior(prior or config.prior))
        config.start_round(agent, state)  # before the optimizer: what it sets is not learned
        optimizer = make_optimizer(agent.config, agent.q_network)
        if resume:
            optimizer.load_state_dict(checkpoint["optimizer"])
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out))
        info = {"env": EnvConfig(**{f.name: getattr(config, f.name) for f in fields(EnvConfig)})}
        info = {**info, "checkpoint": CHECKPOINT, "config": asdict(agent.config)}
        deadline = time.time() + 60 * config.max_minutes if config.max_minutes > 0 else math.inf
        reference = training_reference(config)
        while state["played"] < config.steps and not stop.requested and time.time() < deadline:
            play_round(agent, optimizer, config, state, writer, reference)
            own = {k: v for k, v in state.items() if k not in ("round", "played")}
            save_checkpoint_file(
                agent.checkpoint(
                    step=state["played"],
                    round=state["round"],
                    optimizer=optimizer.state_dict(),
                    rounds=own,
                    **{f"{algo}_config": asdict(config)},
                ),
                out / CHECKPOINT,
            )
            write_agent_info(out, algo, **info, trained_steps=state["played"])
            if progress:
                print(f"{algo} round {state['round']}: {state['played']} steps", file=sys.stderr)
        writer.close()
        if stop.requested and state["played"] < config.steps:
            raise stop.stopped_short(state["played"], out / CHECKPOINT)
    return agent


def play_round(
    agent: RLTuner,
    optimizer: torch.optim.Optimizer,
    config: RoundsConfig,
    state: dict[str, Any],
    writer: Any,
    reference: dict[str, np.ndarray] | None = None,
) -> None:
    """One round: play, ``epochs`` Adam steps on the config's objective; ``state``'s round and
    steps counted on; the statistics and character of the round's pieces under ``music/`` in
    TensorBoard (``reference``: the data's histograms, for the KL to them)."""
    seed = config.seed + 1_000_003 * state["round"]
    config.start_round(agent, state)
    episodes = agent.play(config.pieces_per_round, seed=seed, record=True, training=True)
    state["round"] += 1
    state["played"] += len(episodes.actions)
    step = state["played"]
    writer.add_scalar("charts/mean_return", float(episodes.returns.mean()), step)
    task = task_of(config.env)
    for name, value in task.statistics(None, episodes.pieces, config.judged_key, reference).items():
        writer.add_scalar(f"music/{name}", value, step)
    objective = config.objective(agent, episodes, state)
    settle = 1 / math.sqrt(1 + config.learning_rate_decay * (state["round"] - 1))
    for group in optimizer.param_groups:  # the first rates are kept in the optimizer's state
        group["lr"] = settle * group.setdefault("initial_lr", group["lr"])
    for _ in range(config.epochs):
        loss, figures = objective(log_likelihoods(agent, episodes))
        if loss is None:
            warn(f"{config.ALGO} round {state['round']}: {figures['why']}, no update")
            return
        optimizer.zero_grad()
        loss.backward()
        clip_gradients(agent.config, list(agent.q_network.parameters()))
        optimizer.step()
    agent.updates += config.epochs
    writer.add_scalar(f"losses/{config.ALGO}_loss", float(loss.detach()), step)
    for name, value in figures.items():
        if isinstance(value, float) and math.isfinite(value):
            writer.add_scalar(f"{config.ALGO}/{name}", value, step)

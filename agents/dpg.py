"""The policy nearest the prior that meets the rules at given levels, ``--algo dpg``.

The tuned distribution we want is the one nearest the prior (least ``KL(pi || p)``) whose pieces
meet the rules at given levels, e.g. at least 62% of notes in motifs and no excessive
repetition: the data's own frontier asks for nothing else. That distribution is ``P(y) ∝ p(y)
exp(sum_k lambda_k g_k(y))`` (Csiszár's I-projection; GDC, Khalifa et al. 2021), ``g_k`` the
piece's count of constraint ``k`` over its target, and it maximises ``E_pi[lambda . g(y)] -
KL(pi || p)``. We find both in rounds, as constrained RLHF does (a KL-regularised policy
gradient, the constraints' Lagrange multipliers stepped between rounds):

1. the policy plays ``pieces`` pieces in the environment (``observation="prior"``);
2. each step ``t`` earns ``lambda . g_t - log(pi(a_t|s_t) / p(a_t|s_t))``, ``g_t`` what the step
   adds to each constraint (:func:`musicgym.metrics.step_contributions`); its advantage is what
   it and the later steps earn, less the round's mean at the same step, over their spread;
3. ``epochs`` Adam steps on PPO's clipped objective of those advantages (``clip_range``);
4. each multiplier integrates its constraint's mean gap on the pieces just played (dual ascent,
   as PID Lagrangian methods control it in constrained RL, Stooke et al. 2020): a damped Newton
   step ``-rate E[g_k] / Var[g_k]`` on the exponential family, at most ``max_tilt`` nats per
   standard deviation of ``g_k`` (the target moves no faster than the policy can follow) and
   shrinking as ``1 / sqrt(1 + multiplier_decay round)`` (the multipliers settle), kept in
   ``[0, max_multiplier]``; ``proportional_gain`` adds a proportional term (0 by default).
   ``Var[g_k]`` is remembered over rounds (``variance_memory``): one round's variance of a rare
   event, a doubled leap, is near 0 when it did not happen, and a Newton step divided by it
   throws the multiplier to 0.

The policy is told what each action adds at once to the constraints' statistics: whether it
resolves or doubles the pending leap, repeats a note excessively, starts on the tonic, leaves the
key, makes a motif or repeats one (:func:`~musicgym.music.melody.action_outcomes`,
``rule_features``; the pending leap lies beyond the recent tokens, and a repetition is a count of
up to seven). Its logit is tilted by these outcomes exactly as the target tilts them at that
step (:func:`outcome_tilts` of the multipliers, set before each round, not learned), so the
policy answers the multipliers at once and the head learns only what an action brings later.

A constraint met stops pulling: nothing rewards more than asked, so the pieces keep the data's
character (distinct melodies, note lengths, intervals) wherever the rules allow. The name: the
distributional view of policy gradients (Parshakova et al. 2019), the target being a
distribution, not a maximum. The policy, checkpoints and ``--resume`` are DPO's
(:mod:`musicgym.agents.dpo`): the RL Tuner's network read as logits ``log p(.|s) +
head(phi(s))``, starting as the prior; the multipliers are part of the checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from musicgym.agents.dpo import Figures, Likelihoods, Objective, RoundsConfig, log_likelihoods
from musicgym.agents.rl_tuner.agent import Episodes, RLTuner
from musicgym.checks import FRACTION, NON_NEGATIVE, POSITIVE, check_numbers
from musicgym.config import ENV_ID
from musicgym.errors import ArgumentError
from musicgym.metrics import STATISTICS, step_contributions
from musicgym.music.melody import RULE_OUTCOMES

MELODY_CONSTRAINTS = (
    "notes_excessively_repeated<=0,notes_not_in_key<=0.7,melodies_starting_with_tonic>=35,"
    "leaps_resolved>=96,notes_in_motif>=62"
)
"""The default constraints: Jaques et al.'s Q column on the rules with a margin for the
sampling noise of 500 melodies (no excessive repetition; at most 0.7% of notes out of key, its
1.0%; 35% tonic starts, its 28.8%; 96% of leaps resolved, its 91.1%) and as many notes in motifs
as the densest 30% of the data's windows without an excessive repetition (62%; Jaques et al.'s
75.7% is 0.5 nats from the data's note lengths)."""
_CONSTRAINT = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=)\s*([0-9.eE+-]+)\s*$")


class Constraint(NamedTuple):
    """``statistic`` (a percentage of :data:`musicgym.metrics.STATISTICS`) ``>=`` (``at_least``)
    or ``<=`` ``target``."""

    statistic: str
    at_least: bool
    target: float

    def shares(self, contributions: dict[str, np.ndarray]) -> np.ndarray:
        """``g`` of each piece (or step) of :func:`~musicgym.metrics.statistic_contributions` (or
        :func:`~musicgym.metrics.step_contributions`): its numerator less ``target`` times its
        denominator (the statistic meets the target where the mean of ``g`` is >= 0), negated for
        ``<=``."""
        rows = contributions[self.statistic]
        gap = rows[..., 0] - self.target / 100 * rows[..., 1]
        return gap if self.at_least else -gap


def parse_constraints(text: str) -> tuple[Constraint, ...]:
    """``"statistic>=target,statistic<=target,..."`` (targets in percent).

    Raises:
        ArgumentError: one line naming the part that is not a constraint on a percentage.
    """
    constraints = []
    for part in text.split(","):
        match = _CONSTRAINT.match(part)
        if match is None:
            raise ArgumentError(f"constraints: {part.strip()!r} is not STATISTIC>=N or <=N")
        statistic, sign, target = match.groups()
        if statistic not in STATISTICS or statistic.startswith("autocorrelation"):
            raise ArgumentError(
                f"constraints: {statistic!r} is not a percentage statistic; expected one of "
                + ", ".join(s for s in STATISTICS if not s.startswith("autocorrelation"))
            )
        try:
            value = float(target)
        except ValueError:
            raise ArgumentError(f"constraints: {target!r} is not a number") from None
        if not 0 <= value <= 100:
            raise ArgumentError(f"constraints: {statistic} {sign} {target}: expected 0 to 100")
        constraints.append(Constraint(statistic, sign == ">=", value))
    return tuple(constraints)


@dataclass
class DPGConfig(RoundsConfig):
    """Settings of DPG toward the prior constrained by the rules."""

    pieces: int = 64
    """Pieces played per round."""
    learning_rate_decay: float = 0.1
    """Each round's learning rates are the first ones times 1 / sqrt(1 + decay x round): the
    policy settles with its multipliers (one round's step moved the notes in motifs by several
    points measured, so the last round decided where a run ended)."""
    rule_features: bool = True
    """Tilt each action's logit by what it adds at once to the constraints (its rule outcomes:
    resolves or doubles the pending leap, repeats excessively, starts on the tonic, leaves the
    key, makes a motif or repeats one) as the target does, by the multipliers."""
    constraints: str = MELODY_CONSTRAINTS
    """What the pieces must meet: 'statistic>=N' or 'statistic<=N' (percent), comma-separated."""
    multiplier_rate: float = 0.5
    """The damping of each multiplier's Newton step toward meeting its constraint."""
    max_tilt: float = 0.3
    """How far a round may move the target: nats per standard deviation of a constraint's gap."""
    max_multiplier: float = 20.0
    """The largest multiplier, in nats per unit of a constraint's share."""
    multiplier_decay: float = 0.1
    """The integral's steps (and their bound) shrink as 1 / sqrt(1 + decay x round): the
    multipliers settle."""
    variance_memory: float = 0.7
    """The weight of the earlier rounds in each constraint's variance (an exponential moving
    average): one round's variance of a rare event (a doubled leap) swings with whether it
    happened, and the Newton step with it; the memory also forgets the prior's large early
    variances within a few rounds."""
    proportional_gain: float = 0.0
    """The weight of each round's own gap in its multiplier (the controller's P; the Newton
    step's rate is its I). 0: with ``rule_features`` the policy answers a multiplier at once,
    and a P term throws it between its bounds (measured: all melodies on the tonic, then 4 in
    100, round after round)."""
    clip_range: float = 0.2
    """How far one round may move each step's probability ratio (PPO's clipping)."""

    ALGO: ClassVar[str] = "dpg"
    COUNTS: ClassVar[tuple[str, ...]] = (*RoundsConfig.COUNTS, "pieces")

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = ("multiplier_rate", "max_tilt", "max_multiplier", "clip_range")
        check_numbers(
            self,
            {
                **dict.fromkeys(positive, POSITIVE),
                **dict.fromkeys(("proportional_gain", "multiplier_decay"), NON_NEGATIVE),
                "variance_memory": FRACTION,
            },
        )
        if self.env != ENV_ID:
            raise ArgumentError(f"env: dpg constrains melody statistics; {self.env} has none yet")
        parse_constraints(self.constraints)

    @property
    def pieces_per_round(self) -> int:
        return self.pieces

    def start_round(self, agent: RLTuner, state: dict[str, Any]) -> None:
        """With ``rule_features``: the policy's weights of the rule outcomes are the target's
        tilts of them (:func:`outcome_tilts`) at the multipliers so far, not learned."""
        weights = agent.q_network.rule_weights
        if weights is None:
            return
        constraints = parse_constraints(self.constraints)
        multipliers = of_statistics(constraints, state.get("multipliers", {}))
        with torch.no_grad():
            tilts = torch.as_tensor(outcome_tilts(constraints, multipliers), dtype=weights.dtype)
            weights.requires_grad_(False).copy_(tilts)

    def objective(self, agent: RLTuner, episodes: Episodes, state: dict[str, Any]) -> Objective:
        """DPG's loss toward the constrained prior, the multipliers stepped in ``state`` on this
        round's pieces (used from the next round on)."""
        constraints = parse_constraints(self.constraints)
        contributions = step_contributions(episodes.pieces, self.key)  # (n, L, 2) each
        step_gaps = np.stack([c.shares(contributions) for c in constraints], -1)  # (n, L, K)
        gaps = step_gaps.sum(1)  # (n, K)
        multipliers = of_statistics(constraints, state.get("multipliers", {}))
        with torch.no_grad():
            before = log_likelihoods(agent, episodes)
        time = step_times(before.episode, before.pieces)
        log_ratio = torch.zeros(step_gaps.shape[:2], dtype=before.policy.dtype)
        log_ratio[before.episode, time] = before.policy - before.prior
        tilt = torch.as_tensor(step_gaps @ multipliers, dtype=log_ratio.dtype)
        rewards = tilt - log_ratio
        to_go = rewards.flip(1).cumsum(1).flip(1)  # (n, L): what each step still earns
        advantages = to_go - to_go.mean(0)  # the baseline: the round's mean at the same step
        advantages = (advantages / (advantages.std() + 1e-6))[before.episode, time]
        integrals = of_statistics(constraints, state.get("integrals", {}))
        variances = gaps.var(0)
        if "variances" in state:  # the rounds before, remembered
            remembered = of_statistics(constraints, state["variances"])
            variances = self.variance_memory * remembered + (1 - self.variance_memory) * variances
        state["variances"] = by_statistic(constraints, variances)
        settle = 1 / np.sqrt(1 + self.multiplier_decay * state["round"])
        state["integrals"], state["multipliers"] = step_multipliers(
            constraints, integrals, gaps.mean(0), variances, self, settle
        )
        figures: Figures = {
            "kl": float(log_ratio.sum(1).mean()),
            "tilt": float((gaps @ multipliers).mean()),
            **{f"multiplier_{c.statistic}": float(m) for c, m in zip(constraints, multipliers)},
            **{f"gap_{c.statistic}": float(g) for c, g in zip(constraints, gaps.mean(0))},
        }

        def loss(steps: Likelihoods) -> tuple[torch.Tensor, Figures]:
            ratio = torch.exp(steps.policy - before.policy)
            clipped = ratio.clamp(1 - self.clip_range, 1 + self.clip_range)
            return -torch.min(ratio * advantages, clipped * advantages).mean(), figures

        return loss


OUTCOME_COUNTS: dict[str, tuple[str, tuple[float, float]]] = {
    "resolves_leap": ("leaps_resolved", (1.0, 1.0)),
    "doubles_leap": ("leaps_resolved", (0.0, 1.0)),
    "excessive_repetition": ("notes_excessively_repeated", (1.0, 0.0)),
    "starts_on_tonic": ("melodies_starting_with_tonic", (1.0, 0.0)),
    "not_in_key": ("notes_not_in_key", (1.0, 0.0)),
    "in_motif": ("notes_in_motif", (1.0, 0.0)),
    "in_repeated_motif": ("notes_in_repeated_motif", (1.0, 0.0)),
}
"""The statistic each of :data:`~musicgym.music.melody.RULE_OUTCOMES` counts in, and what the
outcome adds to its numerator and denominator at its step beyond what any action adds."""


def outcome_tilts(constraints: tuple[Constraint, ...], multipliers: np.ndarray) -> np.ndarray:
    """``(len(RULE_OUTCOMES),)``: how far the target ``p(y) exp(lambda . g(y))`` tilts an action
    that has each rule outcome, in nats: the multipliers times what the outcome adds to their
    constraints' gaps."""
    tilts = np.zeros(len(RULE_OUTCOMES))
    for i, outcome in enumerate(RULE_OUTCOMES):
        statistic, counts = OUTCOME_COUNTS[outcome]
        for constraint, multiplier in zip(constraints, multipliers):
            if constraint.statistic == statistic:
                tilts[i] += multiplier * constraint.shares({statistic: np.array(counts)})
    return tilts


def step_times(episode: torch.Tensor, pieces: int) -> torch.Tensor:
    """The step of each row within its piece, the rows of each piece in order (``episode``: the
    piece of each row)."""
    seen = F.one_hot(episode, pieces).cumsum(0)
    return seen.gather(1, episode[:, None])[:, 0] - 1


def step_multipliers(
    constraints: tuple[Constraint, ...],
    integrals: np.ndarray,
    mean_gaps: np.ndarray,
    variances: np.ndarray,
    config: DPGConfig,
    settle: float = 1.0,
) -> tuple[dict[str, float], dict[str, float]]:
    """``(integrals, multipliers)`` after a round whose pieces' gaps have means ``mean_gaps`` and
    (remembered) ``variances`` ``(K,)``: each integral after its bounded, damped Newton step
    toward a mean gap of 0 (up where the pieces fall short, down to 0 at least where they exceed
    it), and each multiplier that integral plus the proportional term of this round's gap (a PI
    controller, as PID Lagrangian methods damp the multipliers' swings in constrained RL; Stooke
    et al. 2020); ``settle`` scales the integral's step."""
    spread = np.sqrt(variances)
    scale = np.where(spread > 1e-6, spread, 1.0)  # a gap that does not vary: its units
    newton = -mean_gaps / scale**2
    bound = settle * config.max_tilt / scale
    step = np.clip(settle * config.multiplier_rate * newton, -bound, bound)
    limit = config.max_multiplier
    integrals = np.clip(integrals + step, 0.0, limit)
    multipliers = np.clip(integrals + config.proportional_gain * newton, 0.0, limit)
    return by_statistic(constraints, integrals), by_statistic(constraints, multipliers)


def by_statistic(constraints: tuple[Constraint, ...], values: np.ndarray) -> dict[str, float]:
    """``values`` ``(K,)`` by the statistic of each constraint (as ``state`` keeps them)."""
    return {c.statistic: float(v) for c, v in zip(constraints, values)}


def of_statistics(constraints: tuple[Constraint, ...], saved: dict[str, float]) -> np.ndarray:
    """:func:`by_statistic`'s inverse: ``(K,)``, 0 for a constraint ``saved`` lacks (a new run)."""
    return np.array([saved.get(c.statistic, 0.0) for c in constraints])

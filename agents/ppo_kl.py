"""KL-regularised policy fine-tuning of the prior: MaskablePPO with a per-token KL penalty.

The RLHF recipe (Ziegler et al. 2019; MusicRL, Cideron et al. 2024) on our environments, as an
sb3-contrib algorithm (``--algo sb3-ppokl``; its settings are SB3's plus two):

* **The policy starts as the prior.** :class:`PriorPolicy` reads the environment's
  ``observation="prior"``: its logits are the frozen prior's ``log p(·|s)`` plus a head whose last
  layer starts at zero, over the plain observation and the prior's summary (each row projected
  by one linear map, tied across rows, as the RL Tuner's). Invalid actions are masked
  (MaskablePPO), so chorales work as melodies do.
* **The reward is the rules', held to the prior by KL.** The environment leaves ``log p`` out
  (``prior_weight=0``); every token's reward becomes ``r - beta (log pi(a|s) - log p(a|s))``, the
  per-token estimate of ``KL(pi || p)`` (:meth:`PPOKL.collect_rollouts` rewrites the rollout's
  rewards and advantages). ``beta = 1`` is Jaques et al.'s KL-control objective, ``r_MT / c +
  log p - log pi``. With ``kl_target``, ``beta`` adapts after every rollout toward that KL per
  token (Ziegler et al.'s proportional controller, clipped to +-20% per horizon).

``logger`` records ``kl/per_token`` and ``kl/beta`` (TensorBoard, under the run's folder).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import obs_as_tensor
from torch import nn

SUMMARY_FEATURES = 8
"""Features the policy takes from each row of the prior's summary (one map tied across rows)."""
HEAD_SIZE = 256
"""Hidden units of the policy's head above the prior's log p."""


class PriorFeatures(BaseFeaturesExtractor):
    """The ``"prior"`` observation as one vector: the plain observation, the prior's summary
    (each row projected), and last the prior's ``log p`` of every action (which
    :class:`PriorLogits` adds to the head's output)."""

    def __init__(self, observation_space: spaces.Dict) -> None:
        plain = observation_space["observation"].shape[0]
        rows, hidden = observation_space["prior_summary"].shape
        actions = observation_space["prior_log_probs"].shape[0]
        super().__init__(observation_space, plain + rows * SUMMARY_FEATURES + actions)
        self.num_actions = actions
        self.summary = nn.Linear(hidden, SUMMARY_FEATURES)  # tied across rows

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = self.summary(observations["prior_summary"]).flatten(1)
        log_probs = observations["prior_log_probs"]
        return torch.cat([observations["observation"], rows, log_probs], 1)


class PriorLogits(nn.Module):
    """``log p(·|s) + head(φ(s))`` from :class:`PriorFeatures`' vector: the head's last layer
    starts at zero, so the policy starts as the prior."""

    def __init__(self, features: int, num_actions: int) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.head = nn.Sequential(
            nn.Linear(features - num_actions, HEAD_SIZE),
            nn.ReLU(),
            nn.Linear(HEAD_SIZE, num_actions),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        features, log_probs = latent[:, : -self.num_actions], latent[:, -self.num_actions :]
        return log_probs + self.head(features)


class PriorPolicy(MaskableMultiInputActorCriticPolicy):
    """MaskablePPO's actor-critic over the ``"prior"`` observation whose actor is
    :class:`PriorLogits` (the critic: an MLP over the same features)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", PriorFeatures)
        kwargs.setdefault("net_arch", {"pi": [], "vf": [64, 64]})
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        extractor = self.features_extractor
        self.action_net = PriorLogits(extractor.features_dim, extractor.num_actions)
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )


class PPOKL(MaskablePPO):
    """MaskablePPO whose rewards carry a per-token KL penalty to the prior (see the module
    docstring). ``kl_coef``: ``beta`` (>= 0); ``kl_target``: the KL per token that ``beta``
    adapts to (> 0; ``None``: fixed ``beta``); ``kl_horizon``: the steps over which it adapts."""

    policy_aliases: ClassVar[dict[str, type]] = {
        **MaskablePPO.policy_aliases,
        "PriorPolicy": PriorPolicy,
    }
    observation: ClassVar[str] = "prior"
    """The environments' observation mode it reads (musicgym's SB3 runs make them so)."""
    prior_in_reward: ClassVar[bool] = False
    """Its environments leave the prior's ``log p`` out of the reward (the penalty holds it)."""

    def __init__(
        self,
        *args: Any,
        kl_coef: float = 1.0,
        kl_target: float | None = None,
        kl_horizon: int = 10_000,
        **kwargs: Any,
    ) -> None:
        if not (isinstance(kl_coef, (int, float)) and 0 <= kl_coef < math.inf):
            raise ValueError(f"kl_coef: expected a finite number >= 0, got {kl_coef!r}")
        if kl_target is not None and not (
            isinstance(kl_target, (int, float)) and 0 < kl_target < math.inf
        ):
            raise ValueError(f"kl_target: expected a number > 0 or null, got {kl_target!r}")
        if not (isinstance(kl_horizon, int) and kl_horizon > 0):
            raise ValueError(f"kl_horizon: expected a positive integer, got {kl_horizon!r}")
        self.kl_coef, self.kl_target, self.kl_horizon = float(kl_coef), kl_target, kl_horizon
        super().__init__(*args, **kwargs)

    def collect_rollouts(self, *args: Any, **kwargs: Any) -> bool:
        """MaskablePPO's rollout, then every reward less ``beta (log pi - log p)`` of its token
        and the returns and advantages computed again; ``beta`` adapted toward ``kl_target``."""
        if not super().collect_rollouts(*args, **kwargs):
            return False
        buffer = self.rollout_buffer
        actions = buffer.actions.astype(np.int64)  # (n_steps, n_envs, 1)
        prior = np.take_along_axis(buffer.observations["prior_log_probs"], actions, axis=-1)
        kl = buffer.log_probs - prior[..., 0]  # (n_steps, n_envs): log pi - log p of each token
        buffer.rewards -= self.kl_coef * kl
        with torch.no_grad():
            values = self.policy.predict_values(obs_as_tensor(self._last_obs, self.device))
        buffer.compute_returns_and_advantage(last_values=values, dones=self._last_episode_starts)
        per_token = float(kl.mean())
        self.logger.record("kl/per_token", per_token)
        self.logger.record("kl/beta", self.kl_coef)
        if self.kl_target is not None:
            error = float(np.clip(per_token / self.kl_target - 1.0, -0.2, 0.2))
            self.kl_coef *= 1.0 + error * kl.size / self.kl_horizon
        return True

"""KL-regularised PPO (musicgym.agents.ppo_kl): the policy starts as the prior on both
environments, the rewards carry exactly the per-token KL penalty, beta adapts, bad settings are
one line, and a trained run composes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env

from musicgym.agents.ppo_kl import PPOKL
from musicgym.cli import main
from musicgym.priors.registry import save_checkpoint
from tests.test_agents import tiny_prior

SMALL = {"n_steps": 16, "batch_size": 16, "n_epochs": 1}


def prior_env(env_id: str, prior, num_envs: int = 2):
    kwargs = {"prior": prior, "observation": "prior", "prior_weight": 0.0}
    if env_id == "ChoraleComposition-v0":
        kwargs["bars"] = 1
    return make_vec_env(env_id, n_envs=num_envs, seed=0, env_kwargs=kwargs)


@pytest.mark.parametrize("env_id", ["MusicComposition-v0", "ChoraleComposition-v0"])
def test_the_policy_starts_as_the_prior(env_id):
    prior = tiny_prior() if env_id == "MusicComposition-v0" else None
    envs = prior_env(env_id, prior if prior is not None else "bach16")
    model = PPOKL("PriorPolicy", envs, seed=0, **SMALL)
    observations = envs.reset()
    masks = np.stack(envs.env_method("action_masks"))
    tensors = model.policy.obs_to_tensor(observations)[0]
    probs = model.policy.get_distribution(tensors, action_masks=masks).distribution.probs
    expected = np.where(masks, np.exp(observations["prior_log_probs"]), 0.0)
    np.testing.assert_allclose(probs.detach().numpy(), expected, atol=1e-5)


def rollout_rewards(kl_coef: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One rollout's rewards, log pi and the prior's log p of the actions, seeded."""
    envs = prior_env("MusicComposition-v0", tiny_prior())
    model = PPOKL("PriorPolicy", envs, seed=3, kl_coef=kl_coef, **SMALL)
    _, callback = model._setup_learn(16, callback=None)
    model.collect_rollouts(envs, callback, model.rollout_buffer, model.n_steps)
    buffer = model.rollout_buffer
    actions = buffer.actions.astype(np.int64)
    prior = np.take_along_axis(buffer.observations["prior_log_probs"], actions, -1)[..., 0]
    return buffer.rewards.copy(), buffer.log_probs.copy(), prior


def test_every_reward_carries_beta_times_the_tokens_kl():
    torch.manual_seed(0)
    plain, log_pi, log_p = rollout_rewards(0.0)
    penalised, same_log_pi, _ = rollout_rewards(0.7)
    np.testing.assert_array_equal(log_pi, same_log_pi)  # the same rollout (seeded)
    np.testing.assert_allclose(penalised, plain - 0.7 * (log_pi - log_p), atol=1e-6)


def test_beta_moves_toward_the_kl_target():
    envs = prior_env("MusicComposition-v0", tiny_prior())
    model = PPOKL("PriorPolicy", envs, seed=0, kl_target=10.0, kl_horizon=32, **SMALL)
    model.learn(32)  # the KL of a policy that is still the prior is far below 10: beta falls
    assert model.kl_coef < 1.0


@pytest.mark.parametrize(
    ("hyperparameters", "says"),
    [
        ({"kl_target": 0}, "kl_target: expected a number > 0"),
        ({"kl_coef": -0.5}, "kl_coef: expected a finite number >= 0"),
    ],
)
def test_bad_kl_settings_are_one_line(tmp_path, capsys, hyperparameters, says):
    arguments = ["agent", "train", "--algo", "sb3-ppokl", "--steps", "32", "--out", str(tmp_path)]
    assert main([*arguments, "--hyperparameters", json.dumps(hyperparameters)]) == 2
    error = capsys.readouterr().err.strip()
    assert says in error and "\n" not in error


def test_a_trained_run_composes_with_the_prior_it_observed(tmp_path):
    from musicgym import agents
    from musicgym.agents.baselines import SB3Config, train

    path = tmp_path / "tiny.pt"
    save_checkpoint(path, tiny_prior())
    hyperparameters = json.dumps({**SMALL, "kl_target": 0.1})
    config = SB3Config(algo="ppokl", prior=str(path), steps=64, num_envs=2, eval_interval=10**6,
                       hyperparameters=hyperparameters)  # fmt: skip
    train(config, tmp_path / "run", progress=False)
    agent = agents.load(tmp_path / "run")
    melodies = agent.compose(3, seed=2)
    assert len(melodies) == 3 and all(len(m) == 32 for m in melodies)
    assert agent.compose(3, seed=2) == melodies

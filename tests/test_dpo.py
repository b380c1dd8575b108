"""Online DPO (musicgym.agents.dpo): the loss against hand-computed values, ties left out, the
policy starting as the prior, a round that raises the winners' margin, exact resume, bad
settings in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musicgym.agents.dpo import DPOConfig, dpo_loss, log_likelihoods, play_round, train
from musicgym.agents.rl_tuner import RLTuner
from musicgym.cli import main
from tests.test_agents import tiny_prior


def piece_likelihoods(agent, episodes):
    """``(log pi(y), log p(y))`` of each piece of ``episodes``."""
    steps = log_likelihoods(agent, episodes)
    return steps.per_piece(steps.policy), steps.per_piece(steps.prior)


def test_the_loss_against_hand_computed_values():
    policy = torch.tensor([-1.0, -2.0, -3.0, -2.0])
    prior = torch.tensor([-1.5, -1.5, -1.5, -1.5])
    # pairs (0, 2) and (1, 3): returns 5 > 1 (0 wins), 2 == 2 (a tie, left out)
    loss, figures = dpo_loss(policy, prior, np.array([5.0, 2.0, 1.0, 2.0]), beta=0.5)
    margin = (-1.0 + 1.5) - (-3.0 + 1.5)  # winner's log-ratio less the loser's: 2
    assert figures["ranked_pairs"] == 1 and figures["margin"] == pytest.approx(margin)
    assert float(loss) == pytest.approx(-math.log(1 / (1 + math.exp(-0.5 * margin))))
    none, _ = dpo_loss(policy, prior, np.zeros(4), beta=0.5)
    assert none is None  # every pair ties: nothing to prefer


def test_the_policy_starts_as_the_prior_and_a_round_moves_it_toward_the_winners(capsys):
    config = DPOConfig(pairs=8, epochs=8, learning_rate=3e-3, beta=0.5, length=16)
    agent = RLTuner(config.tuner_config(), tiny_prior())
    episodes = agent.play(16, seed=4, record=True)
    with torch.no_grad():
        policy, prior = piece_likelihoods(agent, episodes)
    torch.testing.assert_close(policy, prior, atol=1e-4, rtol=1e-5)
    before, _ = dpo_loss(policy, prior, episodes.returns, config.beta)
    optimizer = torch.optim.Adam(agent.q_network.parameters(), lr=config.learning_rate)
    torch.manual_seed(0)

    class Writer:
        def add_scalar(self, *args):
            pass

    replay = agent.play  # the round plays these same pieces again (the same seed)
    agent.play = lambda *args, **kwargs: episodes
    play_round(agent, optimizer, config, {"round": 0, "played": 0}, Writer())
    agent.play = replay
    policy, prior = piece_likelihoods(agent, episodes)
    after, figures = dpo_loss(policy, prior, episodes.returns, config.beta)
    assert float(after.detach()) < float(before) and figures["accuracy"] > 0.5


def resumed_equals_straight(config: type, stop: int, steps: int, tmp_path, **settings) -> tuple:
    """A run of ``steps`` straight and one stopped at ``stop`` then resumed end with equal
    weights (asserted); their checkpoints' round states, for the caller's own checks."""
    prior = tiny_prior()
    straight = train(config(steps=steps, **settings), tmp_path / "a", prior=prior, progress=False)
    train(config(steps=stop, **settings), tmp_path / "b", prior=prior, progress=False)
    resumed = train(config(steps=steps, **settings), tmp_path / "b", resume=True, progress=False)
    for name, tensor in straight.q_network.state_dict().items():
        assert torch.equal(resumed.q_network.state_dict()[name], tensor), name
    return tuple(
        torch.load(tmp_path / run / "agent.pt", weights_only=True)["rounds"] for run in "ab"
    )


def test_a_resumed_run_ends_where_the_uninterrupted_one_ends(tmp_path):
    resumed_equals_straight(DPOConfig, 64, 100, tmp_path, pairs=2, epochs=2, length=16)


@pytest.mark.parametrize(("option", "says"), [("--pairs=0", "pairs"), ("--beta=-1", "beta")])
def test_bad_dpo_settings_are_one_line(tmp_path, capsys, option, says):
    arguments = ["agent", "train", "--algo", "dpo", "--steps", "64", "--out", str(tmp_path)]
    assert main([*arguments, option]) == 2
    error = capsys.readouterr().err.strip()
    assert says in error and "\n" not in error


def test_dpo_fine_tunes_the_prior_on_chorales(tmp_path):
    """On ``ChoraleComposition-v0`` the policy starts as the prior among the valid actions (the
    environment's masks), a round of chorales moves it, and the run composes chorales."""
    settings = {"env": "ChoraleComposition-v0", "prior": "bach16", "bars": 1, "pairs": 2}
    config = DPOConfig(**settings, epochs=2, learning_rate=3e-3, steps=1)
    untrained = RLTuner(config.tuner_config(), "bach16")
    episodes = untrained.play(2, seed=0, record=True)
    with torch.no_grad():
        policy, prior = piece_likelihoods(untrained, episodes)
    torch.testing.assert_close(policy, prior, atol=1e-4, rtol=1e-5)
    agent = train(config, tmp_path / "run", progress=False)
    moved = [
        not torch.equal(weight, untrained.q_network.state_dict()[name])
        for name, weight in agent.q_network.state_dict().items()
    ]
    assert any(moved)
    (chorale,) = agent.compose(1, seed=1)
    assert chorale.matrix.shape[0] == 16  # one bar of 16th-note frames

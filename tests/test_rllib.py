"""The environment under RLlib (``agents/rllib_ppo.py``): PPO with 2 Ray env runners on
``MusicComposition-v0``, registered for the workers with ``ray.tune.register_env``.

RLlib pins its own gymnasium (Ray 2.60: 1.2.2), so ``.ci/run`` installs the ``rllib`` extra in a
second virtual environment and runs this file and ``tests/test_env.py`` there; in an environment
without RLlib the RLlib test is skipped, saying so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicgym.agents.rllib_ppo import RLlibPPOConfig, log_theory_reward, main


class _Episode:
    """The two methods of RLlib's ``SingleAgentEpisode`` that the callback reads."""

    def __init__(self, infos: list[dict]) -> None:
        self.infos = infos

    def get_infos(self) -> list[dict]:
        return self.infos

    def __len__(self) -> int:
        return len(self.infos) - 1  # the reset's info has no step


class _Logger:
    def __init__(self) -> None:
        self.logged: list[tuple[str, float]] = []

    def log_value(self, name: str, value: float, reduce: str) -> None:
        assert reduce == "mean"
        self.logged.append((name, value))


def test_theory_reward_is_c_times_the_rule_parts_per_step_over_all_chunks():
    first = _Episode([{}, {"rewards": {"prior": -3.0, "key": -2.0, "tonic": 6.0}}])
    last = _Episode([{}, {"rewards": {"prior": -1.0, "key": -2.0}}])
    logger = _Logger()
    log_theory_reward(episode=last, prev_episode_chunks=[first], metrics_logger=logger, c=0.5)
    assert logger.logged == [("theory_reward", 0.5 * (-2.0 + 6.0 - 2.0) / 2)]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env-runners", "0"], "--env-runners: expected an integer >= 1"),
        (["--minibatch-size", "2048"], "--minibatch-size: 2048 is larger than"),
        (["--gamma", "1.5"], "--gamma: expected a finite number >= 0 <= 1"),
    ],
)
def test_bad_settings_are_one_line(argv, message, capsys):
    assert main([*argv, "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _has_rllib() -> bool:
    try:
        import ray.rllib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_rllib(), reason="RLlib is not installed here")
def test_unreachable_address_is_one_line(capsys):
    assert main(["--address", "127.0.0.1:1", "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--address 127.0.0.1:1: no Ray cluster answers there" in err
    assert len(err.splitlines()) == 1


@pytest.mark.skipif(_has_rllib(), reason="RLlib is installed here")
def test_without_rllib_the_recipe_says_which_extra_in_one_line(capsys):
    assert main(["--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "the RLlib recipe needs ray.rllib" in err and 'pip install -e ".[rllib]"' in err
    assert len(err.splitlines()) == 1


@pytest.mark.slow
def test_ppo_with_two_env_runners_raises_the_theory_reward():
    if not _has_rllib():
        pytest.skip("RLlib is not installed here (.ci/run runs this file in .venv-rllib)")
    from musicgym.agents.rllib_ppo import train

    # Rules only, so that the env runners step fast: the recipe is the same with a prior.
    history = train(RLlibPPOConfig(prior="none", iterations=12), verbose=False)
    assert [row["env_steps"] for row in history] == [1024.0 * (i + 1) for i in range(12)]
    assert all(row["healthy_env_runners"] == 2 for row in history)
    rewards = np.array([row["theory_reward"] for row in history])
    assert not any(math.isnan(r) for r in rewards)
    assert -1.5 < rewards[0] < 0.0  # a random policy breaks rules
    assert rewards[-3:].mean() > rewards[:3].mean() + 0.1

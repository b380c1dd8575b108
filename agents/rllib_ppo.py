"""The environment under RLlib: PPO whose environments run in Ray env runners (a recipe).

Install the extra (RLlib pins its own gymnasium, 1.2.2 for Ray 2.60, which the project's range
allows), then::

    pip install -e ".[rllib]"
    python -m musicgym.agents.rllib_ppo --iterations 20 --env-runners 2            # a local Ray
    python -m musicgym.agents.rllib_ppo --address ray://head:10001 --env-runners 16 # a cluster

Each env runner is a Ray actor that builds its own ``MusicComposition-v0`` (with its own copy of
the prior) from the name :func:`register_env_for_ray` registers with ``ray.tune.register_env``; the
learner updates RLlib's default MLP policy on what they sample. In code::

    from musicgym.agents.rllib_ppo import RLlibPPOConfig, ppo_config, register_env_for_ray
    register_env_for_ray()
    algo = ppo_config(RLlibPPOConfig(env_runners=2)).build_algo()
    result = algo.train()  # result["env_runners"]["theory_reward"]: r_MT per step

Every iteration logs, beside RLlib's ``episode_return_mean``, the mean music-theory reward
``r_MT`` per step of the episodes it finished (:func:`log_theory_reward`: the rules' weighted sum
before the division by ``c``, as ``bench agents`` reports it). The defaults are those of a short
run in which it rises (``benchmarks/RESULTS.md``); ``gamma`` is the RL Tuner's 0.5.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from musicgym.checks import (
    FRACTION,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    check_numbers,
    import_optional,
)
from musicgym.config import DEFAULTS, ENV_ID
from musicgym.rules import parse_rules

if TYPE_CHECKING:
    from ray.rllib.algorithms.ppo import PPOConfig

NO_PRIOR = "none"
"""``--prior`` for the rules alone (the environment's ``prior=None``)."""


@dataclass
class RLlibPPOConfig:
    """Settings of ``python -m musicgym.agents.rllib_ppo``."""

    iterations: int = 12
    """Training iterations (each samples ``train_batch_size`` env steps, then updates)."""
    env_runners: int = 2
    """Ray actors that step environments, one CPU each."""
    envs_per_env_runner: int = 1
    """Environments each env runner steps side by side."""
    train_batch_size: int = 1024
    """Env steps per iteration, from all env runners together."""
    minibatch_size: int = 256
    """Env steps per gradient step."""
    epochs: int = 8
    """Passes over each iteration's batch."""
    learning_rate: float = 3e-3
    """Adam's learning rate."""
    gamma: float = 0.5
    """Discount (the RL Tuner's; most rules reward the step itself)."""
    prior: str = DEFAULTS.prior
    """Prior of the environment: a shipped name, a checkpoint path, or 'none' (rules only)."""
    rules: str = DEFAULTS.rules
    """Reward rules (preset or comma-separated names)."""
    c: float = DEFAULTS.c
    """Divisor of the rule rewards."""
    seed: int = 0
    """Seed of the env runners' environments and of the policy."""
    address: str = ""
    """Address of a running Ray cluster (e.g. ray://head:10001 or auto); empty: start a local
    Ray with one CPU per env runner plus one for the learner."""

    def __post_init__(self) -> None:
        check_numbers(
            self,
            {
                **{
                    name: POSITIVE_INT
                    for name in (
                        "iterations",
                        "env_runners",
                        "envs_per_env_runner",
                        "train_batch_size",
                        "minibatch_size",
                        "epochs",
                    )
                },
                "learning_rate": POSITIVE,
                "gamma": FRACTION,
                "c": POSITIVE,
                "seed": NON_NEGATIVE_INT,
            },
        )
        if self.minibatch_size > self.train_batch_size:
            raise ValueError(
                f"minibatch_size: {self.minibatch_size} is larger than train_batch_size "
                f"{self.train_batch_size}"
            )

    def env_config(self) -> dict[str, Any]:
        """The keyword arguments of ``gym.make(ENV_ID, ...)`` in every env runner."""
        prior = None if self.prior == NO_PRIOR else self.prior
        return {"prior": prior, "rules": parse_rules(self.rules), "c": self.c}


def make_env(env_config: dict[str, Any]) -> gym.Env:
    """The environment of one env runner (``ray.tune.register_env``'s creator): importing
    ``musicgym`` in the worker registers the id there."""
    import musicgym  # noqa: F401

    return gym.make(ENV_ID, **dict(env_config))


def register_env_for_ray() -> str:
    """Register :func:`make_env` under :data:`ENV_ID` for Ray workers; returns the name."""
    tune = import_optional("ray.tune", "rllib", "the RLlib recipe")
    tune.register_env(ENV_ID, make_env)
    return ENV_ID


def log_theory_reward(
    *, episode: Any, metrics_logger: Any, c: float, prev_episode_chunks: Any = None, **_: Any
) -> None:
    """RLlib's ``on_episode_end`` callback: log ``theory_reward``, the mean ``r_MT`` per step of
    the episode (``c`` times the rule parts of ``info["rewards"]``; all but ``"prior"``)."""
    chunks = [episode, *(prev_episode_chunks or [])]
    rules = sum(
        value
        for chunk in chunks
        for info in chunk.get_infos()
        for name, value in info.get("rewards", {}).items()
        if name != "prior"
    )
    steps = sum(len(chunk) for chunk in chunks)
    metrics_logger.log_value("theory_reward", c * rules / max(steps, 1), reduce="mean")


def ppo_config(config: RLlibPPOConfig) -> PPOConfig:
    """RLlib's ``PPOConfig`` for ``config`` on the environment registered by
    :func:`register_env_for_ray`."""
    ppo = import_optional("ray.rllib.algorithms.ppo", "rllib", "the RLlib recipe")
    return (
        ppo.PPOConfig()
        .environment(ENV_ID, env_config=config.env_config())
        .env_runners(
            num_env_runners=config.env_runners,
            num_envs_per_env_runner=config.envs_per_env_runner,
            num_cpus_per_env_runner=1,
            rollout_fragment_length="auto",
        )
        .training(
            train_batch_size_per_learner=config.train_batch_size,
            minibatch_size=config.minibatch_size,
            num_epochs=config.epochs,
            lr=config.learning_rate,
            gamma=config.gamma,
            lambda_=0.95,
        )
        .callbacks(on_episode_end=functools.partial(log_theory_reward, c=config.c))
        .debugging(seed=config.seed)
    )


def train(config: RLlibPPOConfig, verbose: bool = True) -> list[dict[str, float]]:
    """Run ``config.iterations`` PPO iterations on Ray (the cluster at ``config.address``, or a
    local Ray started and stopped here); returns, per iteration, ``healthy_env_runners``,
    ``env_steps`` (sampled so far), ``theory_reward`` and ``episode_return`` (RLlib's
    ``episode_return_mean``)."""
    import_optional("ray.rllib", "rllib", "the RLlib recipe")
    import ray

    from musicgym.ray_cluster import connect

    started = not ray.is_initialized()
    if started:
        connect(config.address, num_cpus=config.env_runners + 1, what="--address")
    try:
        register_env_for_ray()
        algo = ppo_config(config).build_algo()
        history = []
        try:
            for iteration in range(config.iterations):
                result = algo.train()
                runners = result.get("env_runners", {})
                healthy = result.get("fault_tolerance", {}).get("num_healthy_workers", 0)
                row = {
                    "iteration": iteration + 1,
                    "healthy_env_runners": float(healthy),
                    "env_steps": float(result.get("num_env_steps_sampled_lifetime", 0)),
                    "theory_reward": float(runners.get("theory_reward", float("nan"))),
                    "episode_return": float(runners.get("episode_return_mean", float("nan"))),
                }
                history.append(row)
                if verbose:
                    print(json.dumps(row), flush=True)
        finally:
            algo.stop()
        return history
    finally:
        if started:
            ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """``python -m musicgym.agents.rllib_ppo``: one JSON line per iteration; bad input is one
    line and exit 2."""
    from musicgym.arguments import (
        EXIT_BAD_INPUT,
        ArgumentParser,
        add_dataclass_arguments,
        dataclass_from_args,
        option_error,
    )
    from musicgym.errors import MusicgymError

    parser = ArgumentParser(prog="python -m musicgym.agents.rllib_ppo", description=__doc__)
    add_dataclass_arguments(parser, RLlibPPOConfig)
    args = parser.parse_args(argv)
    try:
        try:
            config = dataclass_from_args(RLlibPPOConfig, args)
        except ValueError as error:
            raise option_error(error, RLlibPPOConfig) from None
        history = train(config)
    except MusicgymError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps({"config": asdict(config), "last": history[-1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stable-Baselines3 baselines on ``MusicComposition-v0``: DQN, PPO, A2C, QR-DQN, RecurrentPPO.

Standard SB3 usage and nothing re-implemented: the env id through ``make_vec_env``, an MLP policy on
the environment's observation (the recent tokens one-hot, the bar position and the progress; an
LSTM policy for RecurrentPPO), ``CheckpointCallback`` and ``EvalCallback``, ``progress_bar=True``
and ``tensorboard_log``. One small callback adds the spec's statistics of composed melodies under
``music/`` at every evaluation, and a few of the melodies as audio and piano rolls. SB3's defaults
are used except where a 32-step episode on a 2-core machine needs otherwise (:data:`DEFAULTS`);
``--hyperparameters`` (JSON) overrides any of them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import QRDQN, RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import TensorBoardOutputFormat
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from agents.action_scores import melody_statistics
from agents.common import (
    ENV_ID,
    EnvConfig,
    RunConfig,
    env_kwargs,
    load_prior,
    set_torch_threads,
    write_agent_info,
)
from musicgym.errors import CheckpointError
from priors.model import BiaxialLSTM

MODEL_FILE = "model.zip"
REPLAY_FILE = "replay_buffer.pkl"
Algorithm = Literal["dqn", "ppo", "a2c", "qrdqn", "recurrentppo"]
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "dqn": DQN,
    "ppo": PPO,
    "a2c": A2C,
    "qrdqn": QRDQN,
    "recurrentppo": RecurrentPPO,
}
POLICIES = {"recurrentppo": "MlpLstmPolicy"}
DEFAULTS: dict[str, dict[str, Any]] = {
    # Off-policy: the published replay size and discount; start learning after a few melodies;
    # observations stored once (half of 1 GB; episodes end by termination only).
    **{
        name: {
            "buffer_size": 100_000,
            "learning_starts": 1_000,
            "gamma": 0.5,
            "optimize_memory_usage": True,
            "replay_buffer_kwargs": {"handle_timeout_termination": False},
        }
        for name in ("dqn", "qrdqn")
    },
    # On-policy: rollouts of a few melodies per env rather than 2048 steps.
    "ppo": {"n_steps": 128, "batch_size": 64},
    "a2c": {},
    "recurrentppo": {"n_steps": 128, "batch_size": 64},
}
"""Constructor arguments that differ from SB3's defaults, per algorithm."""


@dataclass
class SB3Config(RunConfig):
    """Settings of an SB3 baseline run (the algorithm's own hyperparameters are SB3's)."""

    algo: Algorithm = "ppo"
    """SB3 algorithm: dqn, ppo, a2c, qrdqn or recurrentppo."""
    num_envs: int = 8
    """Environments stepped side by side (make_vec_env)."""
    eval_interval: int = 5_000
    """Environment steps between evaluations (EvalCallback, and music/ statistics)."""
    eval_episodes: int = 8
    """Melodies per evaluation."""
    checkpoint_interval: int = 5_000
    """Environment steps between checkpoints (CheckpointCallback)."""
    hyperparameters: str = "{}"
    """JSON of constructor arguments for the SB3 algorithm, e.g. '{"learning_rate": 1e-4}'."""

    ALGORITHMS: ClassVar[tuple[str, ...]] = tuple(ALGORITHMS)

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo: expected one of {', '.join(ALGORITHMS)}, got {self.algo!r}")
        try:
            parsed = json.loads(self.hyperparameters)
        except json.JSONDecodeError as error:
            raise ValueError(f"hyperparameters: not JSON ({error})") from None
        if not isinstance(parsed, dict):
            raise ValueError("hyperparameters: expected a JSON object")

    def algorithm_kwargs(self) -> dict[str, Any]:
        """Constructor arguments: :data:`DEFAULTS` updated with ``hyperparameters``."""
        return {**DEFAULTS[self.algo], **json.loads(self.hyperparameters)}

    def env_config(self) -> EnvConfig:
        return EnvConfig(**{f.name: getattr(self, f.name) for f in fields(EnvConfig)})


class SB3Agent:
    """A trained SB3 model as a composer: it plays the environment (without prior or rules,
    which the observation does not depend on) for ``length`` steps, ``n`` melodies at once."""

    def __init__(self, model: BaseAlgorithm, env: EnvConfig) -> None:
        self.model, self.env, self.length = model, env, env.length

    @classmethod
    def load(cls, folder: str | os.PathLike, algo: str, env: EnvConfig) -> SB3Agent:
        """The model ``folder/model.zip`` of an SB3 run."""
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise CheckpointError(f"{path}: no such SB3 model")
        return cls(ALGORITHMS[algo].load(path, device="cpu"), env)

    def compose(self, n: int, seed: int = 0, greedy: bool = False) -> list[list[int]]:
        """``n`` melodies: ``model.predict`` with ``deterministic=greedy``."""
        envs = gym.make_vec(
            ENV_ID,
            num_envs=n,
            vectorization_mode="vector_entry_point",
            length=self.length,
            key=self.env.key,
            prior=None,
            rules=None,
        )
        # predict() samples from torch (policies) and numpy (DQN's epsilon): seed both, and leave
        # the caller's random state (e.g. a training run's) as it was.
        torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
        torch.manual_seed(seed)
        np.random.seed(seed)
        self.model.action_space.seed(seed)
        observations, _ = envs.reset(seed=seed)
        lstm_states, starts, melodies = None, np.ones(n, bool), []
        for _ in range(self.length):
            actions, lstm_states = self.model.predict(
                observations, state=lstm_states, episode_start=starts, deterministic=greedy
            )
            melodies.append(np.asarray(actions).reshape(n))
            observations, _, _, _, _ = envs.step(actions)
            starts = np.zeros(n, bool)
        envs.close()
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        return np.stack(melodies, 1).astype(int).tolist()


class MusicStatisticsCallback(BaseCallback):
    """Every ``interval`` environment steps, compose ``melodies`` melodies and record the spec's
    statistics (and their mean log p under ``prior``, if given) under ``music/``, and the first
    ``listen`` of them as audio and piano rolls (:func:`musicgym.audio.log_compositions`)."""

    def __init__(
        self,
        env: EnvConfig,
        interval: int,
        melodies: int,
        prior: BiaxialLSTM | None,
        listen: int = 4,
    ) -> None:
        super().__init__()
        self.env, self.interval, self.melodies, self.prior = env, interval, melodies, prior
        self.listen = listen
        self.next_evaluation = interval

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_evaluation:
            self.next_evaluation += self.interval
            self.record()
        return True

    def record(self) -> None:
        from musicgym.metrics import evaluate_melodies

        melodies = SB3Agent(self.model, self.env).compose(self.melodies, seed=self.env.seed)
        if self.prior is None:
            statistics = evaluate_melodies(melodies, self.env.key)
        else:
            statistics = melody_statistics(self.prior, melodies, self.env.key)
        for name, value in statistics.items():
            self.logger.record(f"music/{name}", value)
        self.logger.dump(self.num_timesteps)
        writer = next(
            (
                f.writer
                for f in self.logger.output_formats
                if isinstance(f, TensorBoardOutputFormat)
            ),
            None,
        )
        if writer is not None:
            from musicgym.audio import log_compositions

            log_compositions(writer, melodies, self.num_timesteps, tag="music", n=self.listen)
            writer.flush()


def resume_point(out: Path) -> Path:
    """The model to resume a run from: the newest of ``model.zip`` (written when a call ends) and
    ``checkpoints/`` (written during one; after an interrupt the replay buffer is lost, the model
    is not)."""
    saved = [*(out / "checkpoints").glob("model_*_steps.zip"), out / MODEL_FILE]
    saved = [path for path in saved if path.is_file()]
    if not saved:
        raise CheckpointError(f"{out}: no {MODEL_FILE} and no checkpoints/ to resume from")
    return max(saved, key=lambda path: path.stat().st_mtime_ns)


class StopAfterMinutes(BaseCallback):
    """Stop ``learn`` once ``minutes`` of wall-clock time have passed (0: never)."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.deadline = time.time() + 60 * minutes if minutes > 0 else math.inf

    def _on_step(self) -> bool:
        return time.time() < self.deadline


def train(
    config: SB3Config,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    prior: BiaxialLSTM | None = None,
    progress: bool = True,
) -> BaseAlgorithm:
    """Train ``config.algo`` for ``config.steps`` environment steps into ``out`` (``model.zip``,
    ``checkpoints/``, ``best_model.zip``, TensorBoard events, ``agent.json``). ``resume``
    continues ``out/model.zip`` (and its replay buffer) up to ``config.steps``. ``prior``
    overrides ``config.prior`` with a loaded model."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_torch_threads(config.threads)
    prior_model = load_prior(prior if prior is not None else config.prior)
    kwargs = env_kwargs(config, prior_model)
    envs = make_vec_env(ENV_ID, n_envs=config.num_envs, seed=config.seed, env_kwargs=kwargs)
    eval_envs = make_vec_env(ENV_ID, n_envs=1, seed=config.seed + 10_000, env_kwargs=kwargs)
    algorithm = ALGORITHMS[config.algo]
    if resume:
        path = resume_point(out)
        model = algorithm.load(path, env=envs, device="cpu", tensorboard_log=str(out))
        if isinstance(model, OffPolicyAlgorithm) and (out / REPLAY_FILE).is_file():
            model.load_replay_buffer(out / REPLAY_FILE)
    else:
        model = algorithm(
            POLICIES.get(config.algo, "MlpPolicy"),
            envs,
            seed=config.seed,
            device="cpu",
            tensorboard_log=str(out),
            **config.algorithm_kwargs(),
        )
    per_env = max(config.num_envs, 1)
    callbacks = [
        CheckpointCallback(
            save_freq=max(config.checkpoint_interval // per_env, 1),
            save_path=str(out / "checkpoints"),
            name_prefix="model",
        ),
        EvalCallback(
            eval_envs,
            n_eval_episodes=config.eval_episodes,
            eval_freq=max(config.eval_interval // per_env, 1),
            best_model_save_path=str(out),
            log_path=str(out),
            verbose=0,
        ),
        MusicStatisticsCallback(
            config.env_config(), config.eval_interval, config.eval_episodes, prior_model
        ),
        StopAfterMinutes(config.max_minutes),
    ]
    info = {"env": config.env_config(), "model": MODEL_FILE}
    write_agent_info(out, f"sb3-{config.algo}", **info, trained_steps=model.num_timesteps)
    model.learn(
        total_timesteps=max(config.steps - model.num_timesteps, 0) if resume else config.steps,
        callback=callbacks,
        progress_bar=progress and _progress_bar_available(),
        tb_log_name=config.algo,
        reset_num_timesteps=not resume,
    )
    model.save(out / MODEL_FILE)
    if isinstance(model, OffPolicyAlgorithm):
        model.save_replay_buffer(out / REPLAY_FILE)
    write_agent_info(out, f"sb3-{config.algo}", **info, trained_steps=model.num_timesteps)
    envs.close()
    eval_envs.close()
    return model


def _progress_bar_available() -> bool:
    """SB3's progress bar needs ``tqdm`` and ``rich``."""
    return all(importlib.util.find_spec(name) for name in ("tqdm", "rich"))

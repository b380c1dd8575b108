"""Stable-Baselines3 baselines on ``MusicComposition-v0``: DQN, PPO, A2C, QR-DQN, RecurrentPPO.

Standard SB3 usage and nothing re-implemented: the env id through ``make_vec_env``, an MLP policy on
the environment's observation (the recent tokens one-hot, the bar position and the progress; an
LSTM policy for RecurrentPPO), ``EvalCallback``, a progress bar and ``tensorboard_log``. One small
callback adds the spec's statistics of composed melodies under ``music/`` at every evaluation,
and a few of the melodies as audio and piano rolls.
SB3's defaults are used except where a 32-step episode on a 2-core machine needs otherwise
(:data:`DEFAULTS`); ``--hyperparameters`` (JSON) overrides any of them.

**Checkpoints and resume.** A *resume point* of step ``N`` is ``checkpoints/model_N_steps.zip``
(SB3's save: weights, optimizer, counters, schedules, the last observations),
``checkpoints/state_N_steps.pt`` (what SB3 does not save: the numpy, torch, Python and
action-space generators; every environment's melodies in progress, generator and ``Monitor``
counts; the evaluation callbacks' counters), the replay buffer (off-policy; see below) and,
written last, ``checkpoints/manifest_N_steps.json`` with the SHA-256 of each file. ``--resume``
takes the newest complete, undamaged point (an older one if the newest is damaged) and goes on
exactly as the run would have. Points are written at rollout boundaries (after SB3's update):
every ``--checkpoint-interval`` steps, at the end, after ``--max-minutes``, and on SIGINT /
SIGTERM, which therefore stop at the end of the rollout in progress (up to ``n_steps *
num_envs`` steps for PPO and A2C). The replay buffer (hundreds of MB) is in the points written
at the end, on a signal and after ``--max-minutes``, and in the periodic ones only with
``--checkpoint-replay``; resuming from a point without it (after a kill) starts with an empty
buffer and says so. ``model.zip`` (and ``best_model.zip``) in the run folder are the latest
(best) models for ``musicgym.agents.load``; every file is written atomically.

**Run folders are data, not code** (:mod:`musicgym.agents.sb3_state`): a model is made anew from
the run's own JSON settings and reads only the zip's tensors; SB3's counters and last
observations live in the resume point's state (``state_N_steps.pt``) and the replay buffer in
``replay_buffer_N_steps.npz``. Resume points of older versions, which need SB3's pickles, are
refused in one line unless ``--trust-folder`` says the folder is yours.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import sb3_contrib
import stable_baselines3
import torch
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback, ProgressBarCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import TensorBoardOutputFormat
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from musicgym.agents import ppo_kl
from musicgym.agents.common import (
    AGENT_INFO,
    RUN_FILES,
    SESSION_FIELDS,
    EnvConfig,
    RunConfig,
    check_same_prior,
    load_prior,
    prior_fingerprint,
    set_torch_threads,
    training_reference,
    warn,
    write_agent_info,
)
from musicgym.agents.sb3_agent import SB3Agent, playback_kwargs
from musicgym.agents.sb3_state import (
    CHECKPOINTS,
    MODEL_FILE,
    REPLAY_FILE,
    ResumePoint,
    load_pickled_model,
    load_replay,
    lstm_states,
    model_state,
    numpy_state,
    resume_point,
    save_replay,
    set_lstm_states,
    set_model_state,
    set_numpy_state,
    set_vec_env_state,
    sha256,
    vec_env_state,
    weights_into,
)
from musicgym.checks import POSITIVE_INT, check_numbers
from musicgym.errors import ArgumentError, CheckpointError, EnvArgumentError, RunFolderError
from musicgym.fileio import atomic_output, file_in, save_checkpoint_file, write_text
from musicgym.prior import MelodyPrior
from musicgym.runs import (
    StopSignals,
    check_output_folder,
    check_resume_settings,
    claim_run_folder,
)
from musicgym.tasks import task_of

BEST_MODEL_FILE = "best_model.zip"


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """The Stable-Baselines3, sb3-contrib or musicgym (:mod:`musicgym.agents.ppo_kl`) algorithm
    whose class is ``name`` in lower case (``"qrdqn"``: ``QRDQN``); a ValueError naming the
    argument otherwise."""
    for package in (stable_baselines3, sb3_contrib, ppo_kl):
        for attribute in dir(package):
            found = getattr(package, attribute)
            if (
                attribute.lower() == name
                and isinstance(found, type)
                and issubclass(found, BaseAlgorithm)
            ):
                return found
    raise ValueError(f"algo: {name!r} is no algorithm of stable-baselines3 or sb3-contrib")


def init_arguments(algorithm: type) -> set[str]:
    """The keyword arguments ``algorithm`` takes: its ``__init__``'s, and those its ``**kwargs``
    pass on to the classes above it."""
    names: set[str] = set()
    for cls in algorithm.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def env_kwargs(
    config: SB3Config | EnvConfig, algorithm: type, prior: Any = None, training: bool = False
) -> dict:
    """The environment arguments of ``config`` for ``algorithm``: the ``"prior"`` observation
    (and the prior out of the reward) for an algorithm that reads it (its class says so);
    ``training``: of the environment it learns in (phrase episodes where ``config.phrases``),
    else of the one it is evaluated in."""
    observation = getattr(algorithm, "observation", "plain")
    with_prior = getattr(algorithm, "prior_in_reward", True)
    return config.env_kwargs(prior, with_prior, observation, training)


POLICIES = {"recurrentppo": "MlpLstmPolicy", "ppokl": "PriorPolicy"}
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
    # A 4-bar chorale takes about 300 decisions: a rollout of one per env.
    "maskableppo": {"n_steps": 256, "batch_size": 64},
    "a2c": {},
    "recurrentppo": {"n_steps": 128, "batch_size": 64},
    "ppokl": {"n_steps": 128, "batch_size": 64},
}
"""Constructor arguments that differ from SB3's defaults, per algorithm."""


@dataclass
class SB3Config(RunConfig):
    """Settings of an SB3 baseline run (the algorithm's own hyperparameters are SB3's)."""

    algo: str = "ppo"
    """SB3 algorithm: its class name in lower case (dqn, ppo, a2c, qrdqn, recurrentppo, ...)."""
    num_envs: int = 8
    """Environments stepped side by side (make_vec_env)."""
    eval_interval: int = 5_000
    """Environment steps between evaluations (EvalCallback, and music/ statistics)."""
    eval_episodes: int = 8
    """Melodies per evaluation."""
    checkpoint_interval: int = 5_000
    """Environment steps between resume points (see the module docstring)."""
    hyperparameters: str = "{}"
    """JSON of constructor arguments for the SB3 algorithm, e.g. '{"learning_rate": 1e-4}'."""
    checkpoint_replay: bool = False
    """Put the replay buffer (off-policy; hundreds of MB) in every checkpoint, not only in those
    written at the end, on a signal and after --max-minutes."""
    trust_folder: bool = False
    """--resume: also read a resume point of an older musicgym, whose model and replay buffer
    only SB3's pickles hold (unpickling runs code: only for a folder you made yourself)."""

    RESUMABLE: ClassVar[tuple[str, ...]] = (
        *SESSION_FIELDS,
        "eval_interval",
        "eval_episodes",
        "checkpoint_interval",
        "checkpoint_replay",
        "trust_folder",
    )
    """The settings ``--resume`` may change; the others decide the run and must stay the run's."""

    def __post_init__(self) -> None:
        super().__post_init__()
        counts = ("num_envs", "eval_interval", "eval_episodes", "checkpoint_interval")
        check_numbers(self, {name: POSITIVE_INT for name in counts})
        algorithm = algorithm_class(self.algo)
        try:
            parsed = json.loads(self.hyperparameters)
        except json.JSONDecodeError as error:
            raise ValueError(f"hyperparameters: not JSON ({error})") from None
        if not isinstance(parsed, dict):
            raise ValueError("hyperparameters: expected a JSON object")
        accepted = init_arguments(algorithm)
        unknown = sorted(set(parsed) - (accepted - {"self", "policy", "env", "_init_setup_model"}))
        if unknown:
            raise ValueError(
                f"hyperparameters: {', '.join(map(repr, unknown))} not an argument of "
                f"{algorithm.__name__} (see its documentation for the names)"
            )
        ours = sorted(set(parsed) & {"seed", "device", "tensorboard_log", "verbose"})
        if ours:
            raise ValueError(
                f"hyperparameters: {', '.join(map(repr, ours))} set by musicgym (use --seed; "
                "the others are fixed)"
            )

    def algorithm_kwargs(self) -> dict[str, Any]:
        """Constructor arguments: :data:`DEFAULTS` updated with ``hyperparameters``."""
        return {**DEFAULTS.get(self.algo, {}), **json.loads(self.hyperparameters)}

    def env_config(self) -> EnvConfig:
        return EnvConfig(**{f.name: getattr(self, f.name) for f in fields(EnvConfig)})


def load_agent(folder: str | os.PathLike, info: dict[str, Any]) -> SB3Agent:
    """The agent of an SB3 run folder (``info``: its ``agent.json``; the registry's load): a
    model made from the run's settings, with the weights of ``folder/model.zip`` (never
    unpickled; see the module docstring)."""
    path = file_in(folder, info.get("model", MODEL_FILE), "model file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such SB3 model")
    config = _run_config(Path(folder), info.get("config"))
    algorithm = algorithm_class(config.algo)
    maskable = "action_masks" in inspect.signature(algorithm.predict).parameters
    env_config = config.env_config()
    env = gym.make(config.env, **playback_kwargs(env_config, algorithm, maskable))
    small = {"buffer_size": 1} if issubclass(algorithm, OffPolicyAlgorithm) else {}
    model = weights_into(_make_model(config, env, None, **small), path)
    return SB3Agent(model, env_config)


def _run_config(folder: Path, saved: Any) -> SB3Config:
    """The :class:`SB3Config` a run folder records, or one line saying what is wrong with it."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{folder / AGENT_INFO}: no settings of an SB3 run ('config')")
    known = {f.name for f in fields(SB3Config)}
    try:
        return SB3Config(**{k: v for k, v in saved.items() if k in known})
    except (TypeError, ValueError, EnvArgumentError) as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{folder / AGENT_INFO}: its settings do not fit ({first})") from None


# ------------------------------------------------------------------------------ resume points


class MusicStatisticsCallback(BaseCallback):
    """Every ``interval`` environment steps, compose ``melodies`` melodies and record the spec's
    statistics (and their mean log p under ``prior``, if given) under ``music/``, and the first
    ``listen`` of them as audio and piano rolls (:func:`musicgym.music.audio.log_compositions`)."""

    def __init__(
        self,
        env: EnvConfig,
        interval: int,
        melodies: int,
        prior: MelodyPrior | None,
        listen: int = 4,
    ) -> None:
        super().__init__()
        self.env, self.interval, self.melodies, self.prior = env, interval, melodies, prior
        self.listen = listen
        self.next_evaluation = interval
        self.reference = training_reference(env)  # the KL to the data, where the card has it

    def _on_training_start(self) -> None:
        self.next_evaluation = max(
            self.next_evaluation, (self.model.num_timesteps // self.interval + 1) * self.interval
        )

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_evaluation:
            self.next_evaluation += self.interval
            self.record()
        return True

    def record(self) -> None:
        task = task_of(self.env.env)
        agent = SB3Agent(self.model, self.env, self.prior)
        pieces = agent.compose(self.melodies, seed=self.env.seed)
        statistics = task.statistics(self.prior, pieces, self.env.judged_key, self.reference)
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
            task.log_compositions(writer, pieces, self.num_timesteps, tag="music", n=self.listen)
            writer.flush()


class SaveBestModel(BaseCallback):
    """``EvalCallback``'s ``callback_on_new_best``: ``best_model.zip``, written atomically."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _on_step(self) -> bool:
        with atomic_output(self.path) as temporary:
            self.model.save(temporary)
        return True


class _StopLearning(Exception):
    """Raised at a rollout boundary to leave ``learn`` where a resume point can be written."""


class ResumePoints(BaseCallback):
    """Writes resume points at rollout boundaries every ``interval`` steps, and leaves ``learn``
    at the next boundary after a signal or ``max_minutes``."""

    def __init__(self, interval: int, max_minutes: float, stop: StopSignals, save: Any) -> None:
        super().__init__()
        self.interval, self.stop, self.save = interval, stop, save
        self.deadline = time.time() + 60 * max_minutes if max_minutes > 0 else math.inf
        self.next_point = 0
        self.timed_out = False

    def _on_training_start(self) -> None:
        self.next_point = (self.model.num_timesteps // self.interval + 1) * self.interval

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps >= self.next_point:
            self.next_point += self.interval * max(
                1, (self.model.num_timesteps - self.next_point) // self.interval + 1
            )
            self.save(with_replay=None)
        self.timed_out = time.time() >= self.deadline
        if self.stop.requested or self.timed_out:
            raise _StopLearning

    def _on_step(self) -> bool:
        return True


def _make_model(config: SB3Config, envs: Any, out: Path | None, **overrides: Any) -> BaseAlgorithm:
    """A new model of the run's settings (``overrides``: of its hyperparameters), with SB3's
    refusal of a hyperparameter as one line."""
    algorithm = algorithm_class(config.algo)
    try:
        return algorithm(
            POLICIES.get(config.algo, "MlpPolicy"),
            envs,
            seed=config.seed,
            device="cpu",
            tensorboard_log=None if out is None else str(out),
            **{**config.algorithm_kwargs(), **overrides},
        )
    except (TypeError, ValueError, AssertionError, KeyError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ArgumentError(
            f"hyperparameters: {algorithm.__name__} refused them ({first})"
        ) from None


def _checkpoint_bytes(model: BaseAlgorithm) -> int:
    """About the size of a resume point: weights with Adam's moments, the replay buffer."""
    weights = 4 * 3 * sum(p.numel() for p in model.policy.parameters())
    replay = getattr(model, "replay_buffer", None)
    arrays = vars(replay).values() if replay is not None else ()
    return weights + sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)) + 2**20


def train(
    config: SB3Config,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    prior: MelodyPrior | None = None,
    progress: bool = True,
) -> BaseAlgorithm:
    """Train ``config.algo`` for ``config.steps`` environment steps into ``out`` (resume points
    in ``checkpoints/``, ``model.zip``, ``best_model.zip``, TensorBoard events, ``agent.json``).
    ``resume`` continues the run's newest resume point up to ``config.steps`` (``config`` must be
    the run's but for :attr:`SB3Config.RESUMABLE`); ``overwrite`` replaces a run there (without
    either, a folder holding a run is refused). ``prior`` overrides ``config.prior`` with a
    loaded model. SIGINT / SIGTERM write a resume point at the end of the rollout in progress and
    raise :class:`musicgym.errors.Interrupted`."""
    run_files = (*RUN_FILES, f"{config.algo}_[0-9]*")  # SB3's TensorBoard folders
    with (
        claim_run_folder(out, resume=resume, overwrite=overwrite, run_files=run_files),
        StopSignals() as stop,
    ):
        return _train(config, Path(out), resume, prior, progress, stop)


def _train(
    config: SB3Config,
    out: Path,
    resume: bool,
    prior: MelodyPrior | None,
    progress: bool,
    stop: StopSignals,
) -> BaseAlgorithm:
    set_torch_threads(config.threads)
    prior_model = load_prior(prior if prior is not None else config.prior)
    algorithm = algorithm_class(config.algo)
    maskable = "action_masks" in inspect.signature(algorithm.predict).parameters
    masking = task_of(config.env).masking_kwargs(maskable)
    kwargs = {**env_kwargs(config, algorithm, prior_model, training=True), **masking}
    envs = make_vec_env(config.env, n_envs=config.num_envs, seed=config.seed, env_kwargs=kwargs)
    kwargs = {**env_kwargs(config, algorithm, prior_model), **masking}
    eval_envs = make_vec_env(config.env, n_envs=1, seed=config.seed + 10_000, env_kwargs=kwargs)
    point = resume_point(out) if resume else None
    model = _model_of_run(config, out, point, envs, prior_model)
    check_output_folder(out, need_bytes=_checkpoint_bytes(model))
    run = SB3Run(config, out, model, envs, eval_envs, prior_model, maskable)
    if point is not None and point.state is not None:
        run.restore(point.state)

    points = ResumePoints(config.checkpoint_interval, config.max_minutes, stop, run.save)
    bar = ProgressBarCallback() if progress and _progress_bar_available() else None
    callbacks = [points, run.evaluation, run.music, *([bar] if bar else [])]
    write_agent_info(out, f"sb3-{config.algo}", **run.info, trained_steps=model.num_timesteps)
    try:
        model.learn(
            total_timesteps=max(config.steps - model.num_timesteps, 0) if resume else config.steps,
            callback=callbacks,
            tb_log_name=config.algo,
            reset_num_timesteps=not resume,
        )
    except _StopLearning:
        if bar is not None:
            bar.on_training_end()
    run.save(with_replay=True)
    # what `agent train` says of the last resume point (its replay buffer: for --resume)
    model.checkpoint_size, model.replay_size = run.checkpoint_size, run.replay_size
    with atomic_output(out / MODEL_FILE) as temporary:
        model.save(temporary)
    (out / REPLAY_FILE).unlink(missing_ok=True)  # an older version's, now in checkpoints/
    write_agent_info(out, f"sb3-{config.algo}", **run.info, trained_steps=model.num_timesteps)
    envs.close()
    eval_envs.close()
    stop.raise_if_stopped_short(model.num_timesteps, config.steps, out / CHECKPOINTS)
    return model


def _model_of_run(
    config: SB3Config,
    out: Path,
    point: ResumePoint | None,
    envs: DummyVecEnv,
    prior: MelodyPrior,
) -> BaseAlgorithm:
    """A new model, or the model of the resume point (its settings and prior checked)."""
    if point is None:
        return _make_model(config, envs, out)
    if point.state is not None:
        check_resume_settings(out, point.state["config"], config, SB3Config.RESUMABLE)
        check_same_prior(out, point.state["prior_fingerprint"], prior)
    pickled = point.state is None or "model" not in point.state
    pickled = pickled or (point.replay is not None and point.replay.suffix == ".pkl")
    if pickled and not config.trust_folder:
        raise RunFolderError(
            f"{point.model}: a resume point of an older musicgym, which only SB3's pickles "
            "hold; unpickling runs code, so resume it only if you made this folder yourself: "
            "--resume --trust-folder"
        )
    if pickled:
        algorithm = algorithm_class(config.algo)
        model = load_pickled_model(
            algorithm, point.model, env=envs, tensorboard_log=str(out), force_reset=False
        )
    else:
        model = weights_into(_make_model(config, envs, out), point.model)
        set_model_state(model, point.state["model"])  # type: ignore[index]
    if isinstance(model, OffPolicyAlgorithm):
        if point.replay is not None and point.replay.suffix == ".pkl":
            model.load_replay_buffer(point.replay)
        elif point.replay is not None:
            load_replay(model.replay_buffer, point.replay)
        else:
            warn(
                f"{point.model}: a checkpoint without the replay buffer (written during the "
                "run, not at its end or on a signal): resumed with an empty replay buffer"
            )
    if point.state is None:
        warn(
            f"{point.model}: written by an older musicgym without the generators and "
            "environments: resumed, but not exactly the run it would have been"
        )
        model.set_env(envs, force_reset=True)
    return model


class SB3Run:
    """An SB3 run's callbacks, and its resume points: what SB3 saves (``model.save``) and what it
    does not (the generators, every environment's melodies, the callbacks' counters)."""

    def __init__(
        self,
        config: SB3Config,
        out: Path,
        model: BaseAlgorithm,
        envs: DummyVecEnv,
        eval_envs: DummyVecEnv,
        prior: MelodyPrior,
        maskable: bool = False,
    ) -> None:
        self.config, self.out, self.model = config, out, model
        self.envs, self.eval_envs = envs, eval_envs
        self.fingerprint = prior_fingerprint(prior)
        self.music = MusicStatisticsCallback(
            config.env_config(), config.eval_interval, config.eval_episodes, prior
        )
        self.evaluation = (MaskableEvalCallback if maskable else EvalCallback)(
            eval_envs,
            n_eval_episodes=config.eval_episodes,
            eval_freq=max(config.eval_interval // max(config.num_envs, 1), 1),
            callback_on_new_best=SaveBestModel(out / BEST_MODEL_FILE),
            log_path=str(out),
            verbose=0,
        )
        self.info = {"env": config.env_config(), "model": MODEL_FILE, "config": asdict(config)}
        self.checkpoint_size = self.replay_size = 0
        """Bytes of the last resume point, and of its replay buffer."""

    def state(self) -> dict[str, Any]:
        """What a resume point holds beside SB3's own save."""
        model, evaluation = self.model, self.evaluation
        return {
            "step": model.num_timesteps,
            "config": asdict(self.config),
            "prior_fingerprint": self.fingerprint,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": numpy_state(),
                "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
                "action_space": model.action_space.np_random.bit_generator.state,
            },
            "envs": vec_env_state(self.envs),
            "eval_envs": vec_env_state(self.eval_envs),
            "lstm_states": lstm_states(model),
            "model": model_state(model),
            "music": {"next_evaluation": self.music.next_evaluation},
            "evaluation": {
                "n_calls": evaluation.n_calls,
                "best_mean_reward": float(evaluation.best_mean_reward),
                "last_mean_reward": float(evaluation.last_mean_reward),
                "timesteps": [int(t) for t in evaluation.evaluations_timesteps],
                "results": [[float(r) for r in rs] for rs in evaluation.evaluations_results],
                "length": [[int(n) for n in ns] for ns in evaluation.evaluations_length],
            },
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """The environments, callbacks and generators of a resume point's :meth:`state`."""
        set_vec_env_state(self.envs, saved["envs"])
        set_vec_env_state(self.eval_envs, saved["eval_envs"])
        self.music.next_evaluation = int(saved["music"]["next_evaluation"])
        record, evaluation = saved["evaluation"], self.evaluation
        evaluation.n_calls = int(record["n_calls"])
        evaluation.best_mean_reward = record["best_mean_reward"]
        evaluation.last_mean_reward = record["last_mean_reward"]
        evaluation.evaluations_timesteps = list(record["timesteps"])
        evaluation.evaluations_results = [list(r) for r in record["results"]]
        evaluation.evaluations_length = [list(n) for n in record["length"]]
        rng = saved["rng"]
        torch.set_rng_state(rng["torch"])
        set_numpy_state(rng["numpy"])
        version, keys, gauss = rng["python"]
        random.setstate((version, tuple(keys), gauss))
        self.model.action_space.np_random.bit_generator.state = rng["action_space"]
        set_lstm_states(self.model, saved.get("lstm_states"))

    def save(self, with_replay: bool | None) -> None:
        """A resume point of the current step; ``with_replay`` ``None``: as configured."""
        model, step, folder = self.model, self.model.num_timesteps, self.out / CHECKPOINTS
        files = {"model": f"model_{step}_steps.zip", "state": f"state_{step}_steps.pt"}
        with atomic_output(folder / files["model"]) as temporary:
            model.save(temporary)
        save_checkpoint_file(self.state(), folder / files["state"])
        replay = with_replay if with_replay is not None else self.config.checkpoint_replay
        if replay and isinstance(model, OffPolicyAlgorithm):
            files["replay"] = f"replay_buffer_{step}_steps.npz"
            save_replay(model.replay_buffer, folder / files["replay"])
        digests = {role: [name, sha256(folder / name)] for role, name in files.items()}
        manifest = json.dumps({"step": step, "files": digests}, indent=1) + "\n"
        write_text(folder / f"manifest_{step}_steps.json", manifest)
        _prune_replays(folder)
        sizes = {role: (folder / name).stat().st_size for role, name in files.items()}
        self.checkpoint_size, self.replay_size = sum(sizes.values()), sizes.get("replay", 0)


def _prune_replays(folder: Path, keep: int = 2) -> None:
    """Delete the replay buffers of all but the ``keep`` newest resume points that have one."""
    replays = sorted(
        [*folder.glob("replay_buffer_*_steps.npz"), *folder.glob("replay_buffer_*_steps.pkl")],
        key=lambda path: int(path.name.split("_")[2]),
    )
    for path in replays[:-keep]:
        path.unlink(missing_ok=True)


def _progress_bar_available() -> bool:
    """SB3's progress bar needs ``tqdm`` and ``rich``."""
    return all(importlib.util.find_spec(name) for name in ("tqdm", "rich"))

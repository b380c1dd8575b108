"""The RL Tuner's training run: act -> step -> store -> learn, with callbacks for the rest.

:class:`TrainingRun` carries what a run keeps from step to step (the environments and their
current observations, the replay memory, the optimizer, the random generators, the counters) and
writes it all into one checkpoint, ``agent.pt``, atomically: networks, optimizer, replay memory
(without the prior's summaries, recomputed from the pieces), the random generators (numpy,
torch, every sub-environment's), the pieces in progress (the environments' own ``get_state``), the
pending-update counter and the next evaluation and checkpoint steps. ``--resume`` continues bit
for bit as if the run had not stopped; it refuses other settings, except ``steps`` (which also
stretches the epsilon schedule, a fraction of it), ``max_minutes``, ``threads``, ``device`` and
how often to evaluate and checkpoint. SIGINT / SIGTERM finish the step, write the checkpoint and
stop (``musicgym.runs``).

:func:`run_loop` is the loop itself; progress, TensorBoard, evaluations and checkpoints are
:class:`Callback`\\ s of it, as in Stable-Baselines3.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musicgym.agents.common import (
    RUN_FILES,
    EnvConfig,
    check_same_prior,
    load_prior,
    prior_fingerprint,
    read_agent_info,
    set_torch_threads,
    training_reference,
    warn,
    write_agent_info,
)
from musicgym.agents.rl_tuner.agent import CHECKPOINT, RLTuner, check_prior_observation
from musicgym.agents.rl_tuner.config import RENAMED, RESUMABLE, RLTunerConfig, torch_device
from musicgym.agents.rl_tuner.parts import Observations, part_class
from musicgym.agents.rl_tuner.targets import Learner, explore, linear_schedule
from musicgym.errors import CheckpointError, EnvArgumentError, RunFolderError
from musicgym.fileio import save_checkpoint_file
from musicgym.prior import prior_checkpoint
from musicgym.runs import StopSignals, check_output_folder, check_resume_settings, claim_run_folder
from musicgym.tasks import task_of

MEMORY_SHARE = 0.8
"""The replay memory may take at most this share of the memory available at the start."""


class TrainingRun:
    """What a training run carries from step to step, and its checkpoint (see the module
    docstring). The environments reward log p + rules (q, psi) or the rules alone (g: the agent
    adds log p); either way their ``"prior"`` observation gives the prior's summary and log p."""

    def __init__(self, agent: RLTuner, out: Path, checkpoint: dict[str, Any]) -> None:
        config = self.config = agent.config
        self.agent, self.out = agent, out
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.learner = Learner(agent.q_network, agent.target_network, config)
        self.optimizer = self.learner.optimizer
        self.replay = agent.part.make_replay(config.buffer_size, config.num_envs)
        check_output_folder(out, need_bytes=self._checkpoint_bytes())
        self.global_step, self.epsilon = 0, config.start_e
        resumed: dict[str, Any] = checkpoint.get("resume", {})
        if checkpoint:
            resumed = self._restore_learner(checkpoint, resumed)
        self.info = {
            "env": EnvConfig(**{f.name: getattr(config, f.name) for f in fields(EnvConfig)}),
            "checkpoint": CHECKPOINT,
            "config": asdict(config),
        }
        write_agent_info(out, f"rltuner-{config.algo}", **self.info, trained_steps=self.global_step)

        self.envs = agent.make_envs(config.num_envs, training=True)
        check_prior_observation(self.envs)
        self.observations, infos = self.envs.reset(
            seed=config.seed + (0 if resumed else self.global_step)
        )
        self.resetting = np.zeros(config.num_envs, bool)
        """The sub-environments that ended on the last step: the next step resets them
        (Gymnasium's next-step autoreset) and plays none of their actions."""
        self.episode_returns = np.zeros(config.num_envs)
        self.finished_returns = np.zeros(0)
        """The returns of the episodes that ended on the last step."""
        self.updates_due = 0
        self.next_eval = (self.global_step // config.eval_interval + 1) * config.eval_interval
        interval = config.checkpoint_interval
        self.next_checkpoint = (self.global_step // interval + 1) * interval
        if resumed:
            self._restore_pieces(resumed)
        else:
            self.replay.begin(self.observations, infos)

    # ------------------------------------------------------------------------- the four steps
    def act(self, observations: Observations) -> np.ndarray:
        """Every environment's action: epsilon-greedy or Boltzmann on the policy logits, among
        the valid actions."""
        config = self.config
        logits, mask = self.agent.act_logits(observations)
        if config.exploration == "egreedy":
            duration = config.exploration_fraction * config.steps
            self.epsilon = linear_schedule(config.start_e, config.end_e, duration, self.global_step)
        mask = None if mask is None else mask.cpu()
        return explore(logits.cpu(), self.epsilon, self.rng, config, mask)

    def step(self, actions: np.ndarray) -> tuple[Observations, np.ndarray, np.ndarray, dict]:
        """Step the environments; their next observations, rewards, terminations and infos."""
        observations, rewards, terminations, _, infos = self.envs.step(actions)
        return observations, rewards, terminations, infos

    def store(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        next_observations: Observations,
        infos: dict[str, Any],
    ) -> None:
        """Keep the step's transitions (not those of the environments that were resetting) and
        count the steps."""
        stepped = ~self.resetting
        self.replay.store(actions, rewards, terminations, stepped, next_observations, infos)
        self.episode_returns[stepped] += rewards[stepped]
        self.finished_returns = self.episode_returns[terminations]
        self.episode_returns[terminations | ~stepped] = 0.0
        self.resetting = terminations.copy()
        self.observations = next_observations
        new_steps = int(stepped.sum())
        self.global_step += new_steps
        if self.global_step >= self.config.learning_starts:
            self.updates_due += new_steps

    def learn(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The gradient steps now due (one per ``train_frequency`` environment steps); the loss
        and mean Q of each."""
        agent, config = self.agent, self.config
        count, self.updates_due = divmod(self.updates_due, config.train_frequency)
        # All drawn first: an update neither changes the replay memory nor draws from the
        # generator, so these are the batches drawn one before each update.
        draw = self.replay.sample
        batches = [draw(config.batch_size, self.rng, agent.device) for _ in range(count)]
        done = self.learner.steps(batches)
        agent.updates += count
        return done

    # ----------------------------------------------------------------------------- checkpoint
    def save(self, with_replay: bool = True) -> None:
        """One file, everything the rest of the run depends on (see the module docstring); the
        replay memory, the bulk of it, only ``with_replay`` (a resume without it starts with an
        empty replay memory and new pieces)."""
        agent, extra = self.agent, {}
        if agent.part.resumable:
            extra = {
                "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "prior_fingerprint": prior_fingerprint(agent.prior),
                **({"replay": self._replay_state()} if with_replay else {}),
                "resume": {
                    "env": self.envs.unwrapped.get_state(),
                    "episode_returns": torch.from_numpy(self.episode_returns.copy()),
                    "resetting": self.resetting.tolist(),
                    "updates_due": self.updates_due,
                    "next_eval": self.next_eval,
                    "next_checkpoint": self.next_checkpoint,
                    "summary_digest": self.replay.digest(),
                },
            }
        checkpoint = agent.checkpoint(step=self.global_step, updates=agent.updates, **extra)
        save_checkpoint_file(checkpoint, self.out / CHECKPOINT)
        algo = f"rltuner-{self.config.algo}"
        write_agent_info(self.out, algo, **self.info, trained_steps=self.global_step)

    def _replay_state(self) -> dict[str, Any]:
        """The replay memory's state dict; its size goes to ``agent.replay_size``."""
        state = self.replay.state_dict()
        tensors = [value for value in state.values() if torch.is_tensor(value)]
        self.agent.replay_size = sum(t.numel() * t.element_size() for t in tensors)
        return state

    def _checkpoint_bytes(self) -> int:
        """About how large ``agent.pt`` grows: prior, networks and Adam's moments, the replay
        memory without its cached summaries."""
        networks = sum(p.numel() for p in self.agent.q_network.parameters())
        prior = prior_checkpoint(self.agent.prior)["state_dict"].values()
        return 4 * (sum(v.numel() for v in prior) + 4 * networks) + self.replay.nbytes() + 2**20

    def _restore_learner(
        self, checkpoint: dict[str, Any], resumed: dict[str, Any]
    ) -> dict[str, Any]:
        """The optimizer, counters, generators and replay memory of a checkpoint; the state of
        the pieces in progress to restore (none where the replay memory was not saved)."""
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.global_step, self.agent.updates = int(checkpoint["step"]), int(checkpoint["updates"])
        self.rng.bit_generator.state = checkpoint["rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        if resumed and "replay" not in checkpoint:
            warn(
                f"{self.out / CHECKPOINT}: a periodic checkpoint, written without the replay "
                "memory (--checkpoint-replay keeps it there): resumed at step "
                f"{self.global_step} with an empty replay memory and new pieces, not exactly "
                "the run it would have been"
            )
            return {}
        replay = dict(checkpoint.get("replay", {}))
        if "rows" in resumed:  # written before the replay kept its own slots
            replay["slots"] = resumed["rows"]
        if replay:
            self.replay.load_state_dict(replay, self.agent.prior, self.agent.device)
        if not resumed:
            warn(
                f"{self.out / CHECKPOINT}: written by an older musicgym without the state of the "
                "melodies in progress: resumed, but not exactly the run it would have been"
                + ("" if len(self.replay) else " (and with an empty replay memory)")
            )
        return resumed

    def _restore_pieces(self, resumed: dict[str, Any]) -> None:
        """The pieces in progress and the counters: where the run stopped."""
        if resumed["env"]["batch"].get("stepper") is None:
            raise RunFolderError(
                f"{self.out}: written by an older musicgym whose environment ran no prior (G, "
                "or rules only): it cannot resume here; start a new run"
            )
        self.envs.unwrapped.set_state(resumed["env"])
        self.observations = self.envs.unwrapped.observe()
        returns = resumed.get("episode_returns")
        if returns is not None:
            self.episode_returns = returns.numpy().copy()
        self.resetting = np.array(resumed["resetting"], bool)
        self.updates_due = int(resumed["updates_due"])
        self.next_eval, self.next_checkpoint = resumed["next_eval"], resumed["next_checkpoint"]
        if self.replay.digest() != resumed.get("summary_digest"):
            warn(
                f"{self.out}: the prior's summaries recomputed for the replay memory differ in "
                f"the last bits from those computed while acting (device {self.config.device}): "
                "the resumed run is not bit-identical to an uninterrupted one"
            )


# ---------------------------------------------------------------------------------- callbacks
class Callback:
    """A side job of the training loop (as SB3's ``BaseCallback``): every method a no-op."""

    def on_training_start(self, run: TrainingRun) -> None: ...

    def on_step(self, run: TrainingRun, updates: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """After a vector step and its gradient steps ``updates`` (loss, mean Q)."""

    def on_training_end(self, run: TrainingRun) -> None: ...


class ProgressBar(Callback):
    """A tqdm bar of the environment steps, with the loss and mean Q. The run steps its
    ``num_envs`` environments together, so it ends up to ``num_envs - 1`` steps past
    ``config.steps``: the bar's total becomes that count at the end (100%, never past)."""

    def on_training_start(self, run: TrainingRun) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=run.config.steps, initial=run.global_step, unit="step")

    def on_step(self, run: TrainingRun, updates: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        if run.global_step > self.bar.total:  # the last vector step: its whole batch counts
            self.bar.total = run.global_step
        self.bar.update(run.global_step - self.bar.n)
        for index, (loss, mean_q) in enumerate(updates, run.agent.updates - len(updates) + 1):
            if index % 100 == 1:  # the first, then every 100th
                self.bar.set_postfix(loss=f"{loss.item():.3g}", q=f"{mean_q.item():.3g}")

    def on_training_end(self, run: TrainingRun) -> None:
        self.bar.close()


class TensorBoard(Callback):
    """CleanRL's tags: ``charts/episodic_return``, ``losses/td_loss``, ``losses/q_values``,
    ``charts/SPS``, ``charts/epsilon``; and the settings."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_training_start(self, run: TrainingRun) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.out))
        settings = asdict(run.config)
        self.writer.add_text(
            "hyperparameters", "\n".join(f"|{k}|{v}|" for k, v in settings.items())
        )
        self.start_time, self.start_step = time.time(), run.global_step

    def on_step(self, run: TrainingRun, updates: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        step, writer = run.global_step, self.writer
        for value in run.finished_returns:
            writer.add_scalar("charts/episodic_return", value, step)
        for index, (loss, mean_q) in enumerate(updates, run.agent.updates - len(updates) + 1):
            if index % 100 == 1:
                sps = (step - self.start_step) / max(time.time() - self.start_time, 1e-9)
                writer.add_scalar("losses/td_loss", loss.item(), step)
                writer.add_scalar("losses/q_values", mean_q.item(), step)
                writer.add_scalar("charts/SPS", sps, step)
                if run.config.exploration == "egreedy":
                    writer.add_scalar("charts/epsilon", run.epsilon, step)

    def on_training_end(self, run: TrainingRun) -> None:
        self.writer.close()


class Evaluation(Callback):
    """Every ``eval_interval`` steps (and at the last), the music statistics of freshly
    composed pieces under ``music/`` in TensorBoard, some heard and seen there (the task's
    ``statistics`` and ``log_compositions``)."""

    def __init__(self, tensorboard: TensorBoard | None) -> None:
        self.tensorboard = tensorboard
        self.reference: dict[str, Any] | None = None

    def on_training_start(self, run: TrainingRun) -> None:
        if self.tensorboard is not None:  # the KL to the data, where the prior's card has it
            self.reference = training_reference(run.config)

    def on_step(self, run: TrainingRun, updates: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        config = run.config
        if run.global_step < min(run.next_eval, config.steps):
            return
        run.next_eval += config.eval_interval
        if self.tensorboard is None:
            return
        agent, writer, step = run.agent, self.tensorboard.writer, run.global_step
        composed = agent.compose(config.eval_melodies, seed=config.seed)
        task = task_of(config.env)
        statistics = task.statistics(agent.prior, composed, config.judged_key, self.reference)
        for name, value in statistics.items():
            writer.add_scalar(f"music/{name}", value, step)
        task.log_compositions(writer, composed, step)


class Checkpoints(Callback):
    """A checkpoint every ``checkpoint_interval`` steps (with the replay memory only with
    ``checkpoint_replay``) and at the end (with it: ``--resume`` goes on exactly); the last
    one's size is ``agent.checkpoint_size``, its replay memory's ``agent.replay_size``."""

    def on_step(self, run: TrainingRun, updates: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        if run.global_step >= run.next_checkpoint:
            run.next_checkpoint += run.config.checkpoint_interval
            run.save(with_replay=run.config.checkpoint_replay)

    def on_training_end(self, run: TrainingRun) -> None:
        run.save()
        run.agent.checkpoint_size = (run.out / CHECKPOINT).stat().st_size


def default_callbacks(out: Path, progress: bool, log: bool) -> list[Callback]:
    """Progress bar (if ``progress``), TensorBoard and evaluations (if ``log``), checkpoints."""
    tensorboard = TensorBoard(out) if log else None
    callbacks: list[Callback] = [ProgressBar()] if progress else []
    if tensorboard is not None:
        callbacks.append(tensorboard)
    return [*callbacks, Evaluation(tensorboard), Checkpoints()]


# ---------------------------------------------------------------------------------- the loop
def run_loop(run: TrainingRun, callbacks: list[Callback], stop: StopSignals) -> None:
    """Act, step, store, learn, until ``config.steps``, ``config.max_minutes`` or a signal."""
    config = run.config
    start_time, start_step = time.time(), run.global_step
    deadline = start_time + 60 * config.max_minutes if config.max_minutes > 0 else math.inf
    for callback in callbacks:
        callback.on_training_start(run)
    observations = run.observations
    while run.global_step < config.steps and time.time() < deadline and not stop.requested:
        actions = run.act(observations)
        next_observations, rewards, terminations, infos = run.step(actions)
        run.store(actions, rewards, terminations, next_observations, infos)
        updates = run.learn()
        observations = next_observations
        for callback in callbacks:
            callback.on_step(run, updates)
    seconds = max(time.time() - start_time, 1e-9)
    run.agent.steps_per_second = (run.global_step - start_step) / seconds
    for callback in callbacks:
        callback.on_training_end(run)
    run.envs.close()


def train(
    config: RLTunerConfig,
    out: str | Any,
    *,
    resume: bool = False,
    overwrite: bool = False,
    prior: Any = None,
    progress: bool = True,
    log: bool = True,
) -> RLTuner:
    """Train an RL Tuner for ``config.steps`` environment steps of ``config.env``; checkpoints,
    TensorBoard events and ``agent.json`` go to ``out``. ``resume`` continues the run of
    ``out/agent.pt`` exactly up to ``config.steps`` (``config`` must be the run's but for
    :data:`~musicgym.agents.rl_tuner.config.RESUMABLE`; a finished run of a part that does not
    resume is loaded as it is); ``overwrite`` replaces a run there (without either, a folder
    holding a run is refused). ``prior`` overrides
    ``config.prior`` with a loaded model. SIGINT / SIGTERM write a checkpoint and raise
    :class:`musicgym.errors.Interrupted`."""
    torch_device(config.device)
    resumable = part_class(config.env).resumable
    out = Path(out)
    if resume and not resumable:
        if _trained_steps(out) >= config.steps:  # a finished run: nothing to go on with
            return RLTuner.load(out / CHECKPOINT)[0]
        raise RunFolderError(
            f"{out}: --resume is not supported for {config.env} runs yet; start a new run "
            "(--overwrite replaces this one)"
        )
    with (
        claim_run_folder(out, resume=resume, overwrite=overwrite, run_files=RUN_FILES),
        StopSignals() as stop,
    ):
        set_torch_threads(config.threads)
        agent, checkpoint = _agent_of_run(config, out, resume, prior)
        run = TrainingRun(agent, out, checkpoint)
        run_loop(run, default_callbacks(out, progress, log), stop)
        if stop.requested and run.global_step < agent.config.steps:
            hint = "; continue with --resume" if resumable else ""
            raise stop.interrupted(
                f"at step {run.global_step}: checkpoint written to {out / CHECKPOINT}{hint}"
            )
    return agent


def _agent_of_run(
    config: RLTunerConfig, out: Path, resume: bool, prior: Any
) -> tuple[RLTuner, dict[str, Any]]:
    """A new agent, or the run's (its settings checked against ``config``, those of
    :data:`RESUMABLE` taken from ``config``) and its checkpoint."""
    if not resume:
        torch.manual_seed(config.seed)
        agent = RLTuner(config, load_prior(prior if prior is not None else config.prior))
        check_replay_memory(agent)
        return agent, {}
    agent, checkpoint = RLTuner.load(out / CHECKPOINT, device=config.device)
    saved = {RENAMED.get(k, k): v for k, v in checkpoint["config"].items()}
    check_resume_settings(out, saved, config, RESUMABLE)
    if prior is not None:
        check_same_prior(out, prior_fingerprint(agent.prior), load_prior(prior))
    # The run's settings, except how long (and where) to go on.
    session = {k: getattr(config, k) for k in RESUMABLE}
    agent.config = RLTunerConfig(**{**asdict(agent.config), **session})
    check_replay_memory(agent)
    return agent, checkpoint


def _trained_steps(out: Path) -> float:
    """The steps the run in ``out`` reached (its ``agent.json``), 0 where it says none."""
    try:
        steps = read_agent_info(out).get("trained_steps", 0)
    except CheckpointError:
        return 0
    return steps if isinstance(steps, (int, float)) else 0


def check_replay_memory(agent: RLTuner) -> None:
    """A one-line error when the replay memory would not fit in the memory available now."""
    config = agent.config
    need = agent.part.replay_bytes(config.buffer_size)
    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        available = int(meminfo[meminfo.index("MemAvailable:") + 1]) * 1024
    except (OSError, ValueError, IndexError):
        return  # not Linux: nothing to check against
    if need > MEMORY_SHARE * available:
        raise EnvArgumentError(
            f"buffer_size: {config.buffer_size} transitions need {need / 2**30:.1f} GiB of replay "
            f"memory (cached prior summaries), more than {MEMORY_SHARE:.0%} of the "
            f"{available / 2**30:.1f} GiB available; lower --buffer-size"
        )

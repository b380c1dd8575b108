"""RL Tuner speed: training env-steps/s against the environment alone, in one run.

Rows, all on the batched vector env of ``--num-envs`` melodies and one torch thread:

* **env alone**: env-steps/s of random actions, with the prior scoring every step (what any
  agent pays before it learns anything);
* **rltuner-q**: env-steps/s of :func:`musicgym.agents.rl_tuner.train` with one gradient step
  (batch 32) per 4 env steps; its gradient steps/s too. Its environments give it the prior's
  summary and log p (``observation="prior"``), so the prior runs once per step, in the
  environment, and an update runs only the Q-network's MLP over cached states;
* **rltuner-q --compile**: the same with the learner's whole step compiled into one function;
* **rltuner-q --rule-features**: the same with each action's rule outcomes in its value (the
  research recipes' setting; the replay judges a state's outcomes once, when it stores it);
* **rltuner-q --train-readout**: the same with a trainable copy of the prior's readout (the
  Bi-axial's note axis: the whole network but the time axis), whose update scores 38
  candidates of 64 states.

Ratios: each training row / env alone. A training row's clock starts at its
:data:`WARMUP_UPDATES`-th gradient step.

    musicgym bench tuner --prior melody16c,note_rnn   # several priors, one run
    musicgym bench tuner --env ChoraleComposition-v0  # the chorale tuner, prior bach16
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from musicgym.config import ENV_ID, EnvConfig
from musicgym.errors import EnvArgumentError


def env_steps_per_second(
    prior, num_envs: int, steps: int, seed: int = 0, env: str = ENV_ID
) -> float:
    """Env-steps/s of the batched env ``env`` with the prior, on uniformly random valid actions
    (the environment's masks)."""
    import gymnasium as gym

    import musicgym  # noqa: F401  (registers the environment)

    envs = gym.make_vec(
        env, num_envs=num_envs, vectorization_mode="vector_entry_point", prior=prior
    )
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)

    def random_valid() -> np.ndarray:
        masks = envs.unwrapped.action_masks()
        return np.argmax(rng.random(masks.shape) * masks, 1)

    envs.step(random_valid())  # warm-up
    rows = steps // num_envs
    start = time.perf_counter()
    for _ in range(rows):
        envs.step(random_valid())
    seconds = time.perf_counter() - start
    envs.close()
    return rows * num_envs / seconds


WARMUP_UPDATES = 20
"""Gradient steps a training row takes before its clock starts: the replay's first fill,
``learning_starts`` and ``--compile``'s compiling are left out of every row alike."""


def training_rates(
    prior, num_envs: int, steps: int, env: str = ENV_ID, **settings
) -> tuple[float, float]:
    """(env-steps/s, gradient steps/s) of an RL Tuner training run of ``steps`` steps, from its
    :data:`WARMUP_UPDATES`-th gradient step on (from its start in a run too short for them)."""
    from musicgym.agents.rl_tuner import RLTunerConfig
    from musicgym.agents.rl_tuner.agent import RLTuner
    from musicgym.agents.rl_tuner.loop import Callback, TrainingRun, run_loop
    from musicgym.runs import StopSignals

    class SteadyRates(Callback):
        def on_training_start(self, run: TrainingRun) -> None:
            self.start, self.warm = (time.perf_counter(), 0, 0), False

        def on_step(self, run: TrainingRun, updates: list) -> None:
            if not self.warm and run.agent.updates >= WARMUP_UPDATES:
                self.start, self.warm = (
                    (time.perf_counter(), run.global_step, run.agent.updates),
                    True,
                )

        def on_training_end(self, run: TrainingRun) -> None:
            began, step, update = self.start
            seconds = time.perf_counter() - began
            self.rates = (run.global_step - step) / seconds, (run.agent.updates - update) / seconds

    config = RLTunerConfig(
        env=env,
        steps=steps,
        num_envs=num_envs,
        train_frequency=4,
        batch_size=32,
        learning_starts=256,
        eval_interval=10**9,
        checkpoint_interval=10**9,
        buffer_size=max(steps, 1_000),
        **settings,
    )
    rates = SteadyRates()
    with tempfile.TemporaryDirectory() as folder:
        run_loop(TrainingRun(RLTuner(config, prior), Path(folder), {}), [rates], StopSignals())
    return rates.rates


def run(
    prior_name: str = "",
    num_envs: int = 16,
    steps: int = 4_000,
    env: str = ENV_ID,
    compile: bool = True,
) -> dict[str, dict[str, float]]:
    """Time the rows for each prior of ``prior_name`` (comma-separated: several priors in one
    run; default: the environment's) on ``env`` and print them as a Markdown table with the
    ratios (a trainable readout only where the environment's tuner has one; the ``--compile``
    row only with ``compile``)."""
    from musicgym.agents.common import load_prior, set_torch_threads

    set_torch_threads(1)
    print(f"{env}: {num_envs} envs, 1 torch thread, {steps} env steps a row")
    print("| prior | row | env-steps/s | gradient steps/s | / env alone |")
    print("| --- | --- | ---: | ---: | ---: |")
    figures = {}
    for name in (prior_name or EnvConfig(env=env).prior).split(","):
        prior = load_prior(name)
        env_rate = env_steps_per_second(prior, num_envs, steps, env=env)
        fast, fast_updates = training_rates(prior, num_envs, steps, env)
        rows = [
            ("batched env alone (random valid actions)", env_rate, float("nan")),
            ("rltuner-q, 1 update (batch 32) per 4 env steps", fast, fast_updates),
        ]
        compiled = compiled_updates = float("nan")
        if compile:
            compiled, compiled_updates = training_rates(prior, num_envs, steps, env, compile=True)
            rows.append(("rltuner-q --compile, same", compiled, compiled_updates))
        rules, rules_updates = training_rates(prior, num_envs, steps, env, rule_features=True)
        rows.append(("rltuner-q --rule-features, same", rules, rules_updates))
        readout = readout_updates = float("nan")
        try:  # about 20x slower updates: a shorter run tells as much
            readout, readout_updates = training_rates(
                prior, num_envs, max(steps // 8, 512), env, train_readout=True
            )
            rows.append(("rltuner-q --train-readout, same", readout, readout_updates))
        except EnvArgumentError as error:
            print(f"(no --train-readout row: {error})")
        for label, rate, updates in rows:
            updates_text = "" if np.isnan(updates) else f"{updates:.1f}"
            print(f"| {name} | {label} | {rate:.0f} | {updates_text} | {rate / env_rate:.2f}x |")
        figures[name] = {
            "env": env_rate,
            "rltuner_q": fast,
            "rltuner_q_updates": fast_updates,
            "readout": readout,
            "readout_updates": readout_updates,
            "ratio": fast / env_rate,
            "rltuner_q_compile": compiled,
            "rltuner_q_compile_updates": compiled_updates,
            "ratio_compile": compiled / env_rate,
            "rule_features": rules,
            "rule_features_updates": rules_updates,
        }
    for name, figure in figures.items():
        compiled = "" if not compile else f", {figure['ratio_compile']:.2f}x with --compile"
        print(f"{name}: rltuner-q at {figure['ratio']:.2f}x the env alone{compiled}")
    return figures


if __name__ == "__main__":
    run()

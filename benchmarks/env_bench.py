"""Environment speed: env-steps/s of MusicComposition-v0 in its several forms, in one run.

Rows: (a) one env; (b) ``SyncVectorEnv`` of ``n`` single envs; (c) the batched vector env of
``n`` (one prior call per step for all sub-environments); (d) the rules-only env (``prior=None``);
(e) the prior's own calls alone, for one melody and for ``n`` (per step, what an env of that
size asks of its prior: ``log p`` of the 38 next tokens, then playing one; the env's ceiling on
this prior); and the **naive limit**: the float32 matrix-multiply FLOP/s measured in the same run
divided by the FLOPs of scoring all 38 candidate frames independently over every note (``38 x``
the prior's ``flops_per_frame()``), in env-steps/s. Ratios: (c) / (b) at each ``n``, and (a),
(c) and (e) / naive limit.

The prior is the shipped ``bach16`` (``--prior``: another shipped name or a checkpoint); where
its checkpoint is missing, a randomly initialised Bi-axial LSTM of the same default size (the
timing does not depend on the weights). Actions are uniform random tokens drawn in advance, the
same for every row.

    musicgym bench env                # or: python -m musicgym.benchmarks.env_bench

``musicgym bench env --env ChoraleComposition-v0`` times the chorale env's decisions/s instead
(:func:`run_chorales`): one env, ``SyncVectorEnv`` and the batched vector env of ``n``, each
taking uniformly random valid actions (a seeded generator, the same policy in every row).

``python -m musicgym.benchmarks.env_bench threads`` times the thread trap (:func:`run_threads`):
one ``gym.make("MusicComposition-v0")`` with torch's default thread count and with one, idle and
beside one busy process that this benchmark starts and stops.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from musicgym.envs.melody import MusicCompositionEnv, MusicCompositionVectorEnv
from musicgym.envs.stepper import TokenStepper
from musicgym.prior import MelodyPrior

NUM_CANDIDATES = 38
DEFAULT_THREADS = torch.get_num_threads()
"""Torch's own thread count (every core), read before anything here sets it."""


def load_bench_prior(name: str = "bach16") -> tuple[MelodyPrior, str]:
    """The prior to time and a description of it: a shipped name or a checkpoint path (one line
    if it is neither); for the default ``bach16`` without its checkpoint, a randomly initialised
    model of the default configuration."""
    from musicgym.prior import resolve_prior
    from musicgym.priors.model import BiaxialConfig, BiaxialLSTM
    from musicgym.priors.registry import shipped_priors

    if name == "bach16" and name not in shipped_priors():
        model = BiaxialLSTM(BiaxialConfig()).eval().requires_grad_(False)
        return model, f"random-weight BiaxialLSTM, default config ({name}.pt not found)"
    return resolve_prior(name), f"shipped {name}.pt" if name in shipped_priors() else name


def matmul_flops_per_second(size: int = 256, seconds: float = 1.0) -> float:
    """Float32 ``size x size`` matrix-multiply FLOP/s on this machine (best of repeated bursts)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(20):
            torch.mm(a, b)
        best = max(best, 20 * 2 * size**3 / (time.perf_counter() - start))
    return best


def _steps_per_second(
    step: Callable[[np.ndarray], object], actions: np.ndarray, seconds: float
) -> float:
    """Env-steps/s of ``step`` called on rows of ``actions`` for about ``seconds``."""
    step(actions[0])  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        step(actions[1 + done % (len(actions) - 1)])
        done += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done * actions.shape[1] / elapsed


def _single_env_rate(env: gym.Env, actions: np.ndarray, seconds: float) -> float:
    env.reset(seed=0)

    def step(action: np.ndarray) -> None:
        *_, terminated, truncated, _ = env.step(int(action[0]))
        if terminated or truncated:
            env.reset()

    return _steps_per_second(step, actions[:, :1], seconds)


def _vector_env_rate(envs: gym.vector.VectorEnv, actions: np.ndarray, seconds: float) -> float:
    envs.reset(seed=0)
    return _steps_per_second(envs.step, actions, seconds)


def _prior_rate(prior: MelodyPrior, actions: np.ndarray, seconds: float, length: int) -> float:
    """Env-steps/s of the prior's calls alone for ``actions.shape[1]`` melodies of ``length``
    tokens: each step ``log p`` of the 38 next tokens and playing one (a :class:`TokenStepper`,
    as the env steps its prior), each melody restarted after ``length`` tokens."""
    batch = actions.shape[1]
    stepper = TokenStepper(prior, batch)
    played = 0

    def step(tokens: np.ndarray) -> None:
        nonlocal played
        if played == length:
            stepper.restart(range(batch), [[]] * batch)
            played = 0
        stepper.action_log_probs()
        stepper.play(torch.as_tensor(tokens))
        played += 1

    return _steps_per_second(step, actions, seconds)


def run(
    num_envs: Sequence[int] = (8, 64),
    seconds: float = 3.0,
    threads: int = 1,
    length: int = 32,
    prior_name: str = "bach16",
) -> dict[str, float]:
    """Time every row and print the table with its ratios; returns the figures by row name."""
    torch.set_num_threads(threads)
    prior, prior_description = load_bench_prior(prior_name)
    flops_per_frame = getattr(getattr(prior, "config", None), "flops_per_frame", None)
    flops_per_step = NUM_CANDIDATES * flops_per_frame() if flops_per_frame else None  # Bi-axial
    actions = np.random.default_rng(0).integers(0, NUM_CANDIDATES, (256, max(num_envs)))
    kwargs = {"length": length, "prior": prior}

    results: dict[str, float] = {}
    flops = matmul_flops_per_second()
    if flops_per_step:
        results["naive limit"] = flops / flops_per_step
    results["(a) one env"] = _single_env_rate(MusicCompositionEnv(**kwargs), actions, seconds)
    for n in num_envs:
        sync = gym.vector.SyncVectorEnv([lambda: MusicCompositionEnv(**kwargs)] * n)
        results[f"(b) SyncVectorEnv x{n}"] = _vector_env_rate(sync, actions[:, :n], seconds)
        batched = MusicCompositionVectorEnv(n, **kwargs)
        results[f"(c) batched vector env x{n}"] = _vector_env_rate(batched, actions[:, :n], seconds)
    rules_only = MusicCompositionEnv(length=length, prior=None)
    results["(d) rules-only env"] = _single_env_rate(rules_only, actions, seconds)
    for n in (1, *num_envs):
        rate = _prior_rate(prior, actions[:, :n], seconds, length)
        results[f"(e) the prior's calls alone x{n}"] = rate

    print(f"MusicComposition-v0 env-steps/s; prior: {prior_description}")
    print(
        f"torch threads {threads}, {seconds:g} s per row, melody length {length}, "
        f"matmul {flops / 1e9:.1f} GFLOP/s"
        + (f", naive scoring {flops_per_step / 1e6:.1f} MFLOP/step" if flops_per_step else "")
    )
    print(f"{'row':<32} {'steps/s':>10}")
    for name, rate in results.items():
        print(f"{name:<32} {rate:>10.1f}")
    naive = results.get("naive limit")
    for n in (1, *num_envs):
        ceiling = results[f"(e) the prior's calls alone x{n}"]
        if n == 1:
            env, line = results["(a) one env"], "x1: "
        else:
            env, sync = results[f"(c) batched vector env x{n}"], results[f"(b) SyncVectorEnv x{n}"]
            line = f"x{n}: (c)/(b) = {env / sync:.2f}x, "
        line += f"(a or c)/(e) = {env / ceiling:.2f}x"
        if naive:
            line += f", /naive limit: {'(a)' if n == 1 else '(c)'} {env / naive:.2f}x"
            line += f", (e) {ceiling / naive:.2f}x"
        print(line)
    return results


def _random_valid(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random valid action per row of ``masks`` ``(n, A)``."""
    return np.array([rng.choice(np.flatnonzero(mask)) for mask in masks])


def _chorale_rate(env: gym.Env | gym.vector.VectorEnv, seconds: float) -> float:
    """Decisions/s of ``env`` (single or vector) taking random valid actions for ``seconds``."""
    rng = np.random.default_rng(0)
    vector = isinstance(env, gym.vector.VectorEnv)
    _, infos = env.reset(seed=0)
    masks = infos["action_mask"] if vector else infos["action_mask"][None]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        actions = _random_valid(masks, rng)
        if vector:
            _, _, _, _, infos = env.step(actions)
            masks = infos["action_mask"]
        else:
            _, _, terminated, _, info = env.step(int(actions[0]))
            if terminated:
                _, info = env.reset()
            masks = info["action_mask"][None]
        done += len(actions)
    return done / (time.perf_counter() - start)


def run_chorales(
    num_envs: Sequence[int] = (8, 64),
    seconds: float = 3.0,
    threads: int = 1,
    prior_name: str = "bach16",
) -> dict[str, float]:
    """Decisions/s of ``ChoraleComposition-v0`` in its forms; prints the table and the ratios of
    the batched vector env to the single env and to ``SyncVectorEnv``."""
    from musicgym.envs.chorale import ChoraleCompositionEnv, ChoraleCompositionVectorEnv

    torch.set_num_threads(threads)
    prior, prior_description = load_bench_prior(prior_name)
    results = {"(a) one env": _chorale_rate(ChoraleCompositionEnv(prior=prior), seconds)}
    for n in num_envs:
        sync = gym.vector.SyncVectorEnv([lambda: ChoraleCompositionEnv(prior=prior)] * n)
        results[f"(b) SyncVectorEnv x{n}"] = _chorale_rate(sync, seconds)
        batched = ChoraleCompositionVectorEnv(n, prior=prior)
        results[f"(c) batched vector env x{n}"] = _chorale_rate(batched, seconds)
    print(f"ChoraleComposition-v0 decisions/s; prior: {prior_description}")
    print(f"torch threads {threads}, {seconds:g} s per row, random valid actions")
    print(f"{'row':<32} {'decisions/s':>12}")
    for name, rate in results.items():
        print(f"{name:<32} {rate:>12.1f}")
    single = results["(a) one env"]
    for n in num_envs:
        batched, sync = results[f"(c) batched vector env x{n}"], results[f"(b) SyncVectorEnv x{n}"]
        print(f"x{n}: (c)/(a) = {batched / single:.2f}x, (c)/(b) = {batched / sync:.2f}x")
    return results


def _made_env_rate(env_threads: int | None, torch_threads: int, seconds: float) -> float:
    """Steps/s of ``gym.make("MusicComposition-v0", threads=env_threads)`` (its default prior)
    in a process on ``torch_threads`` torch threads."""
    torch.set_num_threads(torch_threads)
    env = gym.make("MusicComposition-v0", threads=env_threads)
    actions = np.random.default_rng(0).integers(0, NUM_CANDIDATES, (256, 1))
    return _single_env_rate(env, actions, seconds)


def run_threads(seconds: float = 3.0, rounds: int = 3) -> dict[str, float]:
    """The thread trap: one env's steps/s with torch's default threads and ``threads=None`` (the
    env leaves torch alone), with the default and ``threads=1`` (the env's default: one thread
    around its prior calls), and in a process set to one thread; idle, then beside one busy
    process (``python -c "while True: pass"``, started and stopped here). Median of ``rounds``
    alternating rounds; each row's ratio to the one-thread process in the same condition."""
    import musicgym  # noqa: F401  (registers the environments)

    rows = {
        f"torch default ({DEFAULT_THREADS}), threads=None": (None, DEFAULT_THREADS),
        f"torch default ({DEFAULT_THREADS}), threads=1": (1, DEFAULT_THREADS),
        "torch.set_num_threads(1), threads=None": (None, 1),
    }
    results: dict[str, float] = {}
    for condition in ("idle", "one busy process"):
        busy = None
        if condition != "idle":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            rates: dict[str, list[float]] = {name: [] for name in rows}
            for _ in range(rounds):
                for name, (env_threads, torch_threads) in rows.items():
                    rates[name].append(_made_env_rate(env_threads, torch_threads, seconds))
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        one = float(np.median(rates["torch.set_num_threads(1), threads=None"]))
        print(f"{condition}: MusicComposition-v0 steps/s, median of {rounds} x {seconds:g} s")
        for name, values in rates.items():
            rate = float(np.median(values))
            results[f"{condition}: {name}"] = rate
            print(f"  {name:<42} {rate:>8.1f}  {rate / one:5.2f}x")
    torch.set_num_threads(DEFAULT_THREADS)
    return results


if __name__ == "__main__":
    if sys.argv[1:] == ["threads"]:
        run_threads()
    else:
        run()

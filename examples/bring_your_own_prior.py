"""Tutorial 3: bring your own prior, here a bigram model of melody tokens, and tune against it.

Anything that implements :class:`musicgym.prior.MelodyPrior` is a prior: over a batch of melodies
it ``play``\\ s the next tokens, gives ``action_log_probs`` (``log p(a|s)`` of the 38 actions,
normalised) and a ``summary`` of each melody (what an agent may observe). The environment then
rewards ``log p(a|s)`` of your model plus the rules, and any agent trains on it.

    python examples/bring_your_own_prior.py --steps 5000
    python examples/bring_your_own_prior.py --midi my_tunes/     # learn the bigram from MIDI
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import torch

import musicgym  # noqa: F401  (registers the environments)
from musicgym.music.midi import read_melody
from musicgym.music.tokens import LOWEST_MELODY_PITCH, NUM_MELODY_PITCHES, NUM_TOKENS
from musicgym.prior import MelodyPrior

# Two folk tunes as tokens (0 rest, 1 hold, 2 + semitones above C3; 14 is C4), 16th notes.
TUNES = [
    [14, 1, 14, 1, 21, 1, 21, 1, 23, 1, 23, 1, 21, 1, 1, 1,
     19, 1, 19, 1, 18, 1, 18, 1, 16, 1, 16, 1, 14, 1, 1, 1],
    [16, 1, 16, 1, 17, 1, 19, 1, 19, 1, 17, 1, 16, 1, 14, 1,
     12, 1, 12, 1, 14, 1, 16, 1, 16, 1, 1, 14, 14, 1, 1, 1],
]  # fmt: skip


class BigramPrior:
    """``p(next token | last token)``, counted from melodies with add-one smoothing."""

    lowest_pitch, num_pitches, resolution = LOWEST_MELODY_PITCH, NUM_MELODY_PITCHES, 4
    summary_shape = (1, NUM_TOKENS + 1)  # one-hot of the last token (or of "none yet")

    def __init__(self, melodies: list[list[int]]) -> None:
        counts = torch.ones(NUM_TOKENS + 1, NUM_TOKENS)  # row 0: before the first token
        for melody in melodies:
            for last, token in zip([-1, *melody], melody):
                counts[last + 1, token] += 1
        self.log_table = (counts / counts.sum(1, keepdim=True)).log()  # (39, 38)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return torch.full((batch_size,), -1)  # (B,): the last token, -1 for none

    def play(self, state, tokens, sounding, transpose) -> torch.Tensor:
        return tokens.long().clone()

    def action_log_probs(self, state, sounding, transpose) -> torch.Tensor:
        return self.log_table[state + 1]  # (B, 38); exp of a row sums to 1

    def summary(self, state) -> torch.Tensor:
        return torch.eye(NUM_TOKENS + 1)[state + 1][:, None, :]  # (B, 1, 39)

    def select_state(self, state, index) -> torch.Tensor:
        return state[index]

    def assign_state(self, state, index, new) -> torch.Tensor:
        state = state.clone()
        state[index] = new
        return state


def main(steps: int = 5_000, midi: str | Path | None = None, seed: int = 0) -> float:
    """Fit the bigram, check it is a prior, train PPO against it; the mean episode reward of
    the trained policy (10 melodies)."""
    from stable_baselines3 import PPO

    melodies = [read_melody(path) for path in sorted(Path(midi).glob("*.mid"))] if midi else TUNES
    prior = BigramPrior(melodies)
    assert isinstance(prior, MelodyPrior)  # the protocol is runtime-checkable
    env = gym.make("MusicComposition-v0", prior=prior)  # a loaded model: no checkpoint needed
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=seed, device="cpu")
    model.learn(total_timesteps=steps)
    returns = []
    for episode in range(10):
        observation, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(observation, deterministic=True)
            observation, reward, terminated, truncated, info = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    print(f"prior part of the last melody: {info['rewards']['prior']:.2f} (log p of its last step)")
    print(f"mean return of the trained policy: {sum(returns) / len(returns):.2f}")
    print("melody:", env.unwrapped.tokens)
    return sum(returns) / len(returns)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument("--midi", help="a folder of monophonic MIDI files to count from")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.steps, args.midi, args.seed)

"""Tutorial 1: write a reward rule and plug it into MusicComposition-v0.

A rule is a small class: a name, a default weight and ``__call__(context) -> float``, called for
every action with the melody so far (``context.composition``), the action, the melody's length
and its key. Registered once, it is available by name to ``gym.make(..., rules=...)``, the
agents and the CLI (a package can ship it through the entry-point group ``musicgym.rules``).

    python examples/plug_a_rule.py --episodes 20
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import musicgym  # noqa: F401  (registers the environments)
from musicgym.music.tokens import is_pitch_token, token_to_pitch
from musicgym.rules import RewardRule, RuleContext, register_rule


class StepwiseMotion(RewardRule):
    """+1 for a note a tone or a semitone from the last note played: singable lines."""

    name, default_weight = "stepwise_motion", 1.0

    def __call__(self, context: RuleContext) -> float:
        if not is_pitch_token(context.action):
            return 0.0
        earlier = [token for token in context.composition if is_pitch_token(token)]
        if not earlier:
            return 0.0
        step = abs(token_to_pitch(context.action) - token_to_pitch(earlier[-1]))
        return 1.0 if 1 <= step <= 2 else 0.0


def main(episodes: int = 20, seed: int = 0) -> dict[str, float]:
    """Play random melodies with the rule plugged in; the mean of each reward part per episode."""
    register_rule(StepwiseMotion(), overwrite=True)  # overwrite: main() may run twice
    # The rule beside two built-in ones, each with its weight; prior=None: the rules alone
    # (pass a prior's name, e.g. "melody16c", to add its log p as the "prior" part).
    env = gym.make(
        "MusicComposition-v0",
        prior=None,
        rules={"key": 1.0, "tonic": 3.0, "stepwise_motion": 2.0},
    )
    totals: dict[str, list[float]] = {}
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        parts: dict[str, float] = {}
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            for name, value in info["rewards"].items():  # every part by name
                parts[name] = parts.get(name, 0.0) + value
            done = terminated or truncated
        for name, value in parts.items():
            totals.setdefault(name, []).append(value)
    means = {name: float(np.mean(values)) for name, values in totals.items()}
    for name, value in means.items():
        print(f"{name:>16}: {value:8.3f} per melody")
    return means


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.episodes, args.seed)

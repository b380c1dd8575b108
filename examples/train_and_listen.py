"""Tutorial 2: tune the shipped melody prior with the RL Tuner, then listen to what it composes.

The RL Tuner (Jaques et al. 2017) starts as the prior (its Q-network is the prior's log p plus a
zero-initialised MLP) and learns to follow the music-theory rules while staying close to it.
Training writes a run folder (checkpoint, TensorBoard events); the agent then composes melodies,
written as MIDI and WAV files, with a static page to hear them beside the prior's.

    python examples/train_and_listen.py --steps 20000 --out runs/tutorial   # a few minutes
    tensorboard --logdir runs/tutorial                                      # charts/, music/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from musicgym import agents
from musicgym.agents.rl_tuner import RLTunerConfig, train
from musicgym.benchmarks.gallery import write_gallery
from musicgym.metrics import evaluate_melodies, format_statistic
from musicgym.tasks import MELODY


def main(steps: int = 20_000, out: str | Path = "runs/tutorial", pieces: int = 8) -> Path:
    """Train, compose ``pieces`` melodies with the tuned agent and with the prior, write them
    under ``out/listen/`` and return the page that plays them."""
    out = Path(out)
    # Every hyperparameter is a field of RLTunerConfig (`musicgym agent train --help` lists
    # them); the defaults are the published ones. A short run learns from its 1st step here.
    config = RLTunerConfig(
        steps=steps,
        prior="melody16c",
        learning_starts=min(1_000, steps // 4),
        eval_interval=max(steps, 1),
        checkpoint_interval=max(steps, 1),
    )
    tuned = train(config, out / "run", overwrite=True, progress=steps >= 5_000)
    print(f"trained {steps} steps at {tuned.steps_per_second:.0f} steps/s")

    prior = agents.load("prior")  # samples the shipped melody16c, as the environment does
    for name, agent in (("tuned", tuned), ("prior", prior)):
        melodies = agent.compose(pieces, seed=0)
        folder = out / "listen" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, melody in enumerate(melodies):
            MELODY.write_midi(melody, folder / f"melody_{i:03d}.mid")
        MELODY.write_json(melodies, folder / MELODY.pieces_file)
        statistics = evaluate_melodies(melodies)
        out_of_key = format_statistic(statistics["notes_not_in_key"], ".1f")
        tonic = format_statistic(statistics["melodies_starting_with_tonic"], ".0f")
        print(f"{name}: notes not in key {out_of_key}%, starting on the tonic {tonic}%")
    # WAV files and piano rolls beside the MIDI files, and one page to hear them.
    page = write_gallery(out / "listen" / "tuned", title="musicgym tutorial: the tuned agent")
    write_gallery(out / "listen" / "prior", title="musicgym tutorial: the prior")
    print(f"listen: open {page}")
    return page


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--out", default="runs/tutorial")
    parser.add_argument("--pieces", type=int, default=8)
    args = parser.parse_args()
    main(args.steps, args.out, args.pieces)

"""The ``agent`` command group of ``musicgym`` (added through the ``musicgym.cli`` entry point).

``musicgym agent train --algo ALGO --steps N --out DIR`` trains any algorithm of
:data:`agents.ALGORITHMS`; its options are generated from :class:`~agents.rl_tuner.RLTunerConfig`
and :class:`~agents.baselines.SB3Config` (each applies to the algorithms of its dataclass; an
option left out keeps that dataclass's default). ``musicgym agent compose --agent PATH --n 16 --out
DIR [--png] [--wav]`` writes the melodies of any agent as MIDI files (and piano rolls, and WAV
files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``agent`` group: ``train`` and ``compose``."""
    from agents import ALGORITHMS
    from agents.baselines import SB3Config
    from agents.rl_tuner import RLTunerConfig
    from musicgym.cli import add_dataclass_arguments
    from musicgym.midi_cli import add_audio_arguments

    agent = subparsers.add_parser("agent", help="train agents and compose with them")
    commands = agent.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train an agent",
        description="Train an agent on MusicComposition-v0. rltuner-* options apply to the RL "
        "Tuner, the SB3 ones (--hyperparameters, --eval-episodes) to sb3-*; an option left out "
        "keeps the chosen algorithm's default.",
    )
    train.add_argument("--algo", choices=ALGORITHMS, required=True, help="what to train")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out up to --steps"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_dataclass_arguments(train, RLTunerConfig, exclude=("algo",))
    rl_tuner_fields = {f.name for f in dataclasses.fields(RLTunerConfig)}
    add_dataclass_arguments(train, SB3Config, exclude=tuple(rl_tuner_fields))
    dataclass_fields = rl_tuner_fields | {f.name for f in dataclasses.fields(SB3Config)}
    for action in train._actions:  # unset options keep the chosen dataclass's default
        if action.dest in dataclass_fields:
            action.default = argparse.SUPPRESS
    train.set_defaults(func=_train)

    compose = commands.add_parser("compose", help="compose melodies with an agent")
    compose.add_argument(
        "--agent", required=True, help="a run folder, an RL Tuner checkpoint, 'prior' or 'random'"
    )
    compose.add_argument("--n", type=int, default=16, help="melodies to compose (default: 16)")
    compose.add_argument("--out", type=Path, required=True, help="folder for the MIDI files")
    compose.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    compose.add_argument("--greedy", action="store_true", help="always the best action")
    compose.add_argument("--length", type=int, default=32, help="tokens, for prior and random")
    compose.add_argument("--png", action="store_true", help="also write piano rolls")
    compose.add_argument("--wav", action="store_true", help="also write the sound of each (WAV)")
    add_audio_arguments(compose)
    compose.set_defaults(func=_compose)


def _train(args: argparse.Namespace) -> int:
    from agents.common import read_agent_info
    from musicgym.cli import dataclass_from_args
    from musicgym.errors import EnvArgumentError

    family, _, algo = args.algo.partition("-")
    progress = not args.no_progress
    try:
        if family == "rltuner":
            from agents.rl_tuner import RLTunerConfig, train

            config = dataclass_from_args(RLTunerConfig, args, algo=algo)
            agent = train(config, args.out, resume=args.resume, progress=progress)
            rate = f", {agent.steps_per_second:.1f} steps/s"
        else:
            from agents.baselines import SB3Config, train
            from agents.rl_tuner import RLTunerConfig

            sb3_fields = {f.name for f in dataclasses.fields(SB3Config)}
            ignored = sorted(
                f"--{f.name.replace('_', '-')}"
                for f in dataclasses.fields(RLTunerConfig)
                if f.name not in sb3_fields and hasattr(args, f.name)
            )
            if ignored:
                raise EnvArgumentError(
                    f"{', '.join(ignored)}: RL Tuner options; for {args.algo} pass SB3's own "
                    "arguments as --hyperparameters JSON"
                )
            config = dataclass_from_args(SB3Config, args, algo=algo)
            train(config, args.out, resume=args.resume, progress=progress)
            rate = ""
    except ValueError as error:
        raise EnvArgumentError(str(error)) from None
    steps = read_agent_info(args.out).get("trained_steps", config.steps)
    print(f"{args.algo}: {steps} steps in {args.out}{rate}")
    return 0


def _compose(args: argparse.Namespace) -> int:
    import agents
    from musicgym.metrics import STATISTICS, evaluate_melodies
    from musicgym.midi import write_melody

    if args.wav:  # a bad soundfont or synthesizer fails before the agent composes
        from musicgym.audio import choose_synthesizer

        synthesizer, soundfont = choose_synthesizer(args.synthesizer, args.soundfont)
    agent = agents.load(args.agent, length=args.length)
    melodies = agent.compose(args.n, seed=args.seed, greedy=args.greedy)
    args.out.mkdir(parents=True, exist_ok=True)
    midi_paths = [args.out / f"melody_{i:03d}.mid" for i in range(len(melodies))]
    for melody, path in zip(melodies, midi_paths):
        write_melody(melody, path)
    (args.out / "melodies.json").write_text(json.dumps(melodies) + "\n")
    if args.wav:
        from musicgym.audio import SOUNDFONT_HINT, write_wavs_beside

        write_wavs_beside(
            midi_paths, program=args.program, soundfont=soundfont, synthesizer=synthesizer
        )
        how = f"FluidSynth with {soundfont}" if soundfont else f"plain synthesis ({SOUNDFONT_HINT})"
        print(f"WAV files beside the MIDI files: {how}")
    if args.png:
        from musicgym.pianoroll import save_piano_roll
        from musicgym.tokens import tokens_to_note_state

        for i, melody in enumerate(melodies):
            save_piano_roll(
                tokens_to_note_state(melody), args.out / f"melody_{i:03d}.png", f"melody {i}"
            )
    print(f"{len(melodies)} melodies in {args.out}")
    for name, value in evaluate_melodies(melodies).items():
        print(f"  {STATISTICS[name]:<36} {value:8.2f}")
    return 0

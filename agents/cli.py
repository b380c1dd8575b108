"""The ``agent`` command group of ``musicgym`` (added through the ``musicgym.cli`` entry point).

``musicgym agent train --algo ALGO --steps N --out DIR`` trains any algorithm of
:data:`musicgym.agents.registry.ALGORITHMS`; its options are generated from the algorithms' settings
dataclasses (:class:`~musicgym.agents.rl_tuner.RLTunerConfig`,
:class:`~musicgym.agents.baselines.SB3Config`; each applies to the algorithms of its dataclass; an
option left out keeps that dataclass's default, or with ``--resume`` the run's setting). A folder
that holds a run is refused unless ``--resume`` (go on with it) or ``--overwrite`` (replace it).
``musicgym agent compose --agent PATH --n 16 --out DIR [--png] [--wav]`` writes the melodies (or
chorales) of any agent as MIDI files (and piano rolls, and WAV files).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``agent`` group: ``train`` and ``compose``."""
    from musicgym.agents.registry import ALGORITHMS, config_classes
    from musicgym.arguments import (
        add_audio_arguments,
        add_dataclass_arguments,
        non_negative_int,
        positive_int,
    )
    from musicgym.config import ENV_DEFAULTS, ENV_ID

    agent = subparsers.add_parser("agent", help="train agents and compose with them")
    commands = agent.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train an agent",
        description="Train an agent on MusicComposition-v0 (or --env ChoraleComposition-v0). "
        "Each option applies to the "
        "algorithms whose settings have it (rltuner-*: the RL Tuner's; sb3-*: --hyperparameters, "
        "--eval-episodes, ...); an option left out keeps the chosen algorithm's default.",
    )
    train.add_argument("--algo", choices=ALGORITHMS, required=True, help="what to train")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out up to --steps, exactly as if it had not stopped; only "
        "--steps, --max-minutes, --threads (and for the RL Tuner --device and the evaluation "
        "and checkpoint intervals) may differ from the run's settings",
    )
    train.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (its files only)"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    added = {"algo"}  # --algo names the algorithm and its fixed settings
    for cls in config_classes():
        add_dataclass_arguments(train, cls, exclude=tuple(added), leave_unset=True)
        added |= {f.name for f in dataclasses.fields(cls)}
    train.set_defaults(func=_run_train)

    compose = commands.add_parser(
        "compose",
        help="compose pieces with an agent",
        description="Compose pieces (melodies or chorales, the agent's environment says which) "
        "with a trained agent, the prior or a random agent, and write them as MIDI files "
        "(optionally piano rolls and WAV files) into --out, with their statistics.",
    )
    compose.add_argument(
        "--agent", required=True, help="a run folder, an RL Tuner checkpoint, 'prior' or 'random'"
    )
    compose.add_argument(
        "--n", type=positive_int, default=16, help="pieces to compose (default: 16)"
    )
    compose.add_argument(
        "--out", type=Path, required=True, help="folder for the MIDI files (new or empty)"
    )
    compose.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a folder that holds files (the pieces of an earlier compose there "
        "are deleted first, nothing else)",
    )
    compose.add_argument(
        "--seed", type=non_negative_int, default=0, help="random seed (default: 0)"
    )
    compose.add_argument("--greedy", action="store_true", help="always the best action")
    compose.add_argument(
        "--length", type=positive_int, default=32, help="tokens, for prior and random"
    )
    compose.add_argument(
        "--env",
        choices=ENV_DEFAULTS,
        default=ENV_ID,
        help="the environment of prior and random (a run folder knows its own)",
    )
    compose.add_argument(
        "--bars", type=positive_int, default=4, help="bars of a chorale, for prior and random"
    )
    compose.add_argument("--png", action="store_true", help="also write piano rolls")
    compose.add_argument("--wav", action="store_true", help="also write the sound of each (WAV)")
    add_audio_arguments(compose)
    compose.set_defaults(func=_compose)


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of the run in ``--out`` that ``--resume`` continues (one line if it is of
    another algorithm)."""
    from musicgym.agents.common import read_agent_info
    from musicgym.errors import RunFolderError
    from musicgym.fileio import load_checkpoint_file

    info = read_agent_info(args.out)
    if info["algo"] != args.algo:
        raise RunFolderError(
            f"{args.out}: --resume with other settings than the run's: --algo {info['algo']} -> "
            f"{args.algo}; resume with --algo {info['algo']}, or start a new run"
        )
    if "config" in info:
        return info["config"]
    if args.algo.startswith("rltuner-"):  # a run of an older version: its checkpoint has them
        return load_checkpoint_file(args.out / info.get("checkpoint", "agent.pt"))["config"]
    return info.get("env", {})


def _run_train(args: argparse.Namespace) -> int:
    from musicgym.agents.common import read_agent_info
    from musicgym.agents.registry import ALGORITHMS, config_classes
    from musicgym.arguments import option_error
    from musicgym.errors import ArgumentError

    algorithm = ALGORITHMS[args.algo]
    cls = algorithm.config_class
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    foreign = sorted(
        {
            f"--{f.name.replace('_', '-')}"
            for other in config_classes()
            for f in dataclasses.fields(other)
            if f.name not in names and f.name != "algo" and hasattr(args, f.name)
        }
    )
    if foreign:
        raise ArgumentError(f"{', '.join(foreign)}: not options of {args.algo}")
    saved = _run_settings(args) if args.resume else {}
    settings = {k: v for k, v in saved.items() if k in names}
    settings.update({k: getattr(args, k) for k in names if hasattr(args, k)})
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    try:
        config = algorithm.make_config(**settings)
    except ValueError as error:
        raise option_error(error, cls) from None
    options = {"resume": args.resume, "overwrite": args.overwrite, "progress": not args.no_progress}
    trained = algorithm.train_run(config, args.out, **options)
    rate = getattr(trained, "steps_per_second", 0.0)
    steps = read_agent_info(args.out).get("trained_steps", config.steps)
    print(f"{args.algo}: {steps} steps in {args.out}" + (f", {rate:.1f} steps/s" if rate else ""))
    size, replay = getattr(trained, "checkpoint_size", 0), getattr(trained, "replay_size", 0)
    if size:
        kept = f", of which the replay memory {replay / 2**20:.1f} MiB (for --resume)"
        print(f"checkpoint {size / 2**20:.1f} MiB" + (kept if replay else ""))
    return 0


def _compose(args: argparse.Namespace) -> int:
    from musicgym import agents
    from musicgym.errors import OutputError
    from musicgym.runs import check_output_folder
    from musicgym.tasks import task_of

    if args.wav:  # a bad soundfont or synthesizer fails before the agent composes
        from musicgym.music.audio import choose_synthesizer

        synthesizer, soundfont = choose_synthesizer(args.synthesizer, args.soundfont)
    held = sorted(args.out.iterdir()) if args.out.is_dir() else []
    if held and not args.overwrite:
        raise OutputError(
            f"--out {args.out}: holds {len(held)} file(s) already; choose a new or empty folder, "
            "or pass --overwrite to replace the pieces of an earlier compose there"
        )
    agent = agents.load(args.agent, length=args.length, env=args.env, bars=args.bars)
    task = task_of(agent.config.env)
    check_output_folder(args.out)
    word = task.piece_name
    if args.overwrite:  # a smaller --n must not leave an earlier compose's pieces behind
        for pattern in (f"{word}_*.mid", f"{word}_*.png", f"{word}_*.wav", task.pieces_file):
            for path in args.out.glob(pattern):
                path.unlink()
    pieces = agent.compose(args.n, seed=args.seed, greedy=args.greedy)
    midi_paths = [args.out / f"{word}_{i:03d}.mid" for i in range(len(pieces))]
    for piece, path in zip(pieces, midi_paths):
        task.write_midi(piece, path)
    task.write_json(pieces, args.out / task.pieces_file)
    if args.wav:
        from musicgym.music.audio import SOUNDFONT_HINT

        task.write_wavs(
            pieces, midi_paths, program=args.program, soundfont=soundfont, synthesizer=synthesizer
        )
        how = f"FluidSynth with {soundfont}" if soundfont else f"plain synthesis ({SOUNDFONT_HINT})"
        print(f"WAV files beside the MIDI files: {how}")
    if args.png:
        for i, piece in enumerate(pieces):
            task.write_piano_roll(piece, args.out / f"{word}_{i:03d}.png", f"{word} {i}")
    print(f"{len(pieces)} {task.plural} in {args.out}")
    from musicgym.agents.common import training_reference

    reference = training_reference(agent.config)  # the KL to the data, where the card has it
    _print_statistics(task, task.statistics(None, pieces, reference=reference))
    return 0


def _print_statistics(task: Any, statistics: dict[str, float]) -> None:
    """One line per statistic; "n/a" where one had nothing to count, and a line saying why."""
    from musicgym.metrics import NOT_AVAILABLE_NOTE, format_statistic

    width = max(len(task.labels[name]) for name in statistics)
    for name, value in statistics.items():
        print(f"  {task.labels[name]:<{width}} {format_statistic(value, '.2f', 8)}")
    if any(math.isnan(value) for value in statistics.values()):
        print(f"  ({NOT_AVAILABLE_NOTE})")

"""The ``data`` and ``prior`` command groups of ``musicgym`` (added through the ``musicgym.cli``
entry point)."""

from __future__ import annotations

import argparse

import numpy as np

from musicgym.music.notestate import NoteState


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` and ``prior`` groups."""
    add_data_commands(subparsers)
    add_prior_commands(subparsers)


def _add_range_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="dataset name or path (see `musicgym data list`)")
    parser.add_argument("--resolution", type=int, help="steps per quarter note (default 4)")
    parser.add_argument("--lowest-pitch", type=int, help="lowest MIDI pitch of the pitch axis")
    parser.add_argument("--num-pitches", type=int, help="size of the pitch axis")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 80/10/10 split")
    parser.add_argument(
        "--key-normalise",
        action="store_true",
        help="transpose every tune to C major / A minor by its key signature (music21 corpora)",
    )


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="list, prepare and inspect datasets")
    commands = data.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("list", help="the datasets there are").set_defaults(func=_data_list)
    prepare = commands.add_parser("prepare", help="convert a dataset once and cache it")
    _add_range_options(prepare)
    prepare.set_defaults(func=_data_prepare)
    inspect = commands.add_parser("inspect", help="counts and a pitch histogram of a dataset")
    _add_range_options(inspect)
    inspect.set_defaults(func=_data_inspect)


def _load(args: argparse.Namespace):
    from musicgym.priors.data import load_dataset

    return load_dataset(
        args.name,
        resolution=args.resolution,
        lowest_pitch=args.lowest_pitch,
        num_pitches=args.num_pitches,
        seed=args.seed,
        progress=True,
        key_normalise=args.key_normalise,
    )


def _data_list(args: argparse.Namespace) -> int:
    from musicgym.music.corpus import cache_dir
    from musicgym.priors.data import available_datasets

    for name, description in available_datasets().items():
        print(f"{name:<20} {description}")
    print(f"\nconversions are cached in {cache_dir()} (set MUSICGYM_CACHE to move them)")
    return 0


def _pitch_span(pieces: list[NoteState]) -> tuple[int, int]:
    played = np.zeros(pieces[0].num_pitches, bool)
    for piece in pieces:
        played |= piece.play.any(axis=0).astype(bool)
    index = np.flatnonzero(played)
    return pieces[0].lowest_pitch + int(index[0]), pieces[0].lowest_pitch + int(index[-1])


def _data_prepare(args: argparse.Namespace) -> int:
    dataset = _load(args)
    pieces = [p for split in dataset.splits.values() for p in split]
    low, high = _pitch_span(pieces)
    print(
        f"{dataset.name}: {len(pieces)} pieces, {dataset.num_frames()} frames at "
        f"{dataset.resolution} steps per quarter, pitches {low}..{high} on the axis "
        f"{dataset.lowest_pitch}..{dataset.lowest_pitch + dataset.num_pitches - 1}"
    )
    for split, split_pieces in dataset.splits.items():
        print(f"  {split:<6} {len(split_pieces):>5} pieces {dataset.num_frames(split):>8} frames")
    if dataset.folded_notes:
        print(f"  {dataset.folded_notes} notes folded by octaves into the pitch range")
    for file, reason in dataset.skipped:
        print(f"  skipped {file}: {reason}")
    return 0


def _data_inspect(args: argparse.Namespace) -> int:
    dataset = _load(args)
    pieces = [p for split in dataset.splits.values() for p in split]
    onsets = sum(p.articulate.sum(axis=0) for p in pieces)
    polyphony = np.concatenate([p.play.sum(axis=1) for p in pieces])
    print(
        f"{dataset.name}: {len(pieces)} pieces, {dataset.num_frames()} frames, "
        f"{int(onsets.sum())} notes, mean polyphony {polyphony.mean():.2f}, "
        f"silent frames {100 * (polyphony == 0).mean():.1f}%"
    )
    print("pitch histogram (note onsets):")
    peak = max(int(onsets.max()), 1)
    for index in np.flatnonzero(onsets):
        pitch = dataset.lowest_pitch + int(index)
        count = int(onsets[index])
        print(f"  {pitch:>3} {'#' * max(1, round(40 * count / peak)):<40} {count}")
    return 0


# --- prior ----------------------------------------------------------------------------------------


def add_prior_commands(subparsers: argparse._SubParsersAction) -> None:
    from musicgym.arguments import (
        add_dataclass_arguments,
        non_negative_int,
        positive_float,
        positive_int,
    )
    from musicgym.priors.train import TrainConfig

    prior = subparsers.add_parser(
        "prior", help="train, evaluate and sample the priors (Bi-axial LSTM, Note RNN)"
    )
    commands = prior.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train a prior (options from musicgym.priors.train.TrainConfig)"
    )
    add_dataclass_arguments(train, TrainConfig)
    train.add_argument(
        "--ddp",
        type=positive_int,
        metavar="N",
        help="train with N processes on this machine (torch DDP; --batch-size is the global "
        "batch); several machines: torchrun, see priors/distributed.py",
    )
    train.set_defaults(func=_prior_train)

    evaluate = commands.add_parser(
        "evaluate", help="average log-likelihood per time step of a dataset split"
    )
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint path or shipped name")
    evaluate.add_argument("--data", required=True, help="dataset name (see `musicgym data list`)")
    evaluate.add_argument("--split", default="test", help="train, valid or test (default test)")
    evaluate.add_argument(
        "--play-only",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score the play bits alone (default: when the data has no articulation, e.g. JSB)",
    )
    evaluate.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the 80/10/10 split"
    )
    evaluate.add_argument("--device", default="cpu", help="torch device")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=_prior_evaluate)

    sample = commands.add_parser("sample", help="sample a piece and write it as MIDI")
    sample.add_argument("--checkpoint", required=True, help="checkpoint path or shipped name")
    sample.add_argument("--steps", type=positive_int, default=128, help="time steps to sample")
    sample.add_argument("--out", required=True, help="MIDI file to write")
    sample.add_argument("--png", help="also save a piano roll picture here")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="sampling seed")
    sample.add_argument("--temperature", type=positive_float, default=1.0, help="logit temperature")
    sample.add_argument(
        "--avoid-silence",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Bi-axial LSTM: make notes likelier after near-silent steps (the original's "
        "conservativity; default on)",
    )
    sample.add_argument(
        "--tempo", type=positive_float, default=100.0, help="tempo in quarter notes/min"
    )
    sample.add_argument("--device", default="cpu", help="torch device")
    sample.set_defaults(func=_prior_sample)


def _prior_train(args: argparse.Namespace) -> int:
    import json

    from musicgym.arguments import dataclass_from_args, option_error
    from musicgym.priors.train import TrainConfig, train

    try:
        config = dataclass_from_args(TrainConfig, args)
    except ValueError as error:
        raise option_error(error, TrainConfig) from None
    if args.ddp:
        from musicgym.priors.distributed import launch

        print(json.dumps(launch(config, args.ddp), indent=2))
        return 0
    print(json.dumps(train(config), indent=2))
    return 0


def _prior_evaluate(args: argparse.Namespace) -> int:
    import json

    from musicgym.checks import check_device
    from musicgym.prior import resolve_prior
    from musicgym.priors.data import load_dataset
    from musicgym.priors.train import evaluate_log_likelihood

    check_device(args.device)
    model = resolve_prior(args.checkpoint, device=args.device)
    dataset = load_dataset(
        args.data,
        resolution=model.resolution,
        lowest_pitch=model.lowest_pitch,
        num_pitches=model.num_pitches,
        seed=args.seed,
        key_normalise=bool(getattr(model, "key_normalised", False)),
    )
    play_only = not dataset.has_articulation if args.play_only is None else args.play_only
    pieces = dataset.split(args.split)
    ll = evaluate_log_likelihood(model, pieces, play_only)
    result = {
        "checkpoint": str(args.checkpoint),
        "data": args.data,
        "split": args.split,
        "pieces": len(pieces),
        "steps": sum(piece.num_steps for piece in pieces),
        "play_only": play_only,
        "log_likelihood_per_step": ll,
    }
    if args.json:
        print(json.dumps(result))
    else:
        bits = "play bits" if play_only else "play and articulate"
        print(
            f"{args.data} {args.split}: {ll:.4f} log-likelihood per time step ({bits}; "
            f"{result['pieces']} pieces, {result['steps']} steps)"
        )
    return 0


def _prior_sample(args: argparse.Namespace) -> int:
    from musicgym.checks import check_device
    from musicgym.errors import ArgumentError
    from musicgym.music.midi import write_midi
    from musicgym.prior import resolve_prior
    from musicgym.priors.model import BiaxialLSTM

    check_device(args.device)
    model = resolve_prior(args.checkpoint, device=args.device)
    options = {"seed": args.seed, "temperature": args.temperature}
    if isinstance(model, BiaxialLSTM):
        options["avoid_silence"] = True if args.avoid_silence is None else args.avoid_silence
    elif args.avoid_silence is not None:
        raise ArgumentError(
            f"--avoid-silence: the Bi-axial LSTM's option; {args.checkpoint} is not one"
        )
    piece = model.sample(args.steps, **options)
    write_midi(piece, args.out, tempo_bpm=args.tempo)
    print(f"wrote {args.out}: {piece.num_steps} steps, {int(piece.articulate.sum())} notes")
    if args.png:
        from musicgym.music.pianoroll import save_piano_roll

        save_piano_roll(piece, args.png, title=f"{args.checkpoint}, seed {args.seed}")
        print(f"wrote {args.png}")
    return 0

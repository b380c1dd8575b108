"""The ``data`` and ``prior`` command groups of ``musicgym`` (added through the ``musicgym.cli``
entry point)."""

from __future__ import annotations

import argparse

import numpy as np

from musicgym.notestate import NoteState


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` and ``prior`` groups."""
    add_data_commands(subparsers)


def _add_range_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="dataset name or path (see `musicgym data list`)")
    parser.add_argument("--resolution", type=int, help="steps per quarter note (default 4)")
    parser.add_argument("--lowest-pitch", type=int, help="lowest MIDI pitch of the pitch axis")
    parser.add_argument("--num-pitches", type=int, help="size of the pitch axis")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 80/10/10 split")


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
    from priors.data import load_dataset

    return load_dataset(
        args.name,
        resolution=args.resolution,
        lowest_pitch=args.lowest_pitch,
        num_pitches=args.num_pitches,
        seed=args.seed,
        progress=True,
    )


def _data_list(args: argparse.Namespace) -> int:
    from priors.data import available_datasets, cache_dir

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

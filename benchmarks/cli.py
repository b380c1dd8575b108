"""Command-line groups of this package (``bench``, later ``demo``), added to ``musicgym`` through
the ``musicgym.cli`` entry point.

Each benchmark is a ``musicgym bench NAME`` subcommand. To add one, write a function that takes
the ``bench`` group's subparsers, adds a parser and sets its ``func``, and decorate it with
:func:`bench_command`; import the benchmark module inside ``func`` so that ``musicgym --help`` stays
fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

BenchAdder = Callable[[argparse._SubParsersAction], None]
BENCH_COMMANDS: list[BenchAdder] = []


def bench_command(add: BenchAdder) -> BenchAdder:
    """Register a function that adds one ``musicgym bench`` subcommand."""
    BENCH_COMMANDS.append(add)
    return add


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's command groups to the ``musicgym`` command."""
    add_bench_group(subparsers)


def add_bench_group(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the ``bench`` group with every registered benchmark; returns its subparsers."""
    bench = subparsers.add_parser("bench", help="run the benchmarks (results in RESULTS.md)")
    benchmarks = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for add in BENCH_COMMANDS:
        add(benchmarks)
    return benchmarks


@bench_command
def _add_midi(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser(
        "midi", help="MIDI -> note-state speed against pretty_midi on the Bach chorales"
    )
    parser.add_argument("--files", type=int, default=100, help="chorales to export (default 100)")
    parser.add_argument("--resolution", type=int, default=4, help="steps per quarter (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per reader (default 3)")
    parser.add_argument(
        "--midi-dir",
        help="folder of .mid files to use, or to export the chorales into and keep "
        "(default: a temporary folder)",
    )
    parser.set_defaults(func=_run_midi)


def _run_midi(args: argparse.Namespace) -> int:
    from benchmarks import midi_conversion

    midi_conversion.run(
        num_files=args.files,
        resolution=args.resolution,
        repeats=args.repeats,
        midi_dir=args.midi_dir,
    )
    return 0


@bench_command
def _add_env(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser(
        "env", help="MusicComposition-v0 steps/s: batched vector env against SyncVectorEnv"
    )
    parser.add_argument(
        "--num-envs", type=int, nargs="+", default=[8, 64], help="vector sizes (default 8 64)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per row (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--prior", default="bach16", help="shipped prior to time (default bach16)")
    parser.set_defaults(func=_run_env)


def _run_env(args: argparse.Namespace) -> int:
    from benchmarks import env_bench

    env_bench.run(
        num_envs=args.num_envs, seconds=args.seconds, threads=args.threads, prior_name=args.prior
    )
    return 0


@bench_command
def _add_prior(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser(
        "prior",
        help="prior training frames/s beside the matmul limit; JSB test likelihood vs published",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--checkpoint",
        default="jsb_quarter",
        help="prior for the likelihood row (default jsb_quarter)",
    )
    parser.add_argument("--data", help="JSB quarter-note JSON (default ../shared/data/jsb/...)")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps (default 3)")
    parser.set_defaults(func=_run_prior)


def _run_prior(args: argparse.Namespace) -> int:
    from benchmarks import prior_bench

    prior_bench.run(
        threads=args.threads,
        checkpoint=args.checkpoint,
        data=args.data or prior_bench.DEFAULT_JSB,
        repeats=args.repeats,
    )
    return 0

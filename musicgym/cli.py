"""The ``musicgym`` command.

The core defines the ``midi`` group; every other group (``data`` and ``prior`` from ``priors``,
``agent`` from ``agents``, ``bench`` and ``demo`` from ``benchmarks``) is added by the package that
owns it through the entry-point group ``musicgym.cli``, so the core never imports the floors above.
A command without a ``--threads`` option of its own (``agent compose``, ``gallery``, ``demo``,
...) runs torch on one thread: its tensors are small, and torch's default (every core) spin-waits
on a machine shared with other busy processes (an env step ran 2.8x to 30x slower).
Errors on bad input (a bad argument, a damaged file, a read-only or full disk) print one line and
exit with status 2; a training run stopped by SIGINT or SIGTERM writes its checkpoint, prints one
line and exits with 130 or 143.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from musicgym.arguments import EXIT_BAD_INPUT, ArgumentParser
from musicgym.errors import Interrupted, MusicgymError
from musicgym.music import midi_cli

ENTRY_POINT_GROUP = "musicgym.cli"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="musicgym",
        description="Music composition as a reinforcement-learning problem.",
    )
    from musicgym import __version__

    parser.add_argument("--version", action="version", version=f"musicgym {__version__}")
    subparsers = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    adders: list[Callable[[argparse._SubParsersAction], None]] = [midi_cli.add_commands]
    adders += [ep.load() for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=str)]
    for add in adders:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "threads"):  # a command with --threads sets its own
        import torch

        torch.set_num_threads(1)
    try:
        return int(args.func(args) or 0)
    except MusicgymError as error:
        print(f"musicgym: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # a file error no command translated: still one line
        from musicgym.fileio import describe_os_error

        print(f"musicgym: error: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as stop:
        from musicgym.runs import EXIT_CODES

        print(f"musicgym: {stop}", file=sys.stderr)
        return EXIT_CODES.get(stop.signal_number, 130)
    except KeyboardInterrupt:
        print("musicgym: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

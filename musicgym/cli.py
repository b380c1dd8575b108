"""The ``musicgym`` command.

The core defines the ``midi`` group; every other group (``data`` and ``prior`` from ``priors``,
``agent`` from ``agents``, ``bench`` and ``demo`` from ``benchmarks``) is added by the package that
owns it through the entry-point group ``musicgym.cli``, so the core never imports the floors above.
Errors on bad input (a bad argument, a damaged file, a read-only or full disk) print one line and
exit with status 2; a training run stopped by SIGINT or SIGTERM writes its checkpoint, prints one
line and exits with 130 or 143.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from musicgym.errors import Interrupted, MusicgymError

ENTRY_POINT_GROUP = "musicgym.cli"
EXIT_BAD_INPUT = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> typing.NoReturn:
        message = " ".join(message.split())
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number_type(kind: type, check: dict[str, Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses ``kind`` and applies :func:`musicgym.checks.check_number`
    (argparse then reports the argument, in one line)."""
    from musicgym.checks import check_number

    def parse(text: str) -> Any:
        what = "an integer" if kind is int else "a number"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        try:
            check_number("value", value, integer=kind is int, **check)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix("value: ")) from None
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number_type(int, {"low": 1})
non_negative_int = _number_type(int, {"low": 0})
positive_float = _number_type(float, {"above": 0})


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass, by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def add_dataclass_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    exclude: Sequence[str] = (),
    leave_unset: bool = False,
) -> None:
    """Add one ``--option`` per field of a dataclass, its help the field's docstring.

    Booleans become ``--flag/--no-flag``; tuples take several values. With ``leave_unset`` an
    option not given is absent from the parsed namespace (the help still shows the default),
    so that a caller can tell it from one given with the default's value.
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        option = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = (
            f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        )
        help_text = f"{docs.get(f.name, '')} (default: {default})"
        if leave_unset:
            default = argparse.SUPPRESS
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            kind = next(a for a in args if a is not type(None))
            origin, args = typing.get_origin(kind), typing.get_args(kind)
        if kind is bool:
            parser.add_argument(
                option, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        elif origin is tuple:
            parser.add_argument(
                option, type=args[0], nargs="+", default=default, help=help_text, dest=f.name
            )
        elif origin is typing.Literal:
            parser.add_argument(option, choices=args, default=default, help=help_text, dest=f.name)
        else:
            parser.add_argument(option, type=kind, default=default, help=help_text, dest=f.name)


def option_error(error: ValueError, cls: type) -> MusicgymError:
    """A config's ``ValueError`` ("batch_size: expected ...") as a one-line error that names the
    command-line option ("--batch-size: expected ...")."""
    from musicgym.errors import ArgumentError

    if isinstance(error, MusicgymError) and not isinstance(error, ArgumentError):
        return error
    message = str(error)
    name, colon, rest = message.partition(":")
    if colon and name in {f.name for f in dataclasses.fields(cls)}:
        message = f"--{name.replace('_', '-')}:{rest}"
    return ArgumentError(message)


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: object):
    """Build a dataclass from the fields of ``args`` that :func:`add_dataclass_arguments` added."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.init and hasattr(args, f.name)
    }
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    values.update(overrides)
    return cls(**values)


def _add_midi_commands(subparsers: argparse._SubParsersAction) -> None:
    from musicgym.music import midi_cli

    midi_cli.add_commands(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="musicgym",
        description="Music composition as a reinforcement-learning problem.",
    )
    subparsers = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    adders: list[Callable[[argparse._SubParsersAction], None]] = [_add_midi_commands]
    adders += [ep.load() for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=str)]
    for add in adders:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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

"""The command line's argument helpers, for the core's ``musicgym`` command and every floor's
command group (and the ``python -m`` recipes): a parser whose errors are one line, checked number
types, one ``--option`` per field of a config dataclass and the dataclass back from the parsed
options, a config's error in the option's name, and the sound options of the commands that write
WAV files."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
import typing
from collections.abc import Callable, Sequence
from typing import Any

from musicgym.checks import CORES
from musicgym.errors import MusicgymError

EXIT_BAD_INPUT = 2
"""The exit status of bad input (a bad argument, a damaged file, a read-only or full disk)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (argparse prints the whole usage first),
    with the prefix of every other error of the command (``musicgym: error:``, not the
    sub-command's ``musicgym agent train: error:``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _SubcommandsAction)

    def error(self, message: str) -> typing.NoReturn:
        message = " ".join(message.split())
        command = "musicgym" if self.prog.startswith("musicgym ") else self.prog
        self.exit(EXIT_BAD_INPUT, f"{command}: error: {message} (see {self.prog} --help)\n")


class _SubcommandsAction(argparse._SubParsersAction):
    """Sub-commands whose ``--help`` opens with their one-line ``help`` where they give no
    ``description`` (argparse shows it only in the parent's list)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if kwargs.get("description") is None and kwargs.get("help"):
            kwargs["description"] = kwargs["help"][:1].upper() + kwargs["help"][1:] + "."
        return super().add_parser(name, **kwargs)


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
percentile = _number_type(float, {"low": 0, "high": 100})
thread_count = _number_type(int, {"low": 1, "high": CORES})
"""Torch threads of a benchmark: 1 up to this machine's cores."""


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
        help_text = docs.get(f.name, "")
        if "(default" not in help_text:  # a docstring that says its default says it once
            help_text += f" (default: {default})"
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


def add_audio_arguments(parser: argparse.ArgumentParser, program: str = "piano") -> None:
    """Add ``--soundfont``, ``--program`` and ``--synthesizer`` (the options of
    :func:`musicgym.music.audio.render_midi`) to a command that writes WAV files."""
    from musicgym.music.audio import PROGRAMS, SYNTHESIZERS

    parser.add_argument(
        "--soundfont",
        metavar="PATH",
        help="General MIDI .sf2 soundfont for FluidSynth (default: the system's, e.g. "
        "/usr/share/sounds/sf2/FluidR3_GM.sf2)",
    )
    parser.add_argument(
        "--program",
        default=program,
        help=f"instrument of every part, or one per part separated by commas: "
        f"{', '.join(PROGRAMS)} or a General MIDI program 0..127 (default: %(default)s)",
    )
    parser.add_argument(
        "--synthesizer",
        choices=SYNTHESIZERS,
        default="auto",
        help="fluidsynth, plain, or auto: fluidsynth when it is installed (default: %(default)s)",
    )


def audio_options(args: argparse.Namespace) -> dict[str, object]:
    """:func:`musicgym.music.audio.render_midi`'s keyword arguments from the options of
    :func:`add_audio_arguments`."""
    return {"program": args.program, "soundfont": args.soundfont, "synthesizer": args.synthesizer}

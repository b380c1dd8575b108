"""Exceptions raised for bad input: each carries a one-line message naming the file or argument."""

from __future__ import annotations


class MusicgymError(Exception):
    """Base class of every error musicgym raises on bad input; the CLI prints it and exits 2."""


class MidiError(MusicgymError):
    """A MIDI file is missing, empty, truncated, corrupt, or holds no notes."""


class AudioError(MusicgymError):
    """A soundfont is missing or corrupt, a synthesizer cannot be loaded, or audio cannot be
    written."""


class DatasetError(MusicgymError):
    """A dataset name is unknown or a dataset file is malformed."""


class NoteStateError(MusicgymError, ValueError):
    """A note-state array has the wrong shape or values."""


class CheckpointError(MusicgymError):
    """A checkpoint is corrupt, missing, or belongs to another model."""


class RuleError(MusicgymError, ValueError):
    """A reward rule or preset is unknown, given twice, or not a valid rule."""


class ArgumentError(MusicgymError, ValueError):
    """An argument is out of range or malformed (a negative count, a NaN, an unknown name)."""


class EnvArgumentError(ArgumentError):
    """An environment argument (prior range, primer, action, reset option) is invalid."""


class OutputError(MusicgymError):
    """A file or folder cannot be written: read-only, full disk, no permission, not a folder."""


class RunFolderError(MusicgymError):
    """A run folder holds another run, is locked by another process, or does not fit
    ``--resume`` (other settings, no run to resume)."""


class BenchmarkError(MusicgymError):
    """A benchmark whose runs failed (its tables of the others written)."""


class MissingDependencyError(MusicgymError):
    """An optional dependency (an extra of ``pyproject.toml``) that a command needs is not
    installed."""


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint; the CLI prints the
    message and exits ``128 + signal`` (130, 143)."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.message, self.signal_number = message, signal_number

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type, tuple[str, int]]:  # raised in a pool worker: pickled
        return type(self), (self.message, self.signal_number)

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


class EnvArgumentError(MusicgymError, ValueError):
    """An environment argument (prior range, primer, action, reset option) is invalid."""

"""musicgym: music composition as a reinforcement-learning problem."""

from musicgym.errors import CheckpointError, DatasetError, MidiError, MusicgymError, NoteStateError
from musicgym.keys import Key
from musicgym.notestate import NoteState

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DatasetError",
    "Key",
    "MidiError",
    "MusicgymError",
    "NoteState",
    "NoteStateError",
]

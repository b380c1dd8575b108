"""musicgym: music composition as a reinforcement-learning problem."""

from musicgym.errors import (
    AudioError,
    CheckpointError,
    DatasetError,
    EnvArgumentError,
    MidiError,
    MusicgymError,
    NoteStateError,
    RuleError,
)
from musicgym.music.keys import Key
from musicgym.music.notestate import NoteState

__version__ = "0.1.0"


def _register_envs() -> None:
    """Register ``MusicComposition-v0`` once: an async vector env's subprocesses import the
    package again, and a second ``register`` of the same id would warn."""
    from gymnasium.envs.registration import register, registry

    if "MusicComposition-v0" not in registry:
        register(
            id="MusicComposition-v0",
            entry_point="musicgym.envs.melody:MusicCompositionEnv",
            vector_entry_point="musicgym.envs.melody:MusicCompositionVectorEnv",
        )  # the arguments' defaults: musicgym.config.EnvConfig


_register_envs()

__all__ = [
    "AudioError",
    "CheckpointError",
    "DatasetError",
    "EnvArgumentError",
    "Key",
    "MidiError",
    "MusicgymError",
    "NoteState",
    "NoteStateError",
    "RuleError",
]

"""musicgym: music composition as a reinforcement-learning problem."""

from importlib import metadata as _metadata

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

try:  # one version source: pyproject.toml, read back from the installed distribution
    __version__ = _metadata.version("musicgym")
except _metadata.PackageNotFoundError:  # the source tree on sys.path, not installed
    __version__ = "0+unknown"


ENVIRONMENTS = {
    "MusicComposition-v0": "musicgym.envs.melody:MusicComposition",
    "ChoraleComposition-v0": "musicgym.envs.chorale:ChoraleComposition",
}
"""Each environment id and its classes, ``<module>:<prefix>`` + ``Env`` / ``VectorEnv`` (the
arguments' defaults: ``musicgym.config.DEFAULTS`` and ``CHORALE_DEFAULTS``)."""


def _register_envs() -> None:
    """Register the environments once: an async vector env's subprocesses import the package
    again, and a second ``register`` of the same id would warn."""
    from gymnasium.envs.registration import register, registry

    for env_id, classes in ENVIRONMENTS.items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point=f"{classes}Env",
                vector_entry_point=f"{classes}VectorEnv",
            )


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
    "__version__",
]

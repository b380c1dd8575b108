"""Musical keys: parse a name such as "C", "A minor", "F#" or "Bb minor"; give scale and tonic."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from musicgym.errors import MusicgymError

PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def pitch_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI pitch: 60 -> "C4", 61 -> "C#4"."""
    return f"{PITCH_CLASS_NAMES[pitch % 12]}{pitch // 12 - 1}"


_LETTER_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1, "##": 2, "bb": -2}
# Natural minor: the rules and statistics of the RL Tuner count scale membership, and the
# natural minor scale is the relative major's set, so "A minor" and "C major" agree on it.
_SCALE_STEPS = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_KEY_PATTERN = re.compile(
    r"^\s*([A-Ga-g])(##|bb|#|b|♯|♭)?(?:\s*[- ]?\s*((?i:major|minor|maj|min)|m))?\s*$"
)


class KeyParseError(MusicgymError, ValueError):
    """A key name does not parse."""


@dataclass(frozen=True)
class Key:
    """A major or (natural) minor key.

    Args:
        tonic: pitch class of the tonic, 0 = C ... 11 = B.
        mode: ``"major"`` or ``"minor"``.
    """

    tonic: int = 0
    mode: str = "major"

    def __post_init__(self) -> None:
        if self.mode not in _SCALE_STEPS:
            raise KeyParseError(f"key mode must be 'major' or 'minor', got {self.mode!r}")
        object.__setattr__(self, "tonic", self.tonic % 12)

    @classmethod
    def parse(cls, name: str | Key) -> Key:
        """Parse "C", "C major", "A minor", "Am", "F#", "Bb minor" (case of the letter and of a
        spelled-out mode ignored; a bare "m" is minor)."""
        if isinstance(name, Key):
            return name
        match = _KEY_PATTERN.match(str(name))
        if not match:
            raise KeyParseError(
                f"key {name!r} does not parse; expected a tonic and an optional mode, "
                "e.g. 'C', 'A minor', 'F# major', 'Bb minor'"
            )
        letter, accidental, mode = match.groups()
        tonic = _LETTER_PITCH_CLASS[letter.upper()] + _ACCIDENTAL[accidental or ""]
        mode = "minor" if mode and mode.lower() in ("minor", "min", "m") else "major"
        return cls(tonic, mode)

    @property
    def scale(self) -> tuple[int, ...]:
        """The seven pitch classes of the scale, from the tonic up."""
        return tuple((self.tonic + step) % 12 for step in _SCALE_STEPS[self.mode])

    @property
    def dominant(self) -> int:
        """Pitch class of the fifth degree."""
        return (self.tonic + 7) % 12

    @property
    def mediant(self) -> int:
        """Pitch class of the third degree."""
        return self.scale[2]

    def contains(self, pitch: int) -> bool:
        """Whether a MIDI pitch belongs to the scale."""
        return pitch % 12 in self.scale

    @property
    def shift_to_c(self) -> int:
        """Semitones in -6..+5 that move this key's scale onto C major's (a minor key onto
        A minor): D major -> -2, G major -> +5, E minor -> +5."""
        relative_major = self.tonic if self.mode == "major" else self.tonic + 3
        return (6 - relative_major) % 12 - 6

    def tonic_pitch(self, lowest: int = 60) -> int:
        """The tonic as a MIDI pitch: the first at or above ``lowest`` (C4 = 60 by default)."""
        return lowest + (self.tonic - lowest) % 12

    @property
    def name(self) -> str:
        return f"{PITCH_CLASS_NAMES[self.tonic]} {self.mode}"

    def __str__(self) -> str:
        return self.name

    @property
    def index(self) -> int:
        """The key's place among :data:`ALL_KEYS`: its tonic, plus 12 in minor."""
        return self.tonic + 12 * MODES.index(self.mode)


MODES = tuple(_SCALE_STEPS)
"""The modes of a :class:`Key`: major, minor."""
ALL_KEYS = tuple(Key(tonic, mode) for mode in MODES for tonic in range(12))
"""The 24 keys, in the order of :attr:`Key.index`."""


def parse_keys(names: str | Key | Sequence[str | Key]) -> tuple[Key, ...]:
    """The keys of a key argument: one key (a :class:`Key` or a name), or several, each drawn as
    often as it is named (a sequence, or names separated by commas: ``"C major, A minor"``)."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",")] if "," in names else [names]
    elif isinstance(names, Key):
        names = [names]
    keys = tuple(Key.parse(name) for name in names)
    if not keys:
        raise KeyParseError("no key given; expected a key name such as 'C major'")
    return keys


def several_keys(keys: Sequence[Key]) -> bool:
    """Whether ``keys`` (of :func:`parse_keys`) are more than one key: an episode draws its own,
    which a chorale observation then shows."""
    return len(set(keys)) > 1

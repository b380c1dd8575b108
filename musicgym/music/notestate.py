"""The note-state matrix: per time step and pitch, whether the note plays and whether it is struck.

A piece is an array ``[T, N, 2]`` of 0/1 values, ``[..., 0]`` = play and ``[..., 1]`` = articulate:
an onset is (1, 1), a held note (1, 0), silence (0, 0). Its lowest MIDI pitch and its resolution
(time steps per quarter note) travel with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from musicgym.errors import NoteStateError

PLAY, ARTICULATE = 0, 1
SIXTEENTH_NOTES = 4  # steps per quarter note


def fold_pitches(pitches: np.ndarray, lowest_pitch: int, num_pitches: int) -> np.ndarray:
    """Move each pitch by the fewest whole octaves into ``lowest_pitch .. lowest_pitch + N - 1``.

    In a range narrower than an octave a pitch class may have no place; such pitches come back
    outside the range, for the caller to drop.
    """
    pitches = np.asarray(pitches, dtype=np.int64)
    highest = lowest_pitch + num_pitches - 1
    octaves_up = np.maximum(-((pitches - lowest_pitch) // 12), 0)  # ceil((lowest - p) / 12)
    octaves_down = np.maximum(-((highest - pitches) // 12), 0)  # ceil((p - highest) / 12)
    return pitches + 12 * (octaves_up - octaves_down)


@dataclass(frozen=True, eq=False)
class NoteState:
    """A validated note-state matrix with its pitch range and resolution.

    Args:
        matrix: ``(T, N, 2)`` array of 0/1 (stored as ``uint8``); articulate implies play.
        lowest_pitch: MIDI pitch of index 0 on the pitch axis.
        resolution: time steps per quarter note (4 = 16th notes).
        name: where the piece came from (a file or corpus path), for messages.
    """

    matrix: np.ndarray
    lowest_pitch: int = 48
    resolution: int = SIXTEENTH_NOTES
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        matrix = np.asarray(self.matrix)
        where = f"{self.name}: " if self.name else ""
        if matrix.ndim != 3 or matrix.shape[2] != 2:
            raise NoteStateError(f"{where}note-state must have shape (T, N, 2), got {matrix.shape}")
        if matrix.size and not np.isin(matrix, (0, 1)).all():
            raise NoteStateError(f"{where}note-state values must be 0 or 1")
        matrix = matrix.astype(np.uint8, copy=False)
        if (matrix[..., ARTICULATE] > matrix[..., PLAY]).any():
            t, n = np.argwhere(matrix[..., ARTICULATE] > matrix[..., PLAY])[0]
            raise NoteStateError(
                f"{where}articulate without play at step {t}, pitch {self.lowest_pitch + n}"
            )
        if not (self.lowest_pitch >= 0 and self.lowest_pitch + matrix.shape[1] <= 128):
            raise NoteStateError(
                f"{where}pitch range {self.lowest_pitch}..{self.lowest_pitch + matrix.shape[1] - 1}"
                " is outside MIDI 0..127"
            )
        if self.resolution < 1:
            raise NoteStateError(f"{where}resolution must be >= 1, got {self.resolution}")
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "lowest_pitch", int(self.lowest_pitch))
        object.__setattr__(self, "resolution", int(self.resolution))

    def __eq__(self, other: object) -> bool:
        """Same music: equal matrices, lowest pitch and resolution (the name does not count)."""
        if not isinstance(other, NoteState):
            return NotImplemented
        return (
            self.lowest_pitch == other.lowest_pitch
            and self.resolution == other.resolution
            and np.array_equal(self.matrix, other.matrix)
        )

    __hash__ = None  # type: ignore[assignment]  # the matrix is a mutable array

    @classmethod
    def empty(
        cls, steps: int, lowest_pitch: int, num_pitches: int, resolution: int = SIXTEENTH_NOTES
    ) -> NoteState:
        """Silence of ``steps`` steps over ``num_pitches`` pitches."""
        return cls(np.zeros((steps, num_pitches, 2), np.uint8), lowest_pitch, resolution)

    @classmethod
    def from_notes(
        cls,
        pitches: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        *,
        lowest_pitch: int,
        num_pitches: int,
        resolution: int = SIXTEENTH_NOTES,
        num_steps: int | None = None,
        name: str = "",
    ) -> NoteState:
        """Lay notes given as MIDI pitches with start and end steps (end exclusive) on the grid.

        Every note lasts at least one step; a note struck while the same pitch still sounds
        re-strikes it, and the pitch sounds on until the later of the two ends. Pitches must
        already lie in the range.
        """
        pitches, starts, ends = (np.asarray(a, dtype=np.int64) for a in (pitches, starts, ends))
        ends = np.maximum(ends, starts + 1)
        steps = int(ends.max(initial=0)) if num_steps is None else num_steps
        matrix = np.zeros((steps, num_pitches, 2), np.uint8)
        index = pitches - lowest_pitch
        if index.size and (index.min() < 0 or index.max() >= num_pitches):
            raise NoteStateError(f"{name or 'notes'}: a pitch lies outside the range")
        if starts.size and starts.min() < 0:
            raise NoteStateError(f"{name or 'notes'}: a note starts before step 0")
        # A pitch plays wherever more notes of it have started than ended (a running count, so
        # no loop over notes); onsets are marked after, so a re-struck pitch keeps its articulation.
        flat_starts = np.minimum(starts, steps) * num_pitches + index
        flat_ends = np.minimum(ends, steps) * num_pitches + index
        size = (steps + 1) * num_pitches
        change = np.bincount(flat_starts, minlength=size) - np.bincount(flat_ends, minlength=size)
        matrix[..., PLAY] = np.cumsum(change.reshape(steps + 1, num_pitches)[:steps], axis=0) > 0
        matrix[starts[starts < steps], index[starts < steps], ARTICULATE] = 1
        return cls(matrix, lowest_pitch, resolution, name)

    @property
    def num_steps(self) -> int:
        return self.matrix.shape[0]

    @property
    def num_pitches(self) -> int:
        return self.matrix.shape[1]

    @property
    def highest_pitch(self) -> int:
        """The highest MIDI pitch the matrix can hold."""
        return self.lowest_pitch + self.num_pitches - 1

    @property
    def play(self) -> np.ndarray:
        """``(T, N)`` play bits."""
        return self.matrix[..., PLAY]

    @property
    def articulate(self) -> np.ndarray:
        """``(T, N)`` articulate bits."""
        return self.matrix[..., ARTICULATE]

    def sounding_pitches(self) -> np.ndarray:
        """The MIDI pitches that play at least once, ascending."""
        return self.lowest_pitch + np.flatnonzero(self.play.any(axis=0))

    def with_range(self, lowest_pitch: int, num_pitches: int) -> NoteState:
        """The same music on another pitch axis; raises if a sounding note would fall outside it."""
        pitches = self.sounding_pitches()
        highest = lowest_pitch + num_pitches - 1
        if pitches.size and (pitches[0] < lowest_pitch or pitches[-1] > highest):
            raise NoteStateError(
                f"{self.name or 'note-state'}: notes {pitches[0]}..{pitches[-1]} do not fit the "
                f"range {lowest_pitch}..{highest}"
            )
        matrix = np.zeros((self.num_steps, num_pitches, 2), np.uint8)
        lo, hi = max(lowest_pitch, self.lowest_pitch), min(highest, self.highest_pitch)
        if lo <= hi:
            matrix[:, lo - lowest_pitch : hi - lowest_pitch + 1] = self.matrix[
                :, lo - self.lowest_pitch : hi - self.lowest_pitch + 1
            ]
        return NoteState(matrix, lowest_pitch, self.resolution, self.name)

    def transpose(self, semitones: int) -> NoteState:
        """Shift every note by ``semitones`` on the same pitch axis; raises if one falls off it."""
        pitches = self.sounding_pitches()
        if pitches.size and (
            pitches[0] + semitones < self.lowest_pitch
            or pitches[-1] + semitones > self.highest_pitch
        ):
            raise NoteStateError(
                f"{self.name or 'note-state'}: transposing by {semitones} leaves the pitch range"
            )
        matrix = np.roll(self.matrix, semitones, axis=1)
        return NoteState(matrix, self.lowest_pitch, self.resolution, self.name)

    def transposition_room(self) -> tuple[int, int]:
        """``(down, up)``: the largest shifts down (<= 0) and up (>= 0) that keep all notes."""
        pitches = self.sounding_pitches()
        if not pitches.size:
            return 0, 0
        return self.lowest_pitch - int(pitches[0]), self.highest_pitch - int(pitches[-1])

    def fitting_shift(self, semitones: int) -> int | None:
        """Of ``semitones`` and that shift an octave either way, the smallest that keeps every
        note on the pitch axis (a transposition to a key, to its nearest octave that fits);
        ``None`` if none does."""
        down, up = self.transposition_room()
        candidates = sorted((semitones, semitones - 12, semitones + 12), key=abs)
        return next((shift for shift in candidates if down <= shift <= up), None)

    def top_voice(self) -> NoteState:
        """The melody: at each step only the highest sounding note, struck when it changes pitch,
        when it was struck in the original, or when it starts after silence."""
        if not self.num_pitches:
            return self
        play = self.play.astype(bool)
        sounding = play.any(axis=1)
        # Index of the highest playing pitch per step, -1 where nothing plays.
        top = np.where(sounding, self.num_pitches - 1 - np.argmax(play[:, ::-1], axis=1), -1)
        previous = np.concatenate(([-1], top[:-1]))
        steps = np.flatnonzero(sounding)
        matrix = np.zeros_like(self.matrix)
        matrix[steps, top[steps], PLAY] = 1
        matrix[steps, top[steps], ARTICULATE] = (top[steps] != previous[steps]) | (
            self.articulate[steps, top[steps]] == 1
        )
        return NoteState(matrix, self.lowest_pitch, self.resolution, self.name)

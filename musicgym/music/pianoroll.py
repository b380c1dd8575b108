"""Piano-roll pictures of note-states.

:func:`piano_roll_rgb` paints the roll straight into a numpy image (no matplotlib; fast enough for
an environment's ``rgb_array`` render): time runs left to right, pitch bottom to top, rows of black
keys shaded, a thin line at every beat and a dark one at every bar; an onset step is dark and
starts with a one-pixel gap, so repeated strikes of a pitch stay apart, and a held step is light.
:func:`save_piano_roll` and :func:`save_piano_roll_sheet` put that image on matplotlib axes (Agg
backend, no screen) with pitch names and bar numbers, and write it atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from musicgym.errors import NoteStateError
from musicgym.fileio import atomic_output
from musicgym.music.keys import pitch_name
from musicgym.music.notestate import NoteState

WHITE_KEY_ROW = (250, 250, 250)
BLACK_KEY_ROW = (233, 234, 238)
BEAT_LINE = (200, 200, 205)
BAR_LINE = (110, 110, 120)
HOLD = (120, 170, 230)
ONSET = (20, 55, 135)
MAX_ROLL_STEPS = 8_192
"""The longest piece drawn as a piano roll (512 bars of 16th notes; at 4 pixels a step, a picture
32,768 pixels wide); a longer one is refused in one line before any memory is taken."""
_BLACK_KEYS = np.array([pc in (1, 3, 6, 8, 10) for pc in range(12)])
VOICE_COLOURS = {
    "bass": ((150, 30, 30), (225, 140, 130)),
    "tenor": ((30, 115, 50), (135, 205, 145)),
    "alto": ((180, 100, 10), (240, 190, 115)),
    "soprano": (ONSET, HOLD),
}
"""(onset, held) colours of each voice in a four-voice roll, bass to soprano."""


def voice_indices(play: np.ndarray) -> np.ndarray:
    """``(T, N)``: each sounding note's voice, 0 bass .. 3 soprano (-1 where silent): by rank in a
    frame of four notes; otherwise the lowest is the bass, the highest the soprano and those
    between tenor (lower half) or alto."""
    play = np.asarray(play, dtype=bool)
    rank = np.cumsum(play, axis=1) - 1
    count = play.sum(1, keepdims=True)
    middle = np.where(rank < count / 2, 1, 2)
    voice = np.where(rank == count - 1, 3, np.where(rank == 0, 0, middle))
    voice = np.where(count == 4, rank, voice)
    return np.where(play, voice, -1)


def piano_roll_rgb(
    note_state: NoteState,
    *,
    step_px: int = 4,
    pitch_px: int = 4,
    beats_per_bar: int = 4,
    voices: bool = False,
    steps: int | None = None,
) -> np.ndarray:
    """The piano roll as an ``(N * pitch_px, T * step_px, 3)`` uint8 image, highest pitch on top.

    Args:
        note_state: the music; ``resolution`` steps make a beat (a quarter note).
        step_px: image columns per time step.
        pitch_px: image rows per pitch.
        beats_per_bar: beats between bar lines.
        voices: colour each note by its voice (:func:`voice_indices`, :data:`VOICE_COLOURS`): a
            four-voice roll of a chorale.
        steps: draw this many time steps, ``T`` (default: the piece's), the ones after the
            piece silent: an environment's frames keep one size while its piece grows.
    """
    if step_px < 1 or pitch_px < 1 or beats_per_bar < 1:
        raise ValueError("step_px, pitch_px and beats_per_bar must be >= 1")
    if steps is not None and steps > note_state.num_steps:
        silence = np.zeros((steps - note_state.num_steps, note_state.num_pitches, 2), np.uint8)
        matrix = np.concatenate([note_state.matrix, silence])
        note_state = NoteState(matrix, note_state.lowest_pitch, note_state.resolution)
    steps, pitches = note_state.num_steps, note_state.num_pitches
    if steps > MAX_ROLL_STEPS:
        raise NoteStateError(
            f"{note_state.name or 'piece'}: {steps} steps, longer than the {MAX_ROLL_STEPS} a "
            "piano roll draws; cut it shorter first"
        )
    rows = note_state.lowest_pitch + np.arange(pitches)[::-1]  # MIDI pitch of each row, top first
    row_colour = np.where(_BLACK_KEYS[rows % 12, None], BLACK_KEY_ROW, WHITE_KEY_ROW)  # (N, 3)
    # The first pixel column of a step shows the beat or bar line (if any) where no note holds
    # through it; the other columns show the note or the row's background.
    line_colour = np.broadcast_to(row_colour[:, None, :], (pitches, steps, 3)).copy()
    beat_steps = np.arange(0, steps, note_state.resolution)
    line_colour[:, beat_steps] = BEAT_LINE
    line_colour[:, beat_steps[::beats_per_bar]] = BAR_LINE
    kind = (note_state.play.astype(np.uint8) + note_state.articulate).T[::-1]  # (N, T): 0, 1, 2
    onset_colour, hold_colour = np.array(ONSET), np.array(HOLD)
    if voices:
        palette = np.array(list(VOICE_COLOURS.values()))  # (4, 2, 3)
        voice = voice_indices(note_state.play).T[::-1].clip(min=0)  # (N, T)
        onset_colour, hold_colour = palette[voice, 0], palette[voice, 1]
    body = np.where(kind[..., None] == 2, onset_colour, hold_colour)
    body = np.where(kind[..., None] == 0, row_colour[:, None, :], body)
    first = np.where(kind[..., None] == 1, hold_colour, line_colour)
    if step_px < 3:  # too narrow for a gap before each onset
        first = np.where(kind[..., None] == 2, onset_colour, first)
    cells = np.empty((pitches, steps, step_px, 3), np.uint8)
    cells[:, :, 0] = first
    cells[:, :, 1:] = body[:, :, None]
    return np.repeat(cells.reshape(pitches, steps * step_px, 3), pitch_px, axis=0)


def _draw_roll(
    axes: Axes, note_state: NoteState, title: str | None, beats_per_bar: int, voices: bool = False
) -> None:
    image = piano_roll_rgb(
        note_state, step_px=4, pitch_px=4, beats_per_bar=beats_per_bar, voices=voices
    )
    beats = note_state.num_steps / note_state.resolution
    low, high = note_state.lowest_pitch, note_state.highest_pitch
    axes.imshow(
        image,
        aspect="auto",
        interpolation="nearest",
        extent=(0, beats, low - 0.5, high + 0.5),
    )
    c_pitches = [p for p in range(low, high + 1) if p % 12 == 0] or [low, high]
    axes.set_yticks(c_pitches, [pitch_name(p) for p in c_pitches])
    bar_beats = np.arange(0, beats, beats_per_bar)
    label_every = max(1, math.ceil(len(bar_beats) / 24))  # at most about 24 bar numbers
    axes.set_xticks(
        bar_beats[::label_every], [str(i + 1) for i in range(0, len(bar_beats), label_every)]
    )
    axes.set_xlabel("bar")
    axes.set_ylabel("pitch")
    if title:
        axes.set_title(title, fontsize=10)


def _save(figure: Figure, path: str | os.PathLike[str]) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=100)


def save_piano_roll(
    note_state: NoteState,
    path: str | os.PathLike[str],
    title: str | None = None,
    *,
    beats_per_bar: int = 4,
    voices: bool = False,
) -> None:
    """Draw a note-state's piano roll with pitch names and bar numbers and save it (PNG by the
    path's suffix); ``voices`` colours the notes by voice (see :func:`piano_roll_rgb`)."""
    beats = note_state.num_steps / note_state.resolution
    width = min(max(6.0, 0.3 * beats + 1.5), 40.0)
    height = min(max(3.0, 0.09 * note_state.num_pitches + 1.2), 14.0)
    figure = Figure(figsize=(width, height))
    _draw_roll(figure.add_subplot(), note_state, title, beats_per_bar, voices)
    _save(figure, path)


def save_piano_roll_sheet(
    note_states: Sequence[NoteState],
    path: str | os.PathLike[str],
    titles: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    beats_per_bar: int = 4,
    voices: bool = False,
) -> None:
    """Several piano rolls on one sheet (one column up to three rolls, else two), one title each;
    ``voices`` colours the notes by voice (see :func:`piano_roll_rgb`)."""
    if not note_states:
        raise ValueError("save_piano_roll_sheet needs at least one note-state")
    if titles is not None and len(titles) != len(note_states):
        raise ValueError(f"{len(titles)} titles for {len(note_states)} note-states")
    columns = columns or (1 if len(note_states) <= 3 else 2)
    rows = math.ceil(len(note_states) / columns)
    figure = Figure(figsize=(7.0 * columns, 2.8 * rows))
    for i, note_state in enumerate(note_states):
        axes = figure.add_subplot(rows, columns, i + 1)
        title = titles[i] if titles is not None else None
        _draw_roll(axes, note_state, title, beats_per_bar, voices)
    _save(figure, path)

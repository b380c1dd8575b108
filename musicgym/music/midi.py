"""MIDI files <-> note-states and token melodies (with mido).

Reading quantises every note onto the beat grid given by the file's ticks per beat: a note at tick
``k`` starts at step ``round(k * resolution / ticks_per_beat)``, so tempo changes never move the
grid. A note lasts at least one step. A note-on with velocity 0 is a note-off; a new onset of a
pitch that still sounds on the same channel ends the old note and strikes it again; the drum channel
(channel index 9) is left out; notes still sounding at the end of their track end there. Type 0 and
type 1 files are read; type 2 (asynchronous) files and SMPTE time division are refused.

Notes outside the requested pitch range follow the ``out_of_range`` policy:

=========  =====================================================================================
policy     effect
=========  =====================================================================================
"fold"     move the note by whole octaves into the range (the default); a pitch class the range
           does not hold (a range narrower than an octave) is dropped
"drop"     leave the note out
"error"    raise :class:`~musicgym.errors.MidiError`
=========  =====================================================================================

:func:`read_midi_report` returns how many notes were moved or dropped.

Writing puts every note of a note-state on channel 0 of one track, with a tempo and a program,
and ends the track at the note-state's last step, so that note-state -> MIDI -> note-state is the
identity (for a note-state whose every note starts with an articulation; one that starts unstruck is
written struck) and, for token melodies in canonical form, tokens -> MIDI -> tokens is too.
Files are written atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import mido
import numpy as np

from musicgym.errors import MidiError
from musicgym.fileio import atomic_output
from musicgym.music.notestate import SIXTEENTH_NOTES, NoteState, fold_pitches
from musicgym.music.tokens import (
    LOWEST_MELODY_PITCH,
    NUM_MELODY_PITCHES,
    canonical_tokens,
    note_state_to_tokens,
    tokens_to_note_state,
)

OutOfRangePolicy = Literal["fold", "drop", "error"]
OUT_OF_RANGE_POLICIES: tuple[str, ...] = ("fold", "drop", "error")
DRUM_CHANNEL = 9  # channel 10 in the 1-based numbering of General MIDI
DEFAULT_TICKS_PER_BEAT = 480
MAX_STEPS = 2**17  # refuses corrupt files whose times would need gigabytes of note-state
_MAX_TICKS_PER_BEAT = 2**15 - 1


@dataclass(frozen=True)
class OutOfRange:
    """What the out-of-range policy did to a piece's notes.

    Args:
        folded: notes moved by whole octaves into the pitch range.
        dropped: notes left out.
    """

    folded: int = 0
    dropped: int = 0

    def __bool__(self) -> bool:
        return bool(self.folded or self.dropped)


@dataclass(frozen=True)
class MidiNotes:
    """The notes of a MIDI file in ticks, drums left out, before quantisation.

    Arrays are aligned, one entry per note: ``starts`` and ``ends`` in ticks, ``pitches`` as MIDI
    numbers, ``tracks`` as indices into ``track_names``.
    """

    path: str
    midi_type: int
    ticks_per_beat: int
    starts: np.ndarray
    ends: np.ndarray
    pitches: np.ndarray
    tracks: np.ndarray
    track_names: tuple[str, ...]
    end_tick: int
    drum_notes: int
    tempos: tuple[tuple[int, int], ...]  # (tick, microseconds per beat), ascending
    time_signature: tuple[int, int]  # the first one in the file, else 4/4

    def seconds_at(self, tick: int) -> float:
        """Playing time at a tick, following the file's tempo changes (120 bpm before the first)."""
        seconds, last_tick, tempo = 0.0, 0, 500_000
        for change_tick, change_tempo in self.tempos:
            if change_tick >= tick:
                break
            seconds += (change_tick - last_tick) * tempo / 1e6 / self.ticks_per_beat
            last_tick, tempo = change_tick, change_tempo
        return seconds + (tick - last_tick) * tempo / 1e6 / self.ticks_per_beat


@dataclass(frozen=True)
class MidiSummary:
    """What ``musicgym midi inspect`` shows about a file."""

    path: str
    midi_type: int
    ticks_per_beat: int
    track_names: tuple[str, ...]
    notes_per_track: tuple[int, ...]
    num_notes: int
    drum_notes: int
    resolution: int
    steps: int
    bars: float
    seconds: float
    lowest_pitch: int
    highest_pitch: int
    time_signature: tuple[int, int]


def _problem(path: str, problem: str) -> MidiError:
    return MidiError(f"{path}: {' '.join(problem.split())}")


def _load(path: str | os.PathLike[str]) -> tuple[str, mido.MidiFile]:
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise _problem(name, "no such file") from None
    except IsADirectoryError:
        raise _problem(name, "is a directory, not a MIDI file") from None
    except OSError as error:
        raise _problem(name, f"cannot be read ({error.strerror or error})") from None
    if not data:
        raise _problem(name, "empty file")
    try:
        midi_file = mido.MidiFile(file=io.BytesIO(data))
    except EOFError:
        raise _problem(name, "truncated MIDI file (the data ends early)") from None
    except Exception as error:  # mido raises many kinds on corrupt data; none may escape
        detail = str(error) or type(error).__name__
        raise _problem(name, f"corrupt or not a MIDI file ({detail})") from None
    if midi_file.type not in (0, 1):
        what = "type 2 (asynchronous)" if midi_file.type == 2 else f"format {midi_file.type}"
        raise _problem(name, f"{what} MIDI files are not supported")
    if not 0 < midi_file.ticks_per_beat <= _MAX_TICKS_PER_BEAT:
        raise _problem(
            name,
            "SMPTE time division (no ticks per beat) is not supported"
            if midi_file.ticks_per_beat < 0
            else f"invalid ticks per beat {midi_file.ticks_per_beat}",
        )
    return name, midi_file


def read_midi_notes(path: str | os.PathLike[str]) -> MidiNotes:
    """The notes of a MIDI file in ticks (see the module docstring for how events pair up).

    Raises:
        MidiError: the file is missing, empty, truncated, corrupt, of an unsupported kind, or has
            no notes outside the drum channel.
    """
    name, midi_file = _load(path)
    starts: list[int] = []
    ends: list[int] = []
    pitches: list[int] = []
    tracks: list[int] = []
    track_names: list[str] = []
    tempos: list[tuple[int, int]] = []
    time_signature: tuple[int, int] | None = None
    end_tick = drum_notes = 0
    for track_index, track in enumerate(midi_file.tracks):
        track_name = ""
        tick = 0
        sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> start tick
        restruck: dict[tuple[int, int], int] = {}  # (channel, pitch) -> tick of a re-onset
        for message in track:
            tick += message.time
            kind = message.type
            if kind == "note_on" or kind == "note_off":
                channel = message.channel
                if channel == DRUM_CHANNEL:
                    if kind == "note_on" and message.velocity > 0:
                        drum_notes += 1
                    continue
                key = (channel, message.note)
                if kind == "note_on" and message.velocity > 0:
                    start = sounding.get(key)
                    if start is not None:  # a new onset of a sounding pitch ends the old note
                        starts.append(start)
                        ends.append(tick)
                        pitches.append(message.note)
                        tracks.append(track_index)
                        restruck[key] = tick
                    sounding[key] = tick
                else:
                    # A note-off at the very tick of a re-onset most likely belongs to the old
                    # note, which that onset already ended: keep the new one sounding.
                    if restruck.pop(key, None) == tick:
                        continue
                    start = sounding.pop(key, None)
                    if start is not None:
                        starts.append(start)
                        ends.append(tick)
                        pitches.append(message.note)
                        tracks.append(track_index)
            elif kind == "set_tempo":
                tempos.append((tick, message.tempo))
            elif kind == "track_name" and not track_name:
                track_name = message.name.strip()
            elif kind == "time_signature" and time_signature is None:
                time_signature = (message.numerator, message.denominator)
        for (_, pitch), start in sounding.items():  # still sounding when the track ends
            starts.append(start)
            ends.append(tick)
            pitches.append(pitch)
            tracks.append(track_index)
        track_names.append(track_name)
        end_tick = max(end_tick, tick)
    if not starts:
        problem = "no notes outside the drum channel" if drum_notes else "no notes"
        raise _problem(name, f"{problem} ({len(midi_file.tracks)} tracks)")
    tempos.sort(key=lambda change: change[0])
    return MidiNotes(
        path=name,
        midi_type=midi_file.type,
        ticks_per_beat=midi_file.ticks_per_beat,
        starts=np.asarray(starts, np.int64),
        ends=np.asarray(ends, np.int64),
        pitches=np.asarray(pitches, np.int64),
        tracks=np.asarray(tracks, np.int64),
        track_names=tuple(track_names),
        end_tick=end_tick,
        drum_notes=drum_notes,
        tempos=tuple(tempos),
        time_signature=time_signature or (4, 4),
    )


def _quantise(ticks: np.ndarray | int, resolution: int, ticks_per_beat: int) -> np.ndarray:
    # np.rint rounds half to even, as Python's round() does.
    return np.rint(np.asarray(ticks) * resolution / ticks_per_beat).astype(np.int64)


def apply_out_of_range(
    pitches: np.ndarray,
    lowest_pitch: int,
    num_pitches: int,
    out_of_range: OutOfRangePolicy = "fold",
    name: str = "",
) -> tuple[np.ndarray, np.ndarray, OutOfRange]:
    """Apply an out-of-range policy to MIDI pitches.

    Returns:
        The new pitches, a boolean mask of those kept, and the counts of folded and dropped notes.

    Raises:
        MidiError: ``out_of_range == "error"`` and a pitch lies outside the range.
    """
    if out_of_range not in OUT_OF_RANGE_POLICIES:
        raise ValueError(
            f"out_of_range must be one of {OUT_OF_RANGE_POLICIES}, got {out_of_range!r}"
        )
    pitches = np.asarray(pitches, np.int64)
    highest = lowest_pitch + num_pitches - 1
    outside = (pitches < lowest_pitch) | (pitches > highest)
    if not outside.any():
        return pitches, np.ones(pitches.shape, bool), OutOfRange()
    if out_of_range == "error":
        bad = pitches[outside]
        raise _problem(
            name or "note-state",
            f"{bad.size} notes ({int(bad.min())}..{int(bad.max())}) lie outside the pitch range "
            f"{lowest_pitch}..{highest}",
        )
    if out_of_range == "drop":
        return pitches, ~outside, OutOfRange(dropped=int(outside.sum()))
    folded = fold_pitches(pitches, lowest_pitch, num_pitches)
    kept = (folded >= lowest_pitch) & (folded <= highest)
    return (
        folded,
        kept,
        OutOfRange(folded=int((outside & kept).sum()), dropped=int((~kept).sum())),
    )


def _check_range(lowest_pitch: int, num_pitches: int) -> None:
    if num_pitches < 1 or lowest_pitch < 0 or lowest_pitch + num_pitches > 128:
        raise ValueError(
            f"pitch range {lowest_pitch}..{lowest_pitch + num_pitches - 1} is not within MIDI "
            "0..127 (or is empty)"
        )


def quantise_notes(
    notes: MidiNotes,
    *,
    resolution: int = SIXTEENTH_NOTES,
    lowest_pitch: int | None = None,
    num_pitches: int | None = None,
    out_of_range: OutOfRangePolicy = "fold",
) -> tuple[NoteState, OutOfRange]:
    """The note-state of notes read by :func:`read_midi_notes` (see :func:`read_midi_report`)."""
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    file_low, file_high = int(notes.pitches.min()), int(notes.pitches.max())
    if lowest_pitch is None:
        lowest_pitch = file_low
    if num_pitches is None:
        num_pitches = max(file_high, lowest_pitch) - lowest_pitch + 1
    _check_range(lowest_pitch, num_pitches)
    pitches, kept, report = apply_out_of_range(
        notes.pitches, lowest_pitch, num_pitches, out_of_range, notes.path
    )
    if not kept.any():
        raise _problem(
            notes.path,
            f"all {kept.size} notes lie outside the pitch range "
            f"{lowest_pitch}..{lowest_pitch + num_pitches - 1}",
        )
    starts = _quantise(notes.starts[kept], resolution, notes.ticks_per_beat)
    ends = np.maximum(_quantise(notes.ends[kept], resolution, notes.ticks_per_beat), starts + 1)
    num_steps = max(
        int(ends.max()), int(_quantise(notes.end_tick, resolution, notes.ticks_per_beat))
    )
    if num_steps > MAX_STEPS:
        raise _problem(
            notes.path,
            f"{num_steps} steps at resolution {resolution} exceed the limit of {MAX_STEPS}",
        )
    note_state = NoteState.from_notes(
        pitches[kept],
        starts,
        ends,
        lowest_pitch=lowest_pitch,
        num_pitches=num_pitches,
        resolution=resolution,
        num_steps=num_steps,
        name=notes.path,
    )
    return note_state, report


def read_midi_report(
    path: str | os.PathLike[str],
    *,
    resolution: int = SIXTEENTH_NOTES,
    lowest_pitch: int | None = None,
    num_pitches: int | None = None,
    out_of_range: OutOfRangePolicy = "fold",
) -> tuple[NoteState, OutOfRange]:
    """Read a MIDI file into a note-state and say what the out-of-range policy did.

    Args:
        path: a type 0 or type 1 MIDI file.
        resolution: steps per quarter note (4 = 16th notes).
        lowest_pitch: MIDI pitch of the note-state's first row; ``None``: the file's lowest note.
        num_pitches: rows of the note-state; ``None``: up to the file's highest note.
        out_of_range: ``"fold"``, ``"drop"`` or ``"error"`` (see the module docstring).

    Raises:
        MidiError: bad file, no notes, every note out of range, or a note out of range with
            ``out_of_range="error"``; the message names the file.
    """
    notes = read_midi_notes(path)
    return quantise_notes(
        notes,
        resolution=resolution,
        lowest_pitch=lowest_pitch,
        num_pitches=num_pitches,
        out_of_range=out_of_range,
    )


def read_midi(
    path: str | os.PathLike[str],
    *,
    resolution: int = SIXTEENTH_NOTES,
    lowest_pitch: int | None = None,
    num_pitches: int | None = None,
    out_of_range: OutOfRangePolicy = "fold",
) -> NoteState:
    """Read a MIDI file into a note-state named after the path (see :func:`read_midi_report`)."""
    note_state, _ = read_midi_report(
        path,
        resolution=resolution,
        lowest_pitch=lowest_pitch,
        num_pitches=num_pitches,
        out_of_range=out_of_range,
    )
    return note_state


def note_steps(note_state: NoteState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The notes of a note-state as ``(starts, ends, pitches)``: steps ``[start, end)``, MIDI pitch.

    A note starts where it is articulated, or where a pitch starts to play unstruck; it ends
    where the pitch stops playing or is struck again. Sorted by pitch, then start.
    """
    play = note_state.play.T.astype(bool)  # (N, T)
    articulate = note_state.articulate.T.astype(bool)
    before = np.zeros_like(play)
    before[:, 1:] = play[:, :-1]
    onset = play & (articulate | ~before)
    after = np.zeros_like(play)
    after[:, :-1] = play[:, 1:] & ~onset[:, 1:]
    last = play & ~after  # the note sounds on this step and not the next
    pitch_index, starts = np.nonzero(onset)
    _, ends = np.nonzero(last)
    return starts, ends + 1, pitch_index + note_state.lowest_pitch


def fit_pitch_range(
    note_state: NoteState,
    lowest_pitch: int,
    num_pitches: int,
    out_of_range: OutOfRangePolicy = "fold",
) -> tuple[NoteState, OutOfRange]:
    """The note-state on another pitch axis, notes outside it handled by ``out_of_range``."""
    _check_range(lowest_pitch, num_pitches)
    sounding = note_state.sounding_pitches()
    if not sounding.size or (
        sounding[0] >= lowest_pitch and sounding[-1] < lowest_pitch + num_pitches
    ):
        return note_state.with_range(lowest_pitch, num_pitches), OutOfRange()
    starts, ends, pitches = note_steps(note_state)
    pitches, kept, report = apply_out_of_range(
        pitches, lowest_pitch, num_pitches, out_of_range, note_state.name
    )
    fitted = NoteState.from_notes(
        pitches[kept],
        starts[kept],
        ends[kept],
        lowest_pitch=lowest_pitch,
        num_pitches=num_pitches,
        resolution=note_state.resolution,
        num_steps=note_state.num_steps,
        name=note_state.name,
    )
    return fitted, report


def _ticks_per_beat(resolution: int) -> int:
    ticks = math.lcm(DEFAULT_TICKS_PER_BEAT, resolution)
    if ticks > _MAX_TICKS_PER_BEAT:
        ticks = resolution * (_MAX_TICKS_PER_BEAT // resolution)
    if ticks < 1:
        raise ValueError(f"resolution {resolution} is too fine for a MIDI file")
    return ticks


def write_midi(
    note_state: NoteState,
    path: str | os.PathLike[str],
    *,
    tempo_bpm: float = 120.0,
    program: int = 0,
    velocity: int = 80,
) -> None:
    """Write a note-state to a type 1 MIDI file: one track, channel 0, one tempo, one program.

    The file's ticks per beat is a multiple of the note-state's resolution, and the track ends at
    the note-state's last step, so :func:`read_midi` at the same resolution and pitch range gives
    the note-state back.
    """
    if not tempo_bpm > 0:
        raise ValueError(f"tempo_bpm must be > 0, got {tempo_bpm}")
    if not 0 <= program <= 127 or not 1 <= velocity <= 127:
        raise ValueError(f"program must be 0..127 and velocity 1..127, got {program}, {velocity}")
    ticks_per_beat = _ticks_per_beat(note_state.resolution)
    ticks_per_step = ticks_per_beat // note_state.resolution
    starts, ends, pitches = note_steps(note_state)
    # Events sorted by tick with note-offs first, so a note struck again right after it ends
    # reads back as two notes.
    ticks = np.concatenate([ends, starts]) * ticks_per_step
    is_on = np.concatenate([np.zeros(ends.size, np.int64), np.ones(starts.size, np.int64)])
    event_pitches = np.concatenate([pitches, pitches])
    order = np.lexsort((event_pitches, is_on, ticks))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    track.append(mido.Message("program_change", channel=0, program=program, time=0))
    last_tick = 0
    for tick, on, pitch in zip(
        ticks[order].tolist(), is_on[order].tolist(), event_pitches[order].tolist()
    ):
        kind = "note_on" if on else "note_off"
        track.append(
            mido.Message(kind, channel=0, note=pitch, velocity=velocity, time=tick - last_tick)
        )
        last_tick = tick
    end_tick = note_state.num_steps * ticks_per_step
    track.append(mido.MetaMessage("end_of_track", time=end_tick - last_tick))
    midi_file = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    midi_file.tracks.append(track)
    with atomic_output(path) as temporary:
        midi_file.save(temporary)


def write_melody(
    melody_tokens: Sequence[int],
    path: str | os.PathLike[str],
    *,
    tempo_bpm: float = 120.0,
    program: int = 0,
    velocity: int = 80,
) -> None:
    """Write a token melody (one token per 16th note) to a MIDI file; see :func:`write_midi`."""
    write_midi(
        tokens_to_note_state(melody_tokens),
        path,
        tempo_bpm=tempo_bpm,
        program=program,
        velocity=velocity,
    )


def length_of_rests(path: str | os.PathLike[str]) -> tuple[float, float] | None:
    """``(seconds, quarter notes)`` of a readable MIDI file that holds no note (a composed melody
    of rests), else ``None``."""
    try:
        midi_file = mido.MidiFile(path)
    except (OSError, ValueError, EOFError, KeyError):
        return None
    messages = [message for track in midi_file.tracks for message in track]
    if any(m.type == "note_on" and m.velocity > 0 for m in messages):
        return None
    ticks = max((sum(m.time for m in track) for track in midi_file.tracks), default=0)
    return float(midi_file.length), ticks / midi_file.ticks_per_beat


def read_melody(
    path: str | os.PathLike[str], *, out_of_range: OutOfRangePolicy = "fold"
) -> list[int]:
    """Canonical melody tokens of a MIDI file, one per 16th note.

    A polyphonic file gives its top voice (:meth:`NoteState.top_voice`, taken before any folding,
    so a folded bass cannot become the melody); notes outside MIDI 48..83 follow ``out_of_range``.
    """
    note_state = read_midi(path, resolution=SIXTEENTH_NOTES).top_voice()
    melody, _ = fit_pitch_range(note_state, LOWEST_MELODY_PITCH, NUM_MELODY_PITCHES, out_of_range)
    return canonical_tokens(note_state_to_tokens(melody))


def inspect_midi(path: str | os.PathLike[str], *, resolution: int = SIXTEENTH_NOTES) -> MidiSummary:
    """Tracks, notes, length (steps, bars, seconds), pitch range and ticks per beat of a file."""
    notes = read_midi_notes(path)
    note_state, _ = quantise_notes(notes, resolution=resolution)
    numerator, denominator = notes.time_signature
    steps_per_bar = resolution * 4 * numerator / denominator
    end_tick = max(notes.end_tick, int(notes.ends.max()))
    return MidiSummary(
        path=notes.path,
        midi_type=notes.midi_type,
        ticks_per_beat=notes.ticks_per_beat,
        track_names=notes.track_names,
        notes_per_track=tuple(np.bincount(notes.tracks, minlength=len(notes.track_names)).tolist()),
        num_notes=int(notes.starts.size),
        drum_notes=notes.drum_notes,
        resolution=resolution,
        steps=note_state.num_steps,
        bars=note_state.num_steps / steps_per_bar,
        seconds=notes.seconds_at(end_tick),
        lowest_pitch=int(notes.pitches.min()),
        highest_pitch=int(notes.pitches.max()),
        time_signature=notes.time_signature,
    )

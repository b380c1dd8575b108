"""MIDI reading and writing, the piano roll, and the ``musicgym midi`` commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicgym.cli import main
from musicgym.errors import MidiError
from musicgym.music.midi import (
    OutOfRange,
    inspect_midi,
    read_melody,
    read_midi,
    read_midi_report,
    write_melody,
    write_midi,
)
from musicgym.music.notestate import NoteState
from musicgym.music.pianoroll import (
    HOLD,
    ONSET,
    piano_roll_rgb,
    save_piano_roll,
    save_piano_roll_sheet,
)
from musicgym.music.tokens import canonical_tokens, tokens_to_note_state
from tests.cli_runner import HANG

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def midi_file(
    path: Path,
    tracks: list[list[tuple]],
    *,
    ticks_per_beat: int = 96,
    midi_type: int = 1,
) -> Path:
    """Write a MIDI file from tracks of ``(delta, kind, fields...)`` events:
    ``(delta, "on", pitch, velocity[, channel])``, ``(delta, "off", pitch[, channel])``,
    ``(delta, "tempo", bpm)``, ``(delta, "meta", type, fields)``."""
    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        track = mido.MidiTrack()
        for event in events:
            delta, kind, *rest = event
            if kind == "on":
                pitch, velocity, *channel = rest
                track.append(
                    mido.Message(
                        "note_on",
                        note=pitch,
                        velocity=velocity,
                        channel=(channel or [0])[0],
                        time=delta,
                    )
                )
            elif kind == "off":
                pitch, *channel = rest
                track.append(
                    mido.Message("note_off", note=pitch, channel=(channel or [0])[0], time=delta)
                )
            elif kind == "tempo":
                track.append(
                    mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(rest[0]), time=delta)
                )
            else:
                meta_type, fields = rest
                track.append(mido.MetaMessage(meta_type, time=delta, **fields))
        midi.tracks.append(track)
    midi.save(path)
    return path


def notes_of(note_state: NoteState) -> list[tuple[int, int, int]]:
    """``(pitch, start, end)`` of each note, from the matrix, by an independent scan."""
    notes = []
    for n in range(note_state.num_pitches):
        start = None
        for t in range(note_state.num_steps + 1):
            playing = t < note_state.num_steps and note_state.play[t, n]
            struck = playing and note_state.articulate[t, n]
            if start is not None and (not playing or struck):
                notes.append((note_state.lowest_pitch + n, start, t))
                start = None
            if playing and start is None:
                start = t
    return sorted(notes, key=lambda note: (note[1], note[0]))


@pytest.fixture
def chorale_midi(tmp_path_factory) -> Path:
    """A polyphonic piece written by write_midi: four voices, repeated notes, a long note."""
    rng = np.random.default_rng(7)
    matrix = np.zeros((64, 40, 2), np.uint8)
    for voice, base in enumerate((5, 14, 22, 31)):
        t = 0
        while t < 64:
            length = int(rng.choice([1, 2, 4, 8]))
            pitch = base + int(rng.integers(0, 8))
            matrix[t : t + length, pitch, 0] = 1
            matrix[t, pitch, 1] = 1
            t += length + int(voice == 0 and rng.random() < 0.2)
    path = tmp_path_factory.mktemp("midi") / "chorale.mid"
    write_midi(NoteState(matrix, 40, 4, "chorale"), path)
    return path


# --- round trips -------------------------------------------------------------------------------


@st.composite
def struck_note_states(draw) -> NoteState:
    """Note-states whose every note starts with an articulation (what MIDI can hold)."""
    steps = draw(st.integers(1, 48))
    pitches = draw(st.integers(1, 24))
    resolution = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 24]))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.floats(0.05, 0.9))
    rng = np.random.default_rng(seed)
    play = rng.random((steps, pitches)) < density
    play[rng.integers(steps), rng.integers(pitches)] = True  # at least one note
    articulate = play & (rng.random((steps, pitches)) < 0.4)
    before = np.zeros_like(play)
    before[1:] = play[:-1]
    articulate |= play & ~before
    lowest = draw(st.integers(0, 128 - pitches))
    return NoteState(np.stack([play, articulate], -1).astype(np.uint8), lowest, resolution)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(note_state=struck_note_states())
def test_note_state_midi_round_trip_is_exact(note_state, tmp_path):
    path = tmp_path / "piece.mid"
    write_midi(note_state, path)
    back = read_midi(
        path,
        resolution=note_state.resolution,
        lowest_pitch=note_state.lowest_pitch,
        num_pitches=note_state.num_pitches,
    )
    assert back == note_state
    assert back.name == str(path)


@st.composite
def canonical_melodies(draw) -> list[int]:
    tokens = draw(st.lists(st.integers(0, 37), min_size=1, max_size=64))
    tokens[draw(st.integers(0, len(tokens) - 1))] = draw(st.integers(2, 37))  # one note at least
    return canonical_tokens(tokens)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tokens=canonical_melodies())
def test_token_midi_round_trip_is_exact(tokens, tmp_path):
    path = tmp_path / "melody.mid"
    write_melody(tokens, path)
    assert read_melody(path) == tokens


def test_write_midi_keeps_tempo_and_program(tmp_path):
    path = tmp_path / "slow.mid"
    write_melody([14, 1, 1, 1], path, tempo_bpm=60, program=40, velocity=100)
    messages = [m for track in mido.MidiFile(path).tracks for m in track]
    assert [m.tempo for m in messages if m.type == "set_tempo"] == [1_000_000]
    assert [m.program for m in messages if m.type == "program_change"] == [40]
    assert {m.velocity for m in messages if m.type == "note_on"} == {100}
    assert inspect_midi(path).seconds == pytest.approx(1.0)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "melody.mid"
    write_melody([14, 1], path)
    before = path.read_bytes()

    def broken_save(self, filename=None, file=None):
        Path(filename).write_bytes(b"MThd partial")
        raise OSError("disk full")

    monkeypatch.setattr(mido.MidiFile, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_melody([20, 1], path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["melody.mid"]


# --- reading real-world events -----------------------------------------------------------------


@pytest.mark.parametrize("midi_type", [0, 1])
def test_quantisation_follows_ticks_not_tempo(tmp_path, midi_type):
    # 96 ticks per beat, 4 steps per beat: 24 ticks a step. The tempo changes between the notes.
    path = midi_file(
        tmp_path / "tempo.mid",
        [
            [
                (0, "tempo", 120),
                (0, "on", 60, 90),
                (48, "off", 60),  # step 0..2
                (0, "tempo", 40),
                (13, "on", 62, 90),  # tick 61: 61 / 24 = 2.54 -> step 3
                (83, "off", 62),  # tick 144 -> step 6
                (0, "tempo", 200),
                (36, "on", 64, 90),  # tick 180: 7.5 -> step 8 (half to even)
                (5, "off", 64),  # tick 185: 7.7 -> 8, lasts at least a step -> 9
            ]
        ],
        midi_type=midi_type,
    )
    note_state = read_midi(path)
    assert notes_of(note_state) == [(60, 0, 2), (62, 3, 6), (64, 8, 9)]
    seconds = inspect_midi(path).seconds
    assert seconds == pytest.approx(48 / 96 * 0.5 + 96 / 96 * 1.5 + 41 / 96 * 0.3)


@pytest.mark.parametrize("resolution", [1, 2, 4, 12])
def test_resolution_scales_the_grid(tmp_path, resolution):
    path = midi_file(tmp_path / "q.mid", [[(96, "on", 60, 80), (192, "off", 60)]])
    assert notes_of(read_midi(path, resolution=resolution)) == [(60, resolution, 3 * resolution)]


def test_velocity_zero_note_on_is_a_note_off(tmp_path):
    path = midi_file(
        tmp_path / "v0.mid",
        [[(0, "on", 60, 80), (48, "on", 60, 0), (48, "on", 60, 80), (24, "off", 60)]],
    )
    assert notes_of(read_midi(path)) == [(60, 0, 2), (60, 4, 5)]


@pytest.mark.parametrize(
    ("events", "notes"),
    [
        # a new onset of a sounding pitch ends the old note; the extra note-off is ignored
        (
            [(0, "on", 60, 80), (48, "on", 60, 80), (48, "off", 60), (48, "off", 60)],
            [(60, 0, 2), (60, 2, 4)],
        ),
        # a note-off at the tick of the re-onset belongs to the old note
        (
            [(0, "on", 60, 80), (48, "on", 60, 80), (0, "off", 60), (48, "off", 60)],
            [(60, 0, 2), (60, 2, 4)],
        ),
        # the same pitch on two channels: two voices in unison, merged, struck twice
        (
            [(0, "on", 60, 80, 0), (48, "on", 60, 80, 1), (48, "off", 60, 0), (48, "off", 60, 1)],
            [(60, 0, 2), (60, 2, 6)],
        ),
        # a note never switched off ends with its track
        ([(0, "on", 60, 80), (0, "on", 64, 80), (96, "off", 64)], [(60, 0, 4), (64, 0, 4)]),
    ],
)
def test_overlapping_notes(tmp_path, events, notes):
    assert notes_of(read_midi(midi_file(tmp_path / "overlap.mid", [events]))) == notes


def test_drum_channel_is_left_out(tmp_path):
    path = midi_file(
        tmp_path / "drums.mid",
        [
            [(0, "on", 36, 100, 9), (24, "off", 36, 9)],
            [(0, "on", 60, 80, 0), (24, "off", 60, 0), (0, "on", 30, 100, 9), (24, "off", 30, 9)],
        ],
    )
    note_state = read_midi(path)
    assert notes_of(note_state) == [(60, 0, 1)]
    assert inspect_midi(path).drum_notes == 2


def test_type_1_tracks_are_merged(tmp_path):
    path = midi_file(
        tmp_path / "two.mid",
        [
            [(0, "meta", "track_name", {"name": "conductor"}), (0, "tempo", 90)],
            [(0, "meta", "track_name", {"name": "upper"}), (0, "on", 72, 80), (96, "off", 72)],
            [(0, "meta", "track_name", {"name": "lower"}), (48, "on", 48, 80), (96, "off", 48)],
        ],
    )
    note_state = read_midi(path)
    assert (note_state.lowest_pitch, note_state.num_pitches) == (48, 25)  # the file's own range
    assert notes_of(note_state) == [(72, 0, 4), (48, 2, 6)]
    summary = inspect_midi(path)
    assert summary.track_names == ("conductor", "upper", "lower")
    assert summary.notes_per_track == (0, 1, 1)


def wide_file(tmp_path: Path) -> Path:
    return midi_file(
        tmp_path / "wide.mid",
        [
            [
                (0, "on", 30, 80),
                (0, "on", 60, 80),
                (0, "on", 100, 80),
                (24, "off", 30),
                (0, "off", 60),
                (0, "off", 100),
            ]
        ],
    )


@pytest.mark.parametrize(
    ("policy", "pitches", "report"),
    [
        ("fold", [54, 60, 76], OutOfRange(folded=2)),  # 30 up two octaves, 100 down two
        ("drop", [60], OutOfRange(dropped=2)),
    ],
)
def test_out_of_range_policy(tmp_path, policy, pitches, report):
    note_state, got = read_midi_report(
        wide_file(tmp_path), lowest_pitch=48, num_pitches=36, out_of_range=policy
    )
    assert [p for p, _, _ in notes_of(note_state)] == sorted(pitches)
    assert got == report


def test_out_of_range_error_names_file_and_notes(tmp_path):
    path = wide_file(tmp_path)
    with pytest.raises(MidiError, match=rf"^{path}: 2 notes \(30\.\.100\) lie outside"):
        read_midi(path, lowest_pitch=48, num_pitches=36, out_of_range="error")


def test_folding_into_less_than_an_octave_drops_missing_pitch_classes(tmp_path):
    # range 60..65 holds pitch classes C..F: 30 (F#) has no place, 100 (E) folds to 64
    note_state, report = read_midi_report(wide_file(tmp_path), lowest_pitch=60, num_pitches=6)
    assert sorted(p for p, _, _ in notes_of(note_state)) == [60, 64]
    assert report == OutOfRange(folded=1, dropped=1)


def test_read_melody_takes_the_top_voice_before_folding(tmp_path):
    # D3 then F3 over an E2 that folds up to E3: folded first, the E3 would be the top voice
    path = midi_file(
        tmp_path / "duet.mid",
        [
            [
                (0, "on", 40, 80),
                (0, "on", 50, 80),
                (48, "off", 50),
                (0, "on", 53, 80),
                (48, "off", 53),
                (0, "off", 40),
            ]
        ],
    )
    assert read_melody(path) == [4, 1, 7, 1]


# --- bad files ---------------------------------------------------------------------------------


def one_line_naming(error: MidiError, path: Path | str) -> bool:
    message = str(error)
    return "\n" not in message and message.startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        (b"", "empty file"),
        (b"hello, this is text", "not a MIDI file"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02", "truncated"),
        (b"MThd\x00\x00\x00\x06\x00\x02\x00\x00\x00\x60", "type 2"),
        (b"MThd\x00\x00\x00\x06\x00\x00\x00\x00\xe7\x28", "SMPTE"),
    ],
)
def test_bad_files_raise_one_line_midi_error(tmp_path, content, problem):
    path = tmp_path / "bad.mid"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MidiError, match=problem) as raised:
        read_midi(path)
    assert one_line_naming(raised.value, path)


def test_file_without_notes(tmp_path):
    path = midi_file(
        tmp_path / "silent.mid", [[(0, "tempo", 100), (96, "meta", "end_of_track", {})]]
    )
    with pytest.raises(MidiError, match="no notes") as raised:
        read_midi(path)
    assert one_line_naming(raised.value, path)


def test_drums_only_file_has_no_notes(tmp_path):
    path = midi_file(tmp_path / "drums.mid", [[(0, "on", 36, 100, 9), (24, "off", 36, 9)]])
    with pytest.raises(MidiError, match="no notes outside the drum channel"):
        read_midi(path)


def test_directory_is_not_a_midi_file(tmp_path):
    with pytest.raises(MidiError, match="is a directory"):
        read_midi(tmp_path)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_midi_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "random.mid"
    path.write_bytes(data)
    try:
        read_midi(path)
    except MidiError as error:
        assert one_line_naming(error, path)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_real_files_raise_only_midi_error(chorale_midi, tmp_path_factory, data):
    content = bytearray(chorale_midi.read_bytes())
    cut = data.draw(st.integers(0, len(content) - 1), label="cut")
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(content) - 1), st.integers(0, 255)), max_size=3),
        label="flips",
    )
    damaged = content[:cut] if not flips else content
    for position, value in flips:
        damaged[position] = value
    path = tmp_path_factory.mktemp("damaged") / "chorale.mid"
    path.write_bytes(bytes(damaged))
    try:
        note_state = read_midi(path)
    except MidiError as error:
        assert one_line_naming(error, path)
    else:
        assert flips  # a cut file is always truncated; a flipped byte may still read
        assert isinstance(note_state, NoteState)


# --- piano roll --------------------------------------------------------------------------------


@pytest.mark.parametrize(("step_px", "pitch_px"), [(1, 1), (4, 3), (6, 6)])
def test_piano_roll_rgb_shape_and_note_colours(step_px, pitch_px):
    note_state = tokens_to_note_state([14, 1, 1, 1, 0, 16, 16, 1])  # C4 held; D4 struck twice
    image = piano_roll_rgb(note_state, step_px=step_px, pitch_px=pitch_px)
    assert image.shape == (36 * pitch_px, 8 * step_px, 3)
    assert image.dtype == np.uint8
    c4_row = (83 - 60) * pitch_px  # top row is the highest pitch, 83
    d4_row = (83 - 62) * pitch_px
    last = step_px - 1
    assert tuple(image[c4_row, 0 * step_px + last]) == ONSET
    assert tuple(image[c4_row, 2 * step_px + last]) == HOLD
    assert tuple(image[d4_row, 6 * step_px + last]) == ONSET  # the re-strike is an onset too
    if step_px >= 3:  # a gap separates the two strikes of D4
        assert tuple(image[d4_row, 6 * step_px]) not in (ONSET, HOLD)
    empty_row = image[(83 - 70) * pitch_px]
    assert not (empty_row == ONSET).all(axis=-1).any()
    assert not (empty_row == HOLD).all(axis=-1).any()


def test_piano_roll_marks_beats_and_bars():
    image = piano_roll_rgb(NoteState.empty(40, 60, 2), step_px=2, pitch_px=1)
    columns = image[0, :, 0]  # row of MIDI 61, a black key
    beat_columns = set(range(0, 80, 8))
    bar_columns = {0, 32, 64}
    assert {x for x in range(80) if columns[x] != columns[1]} == beat_columns
    assert len({columns[x] for x in bar_columns}) == 1
    assert columns[0] < columns[8] < columns[1]  # bar lines darker than beat lines


def test_save_piano_roll_and_sheet(tmp_path, chorale_midi):
    note_state = read_midi(chorale_midi)
    save_piano_roll(note_state, tmp_path / "roll.png", title="chorale")
    save_piano_roll_sheet([note_state, note_state.top_voice()], tmp_path / "sheet.png", ["a", "b"])
    for name in ("roll.png", "sheet.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="2 titles for 1"):
        save_piano_roll_sheet([note_state], tmp_path / "x.png", ["a", "b"])


# --- command line ------------------------------------------------------------------------------


def test_cli_inspect(chorale_midi, capsys):
    assert main(["midi", "inspect", str(chorale_midi)]) == 0
    out = capsys.readouterr().out
    summary = inspect_midi(chorale_midi)
    assert f"{summary.num_notes}" in out
    assert "64 steps" in out
    assert "480 ticks per beat" in out
    assert f"{summary.lowest_pitch}..{summary.highest_pitch}" in out


def test_cli_render(chorale_midi, tmp_path, capsys):
    out = tmp_path / "roll.png"
    assert main(["midi", "render", str(chorale_midi), "--png", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("command", ["inspect", "render"])
def test_cli_corrupt_file_exits_2_with_one_line(tmp_path, capsys, command):
    path = tmp_path / "corrupt.mid"
    path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x00\x60MTrk\x00\x00\x00\x10\x00\x90")
    args = ["midi", command, str(path)] + (
        ["--png", str(tmp_path / "x.png")] * (command == "render")
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(path) in err
    assert not (tmp_path / "x.png").exists()


def test_musicgym_command_reports_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.mid"
    path.write_bytes(b"not midi at all")
    command = Path(sys.executable).with_name("musicgym")
    result = subprocess.run(
        [str(command), "midi", "inspect", str(path)], capture_output=True, text=True, timeout=HANG
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"musicgym: error: {path}: ")

"""Note-states, melody tokens and keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicgym.errors import NoteStateError
from musicgym.music.keys import Key, KeyParseError
from musicgym.music.notestate import NoteState
from musicgym.music.tokens import (
    NO_EVENT,
    NOTE_OFF,
    TokenError,
    canonical_tokens,
    note_state_to_tokens,
    pitch_to_token,
    token_to_pitch,
    tokens_to_note_state,
    validate_tokens,
)


def note_state_from_rows(rows: list[str], lowest_pitch: int = 60) -> NoteState:
    """One string per pitch, lowest first, one character per step: '.' silent, 'o' struck,
    '-' held."""
    play = np.array([[c in "o-" for c in row] for row in rows]).T
    articulate = np.array([[c == "o" for c in row] for row in rows]).T
    return NoteState(np.stack([play, articulate], axis=-1).astype(np.uint8), lowest_pitch)


@st.composite
def note_states(draw, max_steps: int = 24, max_pitches: int = 8) -> NoteState:
    steps = draw(st.integers(1, max_steps))
    pitches = draw(st.integers(1, max_pitches))
    cells = draw(
        st.lists(st.sampled_from("..o-"), min_size=steps * pitches, max_size=steps * pitches)
    )
    rows = ["".join(cells[p * steps : (p + 1) * steps]) for p in range(pitches)]
    return note_state_from_rows(rows, draw(st.integers(0, 128 - pitches)))


# --- NoteState ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matrix", "lowest_pitch", "resolution", "problem"),
    [
        (np.zeros((4, 3)), 60, 4, "shape"),
        (np.zeros((4, 3, 3)), 60, 4, "shape"),
        (np.full((4, 3, 2), 2), 60, 4, "0 or 1"),
        (np.array([[[0, 1]]]), 60, 4, "articulate without play at step 0, pitch 60"),
        (np.zeros((4, 3, 2)), 126, 4, "outside MIDI 0..127"),
        (np.zeros((4, 3, 2)), -1, 4, "outside MIDI 0..127"),
        (np.zeros((4, 3, 2)), 60, 0, "resolution"),
    ],
)
def test_note_state_rejects_bad_matrices(matrix, lowest_pitch, resolution, problem):
    with pytest.raises(NoteStateError, match=problem):
        NoteState(matrix, lowest_pitch, resolution, name="piece.mid")


def test_note_state_error_names_the_piece():
    with pytest.raises(NoteStateError, match=r"^piece\.mid: "):
        NoteState(np.zeros((2, 2)), name="piece.mid")


def test_note_state_equality_compares_music_not_name():
    a = note_state_from_rows(["o-..", "..o."])
    assert a == NoteState(a.matrix.copy(), 60, 4, name="other")
    assert a != NoteState(a.matrix, 61, 4)
    assert a != NoteState(a.matrix, 60, 2)
    assert a != note_state_from_rows(["o-..", "..o-"])
    assert a != "not a note-state"


@pytest.mark.parametrize(
    ("rows", "top"),
    [
        # the upper voice wins; the lower one shows only where the upper rests, struck on entry
        (["o---", "..o-"], ["o-..", "..o-"]),
        # a held top note stays held when a lower note starts under it
        (["..o-", "o---"], ["....", "o---"]),
        # the upper note ends while the lower holds: the lower note is struck again
        (["o---", "o-.."], ["..o-", "o-.."]),
        # a top note struck again in the original is struck again in the melody
        (["....", "o-o-"], ["....", "o-o-"]),
        # a note entering unstruck after silence is struck
        (["....", "o.--"], ["....", "o.o-"]),
    ],
)
def test_top_voice(rows, top):
    assert note_state_from_rows(rows).top_voice() == note_state_from_rows(top)


def reference_top_voice(note_state: NoteState) -> np.ndarray:
    """The rule of NoteState.top_voice, step by step."""
    matrix = np.zeros_like(note_state.matrix)
    previous = -1
    for t in range(note_state.num_steps):
        sounding = np.flatnonzero(note_state.play[t])
        if not sounding.size:
            previous = -1
            continue
        top = sounding[-1]
        matrix[t, top] = 1, int(top != previous or note_state.articulate[t, top])
        previous = top
    return matrix


@given(note_states())
def test_top_voice_matches_step_by_step_rule(note_state):
    top = note_state.top_voice()
    assert np.array_equal(top.matrix, reference_top_voice(note_state))
    assert (top.play.sum(axis=1) <= 1).all()


TWO_NOTES = ["........", "...o-...", "o-....o-", "........"]  # MIDI 61 and 62 on 60..63


@pytest.mark.parametrize("semitones", [-1, 0, 1])
def test_transpose_moves_every_note(semitones):
    note_state = note_state_from_rows(TWO_NOTES, 60)
    moved = note_state.transpose(semitones)
    assert list(moved.sounding_pitches()) == [61 + semitones, 62 + semitones]
    assert np.array_equal(moved.matrix[:, 1 + semitones : 3 + semitones], note_state.matrix[:, 1:3])
    assert moved.matrix.sum() == note_state.matrix.sum()


@pytest.mark.parametrize("semitones", [-2, 2, 12])
def test_transpose_off_the_pitch_axis_raises(semitones):
    with pytest.raises(NoteStateError, match="leaves the pitch range"):
        note_state_from_rows(TWO_NOTES, 60).transpose(semitones)


def test_transposition_room_is_the_largest_legal_shift():
    note_state = note_state_from_rows(["....", ".o..", "..o.", "....", "...."], 60)
    down, up = note_state.transposition_room()
    assert (down, up) == (-1, 2)
    note_state.transpose(down)
    note_state.transpose(up)
    for bad in (down - 1, up + 1):
        with pytest.raises(NoteStateError):
            note_state.transpose(bad)


def test_with_range_pads_and_crops_losslessly():
    note_state = note_state_from_rows(["....", "o-o.", "...."], 60)
    wide = note_state.with_range(55, 12)
    assert list(wide.sounding_pitches()) == [61]
    assert wide.with_range(60, 3) == note_state
    with pytest.raises(NoteStateError, match="do not fit"):
        note_state.with_range(62, 5)


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 12), st.integers(0, 6)), max_size=12),
    st.integers(1, 16),
)
def test_from_notes_matches_laying_notes_one_by_one(notes, num_steps):
    index = np.array([n[0] for n in notes], np.int64)
    starts = np.array([n[1] for n in notes], np.int64)
    ends = starts + np.array([n[2] for n in notes], np.int64)  # zero-length notes get one step
    expected = np.zeros((num_steps, 6, 2), np.uint8)
    for n, start, end in zip(index, starts, ends):
        expected[start : max(end, start + 1), n, 0] = 1
    for n, start in zip(index, starts):
        if start < num_steps:
            expected[start, n, 1] = 1
    laid = NoteState.from_notes(
        index + 40, starts, ends, lowest_pitch=40, num_pitches=6, num_steps=num_steps
    )
    assert np.array_equal(laid.matrix, expected)


# --- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "canonical"),
    [
        ([0, 1, 0], [1, 1, 1]),  # NOTE_OFF in silence is a NO_EVENT
        ([2, 0, 0, 1], [2, 0, 1, 1]),  # only the first NOTE_OFF ends the note
        ([3, 1, 0, 1], [3, 1, 0, 1]),  # already canonical (the spec's eighth note and rest)
        ([2, 4, 6, 7], [2, 4, 6, 7]),
        ([], []),
    ],
)
def test_canonical_tokens(tokens, canonical):
    assert canonical_tokens(tokens) == canonical
    assert canonical_tokens(canonical) == canonical


def test_spec_example_eighth_note_then_rest():
    note_state = tokens_to_note_state([3, 1, 0, 1])
    pitch = note_state.lowest_pitch + np.flatnonzero(note_state.play[0])
    assert list(pitch) == [49]  # C#3
    assert note_state.play.sum(axis=1).tolist() == [1, 1, 0, 0]
    assert note_state.articulate.sum(axis=1).tolist() == [1, 0, 0, 0]


@pytest.mark.parametrize("bad", [38, -1, True, 2.0, "2", None])
def test_validate_tokens_rejects(bad):
    with pytest.raises(TokenError, match="token 1"):
        validate_tokens([2, bad], what="melody")


@pytest.mark.parametrize(("pitch", "token"), [(48, 2), (60, 14), (83, 37)])
def test_pitch_token_mapping(pitch, token):
    assert pitch_to_token(pitch) == token
    assert token_to_pitch(token) == pitch


@pytest.mark.parametrize("pitch", [47, 84])
def test_pitch_outside_melody_range_has_no_token(pitch):
    with pytest.raises(TokenError, match=r"48\.\.83"):
        pitch_to_token(pitch)


@pytest.mark.parametrize("token", [NOTE_OFF, NO_EVENT, 38])
def test_non_pitch_token_has_no_pitch(token):
    with pytest.raises(TokenError):
        token_to_pitch(token)


@settings(max_examples=200)
@given(st.lists(st.integers(0, 37), max_size=40))
def test_tokens_note_state_round_trip_gives_canonical_form(tokens):
    note_state = tokens_to_note_state(tokens)
    assert note_state_to_tokens(note_state) == canonical_tokens(tokens)


def test_note_state_to_tokens_refuses_polyphony():
    chord = tokens_to_note_state([14, 1]).matrix.copy()
    chord[0, 4] = 1  # E3 struck with C4
    with pytest.raises(TokenError, match="several notes sound at step 0"):
        note_state_to_tokens(NoteState(chord, 48))


def test_tokens_need_a_pitch_axis_covering_the_melody_range():
    with pytest.raises(TokenError, match="does not cover"):
        tokens_to_note_state([2], lowest_pitch=50, num_pitches=60)


# --- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tonic", "mode"),
    [
        ("C", 0, "major"),
        ("C major", 0, "major"),
        ("C Major", 0, "major"),
        ("c", 0, "major"),
        ("A minor", 9, "minor"),
        ("A MINOR", 9, "minor"),
        ("Am", 9, "minor"),
        ("F#", 6, "major"),
        ("F♯ major", 6, "major"),
        ("Bb minor", 10, "minor"),
        ("bb minor", 10, "minor"),
        ("Ebm", 3, "minor"),
        ("Cb", 11, "major"),
        ("  G-major ", 7, "major"),
    ],
)
def test_key_parse(name, tonic, mode):
    key = Key.parse(name)
    assert (key.tonic, key.mode) == (tonic, mode)
    assert Key.parse(key.name) == key


@pytest.mark.parametrize("name", ["", "H", "C dorian", "Cbbb", "minor", "C# M", "7"])
def test_key_parse_rejects(name):
    with pytest.raises(KeyParseError, match="does not parse"):
        Key.parse(name)


@pytest.mark.parametrize(
    ("name", "scale"),
    [
        ("C major", (0, 2, 4, 5, 7, 9, 11)),
        ("A minor", (9, 11, 0, 2, 4, 5, 7)),
        ("Bb minor", (10, 0, 1, 3, 5, 6, 8)),
        ("F#", (6, 8, 10, 11, 1, 3, 5)),
    ],
)
def test_key_scale(name, scale):
    key = Key.parse(name)
    assert key.scale == scale
    assert [key.contains(60 + pc) for pc in range(12)] == [pc in scale for pc in range(12)]


def test_relative_keys_share_a_scale_and_differ_in_tonic():
    c, a = Key.parse("C"), Key.parse("A minor")
    assert set(c.scale) == set(a.scale)
    assert (c.tonic_pitch(), a.tonic_pitch()) == (60, 69)
    assert (c.dominant, c.mediant, a.mediant) == (7, 4, 0)

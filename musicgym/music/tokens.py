"""The 38 melody tokens of the RL Tuner: one token per 16th note.

===========  =========================================================
token        meaning
===========  =========================================================
0            ``NOTE_OFF``: silence from this step on (a rest)
1            ``NO_EVENT``: nothing new; a sounding note is held, a rest goes on
2 ... 37     strike MIDI pitch ``46 + token`` (48 = C3 ... 83 = B5)
===========  =========================================================

Several token strings sound the same: a ``NOTE_OFF`` while nothing sounds is a ``NO_EVENT``. The
*canonical* form writes ``NOTE_OFF`` only where it ends a sounding note; readers return it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from musicgym.errors import MusicgymError
from musicgym.music.notestate import SIXTEENTH_NOTES, NoteState

NOTE_OFF = 0
NO_EVENT = 1
FIRST_PITCH_TOKEN = 2
NUM_TOKENS = 38
LOWEST_MELODY_PITCH = 48  # C3, token 2
HIGHEST_MELODY_PITCH = 83  # B5, token 37
NUM_MELODY_PITCHES = HIGHEST_MELODY_PITCH - LOWEST_MELODY_PITCH + 1


class TokenError(MusicgymError, ValueError):
    """A token is not one of the 38 melody tokens."""


def is_pitch_token(token: int) -> bool:
    return FIRST_PITCH_TOKEN <= token < NUM_TOKENS


def token_to_pitch(token: int) -> int:
    """MIDI pitch struck by a pitch token."""
    if not is_pitch_token(token):
        raise TokenError(f"token {token} is not a pitch token (2..37)")
    return token - FIRST_PITCH_TOKEN + LOWEST_MELODY_PITCH


def pitch_to_token(pitch: int) -> int:
    """Pitch token that strikes a MIDI pitch in 48..83."""
    if not LOWEST_MELODY_PITCH <= pitch <= HIGHEST_MELODY_PITCH:
        raise TokenError(f"MIDI pitch {pitch} is outside the melody range 48..83")
    return pitch - LOWEST_MELODY_PITCH + FIRST_PITCH_TOKEN


def validate_tokens(tokens: Iterable[int], what: str = "melody") -> list[int]:
    """The tokens as a list of ints; raises :class:`TokenError` naming ``what`` on a bad one."""
    checked = []
    for i, token in enumerate(tokens):
        if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
            raise TokenError(f"{what}: token {i} is {token!r}, not an integer token 0..37")
        if not 0 <= token < NUM_TOKENS:
            raise TokenError(f"{what}: token {i} is {token}, outside 0..37")
        checked.append(int(token))
    return checked


def canonical_tokens(tokens: Sequence[int]) -> list[int]:
    """The canonical spelling: ``NOTE_OFF`` only where it silences a sounding note."""
    canonical, sounding = [], False
    for token in validate_tokens(tokens):
        if token == NOTE_OFF and not sounding:
            token = NO_EVENT
        canonical.append(token)
        if token == NOTE_OFF:
            sounding = False
        elif token != NO_EVENT:
            sounding = True
    return canonical


def tokens_to_note_state(
    tokens: Sequence[int],
    lowest_pitch: int = LOWEST_MELODY_PITCH,
    num_pitches: int = NUM_MELODY_PITCHES,
    resolution: int = SIXTEENTH_NOTES,
) -> NoteState:
    """The note-state of a token melody on a pitch axis that must cover MIDI 48..83."""
    tokens = validate_tokens(tokens)
    if lowest_pitch > LOWEST_MELODY_PITCH or lowest_pitch + num_pitches - 1 < HIGHEST_MELODY_PITCH:
        raise TokenError(
            f"pitch range {lowest_pitch}..{lowest_pitch + num_pitches - 1} does not cover the "
            "melody tokens' MIDI 48..83"
        )
    matrix = np.zeros((len(tokens), num_pitches, 2), np.uint8)
    sounding = None  # index on the pitch axis of the note that sounds, if any
    for t, token in enumerate(tokens):
        if token == NOTE_OFF:
            sounding = None
        elif token == NO_EVENT:
            if sounding is not None:
                matrix[t, sounding, 0] = 1
        else:
            sounding = token_to_pitch(token) - lowest_pitch
            matrix[t, sounding] = 1
    return NoteState(matrix, lowest_pitch, resolution)


def note_state_to_tokens(note_state: NoteState) -> list[int]:
    """Canonical tokens of a monophonic note-state (use :meth:`NoteState.top_voice` first for
    polyphony). A note that starts unstruck (held into the first step, or after silence) is
    struck."""
    play = note_state.play
    if (play.sum(axis=1) > 1).any():
        step = int(np.flatnonzero(play.sum(axis=1) > 1)[0])
        raise TokenError(
            f"{note_state.name or 'note-state'}: several notes sound at step {step}; "
            "take the top voice first"
        )
    tokens, previous = [], None
    for t in range(note_state.num_steps):
        sounding = np.flatnonzero(play[t])
        if not sounding.size:
            tokens.append(NOTE_OFF if previous is not None else NO_EVENT)
            previous = None
            continue
        index = int(sounding[0])
        if index == previous and not note_state.articulate[t, index]:
            tokens.append(NO_EVENT)
        else:
            tokens.append(pitch_to_token(note_state.lowest_pitch + index))
        previous = index
    return tokens

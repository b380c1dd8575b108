"""Datasets of note-states with train / valid / test splits.

=====================  ==========================================================================
name                   what it loads
=====================  ==========================================================================
``bach-chorales``      the 371 Bach chorales of the music21 corpus (the embedded default), 4 voices
``essen``              the Essen folk melodies of the music21 corpus, monophonic
``jsb:PATH``           Boulanger-Lewandowski's JSB Chorales (JSON or pickle), official split;
                       ``Jsb16thSeparated.json`` holds the four voices at 16th notes
``jsb-soprano:PATH``   the soprano line of ``Jsb16thSeparated.json``: a melody dataset
``midi:PATH`` / PATH   a folder of the user's MIDI files (searched recursively)
=====================  ==========================================================================

With ``key_normalise=True`` (``--key-normalise``) the music21 corpora are transposed by each tune's
key signature onto no accidentals, i.e. to C major or A minor (and a mode's relative, e.g. D
dorian), by the shift of -6..+5 semitones (or that shift an octave away, whichever fits the pitch
axis; see :func:`white_key_shift`). A score without a key signature takes music21's key analysis
(Krumhansl-Schmuckler); a tune that fits the pitch axis at no such shift is dropped and counted in
``skipped``. Other sources hold no key signatures and are refused.

Corpora without an official split get a seeded 80/10/10 split by piece. Converting music21 scores is
slow (about 0.15 s a chorale), so conversions are cached as ``.npz`` files under
``$MUSICGYM_CACHE`` (default: the user cache directory, e.g. ``~/.cache/musicgym``), keyed by
dataset, resolution, pitch range and converter version; a second load is served from the cache.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from musicgym.errors import DatasetError, MusicgymError
from musicgym.music.corpus import (
    cache_dir,
    key_signature_sharps,
    read_conversion,
    score_notes,
    write_conversion,
)
from musicgym.music.midi import apply_out_of_range, fit_pitch_range, read_midi_report
from musicgym.music.notestate import SIXTEENTH_NOTES, NoteState
from musicgym.music.tokens import (
    LOWEST_MELODY_PITCH,
    NUM_MELODY_PITCHES,
    note_state_to_tokens,
)

CONVERTER_VERSION = 2  # bump when the conversion of scores changes, to invalidate caches
SPLITS = ("train", "valid", "test")
CORPUS_DATASETS = ("bach-chorales", "essen")
MIDI_SUFFIXES = (".mid", ".midi", ".MID", ".MIDI")

# Default pitch axes: the chorales span about MIDI 36..81, and every range must also cover the
# melody tokens' 48..83 so that one prior can score the environment's actions.
DEFAULT_RANGES = {
    "bach-chorales": (36, 48),
    "essen": (LOWEST_MELODY_PITCH, NUM_MELODY_PITCHES),
    "jsb": (36, 64),
    "jsb-soprano": (LOWEST_MELODY_PITCH, NUM_MELODY_PITCHES),
    "midi": (36, 48),
}


@dataclass
class Dataset:
    """Pieces as note-states on one pitch axis and grid, split into train / valid / test.

    Attributes:
        name: the name it was loaded by.
        resolution: time steps per quarter note.
        lowest_pitch: MIDI pitch of index 0 of every piece's pitch axis.
        num_pitches: size of the pitch axis.
        splits: the pieces of each split.
        has_articulation: False where the source cannot tell a held note from a repeated one
            (JSB): likelihoods should then be of the play bits alone.
        folded_notes: notes moved by octaves into the pitch range.
        skipped: ``(file, reason)`` for each file that could not be read.
    """

    name: str
    resolution: int
    lowest_pitch: int
    num_pitches: int
    splits: dict[str, list[NoteState]]
    has_articulation: bool = True
    folded_notes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    key_normalised: bool = False
    """Every piece transposed to C major / A minor by its key signature."""

    @property
    def train(self) -> list[NoteState]:
        return self.splits["train"]

    @property
    def valid(self) -> list[NoteState]:
        return self.splits["valid"]

    @property
    def test(self) -> list[NoteState]:
        return self.splits["test"]

    def split(self, name: str) -> list[NoteState]:
        if name not in self.splits:
            raise DatasetError(
                f"{self.name}: no split {name!r}; splits are {', '.join(self.splits)}"
            )
        return self.splits[name]

    def num_frames(self, split: str | None = None) -> int:
        """Time steps in one split, or in all of them."""
        names = [split] if split else list(self.splits)
        return sum(piece.num_steps for s in names for piece in self.split(s))

    def melodies(self, split: str) -> list[list[int]]:
        """Each piece's top voice as canonical melody tokens (pitch range must cover 48..83)."""
        melodies = []
        for piece in self.split(split):
            top, _ = fit_pitch_range(piece.top_voice(), LOWEST_MELODY_PITCH, NUM_MELODY_PITCHES)
            melodies.append(note_state_to_tokens(top))
        return melodies

    def describe(self) -> dict[str, object]:
        """A JSON-able description, for checkpoints and model cards."""
        return {
            "name": self.name,
            "resolution": self.resolution,
            "lowest_pitch": self.lowest_pitch,
            "num_pitches": self.num_pitches,
            "pieces": {s: len(p) for s, p in self.splits.items()},
            "frames": {s: self.num_frames(s) for s in self.splits},
            "has_articulation": self.has_articulation,
            "folded_notes": self.folded_notes,
            "skipped": len(self.skipped),
            "key_normalised": self.key_normalised,
        }


def available_datasets() -> dict[str, str]:
    """Dataset names (patterns for path-based ones) with a one-line description."""
    return {
        "bach-chorales": "371 Bach chorales of the music21 corpus, 4 voices (embedded default)",
        "essen": "Essen folk melodies of the music21 corpus, monophonic",
        "jsb:PATH": "JSB Chorales JSON/pickle (Boulanger-Lewandowski 2012), official split",
        "jsb-soprano:PATH": "soprano voice of Jsb16thSeparated.json, a melody dataset",
        "midi:PATH": "a folder of your MIDI files (or just its path), seeded 80/10/10 split",
    }


def load_dataset(
    name: str,
    *,
    resolution: int | None = None,
    lowest_pitch: int | None = None,
    num_pitches: int | None = None,
    seed: int = 0,
    progress: bool = False,
    key_normalise: bool = False,
) -> Dataset:
    """Load a dataset by name (see the module docstring) with its splits.

    Args:
        name: ``bach-chorales``, ``essen``, ``jsb:PATH``, ``jsb-soprano:PATH``, ``midi:PATH`` or the
            path of a folder of MIDI files.
        resolution: time steps per quarter note; default 16th notes (4), JSB files their own.
        lowest_pitch: MIDI pitch of the pitch axis' index 0; default per dataset.
        num_pitches: size of the pitch axis; default per dataset. Notes outside it are folded
            by octaves into it.
        seed: seed of the 80/10/10 split of corpora without an official one.
        progress: show a progress bar while converting.
        key_normalise: transpose every tune to C major / A minor (music21 corpora only).
    """
    kind, _, path = name.partition(":")
    if not path and Path(name).is_dir():
        kind, path = "midi", name
    if kind not in DEFAULT_RANGES or (kind in CORPUS_DATASETS) == bool(path):
        raise DatasetError(
            f"unknown dataset {name!r}; available: {', '.join(available_datasets())}"
        )
    if key_normalise and kind not in CORPUS_DATASETS:
        raise DatasetError(
            f"{name}: key normalisation needs key signatures, which only the music21 corpora "
            f"({', '.join(CORPUS_DATASETS)}) carry"
        )
    default_lowest, default_count = DEFAULT_RANGES[kind]
    lowest_pitch = default_lowest if lowest_pitch is None else lowest_pitch
    num_pitches = default_count if num_pitches is None else num_pitches
    if kind in ("jsb", "jsb-soprano"):
        return _load_jsb(
            name, Path(path), kind == "jsb-soprano", resolution, lowest_pitch, num_pitches
        )
    resolution = SIXTEENTH_NOTES if resolution is None else resolution
    if kind == "midi":
        pieces, folded, skipped = _load_midi_folder(
            Path(path), resolution, lowest_pitch, num_pitches, progress
        )
    else:
        pieces, folded, skipped = _load_corpus(
            kind, resolution, lowest_pitch, num_pitches, progress, key_normalise
        )
    if not pieces:
        raise DatasetError(f"{name}: no readable pieces ({len(skipped)} files skipped)")
    return Dataset(
        name,
        resolution,
        lowest_pitch,
        num_pitches,
        seeded_split(pieces, seed),
        folded_notes=folded,
        skipped=skipped,
        key_normalised=key_normalise,
    )


def seeded_split(pieces: Sequence[NoteState], seed: int = 0) -> dict[str, list[NoteState]]:
    """80/10/10 by piece, the same for the same seed and pieces (valid and test get >= 1 piece
    each once there are 3 pieces)."""
    order = np.random.default_rng(seed).permutation(len(pieces))
    n_valid = n_test = max(1, round(0.1 * len(pieces))) if len(pieces) >= 3 else 0
    n_train = len(pieces) - n_valid - n_test
    bounds = {
        "train": (0, n_train),
        "valid": (n_train, n_train + n_valid),
        "test": (n_train + n_valid, len(pieces)),
    }
    return {s: [pieces[i] for i in order[a:b]] for s, (a, b) in bounds.items()}


def random_transposition(
    piece: NoteState, rng: np.random.Generator, max_shift: int = 6
) -> NoteState:
    """Augmentation: the piece moved by a random number of semitones in ``-max_shift..max_shift``
    that keeps every note on the pitch axis."""
    down, up = piece.transposition_room()
    shift = int(rng.integers(max(down, -max_shift), min(up, max_shift) + 1))
    return piece.transpose(shift) if shift else piece


def white_key_shift(sharps: int) -> int:
    """Semitones in -6..+5 that move a key signature of ``sharps`` sharps (flats negative) onto
    none: G major (1) -> +5 to C major, D major (2) -> -2, F major (-1) -> -5."""
    return (-7 * sharps + 6) % 12 - 6


def key_normalised(piece: NoteState, sharps: int) -> NoteState | None:
    """``piece`` transposed by :func:`white_key_shift` of its signature, or by that shift an
    octave away where only that keeps its notes on the pitch axis; ``None`` if none does."""
    shift = piece.fitting_shift(white_key_shift(sharps))
    if shift is None:
        return None
    return piece.transpose(shift) if shift else piece


# --- music21 corpus -------------------------------------------------------------------------------


def _corpus_paths(kind: str) -> list[str]:
    from music21 import corpus

    if kind == "bach-chorales":
        return [str(p) for p in corpus.chorales.Iterator(returnType="filename")]
    return [str(p) for p in corpus.getComposer("essenFolksong")]


def _convert_corpus_file(
    task: tuple[str, str, int],
) -> list[tuple[str, list[tuple[int, int, int]], int]]:
    """Notes and key-signature sharps of each score in one corpus file (an Essen file holds many
    tunes)."""
    from music21 import converter, corpus, stream

    _, path, resolution = task
    parsed = converter.parse(path) if Path(path).is_file() else corpus.parse(path)
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    pieces = []
    for i, score in enumerate(scores):
        name = f"{path}#{i}" if len(scores) > 1 else path
        notes = score_notes(score, resolution)
        if notes:
            pieces.append((name, notes, key_signature_sharps(score)))
    return pieces


def _load_corpus(kind, resolution, lowest_pitch, num_pitches, progress, key_normalise=False):
    pieces, sharps, folded, skipped = _convert_corpus(
        kind, resolution, lowest_pitch, num_pitches, progress
    )
    if not key_normalise:
        return pieces, folded, skipped
    normalised = []
    for piece, signature in zip(pieces, sharps):
        moved = key_normalised(piece, int(signature))
        if moved is None:
            skipped.append((piece.name, "does not fit the pitch axis in C major / A minor"))
        else:
            normalised.append(moved)
    return normalised, folded, skipped


def _convert_corpus(kind, resolution, lowest_pitch, num_pitches, progress):
    """The corpus' pieces and key-signature sharps, converted once and then read from the cache."""
    key = f"{kind}-r{resolution}-p{lowest_pitch}-{num_pitches}-v{CONVERTER_VERSION}.npz"
    cached = cache_dir() / key
    if cached.exists():
        try:
            return _read_cache(cached, resolution, lowest_pitch)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is converted again
    tasks = [(kind, path, resolution) for path in _corpus_paths(kind)]
    pieces, sharps, folded, skipped = [], [], 0, []
    workers = min(4, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_convert_corpus_file, tasks, chunksize=4)
        bar = tqdm(
            results, total=len(tasks), desc=f"converting {kind}", disable=not progress, unit="file"
        )
        for (_, path, _), converted in zip(tasks, bar):
            for name, notes, signature in converted:
                pitches, starts, ends = np.array(notes).T
                pitches, kept, out_of_range = apply_out_of_range(pitches, lowest_pitch, num_pitches)
                folded += out_of_range.folded
                try:
                    pieces.append(
                        NoteState.from_notes(
                            pitches[kept],
                            starts[kept],
                            ends[kept],
                            lowest_pitch=lowest_pitch,
                            num_pitches=num_pitches,
                            resolution=resolution,
                            name=name,
                        )
                    )
                    sharps.append(signature)
                except MusicgymError as error:
                    skipped.append((path, str(error)))
    write_conversion(cached, pieces, sharps=np.array(sharps, np.int64), folded=np.array(folded))
    return pieces, sharps, folded, skipped


def _read_cache(path: Path, resolution: int, lowest_pitch: int):
    pieces, arrays = read_conversion(path, resolution, lowest_pitch)
    return pieces, arrays["sharps"], int(arrays["folded"]), []


# --- MIDI folders ---------------------------------------------------------------------------------


def _load_midi_folder(folder: Path, resolution, lowest_pitch, num_pitches, progress):
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of MIDI files")
    files = sorted(p for p in folder.rglob("*") if p.suffix in MIDI_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"{folder}: holds no .mid or .midi files")
    pieces, folded, skipped = [], 0, []
    for file in tqdm(files, desc=f"reading {folder}", disable=not progress, unit="file"):
        try:
            piece, out_of_range = read_midi_report(
                file, resolution=resolution, lowest_pitch=lowest_pitch, num_pitches=num_pitches
            )
        except MusicgymError as error:
            skipped.append((str(file), str(error)))
            continue
        pieces.append(piece)
        folded += out_of_range.folded
    return pieces, folded, skipped


# --- JSB Chorales (Boulanger-Lewandowski) ---------------------------------------------------------


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numbers: a data file must not run code."""

    SAFE: ClassVar = {("builtins", n) for n in ("list", "tuple", "dict", "set", "int", "float")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.SAFE or (module == "numpy" and name in ("int64", "float64")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_jsb_file(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path}: no such JSB file")
    try:
        if path.suffix in (".pickle", ".pkl"):
            with path.open("rb") as f:
                data = _PlainUnpickler(f, encoding="latin1").load()
        else:
            data = json.loads(path.read_text())
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as error:
        raise DatasetError(f"{path}: not a JSB file ({type(error).__name__}: {error})") from None
    if not isinstance(data, dict) or not set(SPLITS) <= set(data):
        raise DatasetError(f"{path}: a JSB file must map 'train', 'valid' and 'test' to pieces")
    for split in SPLITS:
        pieces = data[split]
        if not isinstance(pieces, list) or not all(
            isinstance(piece, list) and all(isinstance(step, (list, tuple)) for step in piece)
            for piece in pieces
        ):
            raise DatasetError(f"{path}: split {split!r} must be a list of pieces of time steps")
    return data


def _load_jsb(name, path, soprano_only, resolution, lowest_pitch, num_pitches) -> Dataset:
    data = _read_jsb_file(path)
    steps = (step for piece in data["train"] for step in piece)
    separated = all(len(step) == 4 for step in steps)  # Jsb16thSeparated: four voices, -1 = silent
    native = SIXTEENTH_NOTES if separated else 1
    if resolution not in (None, native):
        raise DatasetError(f"{path}: holds {native} step(s) per quarter note, not {resolution}")
    if soprano_only and not separated:
        raise DatasetError(f"{path}: jsb-soprano needs the four-voice file Jsb16thSeparated.json")
    folded = 0
    splits = {}
    for split in SPLITS:
        pieces = []
        for i, piece in enumerate(data[split]):
            voices = [list(step[:1]) for step in piece] if soprano_only else piece
            state, moved = _steps_to_note_state(
                voices, lowest_pitch, num_pitches, native, f"{path}:{split}[{i}]", path
            )
            pieces.append(state)
            folded += moved
        splits[split] = pieces
    return Dataset(name, native, lowest_pitch, num_pitches, splits, False, folded)


def _steps_to_note_state(steps, lowest_pitch, num_pitches, resolution, name, path):
    """Lists of sounding pitches per step -> note-state. The files cannot tell a held note from a
    repeated one: a pitch sounding on consecutive steps is read as held."""
    play = np.zeros((len(steps), num_pitches), np.uint8)
    folded = 0
    for t, step in enumerate(steps):
        if not all(isinstance(p, int) and not isinstance(p, bool) for p in step):
            raise DatasetError(f"{path}: {name} step {t} holds a pitch that is not an integer")
        pitches = np.array([p for p in step if p >= 0], dtype=np.int64)
        if pitches.size and pitches.max() > 127:
            raise DatasetError(f"{path}: {name} step {t} holds a pitch outside MIDI 0..127")
        pitches, kept, out_of_range = apply_out_of_range(pitches, lowest_pitch, num_pitches)
        folded += out_of_range.folded
        play[t, pitches[kept] - lowest_pitch] = 1
    previous = np.vstack([np.zeros((1, num_pitches), np.uint8), play[:-1]])
    articulate = play & (1 - previous)
    return NoteState(np.stack([play, articulate], axis=-1), lowest_pitch, resolution, name), folded

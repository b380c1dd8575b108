"""Datasets: splits, caches, JSB files, MIDI folders, augmentation, and their errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from musicgym.cli import main
from musicgym.errors import DatasetError
from musicgym.music.midi import write_midi
from musicgym.music.notestate import NoteState
from musicgym.priors import data
from musicgym.priors.data import load_dataset, random_transposition, seeded_split

JSB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsb"
JSB_QUARTER = JSB_DIR / "jsb-chorales-quarter.json"
JSB_16TH = JSB_DIR / "Jsb16thSeparated.json"
needs_jsb = pytest.mark.skipif(not JSB_QUARTER.exists(), reason="JSB Chorales data not present")


def _piece(pitches: list[int], name: str = "") -> NoteState:
    """A piece of quarter notes (4 steps each) on the axis 36..83."""
    starts = np.arange(len(pitches)) * 4
    return NoteState.from_notes(
        pitches, starts, starts + 4, lowest_pitch=36, num_pitches=48, name=name
    )


@pytest.fixture()
def midi_folder(tmp_path: Path) -> Path:
    for i in range(10):
        write_midi(_piece([60 + i, 64, 67, 72]), tmp_path / f"good{i}.mid")
    (tmp_path / "sub").mkdir()
    write_midi(_piece([48, 52, 55]), tmp_path / "sub" / "nested.midi")
    (tmp_path / "empty.mid").write_bytes(b"")
    (tmp_path / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (tmp_path / "notes.txt").write_text("not midi, not read")
    return tmp_path


@pytest.mark.parametrize("count", [3, 10, 371])
def test_seeded_split_is_80_10_10_and_reproducible(count: int) -> None:
    pieces = [_piece([60], name=str(i)) for i in range(count)]
    first, again = seeded_split(pieces, seed=7), seeded_split(pieces, seed=7)
    names = {s: [p.name for p in split] for s, split in first.items()}
    assert names == {s: [p.name for p in split] for s, split in again.items()}
    assert sorted(n for split in names.values() for n in split) == sorted(
        str(i) for i in range(count)
    )
    assert len(names["valid"]) == len(names["test"]) == max(1, round(0.1 * count))
    other = seeded_split(pieces, seed=8)
    if count > 3:
        assert [p.name for p in other["train"]] != names["train"]


def test_midi_folder_loads_good_files_and_reports_bad_ones(midi_folder: Path) -> None:
    dataset = load_dataset(str(midi_folder))
    assert sum(len(s) for s in dataset.splits.values()) == 11
    assert sorted(Path(f).name for f, _ in dataset.skipped) == ["corrupt.mid", "empty.mid"]
    assert all(str(midi_folder) in f and reason for f, reason in dataset.skipped)
    piece = next(p for split in dataset.splits.values() for p in split if "nested" in p.name)
    assert list(piece.sounding_pitches()) == [48, 52, 55]
    prefixed = load_dataset(f"midi:{midi_folder}")
    assert prefixed.describe() | {"name": dataset.name} == dataset.describe()


def test_midi_folder_split_is_the_same_for_the_same_seed(midi_folder: Path) -> None:
    names = [
        [p.name for p in load_dataset(str(midi_folder), seed=seed).train] for seed in (1, 1, 2)
    ]
    assert names[0] == names[1] != names[2]


@pytest.mark.parametrize(
    "name, message",
    [
        ("no-such-dataset", "unknown dataset"),
        ("bach-chorales:extra", "unknown dataset"),
        ("jsb", "unknown dataset"),
        ("midi:/no/such/folder", "not a folder"),
        ("jsb:/no/such/file.json", "no such JSB file"),
    ],
)
def test_bad_dataset_names_raise_one_line_errors(name: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message) as error:
        load_dataset(name)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "not a JSB file"),
        (json.dumps({"train": []}).encode(), "must map 'train', 'valid' and 'test'"),
        (json.dumps({"train": [[60]], "valid": [], "test": []}).encode(), "list of pieces"),
        (
            json.dumps({"train": [[["x"]]], "valid": [], "test": []}).encode(),
            "not an integer",
        ),
        (json.dumps({"train": [[[200]]], "valid": [], "test": []}).encode(), "outside MIDI"),
    ],
)
def test_malformed_jsb_files_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as error:
        load_dataset(f"jsb:{path}")
    assert str(path) in str(error.value)


def test_jsb_pickle_loads_and_refuses_code(tmp_path: Path) -> None:
    splits = {s: [[(60, 64), (60, 64), (62,)]] for s in ("train", "valid", "test")}
    path = tmp_path / "jsb.pickle"
    path.write_bytes(pickle.dumps(splits))
    dataset = load_dataset(f"jsb:{path}")
    piece = dataset.train[0]
    assert dataset.resolution == 1 and not dataset.has_articulation
    # held across steps 0-1 (the format cannot tell a repeat), struck again only after a change
    assert piece.play[:, 60 - 36].tolist() == [1, 1, 0]
    assert piece.articulate[:, 60 - 36].tolist() == [1, 0, 0]
    assert piece.articulate[:, 62 - 36].tolist() == [0, 0, 1]
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({"train": Path("x")}))
    with pytest.raises(DatasetError, match="refusing to load"):
        load_dataset(f"jsb:{evil}")


@needs_jsb
def test_jsb_quarter_has_the_official_split() -> None:
    dataset = load_dataset(f"jsb:{JSB_QUARTER}")
    assert {s: len(p) for s, p in dataset.splits.items()} == {"train": 229, "valid": 76, "test": 77}
    assert dataset.resolution == 1 and dataset.folded_notes == 0
    assert dataset.num_frames("test") == 4725
    raw = json.loads(JSB_QUARTER.read_text())["test"][0]
    first = dataset.test[0]
    assert [sorted(36 + np.flatnonzero(step)) for step in first.play] == [sorted(s) for s in raw]


@needs_jsb
def test_jsb_soprano_is_a_melody_dataset() -> None:
    dataset = load_dataset(f"jsb-soprano:{JSB_16TH}")
    melodies = dataset.melodies("valid")
    raw = json.loads(JSB_16TH.read_text())["valid"][0]
    assert dataset.resolution == 4 and len(melodies) == 76
    assert len(melodies[0]) == len(raw)
    assert melodies[0][0] == raw[0][0] - 46  # the soprano's first pitch as a token
    with pytest.raises(DatasetError, match="four-voice"):
        load_dataset(f"jsb-soprano:{JSB_QUARTER}")


def test_corpus_conversion_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A second load is served from the cache, keyed by dataset, resolution and range."""
    monkeypatch.setenv("MUSICGYM_CACHE", str(tmp_path))
    paths = data._corpus_paths("bach-chorales")[:6]
    monkeypatch.setattr(data, "_corpus_paths", lambda kind: paths)
    first = load_dataset("bach-chorales", seed=3)
    cached = sorted(p.name for p in tmp_path.iterdir())
    assert cached == [f"bach-chorales-r4-p36-48-v{data.CONVERTER_VERSION}.npz"]
    convert = data._convert_corpus_file
    monkeypatch.setattr(data, "_convert_corpus_file", None)  # a conversion now would fail
    again = load_dataset("bach-chorales", seed=3)  # with no converter: from the cache
    for split in first.splits:
        assert first.splits[split] == again.splits[split]
        assert [p.name for p in first.splits[split]] == [p.name for p in again.splits[split]]
    assert first.num_frames() > 6 * 32
    monkeypatch.setattr(data, "_convert_corpus_file", convert)
    coarse = load_dataset("bach-chorales", resolution=2, lowest_pitch=40, num_pitches=44)
    assert len(list(tmp_path.iterdir())) == 2 and coarse.resolution == 2
    assert first.folded_notes >= coarse.folded_notes


@pytest.mark.parametrize("seed", range(5))
def test_random_transposition_stays_in_range(seed: int) -> None:
    piece = _piece([38, 50, 80])
    shifted = random_transposition(piece, np.random.default_rng(seed), max_shift=6)
    down, up = piece.transposition_room()
    shift = int(shifted.sounding_pitches()[0] - 38)
    assert max(down, -6) <= shift <= min(up, 6)
    assert list(shifted.sounding_pitches() - shift) == [38, 50, 80]


def test_data_cli_lists_and_reports_bad_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    assert "bach-chorales" in capsys.readouterr().out
    assert main(["data", "inspect", "no-such-dataset"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown dataset" in err[0]


def test_data_cli_prepares_a_folder(midi_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "prepare", str(midi_folder)]) == 0
    out = capsys.readouterr().out
    assert "11 pieces" in out and "skipped" in out and "corrupt.mid" in out


@pytest.mark.parametrize(
    ("sharps", "shift"), [(0, 0), (1, 5), (2, -2), (-1, -5), (-2, 2), (6, -6), (-6, -6)]
)
def test_white_key_shift_moves_the_signature_onto_c(sharps: int, shift: int) -> None:
    assert data.white_key_shift(sharps) == shift
    g_major_scale = [7, 9, 11, 0, 2, 4, 6]  # one sharp
    if sharps == 1:
        assert sorted((p + shift) % 12 for p in g_major_scale) == [0, 2, 4, 5, 7, 9, 11]


def test_key_normalisation_transposes_to_c_and_keeps_notes_on_the_axis() -> None:
    d_major = _piece([62, 66, 69, 74])  # D F# A D, two sharps
    moved = data.key_normalised(d_major, 2)
    assert list(moved.sounding_pitches()) == [60, 64, 67, 72]
    high = _piece([78, 82])  # +5 would leave the axis (top 83): an octave lower instead
    assert list(data.key_normalised(high, 1).sounding_pitches()) == [71, 75]
    assert data.key_normalised(_piece([36, 83]), 1) is None  # fits nowhere


def test_key_normalised_corpus_is_in_c(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Corpus chorales transposed by their key signatures hold almost no black-key notes."""
    monkeypatch.setenv("MUSICGYM_CACHE", str(tmp_path))
    paths = data._corpus_paths("bach-chorales")[:6]
    monkeypatch.setattr(data, "_corpus_paths", lambda kind: paths)
    normalised = load_dataset("bach-chorales", key_normalise=True)
    assert normalised.key_normalised and normalised.describe()["key_normalised"]
    pieces = [p for split in normalised.splits.values() for p in split]
    onsets = sum(p.articulate.sum(axis=0) for p in pieces)
    black = [(normalised.lowest_pitch + i) % 12 in (1, 3, 6, 8, 10) for i in range(len(onsets))]
    assert onsets[black].sum() < 0.12 * onsets.sum()
    with pytest.raises(DatasetError, match="key signatures"):
        load_dataset(str(tmp_path), key_normalise=True)


def test_the_data_histograms_come_from_the_model_card_without_converting(monkeypatch):
    """melody16c's card records its test windows' histograms for 32 tokens: read without the
    data; another window is converted, or None where converting is not allowed."""
    from musicgym.config import EnvConfig
    from musicgym.metrics import HISTOGRAMS
    from musicgym.priors import data as data_module
    from musicgym.priors.registry import test_histograms

    def no_conversion(*args, **kwargs):
        raise AssertionError("the data was converted")

    monkeypatch.setattr(data_module, "load_dataset", no_conversion)
    histograms = test_histograms(EnvConfig(prior="melody16c"))
    assert set(histograms) == set(HISTOGRAMS)
    assert all(counts.sum() > 1000 for counts in histograms.values())
    assert test_histograms(EnvConfig(prior="melody16c", length=16), convert=False) is None
    with pytest.raises(AssertionError, match="converted"):
        test_histograms(EnvConfig(prior="melody16c", length=16))

"""The MIDI conversion benchmark runs end to end on a few files (music21 export not exercised)."""

from __future__ import annotations

import numpy as np

from musicgym.benchmarks.midi_conversion import run
from musicgym.cli import main
from musicgym.music.midi import write_midi
from musicgym.music.notestate import NoteState


def write_pieces(folder, count: int = 3) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        play = rng.random((32, 24)) < 0.2
        matrix = np.stack([play, play], axis=-1).astype(np.uint8)  # every step struck
        write_midi(NoteState(matrix, 48), folder / f"piece{i}.mid")


def test_run_reports_both_readers_on_the_same_files(tmp_path, capsys):
    write_pieces(tmp_path)
    result = run(midi_dir=tmp_path, repeats=1, progress=False)
    assert result["files"] == 3
    assert result["steps"] == 3 * 32
    assert result["musicgym_s"] > 0 and result["pretty_midi_s"] > 0
    assert result["speedup"] == result["pretty_midi_s"] / result["musicgym_s"]
    assert "speedup (pretty_midi time / ours)" in capsys.readouterr().out


def test_bench_midi_command(tmp_path, capsys):
    write_pieces(tmp_path, count=1)
    assert main(["bench", "midi", "--midi-dir", str(tmp_path), "--repeats", "1"]) == 0
    assert "1 files, 32 steps" in capsys.readouterr().out

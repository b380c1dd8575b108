"""MIDI -> note-state speed: :func:`musicgym.music.midi.read_midi` against pretty_midi's piano roll.

Both read the same files, the Bach chorales of the music21 corpus exported to MIDI, in one run:
ours at ``resolution`` steps per quarter note, pretty_midi's
``PrettyMIDI(path).get_piano_roll(fs=...)`` at the same number of frames per quarter note at the
chorales' 120 bpm. The figure is the ratio of total times (best of ``repeats`` passes over all
files, the two readers interleaved so that both see the same machine load).

    musicgym bench midi              # or: python -m musicgym.benchmarks.midi_conversion
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from musicgym.music.midi import read_midi


def export_chorales(folder: Path, count: int = 100, progress: bool = True) -> list[Path]:
    """Write the first ``count`` music21 Bach chorales that export cleanly to ``folder`` as MIDI;
    those music21 cannot export are named in one line."""
    from music21 import corpus

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped: list[str] = []
    sources = list(corpus.chorales.Iterator(returnType="filename"))
    with tqdm(total=count, desc="exporting chorales to MIDI", disable=not progress) as bar:
        for source in sources:
            if len(written) == count:
                break
            target = folder / f"{Path(str(source)).name}.mid"  # bwv153.1 -> bwv153.1.mid
            if target in written:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    corpus.parse(source).write("midi", fp=str(target))
            except Exception as error:  # music21 cannot export it: said below, not benchmarked
                skipped.append(f"{target.stem} ({type(error).__name__})")
                continue
            written.append(target)
            bar.update()
    if skipped:
        print(f"music21 could not export {len(skipped)} chorales, left out: {', '.join(skipped)}")
    return written


def _total_seconds(read: Callable[[Path], object], files: Sequence[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        read(path)
    return time.perf_counter() - start


def run(
    num_files: int = 100,
    resolution: int = 4,
    repeats: int = 3,
    midi_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, float | int | str]:
    """Time both readers on the same files and print a table.

    Args:
        num_files: chorales to export (ignored when ``midi_dir`` already holds MIDI files).
        resolution: our steps per quarter note; pretty_midi samples ``fs = 2 * resolution`` frames
            per second, the same grid at 120 bpm.
        repeats: passes over all files per reader; the best pass counts.
        midi_dir: a folder of ``.mid`` files to use, or to export the chorales into (default: a
            temporary folder, removed afterwards).

    Returns:
        ``files``, ``notes`` and ``steps`` (as read by us), ``musicgym_s`` and ``pretty_midi_s``
        (best total seconds), ``files_per_s`` of each, and ``speedup`` (pretty_midi time / ours).
    """
    from musicgym.music.audio import import_pretty_midi

    pretty_midi = import_pretty_midi()

    with tempfile.TemporaryDirectory(prefix="musicgym-bench-midi-") as temporary:
        folder = Path(midi_dir) if midi_dir is not None else Path(temporary)
        files = sorted(folder.glob("*.mid")) if folder.is_dir() else []
        if not files:
            files = export_chorales(folder, num_files, progress)
        if not files:
            raise RuntimeError(f"{folder}: no MIDI files to benchmark")
        frames_per_second = 2 * resolution

        def ours(path: Path) -> object:
            return read_midi(path, resolution=resolution)

        def theirs(path: Path) -> object:
            return pretty_midi.PrettyMIDI(str(path)).get_piano_roll(fs=frames_per_second)

        note_states = [ours(path) for path in files]  # also warms both code paths
        theirs(files[0])
        ours_s, theirs_s = float("inf"), float("inf")
        for _ in range(repeats):
            ours_s = min(ours_s, _total_seconds(ours, files))
            theirs_s = min(theirs_s, _total_seconds(theirs, files))

    result: dict[str, float | int | str] = {
        "files": len(files),
        "notes": int(sum(int(ns.articulate.sum()) for ns in note_states)),
        "steps": sum(ns.num_steps for ns in note_states),
        "resolution": resolution,
        "musicgym_s": ours_s,
        "pretty_midi_s": theirs_s,
        "musicgym_files_per_s": len(files) / ours_s,
        "pretty_midi_files_per_s": len(files) / theirs_s,
        "speedup": theirs_s / ours_s,
    }
    print(
        f"MIDI -> note-state, {result['files']} files, {result['steps']} steps "
        f"at {resolution} per quarter, best of {repeats}"
    )
    print(f"{'reader':<42} {'total s':>9} {'files/s':>9} {'ms/file':>9}")
    for label, seconds in (
        ("musicgym.music.midi.read_midi", ours_s),
        (f"pretty_midi PrettyMIDI().get_piano_roll(fs={frames_per_second})", theirs_s),
    ):
        print(
            f"{label:<42} {seconds:>9.3f} {len(files) / seconds:>9.1f} "
            f"{1000 * seconds / len(files):>9.2f}"
        )
    print(f"speedup (pretty_midi time / ours): {result['speedup']:.2f}x")
    return result


if __name__ == "__main__":
    run()

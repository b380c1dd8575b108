"""Rendering time against playing time: a 2-bar melody (and a Bach chorale) to WAV, both paths.

For each synthesizer available (FluidSynth with the system's soundfont, and the plain one) it
times :func:`musicgym.music.audio.midi_to_wav` (read the MIDI file, synthesize, write the WAV):
its first call for a piece and synthesizer (the very first also imports the synthesizer) and the
median of ``repeats`` more, and prints each as a ratio to the piece's playing time (below 1:
faster than real time).

    python -m musicgym.benchmarks.audio_bench
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from musicgym.music import audio
from musicgym.music.midi import write_melody
from musicgym.music.tokens import NO_EVENT, pitch_to_token

TWO_BARS = [
    pitch_to_token(p) if i % 2 == 0 else NO_EVENT
    for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62] * 4)
]
"""32 16th notes at 120 bpm (4 s): eighth notes up and down a fifth, twice."""


def time_rendering(midi: Path, wav: Path, synthesizer: str, repeats: int, **options) -> dict:
    """``{"seconds", "first", "median"}``: playing time, first and median rendering time."""
    start = time.perf_counter()
    audio.midi_to_wav(midi, wav, synthesizer=synthesizer, **options)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        audio.midi_to_wav(midi, wav, synthesizer=synthesizer, **options)
        times.append(time.perf_counter() - start)
    seconds = audio.read_wav(wav).seconds
    return {"seconds": seconds, "first": first, "median": statistics.median(times)}


def run(repeats: int = 20, chorale: bool = True) -> dict[str, dict]:
    """Time both paths on the 2-bar melody (and the chorale bwv66.6 as a choir); print a table."""
    synthesizers = ["plain"]
    if audio.choose_synthesizer("auto")[0] == "fluidsynth":
        synthesizers.insert(0, "fluidsynth")
    else:
        print(f"no FluidSynth: {audio.SOUNDFONT_HINT}")
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        pieces = {"2-bar melody": (Path(folder) / "two_bars.mid", {})}
        write_melody(TWO_BARS, pieces["2-bar melody"][0])
        if chorale:
            from music21 import corpus

            path = Path(folder) / "bwv66.6.mid"
            corpus.parse("bach/bwv66.6").write("midi", fp=str(path))
            pieces["chorale bwv66.6"] = (path, {"program": "choir"})
        for synthesizer in synthesizers:
            for piece, (midi, options) in pieces.items():
                wav = Path(folder) / f"{synthesizer}.wav"
                rows[f"{piece}, {synthesizer}"] = time_rendering(
                    midi, wav, synthesizer, repeats, **options
                )
    header = ("playing", "first", "ratio", "median", "ratio")
    print(f"{'piece, synthesizer':<30} " + " ".join(f"{h:>8}" for h in header))
    for name, row in rows.items():
        print(
            f"{name:<30} {row['seconds']:>7.2f}s {1000 * row['first']:>6.0f}ms "
            f"{row['first'] / row['seconds']:>8.4f} {1000 * row['median']:>6.1f}ms "
            f"{row['median'] / row['seconds']:>8.4f}"
        )
    return rows


if __name__ == "__main__":
    run()

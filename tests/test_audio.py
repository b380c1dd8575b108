"""Audio: the pitch and length of what both synthesizers render, its speed, bad input through the
CLI (one line, exit 2, nothing half-written), and the clips an evaluation logs to TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from musicgym.cli import main
from musicgym.errors import AudioError, MidiError, MusicgymError
from musicgym.music import audio
from musicgym.music.midi import inspect_midi, write_melody
from musicgym.music.tokens import NO_EVENT, NOTE_OFF, pitch_to_token

HAS_FLUIDSYNTH = audio.fluidsynth_available() and audio.find_soundfont() is not None
SYNTHESIZERS = [
    "plain",
    pytest.param(
        "fluidsynth",
        marks=pytest.mark.skipif(
            not HAS_FLUIDSYNTH,
            reason=f"no FluidSynth or no soundfont ({audio.SOUNDFONT_HINT})",
        ),
    ),
]
C4 = pitch_to_token(60)
TWO_BARS = [
    pitch_to_token(p) if i % 2 == 0 else NO_EVENT
    for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62] * 4)
]  # 32 16th notes: eight-note steps up and down, twice


def spectral_peak(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size), n=8 * samples.size))
    return float(np.fft.rfftfreq(8 * samples.size, 1 / sample_rate)[spectrum.argmax()])


@pytest.mark.parametrize("synthesizer", SYNTHESIZERS)
def test_a_c4_quarter_note_peaks_within_a_semitone_of_261_6_hz(synthesizer, tmp_path: Path):
    write_melody([C4, NO_EVENT, NO_EVENT, NO_EVENT], tmp_path / "c4.mid")
    audio.midi_to_wav(tmp_path / "c4.mid", tmp_path / "c4.wav", synthesizer=synthesizer)
    sound = audio.read_wav(tmp_path / "c4.wav")
    assert sound.seconds == pytest.approx(0.5, abs=1e-3)  # a quarter note at 120 bpm
    peak = spectral_peak(sound.samples, sound.sample_rate)
    assert abs(12 * np.log2(peak / 261.63)) < 1.0, peak


@pytest.mark.parametrize("synthesizer", SYNTHESIZERS)
@pytest.mark.parametrize("tempo_bpm", [90.0, 140.0])
def test_a_two_bar_melody_lasts_two_bars_at_the_midi_tempo(synthesizer, tempo_bpm, tmp_path):
    write_melody(TWO_BARS, tmp_path / "two_bars.mid", tempo_bpm=tempo_bpm)
    audio.midi_to_wav(tmp_path / "two_bars.mid", synthesizer=synthesizer)  # beside the MIDI
    sound = audio.read_wav(tmp_path / "two_bars.wav")
    beat = 60 / tempo_bpm
    assert abs(sound.seconds - 8 * beat) <= beat / 4  # ± one 16th
    # Every eighth note sounds: no silent stretch of a beat anywhere but the faded end.
    frames = np.abs(sound.samples[: int(7.5 * beat * sound.sample_rate)])
    window = int(beat * sound.sample_rate / 2)
    loudness = np.convolve(frames, np.ones(window) / window, mode="valid")
    assert loudness.min() > 0.01


@pytest.mark.parametrize("synthesizer", SYNTHESIZERS)
def test_rendering_two_bars_takes_less_time_than_playing_them(synthesizer, tmp_path: Path):
    write_melody(TWO_BARS, tmp_path / "two_bars.mid")
    audio.render_midi(tmp_path / "two_bars.mid", synthesizer=synthesizer)  # loads the soundfont
    start = time.process_time()  # this process's CPU time: what a busy machine does not inflate
    sound = audio.render_midi(tmp_path / "two_bars.mid", synthesizer=synthesizer)
    assert time.process_time() - start < sound.seconds


@pytest.mark.parametrize("synthesizer", SYNTHESIZERS)
def test_melodies_note_states_and_silence_render(synthesizer):
    melody = audio.render_melody(TWO_BARS, synthesizer=synthesizer, sample_rate=16_000)
    assert melody.sample_rate == 16_000 and melody.samples.dtype == np.float32
    assert melody.seconds == pytest.approx(4.0)
    assert np.abs(melody.samples).max() == pytest.approx(audio.PEAK, abs=1e-3)
    rests = audio.render_melody([NO_EVENT] * 8, synthesizer=synthesizer, sample_rate=16_000)
    assert rests.seconds == pytest.approx(1.0) and np.abs(rests.samples).max() < 1e-4
    short = audio.render_melody([C4, NOTE_OFF, NO_EVENT, NO_EVENT], synthesizer=synthesizer)
    quarter = int(0.125 * short.sample_rate)  # the 16th note, then 3/16 of silence
    assert np.abs(short.samples[:quarter]).max() > 10 * np.abs(short.samples[-quarter:]).max()


@pytest.mark.skipif(not HAS_FLUIDSYNTH, reason="no FluidSynth or no soundfont")
def test_each_part_plays_its_own_instrument(tmp_path: Path):
    two_parts = mido.MidiFile(type=1, ticks_per_beat=480)
    for pitch in (72, 48):
        track = mido.MidiTrack()
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=960))
        two_parts.tracks.append(track)
    two_parts.save(tmp_path / "two_parts.mid")
    sounds = {
        programs: audio.render_midi(tmp_path / "two_parts.mid", program=programs).samples
        for programs in ("piano", "choir", "piano,organ", ("piano", 19))
    }
    assert not np.allclose(sounds["piano"], sounds["choir"], atol=1e-3)
    assert not np.allclose(sounds["piano"], sounds["piano,organ"], atol=1e-3)
    np.testing.assert_allclose(sounds["piano,organ"], sounds[("piano", 19)], atol=1e-6)


def test_programs_by_name_number_and_part():
    assert audio.parse_program("Choir") == 52 and audio.parse_program("19") == 19
    assert audio._programs("piano,organ", 4) == [0, 19, 19, 19]
    assert audio._programs(52, 2) == [52, 52]
    for bad in ("kazoo", "128"):
        with pytest.raises(AudioError, match=bad):
            audio.parse_program(bad)


def empty_midi(path: Path) -> None:
    silent = mido.MidiFile(type=1)
    silent.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)]))
    silent.save(path)


def not_a_soundfont(path: Path) -> str:
    path.write_bytes(b"this is not a soundfont at all")
    return str(path)


def truncated_soundfont(path: Path) -> str:
    path.write_bytes(b"RIFF" + (10_000).to_bytes(4, "little") + b"sfbk" + bytes(100))
    return str(path)


@pytest.mark.parametrize(
    "case, arguments, message",
    [
        ("missing soundfont", lambda d: ["--soundfont", str(d / "none.sf2")], "no such soundfont"),
        ("corrupt soundfont", lambda d: ["--soundfont", not_a_soundfont(d / "x.sf2")], "RIFF"),
        (
            "truncated soundfont",
            lambda d: ["--soundfont", truncated_soundfont(d / "t.sf2")],
            "trunc",
        ),
        ("unknown instrument", lambda d: ["--program", "kazoo"], "kazoo"),
    ],
)
def test_a_bad_soundfont_or_instrument_is_one_line_and_exit_2(
    case, arguments, message, tmp_path: Path, capsys
):
    write_melody(TWO_BARS, tmp_path / "song.mid")
    out = tmp_path / "out"
    assert main(["midi", "render", str(tmp_path / "song.mid"), "--wav", str(out / "song.wav"),
                 *arguments(tmp_path)]) == 2  # fmt: skip
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, case
    assert not out.exists() or not any(out.iterdir())


def test_a_soundfont_fluidsynth_cannot_load_is_one_line_and_exit_2(tmp_path: Path, capsys):
    body = b"sfbkLIST" + (4).to_bytes(4, "little") + b"INFO" + bytes(range(256)) * 8
    (tmp_path / "bad.sf2").write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    write_melody(TWO_BARS, tmp_path / "song.mid")
    argv = ["midi", "render", str(tmp_path / "song.mid"), "--wav", str(tmp_path / "song.wav")]
    assert main([*argv, "--soundfont", str(tmp_path / "bad.sf2")]) == 2
    error = capsys.readouterr().err
    expected = "cannot load this soundfont" if HAS_FLUIDSYNTH else "FluidSynth cannot be loaded"
    assert error.count("\n") == 1 and "bad.sf2" in error and expected in error
    assert not (tmp_path / "song.wav").exists()


def test_a_midi_without_notes_is_one_line_and_exit_2(tmp_path: Path, capsys):
    empty_midi(tmp_path / "empty.mid")
    assert (
        main(["midi", "render", str(tmp_path / "empty.mid"), "--wav", str(tmp_path / "e.wav")]) == 2
    )
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "empty.mid: no notes" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mid"]
    with pytest.raises(MidiError):
        audio.render_midi(tmp_path / "empty.mid")


def test_an_unwritable_output_folder_is_one_line_and_exit_2(tmp_path: Path, capsys):
    write_melody(TWO_BARS, tmp_path / "song.mid")
    (tmp_path / "file").write_text("a file where a folder should be")
    wav = tmp_path / "file" / "song.wav"
    assert main(["midi", "render", str(tmp_path / "song.mid"), "--wav", str(wav)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is a file, not a folder" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "song.mid"]


def test_a_failed_write_leaves_no_partial_wav(tmp_path: Path, monkeypatch):
    sound = audio.render_melody(TWO_BARS, synthesizer="plain")
    audio.write_wav(sound, tmp_path / "old.wav")
    before = (tmp_path / "old.wav").read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audio.wave.Wave_write, "writeframes", fail)
    with pytest.raises(MusicgymError, match="no space left"):
        audio.write_wav(sound, tmp_path / "old.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.wav"]
    assert (tmp_path / "old.wav").read_bytes() == before


def test_forcing_fluidsynth_without_it_says_how_to_get_it(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(audio, "fluidsynth_available", lambda: False)
    assert audio.choose_synthesizer("auto") == ("plain", None)
    assert "fluid-soundfont-gm" in audio.synthesizer_note()
    with pytest.raises(AudioError, match="apt-get install libfluidsynth3"):
        audio.choose_synthesizer("fluidsynth")
    write_melody(TWO_BARS, tmp_path / "song.mid")
    assert audio.render_midi(tmp_path / "song.mid").synthesizer == "plain"


def test_render_cli_writes_png_and_wav_and_notes_the_fallback(tmp_path: Path, capsys):
    write_melody(TWO_BARS, tmp_path / "song.mid")
    png, wav = tmp_path / "roll.png", tmp_path / "song.wav"
    argv = ["midi", "render", str(tmp_path / "song.mid"), "--png", str(png), "--wav", str(wav)]
    assert main([*argv, "--synthesizer", "plain"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {wav}: 4.00 s" in printed and "fluid-soundfont-gm" in printed
    assert png.stat().st_size > 1000 and audio.read_wav(wav).seconds == pytest.approx(4.0)
    assert main(["midi", "render", str(tmp_path / "song.mid")]) == 2  # neither --png nor --wav


@pytest.mark.parametrize("synthesizer", SYNTHESIZERS)
def test_a_corpus_chorale_renders_at_its_length(synthesizer, tmp_path: Path):
    from music21 import corpus

    corpus.parse("bach/bwv66.6").write("midi", fp=str(tmp_path / "chorale.mid"))
    wav = tmp_path / "check-c.wav"
    argv = ["midi", "render", str(tmp_path / "chorale.mid"), "--wav", str(wav)]
    assert main([*argv, "--synthesizer", synthesizer, "--program", "choir"]) == 0
    seconds = inspect_midi(tmp_path / "chorale.mid").seconds
    assert audio.read_wav(wav).seconds == pytest.approx(seconds, abs=0.01)


def test_write_wavs_beside_names_each_wav_after_its_midi(tmp_path: Path):
    paths = [tmp_path / f"melody_{i}.mid" for i in range(2)]
    for path in paths:
        write_melody(TWO_BARS, path)
    wavs = audio.write_wavs_beside(paths, synthesizer="plain")
    assert wavs == [path.with_suffix(".wav") for path in paths]
    assert all(audio.read_wav(wav).seconds == pytest.approx(4.0) for wav in wavs)


def test_write_wavs_beside_gives_a_melody_of_rests_silence_of_its_length(tmp_path: Path):
    write_melody([1] * 32, tmp_path / "rests.mid")  # two bars of rests at 120 bpm: 4 seconds
    write_melody([14] + [1] * 31, tmp_path / "note.mid")
    wavs = audio.write_wavs_beside(
        [tmp_path / "rests.mid", tmp_path / "note.mid"], synthesizer="plain"
    )
    rests, note = (audio.read_wav(path) for path in wavs)
    assert not rests.samples.any() and abs(rests.seconds - 4.0) < 0.05
    assert note.samples.any()
    (tmp_path / "broken.mid").write_bytes(b"not midi")
    with pytest.raises(MidiError):
        audio.write_wavs_beside([tmp_path / "broken.mid"], synthesizer="plain")


def test_log_compositions_writes_audio_and_piano_rolls(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    melodies = [TWO_BARS, [NO_EVENT] * 32, TWO_BARS[::-1], TWO_BARS, TWO_BARS]
    audio.log_compositions(writer, melodies, step=7, n=3)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    assert events.Tags()["audio"] == [f"music/audio_{i}" for i in range(3)]
    assert events.Tags()["images"] == [f"music/piano_roll_{i}" for i in range(3)]
    clip = events.Audio("music/audio_0")[0]
    assert clip.step == 7 and clip.sample_rate == audio.TENSORBOARD_SAMPLE_RATE
    assert clip.length_frames == 4 * audio.TENSORBOARD_SAMPLE_RATE
    image = events.Images("music/piano_roll_0")[0]
    assert image.width == 32 * 8 and image.height == 36 * 4


def test_the_sb3_evaluation_logs_compositions(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from musicgym.agents.baselines import SB3Config
    from musicgym.agents.baselines import train as train_sb3

    hyperparameters = json.dumps({"n_steps": 16, "batch_size": 32, "n_epochs": 1})
    config = SB3Config(
        algo="ppo", steps=32, num_envs=2, eval_interval=32, eval_episodes=2,
        checkpoint_interval=1_000, hyperparameters=hyperparameters, prior_reward=False,
    )  # fmt: skip
    train_sb3(config, tmp_path, progress=False)
    (events_file,) = tmp_path.rglob("events.out.tfevents.*")
    events = EventAccumulator(str(events_file), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    assert events.Tags()["audio"] == ["music/audio_0", "music/audio_1"]
    assert events.Tags()["images"] == ["music/piano_roll_0", "music/piano_roll_1"]
    assert "music/notes_not_in_key" in events.Tags()["scalars"]


def test_agent_compose_writes_a_wav_beside_each_midi(tmp_path: Path, capsys):
    out = tmp_path / "out"
    argv = ["agent", "compose", "--agent", "random", "--n", "2", "--out", str(out), "--wav"]
    assert main([*argv, "--soundfont", str(tmp_path / "none.sf2")]) == 2
    assert "none.sf2: no such soundfont file" in capsys.readouterr().err
    assert not out.exists()  # the bad soundfont failed before anything was composed
    assert main([*argv, "--synthesizer", "plain", "--program", "flute"]) == 0
    assert "fluid-soundfont-gm" in capsys.readouterr().out  # how to get the better sound
    for i in range(2):
        wav = audio.read_wav(out / f"melody_{i:03d}.wav")
        assert wav.seconds == pytest.approx(4.0) and (out / f"melody_{i:03d}.mid").is_file()

"""Audio of MIDI files, note-states and token melodies: WAV files, and clips in TensorBoard.

Two synthesizers render the same notes:

==============  ===================================================================================
synthesizer     how
==============  ===================================================================================
``fluidsynth``  FluidSynth with a General MIDI soundfont, one instrument (GM program) per part. It
                needs ``pyfluidsynth`` (``pip install 'musicgym[audio]'``) and the FluidSynth
                library (Debian: ``libfluidsynth3``); the soundfont is ``soundfont=PATH`` or the
                first of :data:`SOUNDFONT_PATHS` that exists (Debian: ``fluid-soundfont-gm``).
``plain``       pretty_midi's additive synthesis (``Instrument.synthesize``: a decaying tone per
                note) with a soft organ-like wave of three harmonics; needs nothing more. It plays
                every part with the same tone.
==============  ===================================================================================

``synthesizer="auto"`` (the default) takes FluidSynth when it is there and the plain one otherwise;
:data:`SOUNDFONT_HINT` says how to get FluidSynth. A rendering lasts exactly as long as its music:
a MIDI file up to its last note or end-of-track (at the file's tempo), a note-state its number of
steps (at ``tempo_bpm``). It is mono ``float32``, peak-normalised to :data:`PEAK`, and the last
10 ms fade out so that a note cut by the end does not click. WAV files are 16-bit PCM, written
atomically. A part is a MIDI track with notes (parts of a type 0 file share its one track); every
note plays at velocity 80, the one musicgym's MIDI files have.

Bad input raises :class:`~musicgym.errors.AudioError` (or :class:`~musicgym.errors.MidiError` for
the MIDI file) with a one-line message naming the path.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import wave
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from musicgym.errors import AudioError, MidiError
from musicgym.fileio import atomic_output, describe_os_error
from musicgym.music.midi import length_of_rests, read_midi_notes
from musicgym.music.notestate import NoteState

Synthesizer = Literal["auto", "fluidsynth", "plain"]
SYNTHESIZERS: tuple[str, ...] = ("auto", "fluidsynth", "plain")
DEFAULT_SAMPLE_RATE = 44_100
TENSORBOARD_SAMPLE_RATE = 16_000  # small event files; a melody's range ends well below 8 kHz
DEFAULT_VELOCITY = 80  # what musicgym.music.midi.write_midi writes
PEAK = 0.89  # -1 dBFS
FADE_SECONDS = 0.01
MAX_SECONDS = 3_600.0
"""The longest piece rendered to sound (an hour: 635 MB of samples at 44.1 kHz); a longer one, as
a corrupt or crafted MIDI file's hours of silence, is refused in one line before any memory is
taken."""
PROGRAMS: dict[str, int] = {
    "piano": 0,  # Acoustic Grand Piano
    "harpsichord": 6,
    "organ": 19,  # Church Organ
    "strings": 48,  # String Ensemble 1
    "choir": 52,  # Choir Aahs
    "flute": 73,
}
"""General MIDI programs (0-based) by name: what ``program="choir"`` (``--program choir``) plays."""
SOUNDFONT_PATHS: tuple[str, ...] = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian, Ubuntu: fluid-soundfont-gm
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora, Arch
    "/usr/share/soundfonts/default.sf2",
    "/usr/local/share/soundfonts/default.sf2",  # Homebrew
    "/opt/homebrew/share/soundfonts/default.sf2",
)
"""Where a General MIDI soundfont usually is; the first that exists is used. When none does,
pretty_midi's small bundled ``TimGM6mb.sf2`` is."""
SOUNDFONT_HINT = (
    "for General MIDI instruments install FluidSynth and a soundfont: "
    "pip install 'musicgym[audio]' && apt-get install libfluidsynth3 fluid-soundfont-gm"
)
_DRUM_CHANNEL = 9


@dataclass(frozen=True)
class Audio:
    """Rendered sound.

    Args:
        samples: ``(S,)`` mono ``float32`` in ``[-1, 1]``.
        sample_rate: samples per second.
        synthesizer: what made it, e.g. ``"fluidsynth FluidR3_GM.sf2"`` or ``"plain"``.
    """

    samples: np.ndarray
    sample_rate: int
    synthesizer: str

    @property
    def seconds(self) -> float:
        """Length in seconds."""
        return self.samples.size / self.sample_rate


@dataclass(frozen=True)
class _TimedNotes:
    """Notes in seconds: aligned ``starts``, ``ends``, ``pitches``, ``parts`` (0 .. P-1)."""

    starts: np.ndarray
    ends: np.ndarray
    pitches: np.ndarray
    parts: np.ndarray
    seconds: float
    name: str

    @property
    def num_parts(self) -> int:
        return int(self.parts.max()) + 1 if self.parts.size else 1


# ---- choosing the synthesizer


@functools.lru_cache(maxsize=1)
def _fluidsynth_module() -> Any | None:
    """pyfluidsynth with the FluidSynth library's log silenced, or None when either is missing."""
    try:
        # pyfluidsynth prints where it found the library when $CI is set; our stdout is the
        # command's output (the first line names the run), so its print goes nowhere.
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    except (ImportError, OSError):  # no pyfluidsynth, or no libfluidsynth for it to load
        return None
    from ctypes import c_int, c_void_p

    # Our errors say what went wrong in one line; FluidSynth's own log would add more.
    set_log = fluidsynth.cfunc(
        "fluid_set_log_function",
        c_void_p,
        ("level", c_int, 1),
        ("fun", c_void_p, 1),
        ("data", c_void_p, 1),
    )
    if set_log is not None:
        for level in range(5):  # panic, error, warning, info, debug
            set_log(level, None, None)
    return fluidsynth


def import_pretty_midi() -> Any:
    """pretty_midi, imported after pyfluidsynth (quietly, see :func:`_fluidsynth_module`):
    pretty_midi imports pyfluidsynth itself, which would print on stdout under $CI.

    Raises:
        ImportError: pretty_midi is not installed.
    """
    _fluidsynth_module()
    import pretty_midi

    return pretty_midi


def fluidsynth_available() -> bool:
    """Whether pyfluidsynth and the FluidSynth library can be loaded."""
    return _fluidsynth_module() is not None


def find_soundfont(soundfont: str | os.PathLike[str] | None = None) -> Path | None:
    """The soundfont to use: ``soundfont`` if given (checked), else the first of
    :data:`SOUNDFONT_PATHS` that exists, else pretty_midi's bundled one, else None.

    Raises:
        AudioError: ``soundfont`` is missing, not a file, or not a SoundFont 2 file.
    """
    if soundfont is not None:
        path = Path(soundfont)
        check_soundfont(path)
        return path
    for candidate in SOUNDFONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    try:
        pretty_midi = import_pretty_midi()
    except ImportError:
        return None
    bundled = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return bundled if bundled.is_file() else None


def check_soundfont(path: Path) -> None:
    """Raise :class:`AudioError` unless ``path`` looks like a whole SoundFont 2 file: a RIFF
    ``sfbk`` header whose length fits the file, then the ``INFO`` list the format puts first."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            header = f.read(24)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such soundfont file") from None
    except IsADirectoryError:
        raise AudioError(f"{path}: is a directory, not a soundfont file") from None
    except OSError as error:
        raise AudioError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise AudioError(f"{path}: not a SoundFont 2 file (no RIFF sfbk header)")
    declared = int.from_bytes(header[4:8], "little") + 8
    if declared > size:
        raise AudioError(f"{path}: truncated soundfont ({size} of {declared} bytes)")
    if header[12:16] != b"LIST" or header[20:24] != b"INFO":
        raise AudioError(f"{path}: corrupt soundfont (no INFO list after the RIFF header)")


def choose_synthesizer(
    synthesizer: Synthesizer = "auto", soundfont: str | os.PathLike[str] | None = None
) -> tuple[str, Path | None]:
    """``("fluidsynth", soundfont path)`` or ``("plain", None)`` for a request.

    ``"auto"`` takes FluidSynth when the library and a soundfont are there. Asking for
    ``"fluidsynth"``, or giving ``soundfont``, when FluidSynth cannot be loaded is an error.

    Raises:
        AudioError: an unknown synthesizer, FluidSynth or the soundfont missing where asked for,
            a corrupt soundfont.
    """
    if synthesizer not in SYNTHESIZERS:
        raise AudioError(
            f"synthesizer must be one of {', '.join(SYNTHESIZERS)}, got {synthesizer!r}"
        )
    if synthesizer == "plain":
        return "plain", None
    path = find_soundfont(soundfont)  # a given soundfont is checked even without FluidSynth
    if not fluidsynth_available():
        if synthesizer == "fluidsynth" or soundfont is not None:
            what = f"--soundfont {soundfont}" if soundfont is not None else "fluidsynth"
            raise AudioError(f"{what}: FluidSynth cannot be loaded; {SOUNDFONT_HINT}")
        return "plain", None
    if path is None:
        if synthesizer == "fluidsynth":
            raise AudioError(f"fluidsynth: no soundfont found; {SOUNDFONT_HINT}")
        return "plain", None
    return "fluidsynth", path


def parse_program(text: str | int) -> int:
    """A General MIDI program (0..127) from a name of :data:`PROGRAMS` or a number.

    Raises:
        AudioError: neither a known name nor a number in 0..127.
    """
    if isinstance(text, int) or str(text).strip().isdigit():
        program = int(text)
        if 0 <= program <= 127:
            return program
        raise AudioError(f"program {program} is outside General MIDI's 0..127")
    name = str(text).strip().lower()
    if name not in PROGRAMS:
        raise AudioError(f"unknown instrument {text!r}; one of {', '.join(PROGRAMS)} or 0..127")
    return PROGRAMS[name]


def _programs(program: str | int | Sequence[str | int], parts: int) -> list[int]:
    """One GM program per part: a single program for all, or a list (its last one repeats)."""
    if isinstance(program, (str, int)):
        items = [p for p in str(program).split(",") if p.strip()] or ["piano"]
    else:
        items = list(program) or ["piano"]
    programs = [parse_program(p) for p in items]
    return [programs[min(i, len(programs) - 1)] for i in range(parts)]


# ---- notes in seconds


def _from_midi(path: str | os.PathLike[str]) -> _TimedNotes:
    notes = read_midi_notes(path)  # MidiError: missing, corrupt, no notes
    ticks = np.unique(np.concatenate([notes.starts, notes.ends, [notes.end_tick]]))
    seconds = dict(zip(ticks.tolist(), (notes.seconds_at(int(t)) for t in ticks)))
    to_seconds = np.vectorize(seconds.__getitem__, otypes=[np.float64])
    # Parts: the tracks that hold notes, in file order (a conductor track holds none).
    _, parts = np.unique(notes.tracks, return_inverse=True)
    return _TimedNotes(
        starts=to_seconds(notes.starts),
        ends=to_seconds(notes.ends),
        pitches=notes.pitches,
        parts=parts.reshape(-1),
        seconds=seconds[int(ticks[-1])],
        name=notes.path,
    )


def _from_note_state(note_state: NoteState, tempo_bpm: float) -> _TimedNotes:
    from musicgym.music.midi import note_steps

    if not tempo_bpm > 0:
        raise AudioError(f"tempo_bpm must be > 0, got {tempo_bpm}")
    if note_state.num_steps == 0:
        raise AudioError(f"{note_state.name or 'note-state'}: no steps to render")
    seconds_per_step = 60.0 / tempo_bpm / note_state.resolution
    starts, ends, pitches = note_steps(note_state)
    return _TimedNotes(
        starts=starts * seconds_per_step,
        ends=ends * seconds_per_step,
        pitches=pitches,
        parts=np.zeros(pitches.shape, np.int64),
        seconds=note_state.num_steps * seconds_per_step,
        name=note_state.name,
    )


# ---- synthesis


def _finish(samples: np.ndarray, sample_rate: int, synthesizer: str) -> Audio:
    """Peak-normalise, fade the end, and wrap."""
    samples = np.asarray(samples, np.float64)
    peak = np.abs(samples).max(initial=0.0)
    if peak > 1e-4:  # silence stays silent
        samples = samples * (PEAK / peak)
    fade = min(int(FADE_SECONDS * sample_rate), samples.size)
    if fade:
        samples[-fade:] *= np.linspace(1.0, 0.0, fade)
    return Audio(samples.astype(np.float32), sample_rate, synthesizer)


def _organ_wave(phase: np.ndarray) -> np.ndarray:
    """A soft tone: the fundamental with its 2nd and 3rd harmonics at 1/2 and 1/4."""
    return (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)) / 1.75


def _render_plain(notes: _TimedNotes, sample_rate: int) -> np.ndarray:
    pretty_midi = import_pretty_midi()

    length = round(notes.seconds * sample_rate)
    instrument = pretty_midi.Instrument(program=0)
    for start, end, pitch in zip(
        notes.starts.tolist(), notes.ends.tolist(), notes.pitches.tolist()
    ):
        instrument.notes.append(pretty_midi.Note(DEFAULT_VELOCITY, int(pitch), start, end))
    if not instrument.notes:
        return np.zeros(length)
    samples = instrument.synthesize(fs=sample_rate, wave=_organ_wave)
    return np.pad(samples, (0, max(length - samples.size, 0)))[:length]


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null (what C libraries print to)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _FluidSynth:
    """A FluidSynth synthesizer with a soundfont loaded, for one rendering.

    A fresh one each time makes the same notes always give the same samples (a synthesizer kept
    between renderings keeps its reverb's state and its place in its 64-sample blocks); with the
    samples loaded as a preset first plays, it starts in about 10 ms even with the 148 MB
    FluidR3_GM.sf2.
    """

    def __init__(self, soundfont: Path, sample_rate: int) -> None:
        from ctypes import c_int, c_void_p

        fluidsynth = _fluidsynth_module()
        self.write_float = fluidsynth.cfunc(
            "fluid_synth_write_float",
            c_int,
            *(("synth", c_void_p, 1), ("len", c_int, 1)),
            *(("lout", c_void_p, 1), ("loff", c_int, 1), ("lincr", c_int, 1)),
            *(("rout", c_void_p, 1), ("roff", c_int, 1), ("rincr", c_int, 1)),
        )
        self.synth = fluidsynth.Synth(
            gain=0.5, samplerate=float(sample_rate), **{"synth.dynamic-sample-loading": 1}
        )
        with _stderr_silenced():  # a loader library may print to it; our error says enough
            self.soundfont_id = self.synth.sfload(str(soundfont))
        if self.soundfont_id < 0:
            self.synth.delete()
            raise AudioError(f"{soundfont}: FluidSynth cannot load this soundfont")
        self.sample_rate = sample_rate

    def write(self, left: np.ndarray, right: np.ndarray) -> None:
        """Render ``left.size`` samples into two contiguous ``float32`` arrays."""
        if left.size:
            self.write_float(self.synth.synth, left.size, left.ctypes.data, 0, 1,
                             right.ctypes.data, 0, 1)  # fmt: skip

    def render(self, notes: _TimedNotes, programs: list[int]) -> np.ndarray:
        """``notes`` as mono samples, each part on its own MIDI channel with its program."""
        channels = [c for c in range(16) if c != _DRUM_CHANNEL]
        part_channel = [channels[part % len(channels)] for part in range(notes.num_parts)]
        for part, program in enumerate(programs):
            self.synth.program_select(part_channel[part], self.soundfont_id, 0, program)
        # Events by sample, note-offs first, so a note struck again as it ends sounds twice.
        length = round(notes.seconds * self.sample_rate)
        times = np.concatenate([notes.ends, notes.starts])
        samples_at = np.minimum(np.rint(times * self.sample_rate).astype(np.int64), length)
        is_on = np.concatenate([np.zeros(notes.ends.size, bool), np.ones(notes.starts.size, bool)])
        pitches = np.concatenate([notes.pitches, notes.pitches]).tolist()
        channels_of = [part_channel[p] for p in np.concatenate([notes.parts, notes.parts])]
        left, right = np.zeros(length, np.float32), np.zeros(length, np.float32)
        position = 0
        for index in np.lexsort((is_on, samples_at)).tolist():
            at = int(samples_at[index])
            self.write(left[position:at], right[position:at])
            position = max(position, at)
            if is_on[index]:
                self.synth.noteon(channels_of[index], pitches[index], DEFAULT_VELOCITY)
            else:
                self.synth.noteoff(channels_of[index], pitches[index])
        self.write(left[position:], right[position:])
        return (left.astype(np.float64) + right) / 2

    def close(self) -> None:
        self.synth.delete()


def _render(
    notes: _TimedNotes,
    *,
    program: str | int | Sequence[str | int],
    soundfont: str | os.PathLike[str] | None,
    synthesizer: Synthesizer,
    sample_rate: int,
) -> Audio:
    if not 8_000 <= sample_rate <= 96_000:  # FluidSynth's range
        raise AudioError(f"sample rate must be 8000..96000 Hz, got {sample_rate}")
    if not notes.seconds <= MAX_SECONDS:
        raise AudioError(
            f"{notes.name or 'piece'}: {notes.seconds:.0f} s of music, longer than the "
            f"{MAX_SECONDS:.0f} s musicgym renders to sound; cut it shorter first"
        )
    programs = _programs(program, notes.num_parts)
    kind, path = choose_synthesizer(synthesizer, soundfont)
    if kind == "fluidsynth":
        synth = _FluidSynth(path, sample_rate)
        try:
            samples = synth.render(notes, programs)
        finally:
            synth.close()
        return _finish(samples, sample_rate, f"fluidsynth {path.name}")
    return _finish(_render_plain(notes, sample_rate), sample_rate, "plain")


def render_midi(
    path: str | os.PathLike[str],
    *,
    program: str | int | Sequence[str | int] = "piano",
    soundfont: str | os.PathLike[str] | None = None,
    synthesizer: Synthesizer = "auto",
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> Audio:
    """Render a MIDI file (drums left out) at its own tempo.

    Args:
        path: a type 0 or type 1 MIDI file.
        program: the instrument: a name of :data:`PROGRAMS` or a GM program 0..127 for every part,
            or one per part (a sequence, or names separated by commas; the last one repeats).
        soundfont: a ``.sf2`` file for FluidSynth (default: :func:`find_soundfont`).
        synthesizer: ``"auto"``, ``"fluidsynth"`` or ``"plain"`` (see the module docstring).
        sample_rate: samples per second.

    Raises:
        MidiError: the file is missing, corrupt, or has no notes.
        AudioError: see :func:`choose_synthesizer` and :func:`parse_program`.
    """
    notes = _from_midi(path)
    return _render(
        notes,
        program=program,
        soundfont=soundfont,
        synthesizer=synthesizer,
        sample_rate=sample_rate,
    )


def render_note_state(
    note_state: NoteState,
    *,
    tempo_bpm: float = 120.0,
    program: str | int = "piano",
    soundfont: str | os.PathLike[str] | None = None,
    synthesizer: Synthesizer = "auto",
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> Audio:
    """Render a note-state (``resolution`` steps a beat, at ``tempo_bpm``) as one part; silence
    renders as silence. Arguments as :func:`render_midi`."""
    notes = _from_note_state(note_state, tempo_bpm)
    return _render(
        notes,
        program=program,
        soundfont=soundfont,
        synthesizer=synthesizer,
        sample_rate=sample_rate,
    )


def render_melody(
    melody_tokens: Sequence[int],
    *,
    tempo_bpm: float = 120.0,
    program: str | int = "piano",
    soundfont: str | os.PathLike[str] | None = None,
    synthesizer: Synthesizer = "auto",
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> Audio:
    """Render a token melody (one token per 16th note); arguments as :func:`render_midi`."""
    from musicgym.music.tokens import tokens_to_note_state

    return render_note_state(
        tokens_to_note_state(melody_tokens),
        tempo_bpm=tempo_bpm,
        program=program,
        soundfont=soundfont,
        synthesizer=synthesizer,
        sample_rate=sample_rate,
    )


# ---- files


def write_wav(audio: Audio, path: str | os.PathLike[str]) -> None:
    """Write 16-bit mono PCM atomically (a failed write leaves no partial file).

    Raises:
        AudioError: the folder cannot be made or written to.
    """
    pcm = np.rint(np.clip(audio.samples, -1.0, 1.0) * 32767).astype("<i2")
    try:
        with atomic_output(path) as temporary, wave.open(str(temporary), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(audio.sample_rate)
            wav.writeframes(pcm.tobytes())
    except OSError as error:
        raise AudioError(describe_os_error(error, path)) from None


def read_wav(path: str | os.PathLike[str]) -> Audio:
    """A 16-bit PCM WAV file (mono, or channels averaged) as :class:`Audio`."""
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise AudioError(f"{path}: {8 * wav.getsampwidth()}-bit WAV, expected 16-bit")
            frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
            channels, sample_rate = wav.getnchannels(), wav.getframerate()
    except (OSError, EOFError, wave.Error) as error:
        raise AudioError(f"{path}: not a readable WAV file ({error})") from None
    samples = frames.reshape(-1, channels).mean(axis=1) / 32767
    return Audio(samples.astype(np.float32), sample_rate, "wav")


def midi_to_wav(
    midi_path: str | os.PathLike[str],
    wav_path: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Path:
    """Render a MIDI file to ``wav_path`` (default: beside it, suffix ``.wav``); ``options`` are
    :func:`render_midi`'s. Returns the WAV's path."""
    wav_path = Path(midi_path).with_suffix(".wav") if wav_path is None else Path(wav_path)
    write_wav(render_midi(midi_path, **options), wav_path)
    return wav_path


def write_wavs_beside(
    midi_paths: Iterable[str | os.PathLike[str]],
    *,
    program: str | int | Sequence[str | int] = "piano",
    soundfont: str | os.PathLike[str] | None = None,
    synthesizer: Synthesizer = "auto",
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> list[Path]:
    """Write ``song.wav`` beside each ``song.mid``; returns the WAV paths, in order.

    The synthesizer is chosen once for all files (a bad soundfont fails before any is written).
    A file that holds no note, as a composed melody of rests does, gets a silent WAV of its
    length.
    """
    kind, path = choose_synthesizer(synthesizer, soundfont)
    written = []
    for midi_path in midi_paths:
        try:
            written.append(
                midi_to_wav(
                    midi_path,
                    program=program,
                    soundfont=path,
                    synthesizer=kind,  # type: ignore[arg-type]
                    sample_rate=sample_rate,
                )
            )
        except MidiError:
            rests = length_of_rests(midi_path)
            if rests is None:
                raise
            seconds = rests[0]
            silence = Audio(np.zeros(round(seconds * sample_rate), np.float32), sample_rate, kind)
            written.append(Path(midi_path).with_suffix(".wav"))
            write_wav(silence, written[-1])
    return written


def synthesizer_note(synthesizer: Synthesizer = "auto", soundfont: str | None = None) -> str:
    """One line saying which synthesizer ``auto`` renders with, and how to get FluidSynth when
    it is not the one."""
    kind, path = choose_synthesizer(synthesizer, soundfont)
    if kind == "fluidsynth":
        return f"audio: FluidSynth with {path}"
    return f"audio: plain synthesis ({SOUNDFONT_HINT})"


# ---- TensorBoard


def log_compositions(
    writer: Any,
    melodies: Sequence[Sequence[int]],
    step: int,
    *,
    tag: str = "music",
    n: int = 4,
    tempo_bpm: float = 120.0,
    sample_rate: int = TENSORBOARD_SAMPLE_RATE,
    synthesizer: Synthesizer = "auto",
) -> None:
    """Log the first ``n`` melodies to TensorBoard: ``{tag}/audio_{i}`` (``add_audio``) and
    ``{tag}/piano_roll_{i}`` (``add_image``, HWC uint8).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (anything with its ``add_audio`` and
            ``add_image``).
        melodies: token melodies (one token per 16th note).
        step: the global step to log them at.
        tag: the tag prefix.
        n: melodies to log (fewer if fewer are given).
        tempo_bpm: the tempo they play at.
        sample_rate: of the clips.
        synthesizer: ``"auto"``, ``"fluidsynth"`` or ``"plain"``.
    """
    from musicgym.music.pianoroll import piano_roll_rgb
    from musicgym.music.tokens import tokens_to_note_state

    for i, melody in enumerate(list(melodies)[:n]):
        note_state = tokens_to_note_state(melody)
        if note_state.num_steps == 0:
            continue
        audio = render_note_state(
            note_state, tempo_bpm=tempo_bpm, synthesizer=synthesizer, sample_rate=sample_rate
        )
        writer.add_audio(
            f"{tag}/audio_{i}", audio.samples[None], step, sample_rate=audio.sample_rate
        )
        roll = piano_roll_rgb(note_state, step_px=8, pitch_px=4)
        writer.add_image(f"{tag}/piano_roll_{i}", roll, step, dataformats="HWC")

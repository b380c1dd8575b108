"""The ``musicgym midi`` command group: ``inspect`` a MIDI file, ``render`` its piano roll and its
sound."""

from __future__ import annotations

import argparse
from pathlib import Path

from musicgym.arguments import add_audio_arguments, audio_options, positive_int
from musicgym.errors import MusicgymError
from musicgym.music.notestate import SIXTEENTH_NOTES


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``midi`` group with ``inspect`` and ``render``."""
    midi = subparsers.add_parser("midi", help="inspect MIDI files and draw their piano rolls")
    commands = midi.add_subparsers(dest="command", metavar="COMMAND", required=True)

    inspect = commands.add_parser(
        "inspect", help="tracks, notes, length, pitch range and ticks per beat of a MIDI file"
    )
    inspect.add_argument("file", help="a type 0 or type 1 MIDI file")
    inspect.add_argument(
        "--resolution",
        type=positive_int,
        default=SIXTEENTH_NOTES,
        help="steps per quarter note for the length in steps (default: %(default)s)",
    )
    inspect.set_defaults(func=_inspect)

    render = commands.add_parser(
        "render",
        help="draw a MIDI file's piano roll to a PNG, play it into a WAV, or both",
        description="Write the piano roll (--png) and/or the sound (--wav) of a MIDI file. The "
        "sound is FluidSynth with a General MIDI soundfont when both are installed (pip install "
        "'musicgym[audio]'; Debian: libfluidsynth3 fluid-soundfont-gm), a plain synthesis "
        "otherwise.",
    )
    render.add_argument("file", help="a type 0 or type 1 MIDI file")
    render.add_argument("--png", metavar="OUT", help="the picture to write")
    render.add_argument("--wav", metavar="OUT", help="the sound to write (16-bit mono WAV)")
    render.add_argument(
        "--resolution",
        type=positive_int,
        default=SIXTEENTH_NOTES,
        help="steps per quarter note (default: %(default)s)",
    )
    render.add_argument("--title", help="title above the roll (default: the file name)")
    add_audio_arguments(render)
    render.set_defaults(func=_render)


def _inspect(args: argparse.Namespace) -> int:
    from musicgym.music.keys import pitch_name
    from musicgym.music.midi import inspect_midi

    summary = inspect_midi(args.file, resolution=args.resolution)
    tracks = ", ".join(
        f"{name or '(untitled)'}: {notes}"
        for name, notes in zip(summary.track_names, summary.notes_per_track)
    )
    numerator, denominator = summary.time_signature
    drums = f" ({summary.drum_notes} on the drum channel left out)" if summary.drum_notes else ""
    rows = [
        ("format", f"type {summary.midi_type}, {summary.ticks_per_beat} ticks per beat"),
        ("tracks", f"{len(summary.track_names)} ({tracks})"),
        ("notes", f"{summary.num_notes}{drums}"),
        (
            "length",
            f"{summary.steps} steps of 1/{summary.resolution} beat, "
            f"{summary.bars:.2f} bars of {numerator}/{denominator}, {summary.seconds:.1f} s",
        ),
        (
            "pitch range",
            f"{summary.lowest_pitch}..{summary.highest_pitch} "
            f"({pitch_name(summary.lowest_pitch)}..{pitch_name(summary.highest_pitch)})",
        ),
    ]
    print(summary.path)
    for label, value in rows:
        print(f"  {label:<12} {value}")
    return 0


def _render(args: argparse.Namespace) -> int:
    if args.png is None and args.wav is None:
        raise MusicgymError(f"{args.file}: nothing to write; give --png OUT and/or --wav OUT")
    if args.wav is not None:  # a bad soundfont fails before the picture is written
        from musicgym.music.audio import choose_synthesizer

        choose_synthesizer(args.synthesizer, args.soundfont)
    if args.png is not None:
        from musicgym.music.midi import read_midi
        from musicgym.music.pianoroll import save_piano_roll

        note_state = read_midi(args.file, resolution=args.resolution)
        title = args.title if args.title is not None else Path(args.file).name
        save_piano_roll(note_state, args.png, title=title)
        print(
            f"wrote {args.png}: {note_state.num_steps} steps x {note_state.num_pitches} pitches "
            f"({note_state.lowest_pitch}..{note_state.highest_pitch})"
        )
    if args.wav is not None:
        import time

        from musicgym.music.audio import SOUNDFONT_HINT, render_midi, write_wav

        start = time.perf_counter()
        audio = render_midi(args.file, **audio_options(args))
        write_wav(audio, args.wav)
        seconds = time.perf_counter() - start
        print(
            f"wrote {args.wav}: {audio.seconds:.2f} s at {audio.sample_rate} Hz with "
            f"{audio.synthesizer}, rendered in {seconds:.2f} s"
        )
        if audio.synthesizer == "plain":
            print(f"note: {SOUNDFONT_HINT}")
    return 0

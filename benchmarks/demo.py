"""``musicgym demo``: the whole system in a few minutes, on the embedded default.

It loads the shipped melody prior (``melody16``, the Bi-axial LSTM trained on the Essen folk
melodies, which the RL Tuner tunes better than the Bach prior: ``benchmarks/RESULTS.md``),
samples melodies from it, tunes it briefly with the RL Tuner (``rltuner-q``) on
``MusicComposition-v0``, composes with the tuned agent, and writes a folder::

    musicgym-demo/
        index.html                the gallery: statistics, and every melody's roll and sound
        prior/melody_00.mid ...   melodies sampled from the prior (.wav and .png beside each)
        tuned/melody_00.mid ...   melodies of the tuned agent (.wav and .png beside each)
        piano_rolls.png           the first of each, side by side
        statistics.json           the table below, as numbers
        run/                      the training run (TensorBoard logs, checkpoint)

and prints the spec's statistics of both, beside Jaques et al.'s Q column, and the gallery's path
(open it in a browser: prior and tuned melodies side by side, each playable). It plays and
downloads nothing.

``musicgym demo --chorale`` does the same on ``ChoraleComposition-v0``: it samples four-bar
chorales from the chorale prior (``bach16``), tunes it with ``rltuner-q`` (Boltzmann exploration)
on the four-part-writing rules, and writes ``chorale_00.mid ...`` and four-voice piano rolls, with
the chorale statistics of both (``musicgym-demo-chorale/`` by default); under five minutes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from musicgym.config import DEFAULTS
from musicgym.metrics import PUBLISHED, STATISTICS


@dataclass
class DemoConfig:
    """Settings of ``musicgym demo``."""

    out: str = ""
    """Folder to write (default: musicgym-demo, or musicgym-demo-chorale with --chorale)."""
    chorale: bool = False
    """Compose four-part chorales on ChoraleComposition-v0 instead of melodies."""
    steps: int = 20_000
    """Environment steps of RL Tuner training (about two minutes on one CPU core)."""
    max_minutes: float = 4.0
    """Stop training after this many minutes, whatever --steps says."""
    melodies: int = 64
    """Melodies composed by each of the prior and the tuned agent for the statistics."""
    keep: int = 8
    """Melodies of each written as MIDI files."""
    seed: int = 0
    """Seed of training and composing."""
    prior: str = ""
    """The prior: a shipped name (melody16c, melody16, note_rnn, bach16) or a checkpoint path
    (default: melody16c, or bach16 with --chorale)."""
    soundfont: str | None = None
    """General MIDI soundfont for the WAV files (default: the system's, e.g.
    /usr/share/sounds/sf2/FluidR3_GM.sf2)."""
    synthesizer: Literal["auto", "fluidsynth", "plain"] = "auto"
    """How the WAV files are rendered: fluidsynth, plain, or auto (fluidsynth when installed)."""


def run(config: DemoConfig) -> dict[str, dict[str, float]]:
    """Sample, tune, compose, write, and print; returns the statistics of prior and tuned."""
    if config.chorale:
        return run_chorales(config)
    from musicgym import agents
    from musicgym.agents.common import load_prior
    from musicgym.agents.rl_tuner import RLTunerConfig, train
    from musicgym.benchmarks.gallery import write_gallery
    from musicgym.envs.stepper import melody_statistics
    from musicgym.music.audio import choose_synthesizer, synthesizer_note, write_wavs_beside
    from musicgym.music.midi import write_melody
    from musicgym.music.pianoroll import save_piano_roll_sheet
    from musicgym.music.tokens import tokens_to_note_state

    # A bad soundfont fails now, not after the training.
    synthesis = {"soundfont": config.soundfont, "synthesizer": config.synthesizer}
    synthesizer, soundfont = choose_synthesizer(**synthesis)
    out = Path(config.out or "musicgym-demo")
    out.mkdir(parents=True, exist_ok=True)
    prior_name = config.prior or DEFAULTS.prior
    prior = load_prior(prior_name)
    print(f"prior {prior_name}: sampling {config.melodies} melodies")
    sampled = agents.load(f"prior:{prior_name}").compose(config.melodies, seed=config.seed)

    print(f"tuning it with rltuner-q for {config.steps} steps (at most {config.max_minutes} min)")
    tuner_config = RLTunerConfig(
        prior=prior_name,
        steps=config.steps,
        seed=config.seed,
        max_minutes=config.max_minutes,
        eval_interval=max(config.steps // 2, 1),
        checkpoint_interval=config.steps,
    )
    tuner = train(tuner_config, out / "run", resume=(out / "run" / "agent.json").exists())
    tuned = tuner.compose(config.melodies, seed=config.seed)

    table: dict[str, dict[str, float]] = {}
    for name, melodies in (("prior", sampled), ("tuned", tuned)):
        folder = out / name
        folder.mkdir(exist_ok=True)
        kept = [folder / f"melody_{i:02d}.mid" for i in range(min(config.keep, len(melodies)))]
        for melody, path in zip(melodies, kept):
            write_melody(melody, path)
        write_wavs_beside(kept, soundfont=soundfont, synthesizer=synthesizer)
        table[name] = melody_statistics(prior, melodies)
    rolls = [tokens_to_note_state(m) for pair in zip(sampled[:4], tuned[:4]) for m in pair]
    titles = [f"{name} #{i}" for i in range(4) for name in ("prior", "tuned")]
    save_piano_roll_sheet(rolls, out / "piano_rolls.png", titles, columns=2)
    (out / "statistics.json").write_text(json.dumps(table, indent=1) + "\n")
    gallery = write_gallery(out, title="musicgym demo: prior and tuned melodies", **synthesis)
    print(format_table(table))
    print(f"\nMIDI and WAV files, piano rolls and the training run are in {out}/")
    print(synthesizer_note(**synthesis))
    print(f"listen: open {gallery}")
    return table


def run_chorales(config: DemoConfig) -> dict[str, dict[str, float]]:
    """``--chorale``: sample, tune, compose and write chorales; their statistics."""
    from musicgym import agents
    from musicgym.agents.rl_tuner import RLTunerConfig, train
    from musicgym.benchmarks.gallery import write_gallery
    from musicgym.config import CHORALE_DEFAULTS, CHORALE_ENV_ID
    from musicgym.envs.decisions import chorale_statistics
    from musicgym.metrics.chorale import DISTINCT_PIECES
    from musicgym.metrics.chorale import STATISTICS as CHORALE_STATISTICS
    from musicgym.music.audio import choose_synthesizer, synthesizer_note, write_wavs_beside
    from musicgym.music.midi import write_midi
    from musicgym.music.pianoroll import save_piano_roll_sheet

    synthesis = {"soundfont": config.soundfont, "synthesizer": config.synthesizer}
    synthesizer, soundfont = choose_synthesizer(**synthesis)
    out = Path(config.out or "musicgym-demo-chorale")
    out.mkdir(parents=True, exist_ok=True)
    prior_name = config.prior or CHORALE_DEFAULTS.prior
    sampler = agents.load(f"prior:{prior_name}", env=CHORALE_ENV_ID)
    print(f"prior {prior_name}: sampling {config.melodies} four-bar chorales")
    sampled = sampler.compose(config.melodies, seed=config.seed)
    budget = f"{config.steps} decisions (at most {config.max_minutes} min)"
    print(f"tuning it with rltuner-q for {budget}")
    tuner_config = RLTunerConfig(
        env=CHORALE_ENV_ID,
        prior=prior_name,
        exploration="boltzmann",
        steps=config.steps,
        seed=config.seed,
        max_minutes=config.max_minutes,
        eval_interval=max(config.steps // 2, 1),
        checkpoint_interval=config.steps,
    )
    tuner = train(tuner_config, out / "run", overwrite=True)
    tuned = tuner.compose(config.melodies, seed=config.seed)

    table: dict[str, dict[str, float]] = {}
    for name, pieces in (("prior", sampled), ("tuned", tuned)):
        folder = out / name
        folder.mkdir(exist_ok=True)
        kept = [folder / f"chorale_{i:02d}.mid" for i in range(min(config.keep, len(pieces)))]
        for piece, path in zip(pieces, kept):
            write_midi(piece, path)
        write_wavs_beside(kept, soundfont=soundfont, synthesizer=synthesizer)
        table[name] = chorale_statistics(sampler.prior, pieces)
    rolls = [piece for pair in zip(sampled[:2], tuned[:2]) for piece in pair]
    titles = [f"{name} #{i}" for i in range(2) for name in ("prior", "tuned")]
    save_piano_roll_sheet(rolls, out / "piano_rolls.png", titles, columns=2, voices=True)
    (out / "statistics.json").write_text(json.dumps(table, indent=1) + "\n")
    gallery = write_gallery(out, title="musicgym demo: prior and tuned chorales", **synthesis)
    labels = {**CHORALE_STATISTICS, DISTINCT_PIECES[0]: DISTINCT_PIECES[1]}
    labels["log_p_per_frame"] = "mean log p per frame under the prior"
    lines = [f"{'statistic':<46} {'prior':>9} {'tuned':>9}"]
    for name, label in labels.items():
        cells = [table["prior"][name], table["tuned"][name]]
        lines.append(f"{label:<46} " + " ".join(_cell(v) for v in cells))
    print("\n".join(lines))
    print(f"\nMIDI and WAV files, piano rolls and the training run are in {out}/")
    print(synthesizer_note(**synthesis))
    print(f"listen: open {gallery}")
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    """Statistics down; prior, tuned and Jaques et al.'s Q across."""
    labels = {**STATISTICS, "log_p": "mean log p(a|s) under the prior"}
    lines = [f"{'statistic':<38} {'prior':>9} {'tuned':>9} {'Jaques Q':>9}"]
    for name, label in labels.items():
        published = PUBLISHED["Q"].get(name, math.nan)
        cells = [table["prior"][name], table["tuned"][name], published]
        lines.append(f"{label:<38} " + " ".join(_cell(v) for v in cells))
    return "\n".join(lines)


def _cell(value: float) -> str:
    return " " * 9 if math.isnan(value) else f"{value:>9.2f}"

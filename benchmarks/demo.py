"""``musicgym demo``: the whole system in minutes, on the embedded default.

It loads the shipped melody prior (``melody16c``, the Bi-axial LSTM trained on the Essen folk
melodies in C), samples melodies from it, tunes it with the recommended tuner (``dpg``:
the rules at given levels, the data's character kept; ``benchmarks/RESULTS.md`` "Character") on
``MusicComposition-v0``, composes with the tuned agent, and writes a folder::

    musicgym-demo/
        index.html                the gallery: statistics, and every melody's roll and sound
        prior/melody_00.mid ...   melodies sampled from the prior (.wav and .png beside each)
        tuned/melody_00.mid ...   melodies of the tuned agent (.wav and .png beside each)
        piano_rolls.png           the first of each, side by side
        statistics.json           the table below, as numbers
        run/                      the training run (TensorBoard logs, checkpoint)

and prints the spec's statistics and the character measures of both (the KL to the data from
the prior's model card), beside Jaques et al.'s Q column, and the gallery's path
(open it in a browser: prior and tuned melodies side by side, each playable). It plays and
downloads nothing.

``musicgym demo --chorale`` does the same on ``ChoraleComposition-v0``: it samples four-bar
chorales from the chorale prior (``bach16``), tunes it with ``rltuner-q`` (Boltzmann exploration)
on the four-part-writing rules, and writes ``chorale_00.mid ...`` and four-voice piano rolls, with
the chorale statistics of both (``musicgym-demo-chorale/`` by default); under five minutes. Both
are one path: what differs comes from the environment's task (:mod:`musicgym.tasks`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from musicgym.config import EnvConfig
from musicgym.fileio import write_text
from musicgym.metrics import NOT_AVAILABLE_NOTE, format_statistic
from musicgym.tasks import CHORALE, MELODY, Task, task_of

FOLDERS = {MELODY.env_id: "musicgym-demo", CHORALE.env_id: "musicgym-demo-chorale"}
"""The demo's default folder on each environment."""
TUNERS: dict[str, tuple[str, dict[str, Any]]] = {
    # the recommended tuner (benchmarks/RESULTS.md "Character"): the rules met, the data kept
    # (200,000 steps: where dpg meets the rules and the data's character on every seed measured)
    MELODY.env_id: ("dpg", {"steps": 200_000}),
    CHORALE.env_id: (
        "rltuner-q",
        {
            "steps": 20_000,
            "exploration": "boltzmann",  # epsilon's uniform frames unlearn slowly
            "eval_interval": 10_000,
            "checkpoint_interval": 20_000,
        },
    ),
}
"""The demo's tuner on each environment: its ``--algo`` and settings beside its defaults."""
PUBLISHED_COLUMNS = {"Q": "Jaques Q"}
"""The task's published columns the demo prints beside its own, and their headings."""
ROLLS = 2
"""Pairs of prior and tuned pieces on the sheet of piano rolls."""


@dataclass
class DemoConfig:
    """Settings of ``musicgym demo``."""

    out: str = ""
    """Folder to write (default: musicgym-demo, or musicgym-demo-chorale with --chorale)."""
    chorale: bool = False
    """Compose four-part chorales on ChoraleComposition-v0 instead of melodies."""
    steps: int = 0
    """Environment steps of training (0: the tuner's, 200,000 for melodies, about seven minutes
    on one CPU core, and 20,000 for chorales, about two)."""
    max_minutes: float = 10.0
    """Stop training after this many minutes, whatever --steps says."""
    pieces: int = 64
    """Pieces composed by each of the prior and the tuned agent for the statistics."""
    keep: int = 8
    """Pieces of each written as MIDI files."""
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

    @property
    def env(self) -> EnvConfig:
        """The environment the demo samples and tunes in."""
        env_id = CHORALE.env_id if self.chorale else MELODY.env_id
        return EnvConfig(env=env_id, prior=self.prior, seed=self.seed)


def run(config: DemoConfig) -> dict[str, dict[str, float]]:
    """Sample, tune, compose, write, and print; returns the statistics of prior and tuned."""
    from musicgym import agents
    from musicgym.agents.registry import ALGORITHMS
    from musicgym.benchmarks.gallery import write_gallery
    from musicgym.music.audio import choose_synthesizer, synthesizer_note

    # A bad soundfont fails now, not after the training.
    synthesis = {"soundfont": config.soundfont, "synthesizer": config.synthesizer}
    synthesizer, soundfont = choose_synthesizer(**synthesis)
    env = config.env
    task = task_of(env.env)
    out = Path(config.out or FOLDERS[env.env])
    out.mkdir(parents=True, exist_ok=True)
    sampler = agents.PriorAgent(config=env)
    print(f"prior {env.prior}: sampling {config.pieces} {task.plural}")
    sampled = sampler.compose(config.pieces, seed=config.seed)

    algo, settings = TUNERS[env.env]
    steps = config.steps or settings["steps"]
    print(f"tuning it with {algo} for {steps} steps (at most {config.max_minutes} min)")
    algorithm = ALGORITHMS[algo]
    tuner_config = algorithm.make_config(
        **{**settings, "steps": steps},
        env=env.env,
        prior=env.prior,
        seed=config.seed,
        max_minutes=config.max_minutes,
    )
    run_folder = out / "run"
    algorithm.train_run(tuner_config, run_folder, resume=(run_folder / "agent.json").exists())
    tuned = agents.load(run_folder).compose(config.pieces, seed=config.seed)
    reference = data_histograms(env)

    table: dict[str, dict[str, float]] = {}
    for name, pieces in (("prior", sampled), ("tuned", tuned)):
        folder = out / name
        folder.mkdir(exist_ok=True)
        kept = pieces[: config.keep]
        paths = [folder / f"{task.piece_name}_{i:02d}.mid" for i in range(len(kept))]
        for piece, path in zip(kept, paths):
            task.write_midi(piece, path)
        task.write_wavs(kept, paths, soundfont=soundfont, synthesizer=synthesizer)
        table[name] = task.statistics(sampler.prior, pieces, reference=reference)
    rolls = [piece for pair in zip(sampled[:ROLLS], tuned[:ROLLS]) for piece in pair]
    titles = [f"{name} #{i}" for i in range(len(rolls) // 2) for name in ("prior", "tuned")]
    task.write_piano_roll_sheet(rolls, out / "piano_rolls.png", titles, columns=2)
    write_text(out / "statistics.json", json.dumps(table, indent=1) + "\n")
    title = f"musicgym demo: prior and tuned {task.plural}"
    gallery = write_gallery(out, title=title, **synthesis)
    print(format_table(task, table))
    print(f"\nMIDI and WAV files, piano rolls and the training run are in {out}/")
    print(synthesizer_note(**synthesis))
    print(f"listen: open {gallery}")
    return table


def data_histograms(env: EnvConfig) -> dict[str, Any] | None:
    """The data's histograms the character measures compare with (the prior's test split, from
    its model card or converted once), or ``None`` with a note where there are none."""
    from musicgym.errors import MusicgymError
    from musicgym.priors.registry import test_histograms

    try:
        return test_histograms(env)
    except (MusicgymError, OSError) as error:
        print(f"no KL to the data: {error}")
        return None


def format_table(task: Task[Any], table: dict[str, dict[str, float]]) -> str:
    """Statistics down; prior, tuned and the task's published columns (Jaques et al.'s Q)
    across. A statistic with nothing to count is "n/a" (said under the table); one the papers
    did not publish is blank."""
    published = {c: heading for c, heading in PUBLISHED_COLUMNS.items() if c in task.published}
    width = max(len(task.labels.get(name, name)) for name in table["prior"]) + 1
    headings = ["prior", "tuned", *published.values()]
    lines = [f"{'statistic':<{width}} " + " ".join(f"{h:>9}" for h in headings)]
    for name in table["prior"]:
        cells = [format_statistic(table[c][name], ".2f", 9) for c in ("prior", "tuned")]
        cells += [_text_cell(task.published[c].get(name, math.nan)) for c in published]
        label = task.labels.get(name, name)
        lines.append(f"{label:<{width}} " + " ".join(cells))
    if any(math.isnan(table[c][name]) for c in ("prior", "tuned") for name in table["prior"]):
        lines.append(NOT_AVAILABLE_NOTE)
    return "\n".join(lines)


def _text_cell(value: float) -> str:
    return " " * 9 if math.isnan(value) else f"{value:>9.2f}"

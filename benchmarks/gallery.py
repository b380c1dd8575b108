"""``musicgym gallery DIR``: one static page to hear and see what the agents of a run composed.

It writes ``DIR/index.html`` for any of these folders:

==============  ===================================================================================
folder          what it holds (and what the page shows per agent)
==============  ===================================================================================
bench           ``results.json`` and ``midi/AGENT/*.mid`` of ``musicgym bench agents``: every agent
                of the bench, its statistics (the 95% confidence intervals of ``results.json``'s
                ``table`` where it has one, else the mean ± spread over seeds of ``results``)
demo            ``statistics.json``, ``prior/*.mid`` and ``tuned/*.mid`` of ``musicgym demo``
compose         ``melodies.json`` or ``chorales.json`` and the MIDI files of ``agent compose``
agent run       ``agent.json`` of ``musicgym agent train``: the agent composes :data:`RUN_PIECES`
                pieces into ``DIR/gallery/`` first
==============  ===================================================================================

What differs between melodies and chorales comes from the folder's task (:mod:`musicgym.tasks`):
the labels of the statistics, the published columns and how pieces are written.

For each agent: its statistics beside the published columns (one table, agents across), and per
piece a piano roll, an ``<audio>`` player and a link to the MIDI file. Each MIDI file gets a WAV
and a PNG beside it where it has none (:func:`musicgym.music.audio.write_wavs_beside`,
:func:`musicgym.music.pianoroll.piano_roll_rgb`). The page is static: no script, no server, nothing
from the network (it links only to the files beside it), and one column on a phone. Everything is
written atomically, the page last.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from musicgym.benchmarks.report import column_folder, format_number
from musicgym.config import ENV_ID
from musicgym.errors import CheckpointError, MusicgymError
from musicgym.fileio import atomic_output, describe_os_error, file_in
from musicgym.tasks import TASKS, Task, task_of

PAGE = "index.html"
RUN_PIECES = 8
"""Pieces an agent run folder's agent composes for its page."""
PIECES_PER_AGENT = 8
"""At most this many pieces of an agent on the page."""


class GalleryError(MusicgymError):
    """A gallery folder is missing, holds no run, or its results cannot be read."""


@dataclass(frozen=True)
class Statistic:
    """One agent's value of one measure: the mean and, where known, its 95% confidence interval
    (``interval``: ``"t"`` over seeds, ``"bootstrap"`` over melodies) or its spread over seeds."""

    mean: float
    low: float = math.nan
    high: float = math.nan
    interval: str = ""
    spread: float = math.nan


@dataclass
class Agent:
    """What the page shows of one agent: statistics by measure and its pieces' MIDI files."""

    name: str
    statistics: dict[str, Statistic] = field(default_factory=dict)
    midi_files: list[Path] = field(default_factory=list)


@dataclass
class Gallery:
    """A folder's agents, what kind of folder it is, and the task they composed for."""

    folder: Path
    kind: str
    agents: list[Agent]
    overview: Path | None = None  # a sheet of piano rolls, if the folder has one
    task: Task[Any] = TASKS[ENV_ID]


# ---- reading the folders


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise GalleryError(f"{path}: cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise GalleryError(f"{path}: not valid JSON ({error})") from None


def _midi_files(folder: Path) -> list[Path]:
    """The ``.mid`` files of a folder in natural order (melody_2 before melody_10)."""

    def natural(path: Path) -> tuple:
        stem = path.stem
        digits = stem.rstrip("0123456789")
        return (digits, int(stem[len(digits) :] or -1), stem)

    return sorted(folder.glob("*.mid"), key=natural)[:PIECES_PER_AGENT]


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _from_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Statistic]:
    """Mean and spread (population standard deviation) over seeds, per measure."""
    names = [name for run in runs for name in run if name not in {"ci", "intervals"}]
    statistics = {}
    for name in dict.fromkeys(names):
        values = [_as_float(run.get(name)) for run in runs]
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            statistics[name] = Statistic(math.nan)
            continue
        mean = sum(finite) / len(finite)
        spread = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
        statistics[name] = Statistic(mean, spread=spread if len(finite) > 1 else math.nan)
    return statistics


def _from_table(cells: dict[str, Any]) -> dict[str, Statistic]:
    """Measures of a ``results.json`` ``table`` column: ``{"mean", "low", "high", "interval"}``
    (also ``"ci": [low, high]``) per measure."""
    statistics = {}
    for name, cell in cells.items():
        if not isinstance(cell, dict):
            statistics[name] = Statistic(_as_float(cell))
            continue
        low, high = _as_float(cell.get("low")), _as_float(cell.get("high"))
        if isinstance(cell.get("ci"), (list, tuple)) and len(cell["ci"]) == 2:
            low, high = (_as_float(v) for v in cell["ci"])
        interval = str(cell.get("interval") or ("ci" if not math.isnan(low) else ""))
        statistics[name] = Statistic(_as_float(cell.get("mean")), low, high, interval)
    return statistics


def _task_of_run(folder: Path) -> Task[Any]:
    """The task of a run folder's ``agent.json`` (melodies where it has none)."""
    info = _read_json(folder / "agent.json") if (folder / "agent.json").is_file() else {}
    return task_of(((info or {}).get("env") or {}).get("env", ENV_ID))


def _agent_folder(folder: Path, name: Any, source: Path) -> Path:
    """The folder of an agent named in ``source``: a plain name inside ``folder``, or one line
    (a name like ``../x`` would read and write outside the gallery's folder)."""
    if not isinstance(name, str) or not name:
        raise GalleryError(f"{source}: an agent's name must be text, got {name!r}")
    try:
        return file_in(folder, name, "agent name")
    except CheckpointError:
        raise GalleryError(
            f"{source}: agent name {name!r} is not a plain name inside {folder}"
        ) from None


def _bench(folder: Path) -> Gallery:
    path = folder / "results.json"
    report = _read_json(path)
    if not isinstance(report, dict) or not isinstance(report.get("results"), dict):
        raise GalleryError(f'{path}: no "results" of agents in it')
    for name, runs in report["results"].items():
        if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
            raise GalleryError(f"{path}: results[{name!r}] is not a list of runs (objects)")
    table = report.get("table") if isinstance(report.get("table"), dict) else {}
    # A folder written before the benchmark recorded its env: the task of its data column.
    by_data = (t.env_id for t in TASKS.values() if t.data_column in table)
    task = task_of((report.get("config") or {}).get("env") or next(by_data, ENV_ID))
    names = list(dict.fromkeys([*report["results"], *table]))
    agents = []
    for name in names:
        runs = report["results"].get(name) or []
        if name in table and isinstance(table[name], dict):
            statistics = _from_table(table[name])
        else:
            statistics = _from_runs([r for r in runs if isinstance(r, dict)])
        midi_files = _midi_files(_agent_folder(folder / "midi", column_folder(name), path))
        agents.append(Agent(name, statistics, midi_files))
    overview = folder / "piano_rolls.png"
    return Gallery(folder, "bench", agents, overview if overview.is_file() else None, task)


def _demo(folder: Path) -> Gallery:
    path = folder / "statistics.json"
    table = _read_json(path)
    if not isinstance(table, dict):
        raise GalleryError(f"{path}: not a table of agents")
    for name, row in table.items():
        if not isinstance(row, dict):
            raise GalleryError(f"{path}: {name!r} is not an object of statistics")
    names = list(dict.fromkeys([*table, *(n for n in ("prior", "tuned") if (folder / n).is_dir())]))
    agents = [
        Agent(
            name,
            {k: Statistic(_as_float(v)) for k, v in (table.get(name) or {}).items()},
            _midi_files(_agent_folder(folder, name, path)),
        )
        for name in names
    ]
    overview = folder / "piano_rolls.png"
    task = _task_of_run(folder / "run")
    return Gallery(folder, "demo", agents, overview if overview.is_file() else None, task)


def _compose(
    folder: Path, name: str, task: Task[Any], reference: dict[str, Any] | None = None
) -> Gallery:
    path = folder / task.pieces_file
    try:
        pieces = [task.from_json(value) for value in _read_json(path)]
        measured = task.statistics(None, pieces, reference=reference)
        statistics = {k: Statistic(v) for k, v in measured.items()}
    except (TypeError, ValueError, KeyError, MusicgymError) as error:
        raise GalleryError(f"{path}: not a list of {task.plural} ({error})") from None
    return Gallery(folder, "compose", [Agent(name, statistics, _midi_files(folder))], task=task)


def _agent_run(folder: Path) -> Gallery:
    """Compose :data:`RUN_PIECES` pieces with a trained agent into ``folder/gallery/``."""
    from musicgym import agents
    from musicgym.agents.common import read_agent_info, training_reference

    pieces = folder / "gallery"
    agent = agents.load(folder)
    task = task_of(agent.config.env)
    composed = agent.compose(RUN_PIECES, seed=0)
    try:
        for i, piece in enumerate(composed):
            task.write_midi(piece, pieces / f"{task.piece_name}_{i:03d}.mid")
        task.write_json(composed, pieces / task.pieces_file)
    except OSError as error:
        raise GalleryError(describe_os_error(error, pieces)) from None
    name = str(read_agent_info(folder).get("algo", folder.name))
    gallery = _compose(pieces, name, task, training_reference(agent.config))
    return Gallery(folder, "agent run", gallery.agents, task=task)


def read_gallery(folder: str | os.PathLike[str]) -> Gallery:
    """What :func:`write_gallery` shows of a folder (see the module docstring for the kinds).

    Raises:
        GalleryError: the folder is missing or none of the kinds, or its results are malformed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "no such folder"
        raise GalleryError(f"{folder}: {what}")
    if (folder / "results.json").is_file():
        return _bench(folder)
    if (folder / "statistics.json").is_file():
        return _demo(folder)
    for task in TASKS.values():
        if (folder / task.pieces_file).is_file():
            return _compose(folder, folder.name, task)
    if (folder / "agent.json").is_file():
        return _agent_run(folder)
    raise GalleryError(
        f"{folder}: no runs in it (no results.json of a bench, statistics.json of a demo, "
        "melodies.json or chorales.json of `agent compose` or agent.json of `agent train`)"
    )


# ---- the files beside each MIDI file


def _write_piano_roll(midi_path: Path, png_path: Path) -> None:
    import matplotlib.image

    from musicgym.errors import MidiError
    from musicgym.music.midi import length_of_rests, read_midi
    from musicgym.music.notestate import SIXTEENTH_NOTES, NoteState
    from musicgym.music.pianoroll import MAX_ROLL_STEPS
    from musicgym.music.tokens import LOWEST_MELODY_PITCH, NUM_MELODY_PITCHES

    try:
        note_state = read_midi(midi_path)
    except MidiError:
        rests = length_of_rests(midi_path)  # a melody of rests: an empty roll of its length
        if rests is None:
            raise
        steps = round(rests[1] * SIXTEENTH_NOTES)
        if steps > MAX_ROLL_STEPS:
            raise GalleryError(
                f"{midi_path}: {steps} steps of rests, longer than the {MAX_ROLL_STEPS} a piano "
                "roll draws"
            ) from None
        note_state = NoteState.empty(
            steps, LOWEST_MELODY_PITCH, NUM_MELODY_PITCHES, SIXTEENTH_NOTES
        )
    sounding = note_state.sounding_pitches()
    if sounding.size:  # the rows the piece uses, and a few around them
        low = max(int(sounding[0]) - 3, 0)
        high = min(int(sounding[-1]) + 3, 127)
        note_state = note_state.with_range(low, high - low + 1)
    from musicgym.music.pianoroll import piano_roll_rgb

    image = piano_roll_rgb(note_state, step_px=6, pitch_px=5)
    try:
        with atomic_output(png_path) as temporary:
            matplotlib.image.imsave(temporary, image)
    except OSError as error:
        raise GalleryError(describe_os_error(error, png_path)) from None


def render_pieces(gallery: Gallery, **synthesis: Any) -> int:
    """Write ``song.wav`` and ``song.png`` beside each ``song.mid`` of the gallery that lacks
    them; ``synthesis``: :func:`musicgym.music.audio.write_wavs_beside`'s options. Returns the
    number of WAV files written."""
    from musicgym.music.audio import write_wavs_beside

    midi_files = [path for agent in gallery.agents for path in agent.midi_files]
    missing = [path for path in midi_files if not path.with_suffix(".wav").is_file()]
    write_wavs_beside(missing, **synthesis)
    for path in midi_files:
        if not path.with_suffix(".png").is_file():
            _write_piano_roll(path, path.with_suffix(".png"))
    return len(missing)


# ---- the page

_STYLE = """
:root { color-scheme: light dark; --line: #8884; --soft: #8881; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
  padding: 1rem; max-width: 80rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.2rem; margin: 0 0 .5rem; }
.note { color: #888; font-size: .9rem; margin: 0 0 1rem; }
.scroll { overflow-x: auto; margin-bottom: 1.5rem; }
table { border-collapse: collapse; font-size: .85rem; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .5rem; border-bottom: 1px solid var(--line); text-align: right;
  white-space: nowrap; }
th:first-child { text-align: left; white-space: normal; min-width: 10rem; font-weight: 400;
  position: sticky; left: 0; background: Canvas; }
th.ours, td.ours { background: var(--soft); font-weight: 600; }
td small { display: block; font-weight: 400; color: #888; }
.agents { display: grid; gap: 1rem;
  grid-template-columns: repeat(auto-fit, minmax(min(18rem, 100%), 1fr)); }
section.agent { border: 1px solid var(--line); border-radius: .5rem; padding: .75rem;
  min-width: 0; }
figure { margin: 0 0 1rem; }
figure img { display: block; width: 100%; height: auto; image-rendering: pixelated;
  border: 1px solid var(--line); }
figcaption { display: flex; justify-content: space-between; font-size: .85rem; }
audio { display: block; width: 100%; margin-top: .25rem; }
img.overview { max-width: 100%; height: auto; }
"""


def _url(path: Path, folder: Path) -> str:
    return quote(Path(os.path.relpath(path, folder)).as_posix())


def _html_cell(statistic: Statistic | None) -> str:
    if statistic is None or math.isnan(statistic.mean):
        return ""
    text = html.escape(format_number(statistic.mean))
    if not math.isnan(statistic.low) and not math.isnan(statistic.high):
        how = {"t": "t over seeds", "bootstrap": "bootstrap over pieces"}.get(
            statistic.interval, statistic.interval
        )
        title = f"95% confidence interval ({how})" if how else "95% confidence interval"
        bounds = f"[{format_number(statistic.low)}, {format_number(statistic.high)}]"
        return f'{text}<small title="{html.escape(title)}">{html.escape(bounds)}</small>'
    if not math.isnan(statistic.spread):
        return f"{text} ± {html.escape(format_number(statistic.spread))}"
    return text


def _statistics_table(gallery: Gallery) -> str:
    labels, columns = gallery.task.labels, gallery.task.published
    measures = list(dict.fromkeys(name for a in gallery.agents for name in a.statistics))
    measures.sort(key=lambda name: list(labels).index(name) if name in labels else len(labels))
    if not measures:
        return ""
    published = list(columns)
    header = "".join(
        f'<th scope="col" class="ours">{html.escape(a.name)}</th>' for a in gallery.agents
    )
    header += "".join(f'<th scope="col">{html.escape(c)}</th>' for c in published)
    rows = []
    for name in measures:
        cells = "".join(
            f'<td class="ours">{_html_cell(a.statistics.get(name))}</td>' for a in gallery.agents
        )
        cells += "".join(
            f"<td>{_html_cell(Statistic(columns[c][name]) if name in columns[c] else None)}</td>"
            for c in published
        )
        label = html.escape(labels.get(name, name.replace("_", " ")))
        rows.append(f'<tr><th scope="row">{label}</th>{cells}</tr>')
    return (
        '<div class="scroll"><table>\n'
        f'<thead><tr><th scope="col">statistic</th>{header}</tr></thead>\n'
        f"<tbody>\n{chr(10).join(rows)}\n</tbody></table></div>"
    )


def _agent_section(agent: Agent, folder: Path) -> str:
    figures = []
    for i, midi in enumerate(agent.midi_files):
        png, wav = midi.with_suffix(".png"), midi.with_suffix(".wav")
        title = html.escape(f"{agent.name} #{i}")
        figures.append(
            "<figure>"
            f'<img src="{_url(png, folder)}" alt="piano roll of {title}">'
            f'<figcaption><span>{title}</span><a href="{_url(midi, folder)}" download>MIDI</a>'
            "</figcaption>"
            f'<audio controls preload="metadata" src="{_url(wav, folder)}"></audio>'
            "</figure>"
        )
    body = "\n".join(figures)
    return f'<section class="agent"><h2>{html.escape(agent.name)}</h2>\n{body}\n</section>'


def page_html(gallery: Gallery, title: str | None = None, note: str = "") -> str:
    """The page of a gallery whose pieces are rendered (:func:`render_pieces`)."""
    folder = gallery.folder
    title = title or f"{folder.resolve().name}: {gallery.kind}"
    overview = ""
    if gallery.overview is not None:
        overview = (
            f'<details><summary>all piano rolls on one sheet</summary><img class="overview" '
            f'src="{_url(gallery.overview, folder)}" alt="piano rolls of every agent"></details>'
        )
    sections = "\n".join(_agent_section(a, folder) for a in gallery.agents if a.midi_files)
    sections = sections or '<p class="note">No MIDI files kept in this folder.</p>'
    published = ""
    if gallery.task.published:
        names = html.escape(", ".join(gallery.task.published))
        published = f", then the published columns ({names}: {gallery.task.published_source})"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">{html.escape(note)}</p>
<h2>Statistics</h2>
<p class="note">Ours (shaded: the mean, with its 95% confidence interval beneath where the run
has one, or ± the spread over seeds){published}.</p>
{_statistics_table(gallery)}
<h2>Pieces</h2>
{overview}
<div class="agents">
{sections}
</div>
</body>
</html>
"""


def write_gallery(
    folder: str | os.PathLike[str],
    *,
    title: str | None = None,
    program: str | int | Sequence[str | int] = "piano",
    soundfont: str | os.PathLike[str] | None = None,
    synthesizer: str = "auto",
) -> Path:
    """Write ``folder/index.html`` (and the WAV and PNG files it needs); returns its path.

    Args:
        folder: a bench, demo, compose or agent run folder (see the module docstring).
        title: the page's title (default: the folder's name and kind).
        program, soundfont, synthesizer: how to render missing WAVs
            (:func:`musicgym.music.audio.render_midi`).

    Raises:
        GalleryError: the folder is missing, holds no run, or its results are malformed.
        AudioError: the soundfont is missing or corrupt, or a file cannot be written.
    """
    from musicgym.music.audio import choose_synthesizer, synthesizer_note

    synthesis = {"program": program, "soundfont": soundfont, "synthesizer": synthesizer}
    choose_synthesizer(synthesizer, soundfont)  # a bad soundfont fails before anything is written
    gallery = read_gallery(folder)
    rendered = render_pieces(gallery, **synthesis)
    note = f"{synthesizer_note(synthesizer, soundfont)}." if rendered else ""
    page = Path(folder) / PAGE
    try:
        with atomic_output(page) as temporary:
            temporary.write_text(page_html(gallery, title, note), encoding="utf-8")
    except OSError as error:
        raise GalleryError(describe_os_error(error, page)) from None
    return page

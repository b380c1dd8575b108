"""The gallery page: what it shows of bench, demo and compose folders, bad folders (one line,
exit 2, no page), and the page in a real browser (headless Chromium from Debian's packages)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from musicgym.benchmarks.gallery import PAGE, GalleryError, read_gallery, write_gallery
from musicgym.cli import main
from musicgym.metrics import PUBLISHED
from musicgym.music.midi import write_melody
from musicgym.music.tokens import NO_EVENT, pitch_to_token
from tests.cli_runner import HANG

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def melody(seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    pitches = rng.choice([60, 62, 64, 65, 67, 69, 71, 72], 16)
    return [t for p in pitches for t in (pitch_to_token(int(p)), NO_EVENT)]


def bench_folder(folder: Path, with_table: bool = True) -> Path:
    """A small folder laid out as ``musicgym bench agents`` writes it."""
    results = {}
    for a, name in enumerate(("prior", "rltuner-q")):
        for i in range(2):
            write_melody(melody(10 * a + i), folder / "midi" / name / f"melody_{i}.mid")
        results[name] = [
            {"notes_not_in_key": 2.0 + a + seed, "log_p": -1.5 - a, "trained_steps": math.nan}
            for seed in range(2)
        ]
    report = {"config": {}, "results": results}
    if with_table:  # the confidence intervals of a bench that has them
        report["table"] = {
            "rltuner-q": {
                "notes_not_in_key": {"mean": 3.5, "low": 2.75, "high": 4.25, "interval": "t"},
                "log_p": {"mean": -2.5, "low": math.nan, "high": math.nan, "interval": ""},
            }
        }
    (folder / "results.json").write_text(json.dumps(report))
    return folder


def demo_folder(folder: Path) -> Path:
    """A small folder laid out as ``musicgym demo`` writes it."""
    table = {}
    for a, name in enumerate(("prior", "tuned")):
        for i in range(2):
            write_melody(melody(10 * a + i), folder / name / f"melody_{i:02d}.mid")
        table[name] = {"notes_not_in_key": 1.0 + a, "log_p": -1.0 - a}
    (folder / "statistics.json").write_text(json.dumps(table))
    return folder


def test_a_bench_page_shows_every_agent_with_its_intervals_and_pieces(tmp_path: Path):
    page = write_gallery(bench_folder(tmp_path), synthesizer="plain")
    assert page == tmp_path / PAGE
    text = page.read_text()
    for column in PUBLISHED:
        assert f">{column}</th>" in text
    assert text.count("<audio ") == 4 and text.count("<img ") == 4
    for name in ("prior", "rltuner-q"):
        assert f"<h2>{name}</h2>" in text
        for i in range(2):
            midi = tmp_path / "midi" / name / f"melody_{i}.mid"
            assert midi.with_suffix(".wav").stat().st_size > 1000
            assert midi.with_suffix(".png").stat().st_size > 100
            assert f'href="midi/{name}/melody_{i}.mid"' in text
            assert f'src="midi/{name}/melody_{i}.wav"' in text
    assert "[2.75, 4.25]" in text  # rltuner-q: the interval of the table
    assert "2.50 ± 0.500" in text  # prior: no table, so mean ± spread over the seeds
    assert "http" not in text  # nothing from the network
    assert '<meta name="viewport"' in text


def test_a_bench_page_without_intervals_shows_the_spread(tmp_path: Path):
    gallery = read_gallery(bench_folder(tmp_path, with_table=False))
    q = {agent.name: agent for agent in gallery.agents}["rltuner-q"]
    assert q.statistics["notes_not_in_key"].mean == 3.5
    assert q.statistics["notes_not_in_key"].spread == 0.5
    assert math.isnan(q.statistics["notes_not_in_key"].low)


def test_a_demo_page_puts_prior_and_tuned_side_by_side(tmp_path: Path):
    text = write_gallery(demo_folder(tmp_path), synthesizer="plain").read_text()
    assert text.index("<h2>prior</h2>") < text.index("<h2>tuned</h2>")
    assert text.count("<audio ") == 4
    assert 'src="tuned/melody_01.wav"' in text and 'href="prior/melody_00.mid"' in text


def test_a_compose_folder_page_measures_its_melodies(tmp_path: Path, capsys):
    melodies = [melody(i) for i in range(3)]
    for i, tokens in enumerate(melodies):
        write_melody(tokens, tmp_path / f"melody_{i:03d}.mid")
    (tmp_path / "melodies.json").write_text(json.dumps(melodies))
    assert main(["gallery", str(tmp_path), "--synthesizer", "plain"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / PAGE)
    text = (tmp_path / PAGE).read_text()
    assert text.count("<audio ") == 3 and "notes not in key (%)" in text


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d, "no runs in it"),
        (lambda d: d / "missing", "no such folder"),
        (lambda d: (d / "results.json").write_text("{not json") and d, "not valid JSON"),
        (lambda d: (d / "results.json").write_text("[1, 2]") and d, 'no "results"'),
    ],
)
def test_a_folder_without_runs_is_one_line_and_exit_2(make, message, tmp_path: Path, capsys):
    folder = make(tmp_path)
    assert main(["gallery", str(folder), "--synthesizer", "plain"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not (tmp_path / PAGE).exists()
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(GalleryError):
        read_gallery(folder)


def test_an_unwritable_page_is_one_line_and_exit_2_and_leaves_nothing_half_written(
    tmp_path: Path, capsys
):
    bench_folder(tmp_path)
    (tmp_path / PAGE).mkdir()  # something that is not a file stands where the page goes
    assert main(["gallery", str(tmp_path), "--synthesizer", "plain"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{tmp_path / PAGE}: it is a folder, not a file" in error
    assert (tmp_path / PAGE).is_dir() and not list(tmp_path.glob(".index.html.*"))


def test_a_bad_soundfont_fails_before_anything_is_written(tmp_path: Path, capsys):
    bench_folder(tmp_path)
    assert main(["gallery", str(tmp_path), "--soundfont", str(tmp_path / "none.sf2")]) == 2
    assert "none.sf2: no such soundfont file" in capsys.readouterr().err
    assert not (tmp_path / PAGE).exists() and not list(tmp_path.rglob("*.wav"))


def run_chromium(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--mute-audio", *arguments],
        capture_output=True, text=True, timeout=HANG, check=False,
    )  # fmt: skip


PROBE = """<script>
function probe() {
  const all = (selector) => [...document.querySelectorAll(selector)];
  const audio = all('audio').map(a => a.readyState >= 1 ? a.duration : 0);
  const images = all('img').map(i => i.complete ? i.naturalWidth : 0);
  document.body.dataset.audio = JSON.stringify(audio);
  document.body.dataset.images = JSON.stringify(images);
}
document.querySelectorAll('audio').forEach(a => a.addEventListener('loadedmetadata', probe));
window.addEventListener('load', probe);
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian: apt-get install chromium)")
def test_the_page_loads_in_headless_chromium(tmp_path: Path):
    """Every <audio> has loaded its metadata (duration > 0), every image has decoded
    (naturalWidth > 0), and a phone-sized screenshot is not blank."""
    from PIL import Image

    page = write_gallery(demo_folder(tmp_path))
    # The page under test with a probe that writes what it measured into the DOM; the copy sits
    # beside the page, so every relative link is the page's own.
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = run_chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    audio = json.loads(re.search(r'data-audio="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    images = json.loads(re.search(r'data-images="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    assert len(audio) == 4 and all(duration == pytest.approx(4.0, abs=0.01) for duration in audio)
    assert len(images) == 4 and all(width > 0 for width in images)

    screenshot = tmp_path / "screenshot.png"
    run_chromium("--window-size=412,915", f"--screenshot={screenshot}", page.as_uri())
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    assert pixels.shape == (915, 412)
    assert pixels.std() > 10 and len(np.unique(pixels)) > 20  # text, rolls and players


@pytest.mark.parametrize(
    ("file", "content", "says"),
    [
        ("results.json", {"results": {"a": 5}}, "results['a'] is not a list of runs"),
        ("statistics.json", {"prior": [1, 2]}, "'prior' is not an object of statistics"),
        ("results.json", {"results": {"../../outside": []}}, "not a plain name inside"),
        ("statistics.json", {"../../outside": {}}, "not a plain name inside"),
    ],
)
def test_malformed_or_escaping_result_files_are_one_line(tmp_path, capsys, file, content, says):
    """Exit 2, one line naming the file; nothing read or written outside the folder."""
    folder = tmp_path / "shared" / "folder"
    folder.mkdir(parents=True)
    (folder / file).write_text(json.dumps(content))
    outside = tmp_path / "outside"
    outside.mkdir()
    write_melody(melody(1), outside / "victim.mid")
    assert main(["gallery", str(folder)]) == 2
    error = capsys.readouterr().err.strip()
    assert says in error and file in error and "\n" not in error and "Traceback" not in error
    assert sorted(p.name for p in outside.iterdir()) == ["victim.mid"]
    assert not (folder / PAGE).exists()

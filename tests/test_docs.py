"""The documentation site: it builds with ``mkdocs build --strict`` (every page, every link,
every docstring the API reference renders), the environment pages hold their class docstrings in
Gymnasium's format, and a page renders in a real browser (headless Chromium). Skipped, saying
why, without the ``docs`` extra or Chromium."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cli_runner import HANG
from tests.test_gallery import CHROMIUM

ROOT = Path(__file__).resolve().parent.parent
DOCS_EXTRA = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
MISSING = [name for name in DOCS_EXTRA if importlib.util.find_spec(name.split(".")[0]) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"the docs extra is not installed (pip install -e '.[docs]'): {MISSING}"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return folder


def text_of(page: Path) -> str:
    """The visible words of a built page's content."""
    html = page.read_text()
    content = html[html.index('<article class="md-content__inner') :]
    return " ".join(re.sub(r"<[^>]+>", " ", content).split())


@pytest.mark.parametrize(
    ("page", "fragments"),
    [
        ("environments/music-composition", ["Discrete(38)", "SyncVectorEnv"]),
        ("environments/chorale-composition", ["Discrete(2 N + 1)", "SyncVectorEnv"]),
    ],
)
def test_each_environment_page_is_its_class_docstring(site, page, fragments):
    html = (site / page / "index.html").read_text()
    text = text_of(site / page / "index.html")
    sections = ["Description", "Action Space", "Observation Space", "Rewards", "Arguments"]
    for heading in [*sections, "Version History"]:
        assert re.search(rf"<h\d[^>]*>{heading}", html), heading
    assert html.count("<table") >= 2  # the action and observation tables
    for fragment in fragments:
        assert fragment in text, fragment


def test_the_pages_beside_the_code_and_the_reference_are_in_the_site(site):
    assert "bench agents" in text_of(site / "benchmarks" / "RESULTS" / "index.html")
    assert (site / "benchmarks" / "prior_curves.png").stat().st_size > 1000
    assert "0.1.0" in text_of(site / "changelog" / "index.html")
    reference = text_of(site / "reference" / "agents" / "index.html")
    assert "RLTunerConfig" in reference and "checkpoint_replay" in reference
    tutorial = text_of(site / "reward-rules" / "index.html")
    assert "classStepwiseMotion(RewardRule)" in tutorial.replace(" ", "")  # the example itself


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian: apt-get install chromium)")
def test_a_page_renders_in_headless_chromium(site, tmp_path):
    """Chromium runs the theme's scripts over the page (the DOM after them holds the content
    and the navigation) and draws it: a screenshot that is not blank."""
    from PIL import Image

    page = (site / "environments" / "chorale-composition" / "index.html").as_uri()
    chromium = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*chromium, "--virtual-time-budget=5000", "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=HANG,
    ).stdout
    assert "ChoraleComposition-v0" in dom and "md-nav" in dom and "Action Space" in dom
    screenshot = tmp_path / "page.png"
    subprocess.run(
        [*chromium, "--window-size=1280,900", f"--screenshot={screenshot}", page],
        capture_output=True,
        timeout=HANG,
    )
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    assert pixels.shape == (900, 1280)
    assert pixels.std() > 10 and len(np.unique(pixels)) > 20  # text, header, navigation

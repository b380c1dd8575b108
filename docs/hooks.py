"""MkDocs hooks of the site.

* Pages that live beside the code, not under docs/, are part of the site as they are
  (benchmarks/RESULTS.md and its pictures, CHANGELOG.md): the site and the repository never hold
  two copies.
* The docstrings' Sphinx roles (``:class:`~musicgym.X` ``) read as plain code (``X``), and a
  paragraph that ends in ``::`` (reST's "a code block follows") in one colon.
* The API reference reads the installed package's layout: the repository's folders ``priors/``,
  ``agents/`` and ``benchmarks/`` are ``musicgym.priors``, ``.agents`` and ``.benchmarks``
  (setuptools' package-dir), which mkdocstrings cannot see from the folders. A tree of symbolic
  links under build/ (``SOURCES``, mkdocs.yml's ``paths``) lays them out as installed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = {
    "benchmarks/RESULTS.md": ROOT / "benchmarks" / "RESULTS.md",
    "changelog.md": ROOT / "CHANGELOG.md",
    **{f"benchmarks/{png.name}": png for png in sorted((ROOT / "benchmarks").glob("*.png"))},
}
SOURCES = ROOT / "build" / "docs-sources"
FLOORS = ("priors", "agents", "benchmarks")
ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):(<code>)~?(?:[\w.]+\.)?")
"""A Sphinx role before its rendered code; with ``~``, the qualified name's last part only."""


def lay_out_sources() -> None:
    """``SOURCES/musicgym``: the core's files and the floors' folders, as links."""
    package = SOURCES / "musicgym"
    shutil.rmtree(SOURCES, ignore_errors=True)
    package.mkdir(parents=True)
    for path in (ROOT / "musicgym").iterdir():
        if path.name != "__pycache__":
            (package / path.name).symlink_to(path, target_is_directory=path.is_dir())
    for floor in FLOORS:
        (package / floor).symlink_to(ROOT / floor, target_is_directory=True)


def on_startup(command: str, dirty: bool) -> None:
    lay_out_sources()


def on_files(files: Files, config) -> Files:
    for uri, path in OUTSIDE.items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_content(html: str, page, config, files) -> str:
    return ROLE.sub(_shown, html).replace("::</p>", ":</p>")


def _shown(match: re.Match) -> str:
    """``:class:`~a.b.C``` shows ``C``, ``:class:`a.b.C``` shows ``a.b.C``."""
    whole = match.group(0)
    return match.group(1) + ("" if "~" in whole else whole[whole.index("<code>") + 6 :])

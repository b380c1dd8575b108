"""What a new user tries first works: every ``python`` block of the README and the docs runs on
its own (copy, paste, run), the tutorials in ``examples/`` run on tiny budgets, the README's
commands name no repository path, and the package's hygiene (version, license, ``py.typed``,
``python -m musicgym``, one error prefix, a description on every sub-command) holds."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import musicgym
from musicgym.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, but those that include a file (the tutorials,
    tested below)."""
    blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), re.DOTALL | re.MULTILINE)
    return [block for block in blocks if "--8<--" not in block]


BLOCKS = [
    pytest.param(block, id=f"{path.relative_to(ROOT)}-{i}")
    for path in DOCUMENTS
    for i, block in enumerate(python_blocks(path))
]


def test_the_readme_has_python_blocks_to_test():
    assert len(python_blocks(ROOT / "README.md")) >= 3


@pytest.mark.parametrize("block", BLOCKS)
def test_every_python_block_runs_on_its_own(block, tmp_path, monkeypatch):
    """In a fresh namespace (nothing defined by another block) and an empty folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    exec(compile(block, "<block>", "exec"), {"__name__": "__main__"})


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tutorial_plug_a_rule(capsys):
    means = load_example("plug_a_rule").main(episodes=3)
    assert set(means) == {"prior", "key", "tonic", "stepwise_motion"}
    assert means["stepwise_motion"] > 0 and means["prior"] == 0.0  # prior=None: rules alone
    assert "stepwise_motion" in capsys.readouterr().out


def test_tutorial_train_and_listen(tmp_path):
    page = load_example("train_and_listen").main(steps=64, out=tmp_path, pieces=2)
    assert page == tmp_path / "listen" / "tuned" / "index.html" and page.is_file()
    assert len(list((tmp_path / "listen" / "prior").glob("melody_*.wav"))) == 2
    assert (tmp_path / "run" / "agent.pt").is_file()


def test_tutorial_bring_your_own_prior():
    module = load_example("bring_your_own_prior")
    prior = module.BigramPrior(module.TUNES)
    import torch

    state = prior.play(prior.initial_state(2), torch.tensor([14, 16]), None, None)
    log_probs = prior.action_log_probs(state, None, None)
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(2))
    assert log_probs[0, 1] > log_probs[0, 30]  # after C4 the tunes hold, never leap to B4
    assert isinstance(module.main(steps=64), float)


# ------------------------------------------------------------------------- the README's commands
def test_user_facing_text_names_no_path_outside_an_install():
    """Commands use shipped names (bach16), not repository paths; nothing cites ../shared."""
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("musicgym ")]
    assert commands and not [line for line in commands if "priors/checkpoints" in line]
    assert "../shared" not in readme and "shared/spec" not in readme
    for folder in ("musicgym", "priors", "agents", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert "../shared" not in text and "shared/data" not in text, path
            assert not re.search(r"(?<![\w/])spec/\w", text), path  # docs/spec/ is in the repo
    for parser in sub_commands():
        assert "../shared" not in parser.format_help(), parser.prog


def sub_commands(parser: argparse.ArgumentParser | None = None) -> list[argparse.ArgumentParser]:
    parser = parser or build_parser()
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += [sub, *sub_commands(sub)]
    return found


def test_every_sub_command_has_a_description_and_says_each_default_once():
    parsers = sub_commands()
    assert len(parsers) > 20
    for parser in parsers:
        assert parser.description, parser.prog
        formatter = parser._get_formatter()
        for action in parser._actions:
            shown = formatter._expand_help(action) if action.help else ""
            assert shown.count("(default") <= 1, (parser.prog, action.dest, shown)


def test_one_error_prefix_for_every_command(capsys):
    for argv in (["agent", "train", "--steps", "x"], ["nosuch"], ["prior", "sample", "--temp"]):
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith("musicgym: error: ") and error.count("\n") == 1, error


# ---------------------------------------------------------------------------------- hygiene
def test_one_version_license_and_typing():
    assert musicgym.__version__ == metadata.version("musicgym")
    meta = metadata.metadata("musicgym")
    assert meta["License-Expression"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert any(
        c.startswith("Programming Language :: Python :: 3") for c in meta.get_all("Classifier")
    )
    assert (Path(musicgym.__file__).parent / "py.typed").is_file()
    assert f"## {musicgym.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_version_and_python_m_musicgym(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"musicgym {musicgym.__version__}\n"
    ran = subprocess.run(
        [sys.executable, "-m", "musicgym", "--version"], capture_output=True, text=True, timeout=600
    )
    assert ran.returncode == 0 and ran.stdout == f"musicgym {musicgym.__version__}\n"


# ------------------------------------------------------------------------------ agent compose
def test_compose_refuses_a_folder_with_files_and_overwrite_replaces_its_pieces(tmp_path, capsys):
    compose = ["agent", "compose", "--agent", "random", "--out", str(tmp_path)]
    (tmp_path / "notes.txt").write_text("mine\n")
    assert main([*compose, "--n", "3"]) == 2
    assert "holds 1 file(s) already" in capsys.readouterr().err
    assert main([*compose, "--n", "3", "--overwrite"]) == 0
    assert main([*compose, "--n", "2", "--overwrite"]) == 0
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["melodies.json", "melody_000.mid", "melody_001.mid", "notes.txt"]


def test_printed_statistics_say_n_a_and_why_never_nan(tmp_path, capsys):
    # One note held for 32 steps: no leap to resolve, and no autocorrelation of a constant.
    from musicgym.metrics import NOT_AVAILABLE_NOTE
    from musicgym.tasks import MELODY

    capsys.readouterr()
    from musicgym.agents.cli import _print_statistics

    _print_statistics(MELODY, MELODY.statistics(None, [[14] + [1] * 31]))
    out = capsys.readouterr().out
    assert "nan" not in out and "n/a" in out and NOT_AVAILABLE_NOTE in out

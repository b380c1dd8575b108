"""Torch threads: a ``musicgym`` command without a ``--threads`` option runs on one."""

from __future__ import annotations

import pytest
import torch

from musicgym.cli import main


def test_a_command_without_a_threads_option_runs_torch_on_one_thread(capsys):
    torch.set_num_threads(2)  # torch's default here; the autouse fixture restores its own after
    assert main(["data", "list"]) == 0
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(
    "command",
    [
        ["agent", "train", "--algo", "dpg", "--out", "{out}"],
        ["prior", "train", "--out", "{out}"],
        ["bench", "env"],
    ],
)
@pytest.mark.parametrize("threads", ["-1", "100000"])
def test_threads_below_zero_or_beyond_the_cores_are_one_line(tmp_path, capsys, command, threads):
    arguments = [part.format(out=tmp_path / "run") for part in command]
    with pytest.raises(SystemExit) as exit_info:  # argparse, or the config's own check
        raise SystemExit(main([*arguments, "--threads", threads]))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "--threads" in error and "\n" not in error
    assert not (tmp_path / "run").exists()  # nothing started

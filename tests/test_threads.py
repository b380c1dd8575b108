"""Torch threads: a ``musicgym`` command without a ``--threads`` option runs on one."""

from __future__ import annotations

import torch

from musicgym.cli import main


def test_a_command_without_a_threads_option_runs_torch_on_one_thread(capsys):
    torch.set_num_threads(2)  # torch's default here; the autouse fixture restores its own after
    assert main(["data", "list"]) == 0
    assert torch.get_num_threads() == 1

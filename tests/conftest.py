"""Shared test setup."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test on one torch thread: the tensors are tiny, and two threads on a busy 2-core
    machine spin-wait on each other (tests ran 10-80x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

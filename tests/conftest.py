"""Shared test setup."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, settings

# No wall-clock limit a busy machine can reach: Hypothesis's default 200 ms per example and its
# "too slow" health check measure the machine's load, not the code.
settings.register_profile("musicgym", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("musicgym")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test on one torch thread: the tensors are tiny, and two threads on a busy 2-core
    machine spin-wait on each other (tests ran 10-80x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

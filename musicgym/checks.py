"""Checks of numeric and device arguments, shared by the environment and every config: each
failure is an :class:`~musicgym.errors.ArgumentError` (a ``ValueError``) of one line that names
the argument, what it must be, and what it got."""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from types import ModuleType
from typing import Any

from musicgym.errors import ArgumentError, MissingDependencyError


def check_number(
    name: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
    error: type[ArgumentError] = ArgumentError,
) -> None:
    """``value`` must be a finite number (an integer if ``integer``), ``>= low``, ``<= high``,
    ``> above`` and ``< below`` (each bound optional); else ``error``, one line naming ``name``."""
    bounds = [
        f">= {low:g}" if low is not None else "",
        f"> {above:g}" if above is not None else "",
        f"<= {high:g}" if high is not None else "",
        f"< {below:g}" if below is not None else "",
    ]
    wanted = ("an integer" if integer else "a finite number") + "".join(
        f" {b}" for b in bounds if b
    )
    ok = (
        not isinstance(value, bool)
        and isinstance(value, Integral if integer else Real)
        and math.isfinite(value)
        and (low is None or value >= low)
        and (high is None or value <= high)
        and (above is None or value > above)
        and (below is None or value < below)
    )
    if not ok:
        raise error(f"{name}: expected {wanted}, got {value!r}")


def check_numbers(owner: Any, rules: dict[str, dict[str, Any]]) -> None:
    """:func:`check_number` on each named attribute of ``owner`` (a config dataclass)."""
    for name, bounds in rules.items():
        check_number(name, getattr(owner, name), **bounds)


POSITIVE_INT = {"integer": True, "low": 1}
NON_NEGATIVE_INT = {"integer": True, "low": 0}
POSITIVE = {"above": 0}
NON_NEGATIVE = {"low": 0}
FRACTION = {"low": 0, "high": 1}
CORES = os.cpu_count() or 1
"""This machine's CPU cores: the most torch threads anything here may ask for."""
THREADS = {"integer": True, "low": 0, "high": CORES}
"""A command's torch threads: 0 (torch's default) up to this machine's cores."""


def check_device(name: Any, what: str = "device", error: type[ArgumentError] = ArgumentError):
    """``name`` as a ``torch.device``, or ``error``, one line, when it is unknown or absent."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise error(f"{what}: {name!r} is not a torch device (cpu, cuda, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise error(f"{what}: {name!r} asked for, but this machine has no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise error(
                f"{what}: {name!r} asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise error(f"{what}: {name!r} asked for, but MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise error(f"{what}: {name!r}: use cpu or cuda")
    return device


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module`` of an optional dependency, or :class:`MissingDependencyError`, one line
    naming what needs it and the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f'{purpose} needs {module} ({error}); install it with pip install -e ".[{extra}]"'
        ) from None

"""Atomic file output (write next to the target, then ``os.replace`` it into place), and torch
checkpoints read as data, never as code."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from musicgym.errors import CheckpointError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``.

    A reader never sees a half-written file, and a failed write leaves the old file (if any) alone.
    The temporary name keeps the target's suffix so that writers that infer a format from it work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_problem(path: str | os.PathLike[str], error: OSError) -> str:
    """One line saying why ``path`` could not be written (naming a file that stands where a
    folder of the path should be)."""
    for folder in Path(path).parents:
        if folder.exists():
            if not folder.is_dir():
                return f"{path}: cannot write there, {folder} is a file, not a folder"
            break
    return f"{path}: cannot write ({error.strerror or error})"


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` a checkpoint dict atomically."""
    import torch

    with atomic_output(path) as temporary:
        torch.save(checkpoint, temporary)


def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint dict loaded with ``weights_only=True`` onto the CPU; :class:`CheckpointError`
    naming the file if it is missing, unreadable, or not a dict."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(error).__name__})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint

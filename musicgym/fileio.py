"""Atomic file output (write next to the target, then ``os.replace`` it into place), torch
checkpoints read as data, never as code, and file errors as one line that says what to do."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from musicgym.errors import CheckpointError, OutputError

TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?$")
"""The names :func:`atomic_output` gives its temporary files (``.NAME.XXXXXXXX.tmpSUFFIX``)."""

ADVICE = {
    errno.EROFS: "the file system is read-only; choose a folder on a writable one",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.ENOSPC: "no space left on the device; free some space or choose another folder",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another folder",
    errno.EFBIG: "the file grew past the size this process may write (ulimit -f)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "it exists already",
    errno.ENAMETOOLONG: "the name is too long",
}
WRITE_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
"""What a failed write reports; :func:`atomic_output` turns these into one line."""


def umask() -> int:
    """The process's file mode creation mask (read without changing it where Linux allows)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def describe_os_error(error: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """One line: the path, what went wrong and what to do (naming a file that stands where a
    folder of the path should be)."""
    where = path if path is not None else (error.filename or "")
    if where and error.errno in (errno.EEXIST, errno.ENOTDIR):
        for folder in Path(where).parents:
            if folder.exists():
                if not folder.is_dir():
                    return f"{where}: cannot write there, {folder} is a file, not a folder"
                break
    advice = ADVICE.get(error.errno or 0, error.strerror or str(error))
    return f"{where}: {advice}" if where else advice


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Bytes free for this user on ``folder``'s file system (``None`` if it cannot be told)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``.

    A reader never sees a half-written file, and a failed write leaves the old file (if any) alone;
    the file and its folder are flushed to the disk (``fsync``) before and after the rename, so
    a power loss, not only a crash, leaves the old file or the new one, whole.
    The temporary name keeps the target's suffix so that writers that infer a format from it work.
    The file gets the usual permissions of a new file (``0o666`` less the umask), not
    ``mkstemp``'s ``0o600``. An ``OSError`` (read-only, full disk, ...) becomes an
    :class:`OutputError` naming ``path`` and what to do.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
        )
        try:
            os.fchmod(handle, 0o666 & ~umask())
        finally:
            os.close(handle)
    except OSError as error:
        raise OutputError(describe_os_error(error, target)) from None
    try:
        yield Path(temporary)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if error.errno not in WRITE_ERRORS:
            raise
        raise OutputError(describe_os_error(error, target)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    try:
        _fsync(temporary)  # the data on the disk before the name points at it
        os.replace(temporary, target)
        _fsync(target.parent)  # and the new name too: a power loss keeps old or new, whole
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise OutputError(describe_os_error(error, target)) from None


def _fsync(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a folder's data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that interrupted :func:`atomic_output` writes left in
    ``folder`` and its subfolders (one level: ``checkpoints/``); call it only while no other
    process writes there."""
    removed = []
    folder = Path(folder)
    for path in [*folder.glob(".*.tmp*"), *folder.glob("*/.*.tmp*")]:
        if path.is_file() and TEMPORARY.match(path.name):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_output` (whole, or not at all)."""
    with atomic_output(path) as temporary:
        temporary.write_text(text)


def file_in(folder: str | os.PathLike[str], name: Any, what: str = "file name") -> Path:
    """``folder / name`` for a ``name`` read from a file of ``folder`` (a JSON's agent name, a
    manifest's file): a plain file name that stays inside ``folder`` (no folder part, no ``..``,
    no link out of it); else :class:`CheckpointError`, one line naming the folder and the name."""
    folder = Path(folder)
    plain = (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(separator in name for separator in ("/", "\\", "\0"))
    )
    path = folder / name if plain else None
    if path is None or (path.exists() and not path.resolve().is_relative_to(folder.resolve())):
        raise CheckpointError(f"{folder}: {what} {name!r} is not a plain name inside that folder")
    return path


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` a checkpoint dict atomically; :class:`OutputError` if it cannot be
    written (torch reports a full disk as a RuntimeError "enforce fail ... file write failed")."""
    import torch

    with atomic_output(path) as temporary:
        try:
            torch.save(checkpoint, temporary)
        except RuntimeError as error:
            free = free_bytes(Path(path).parent)
            room = f" ({free / 2**20:.0f} MiB free there)" if free is not None else ""
            if not re.search("write|enforce fail", str(error), re.IGNORECASE):
                raise
            raise OutputError(
                f"{path}: the checkpoint could not be written{room}: the disk is full or the "
                "file is too large; free some space or choose another folder"
            ) from None


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

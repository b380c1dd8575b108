"""Run folders that lose nothing: claimed under a lock, never overwritten by accident, checked
for room before training, and stopped by SIGINT / SIGTERM only after a checkpoint.

Every trainer (``agent train``, ``prior train``) wraps its work in :func:`claim_run_folder` and
its loop in :class:`StopSignals`::

    with claim_run_folder(out, resume=resume, overwrite=overwrite, run_files=RUN_FILES):
        with StopSignals() as stop:
            while ... and not stop.requested:
                ...                       # one step
            save()
            if stop.requested:
                raise stop.interrupted(f"at step {step}: checkpoint in {out}")

* A folder that holds a run (any of ``run_files``) is refused unless ``resume`` (go on with it)
  or ``overwrite`` (its run files are deleted first; nothing else in the folder is touched).
* The lock is the file ``musicgym.lock`` in the folder, held with ``flock`` (released by the
  kernel when its process dies, so a lock left by a killed run is stale and is taken over) and
  holding the holder's pid, host, start time and command, which a refused second process names.
* Temporary files of interrupted atomic writes are removed once the lock is held.

:func:`check_resume_settings` is the rule of ``--resume``: the run's settings, except those a
trainer names (how long to go on, where), or one line listing every difference.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from musicgym.errors import Interrupted, OutputError, RunFolderError
from musicgym.fileio import (
    WRITE_ERRORS,
    describe_os_error,
    free_bytes,
    remove_stale_temporaries,
)

LOCK_FILE = "musicgym.lock"
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""Exit status after a checkpointed stop on each signal (``128 + signal``, the shell's)."""


def check_output_folder(
    folder: str | os.PathLike[str], what: str = "--out", need_bytes: int = 0
) -> Path:
    """``folder``, created if missing; one line if it is a file, cannot be created, is not
    writable, or has less than ``need_bytes`` (twice: an atomic write holds old and new) free."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder}: is a file, not a folder; choose another {what}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{what} {describe_os_error(error, folder)}") from None
    read_only = False
    with contextlib.suppress(OSError, AttributeError):
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    if read_only or not os.access(folder, os.W_OK | os.X_OK):
        code = errno.EROFS if read_only else errno.EACCES
        raise OutputError(f"{what} {describe_os_error(OSError(code, ''), folder)}")
    free = free_bytes(folder)
    if need_bytes and free is not None and free < 2 * need_bytes:
        raise OutputError(
            f"{what} {folder}: {free / 2**20:.0f} MiB free, but a checkpoint needs about "
            f"{2 * need_bytes / 2**20:.0f} MiB (old and new side by side); free some space or "
            f"choose another {what}"
        )
    return folder


def run_files_in(folder: Path, run_files: Sequence[str]) -> list[Path]:
    """The files and folders of ``folder`` that match the glob patterns ``run_files``."""
    return sorted({path for pattern in run_files for path in folder.glob(pattern)})


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return (
            f"pid {holder['pid']} on {holder['host']} since {holder['started']} "
            f"({holder['command']})"
        )
    except (ValueError, KeyError, TypeError):
        return "another process"


def _command(width: int = 80) -> str:
    """This process's command line, shortened to ``width`` characters."""
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return command if len(command) <= width else command[: width - 3] + "..."


class RunLock:
    """An exclusive lock on a run folder (see the module docstring); a context manager."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.handle: int | None = None
        self.stale: str | None = None
        """The holder described by a stale lock file that was taken over, if any."""

    def acquire(self) -> None:
        import fcntl

        while True:
            try:
                handle = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as error:
                raise OutputError(describe_os_error(error, self.path)) from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                holder = _describe_holder(os.read(handle, 4096).decode(errors="replace"))
                os.close(handle)
                raise RunFolderError(
                    f"{self.folder}: in use by {holder}; wait for it to finish or stop it "
                    f"(lock: {self.path})"
                ) from None
            except OSError:
                locked = False  # no flock on this file system: the pid check below decides
            try:
                same = os.fstat(handle).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and removed between our open and flock: try again
                os.close(handle)
                continue
            previous = os.read(handle, 4096).decode(errors="replace")
            if previous and not locked and _alive_here(previous):
                os.close(handle)
                raise RunFolderError(
                    f"{self.folder}: in use by {_describe_holder(previous)}; wait for it to "
                    f"finish or stop it (lock: {self.path})"
                )
            self.stale = _describe_holder(previous) if previous else None
            holder = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": _command(),
            }
            os.ftruncate(handle, 0)
            os.pwrite(handle, (json.dumps(holder) + "\n").encode(), 0)
            self.handle = handle
            return

    def release(self) -> None:
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.handle)
        self.handle = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive_here(text: str) -> bool:
    """Whether the holder a lock file describes is a running process on this host."""
    try:
        holder = json.loads(text)
        if holder["host"] != socket.gethostname():
            return True  # cannot tell: assume it runs
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, KeyError, TypeError, PermissionError):
        return True
    return True


@contextlib.contextmanager
def claim_run_folder(
    folder: str | os.PathLike[str],
    *,
    resume: bool,
    overwrite: bool,
    run_files: Sequence[str],
    need_bytes: int = 0,
    what: str = "--out",
) -> Iterator[Path]:
    """Hold ``folder`` for one training call (see the module docstring); yields it."""
    if resume and overwrite:
        raise RunFolderError(
            "--resume and --overwrite: choose one (go on with the run, or replace it)"
        )
    created = not Path(folder).exists()
    folder = check_output_folder(folder, what)
    try:
        with RunLock(folder) as lock:
            yield from _claimed(folder, lock, resume, overwrite, run_files, need_bytes, what)
    except BaseException:
        if created:  # a run that failed before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _claimed(
    folder: Path,
    lock: RunLock,
    resume: bool,
    overwrite: bool,
    run_files: Sequence[str],
    need_bytes: int,
    what: str,
) -> Iterator[Path]:
    """The body of :func:`claim_run_folder` once the lock is held."""
    if lock.stale:
        print(f"musicgym: note: took over the stale lock of {lock.stale}", file=sys.stderr)
    held = run_files_in(folder, run_files)
    if held and not resume and not overwrite:
        shown = sorted(held, key=lambda path: (path.name.startswith("events."), path.name))
        names = ", ".join(path.name for path in shown[:3]) + (", ..." if len(held) > 3 else "")
        raise RunFolderError(
            f"{folder}: holds a run ({names}); pass --resume to go on with it, --overwrite "
            f"to replace it, or choose another {what}"
        )
    if overwrite:
        for path in held:
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError as error:
                raise OutputError(describe_os_error(error, path)) from None
    remove_stale_temporaries(folder)
    check_output_folder(folder, what, need_bytes)
    with _quiet_writer_threads():
        try:
            yield folder
        except OSError as error:  # e.g. TensorBoard's, which names no file
            if error.errno not in WRITE_ERRORS:
                raise
            raise OutputError(describe_os_error(error, error.filename or folder)) from None


@contextlib.contextmanager
def _quiet_writer_threads() -> Iterator[None]:
    """A background writer thread (TensorBoard's) that fails on a full or read-only disk prints
    no traceback: the training thread meets the same error at its next write and reports it."""
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if not (isinstance(args.exc_value, OSError) and args.exc_value.errno in WRITE_ERRORS):
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


_POOL_STOP: Any = None
"""In a worker process of :class:`StoppablePool`: the shared signal number (0 while none) its
parent sets when it is asked to stop."""


class StopSignals:
    """While active, SIGINT and SIGTERM set :attr:`requested` instead of stopping the process,
    so that a training loop can finish its step and write a checkpoint; a second signal stops
    at once (``KeyboardInterrupt``). A no-op outside the main thread. In a worker of
    :class:`StoppablePool` the parent's signal is :attr:`requested` instead (the worker ignores
    its own)."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        if self.signal_number is None and _POOL_STOP is not None and _POOL_STOP.value:
            self.signal_number = int(_POOL_STOP.value)
        return self.signal_number is not None

    def _handle(self, number: int, frame: object) -> None:
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = number

    def interrupted(self, message: str) -> Interrupted:
        """The exception to raise once the checkpoint is written: "SIGINT at ...: ..."."""
        number = self.signal_number or signal.SIGINT
        return Interrupted(f"{signal.Signals(number).name} {message}", number)

    def stopped_short(self, step: int, checkpoint: str | os.PathLike) -> Interrupted:
        """:meth:`interrupted`, saying where the checkpoint of ``step`` is and that ``--resume``
        continues it."""
        return self.interrupted(
            f"at step {step}: checkpoint written to {checkpoint}; continue with --resume"
        )

    def raise_if_stopped_short(self, step: int, steps: int, checkpoint: str | os.PathLike) -> None:
        """After a signal and short of ``steps``: raise :meth:`stopped_short`."""
        if self.requested and step < steps:
            raise self.stopped_short(step, checkpoint)

    def __enter__(self) -> StopSignals:
        if _POOL_STOP is None and threading.current_thread() is threading.main_thread():
            for number in EXIT_CODES:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


def _join_pool(stop: Any) -> None:
    """A :class:`StoppablePool` worker's start: its runs stop when the parent sets ``stop``; the
    signals a terminal sends the whole process group are the parent's to handle."""
    global _POOL_STOP
    _POOL_STOP = stop
    for number in EXIT_CODES:
        signal.signal(number, signal.SIG_IGN)


class StoppablePool:
    """Worker processes (spawned: no forked torch or env state) for runs side by side that stop
    as one run does. The first SIGINT or SIGTERM to this process (alone, or with its workers, as a
    terminal's Ctrl-C) lets each running run finish its step and write its checkpoint
    (:class:`StopSignals` in the worker), cancels the runs not started, and :meth:`wait` raises
    :class:`~musicgym.errors.Interrupted`; a second stops the workers at once::

        with StoppablePool(jobs) as pool:
            futures = [pool.submit(train, seed) for seed in seeds]
            pool.wait(futures, "during the runs: each wrote its checkpoint; run again to go on")
            outcomes = [future.result() for future in futures]
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def __enter__(self) -> StoppablePool:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        self._stop = context.RawValue("i", 0)
        self._executor = ProcessPoolExecutor(
            self.jobs, mp_context=context, initializer=_join_pool, initargs=(self._stop,)
        )
        self._signals = StopSignals().__enter__()
        return self

    def submit(self, fn: Any, /, *args: Any) -> Any:
        """``fn(*args)`` in a worker: a :class:`concurrent.futures.Future`."""
        return self._executor.submit(fn, *args)

    def wait(self, futures: Sequence[Any], stopped: str) -> None:
        """Until every future is done; after a signal, once the running ones have stopped,
        :class:`~musicgym.errors.Interrupted`: ``"SIGINT " + stopped``."""
        from concurrent.futures import wait

        pending = set(futures)
        while pending:
            pending = wait(pending, timeout=0.2).not_done
            if self._signals.requested and not self._stop.value:
                self._stop.value = int(self._signals.signal_number or signal.SIGINT)
                for future in pending:
                    future.cancel()
        if self._stop.value:
            raise self._signals.interrupted(stopped)

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self._signals.__exit__()
        if kind is KeyboardInterrupt:  # a second signal: stop now
            import multiprocessing

            for worker in multiprocessing.active_children():
                worker.terminate()
        self._executor.shutdown(wait=True, cancel_futures=True)


def option_name(field: str) -> str:
    """The command-line option of a config field."""
    return "--" + field.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value) if value != "" else "''"


def _spelled_rules(saved: Mapping[str, Any]) -> Mapping[str, Any]:
    """``saved`` with its rules as a run keeps them (:func:`musicgym.config.run_rules`): a run
    saved before runs kept them so names a preset as it is now."""
    from musicgym.config import ENV_DEFAULTS, run_rules
    from musicgym.errors import MusicgymError

    if not isinstance(saved.get("rules"), str) or saved.get("env") not in ENV_DEFAULTS:
        return saved
    try:
        rules = run_rules(saved["rules"], saved["env"])
    except MusicgymError:  # a rule gone since: shown as it was
        return saved
    return {**saved, "rules": rules}


def check_resume_settings(
    out: str | os.PathLike,
    saved: Mapping[str, Any],
    config: Any,
    may_change: Iterable[str] = (),
) -> None:
    """One line listing every setting of ``config`` (a config dataclass) that differs from the
    run's ``saved`` ones, except ``may_change``; nothing if they agree."""
    may_change = tuple(may_change)
    saved = _spelled_rules(saved)
    differences = []
    for f in fields(config):
        if f.name in may_change or f.name not in saved:
            continue
        new, old = getattr(config, f.name), saved[f.name]
        if isinstance(new, tuple):
            old = tuple(old) if isinstance(old, (list, tuple)) else old
        if new != old:
            differences.append(f"{option_name(f.name)} {_shown(old)} -> {_shown(new)}")
    if differences:
        allowed = ", ".join(option_name(name) for name in may_change)
        raise RunFolderError(
            f"{out}: --resume with other settings than the run's: {'; '.join(differences)}. "
            f"Only {allowed} may change on resume; start a new run for the others"
        )

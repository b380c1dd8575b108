"""The ``musicgym`` command run in a child process, as a user runs it, without paying for its
imports each time: children fork from a server process that imported the package once
(``multiprocessing``'s forkserver, itself single-threaded). A child has its own exit status,
stdout, stderr, signals, working folder and file-size limit."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

HANG = 900.0
"""Seconds after which a command (or a wait) is taken for hung. Only to catch hangs: far above
what any command here takes, also on a machine whose cores are busy with other work (a wall-clock
limit near the idle time fails under load; CPU time is what a test may bound)."""

PRELOAD = [
    "musicgym.cli",
    "agents",
    "musicgym.agents.cli",
    "musicgym.agents.rl_tuner",
    "musicgym.agents.baselines",
    "musicgym.priors.cli",
    "musicgym.priors.train",
    "musicgym.priors.data",
    "torch.utils.tensorboard",
    "torch._dynamo",  # imported by the first optimizer
]


@dataclass
class Result:
    """What a finished command left: exit status and output."""

    code: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        """stderr's lines but warnings and notes."""
        return [
            line
            for line in self.stderr.splitlines()
            if not line.startswith(("musicgym: warning:", "musicgym: note:"))
        ]

    def assert_one_line_error(self, *fragments: str) -> str:
        """Exit status 2, one line on stderr (holding ``fragments``), no traceback."""
        assert self.code == 2, (self.code, self.stderr)
        assert "Traceback" not in self.stderr, self.stderr
        assert len(self.errors) == 1, self.stderr
        for fragment in fragments:
            assert fragment in self.errors[0], (fragment, self.errors[0])
        return self.errors[0]


def _child(args: list[str], cwd: str, out: str, err: str, file_size: int | None) -> None:
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    code = 1
    try:
        if file_size is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        os.chdir(cwd)
        sys.argv = ["musicgym", *args]
        from musicgym.cli import main

        code = main(args)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    except BaseException:  # what Python does with an uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Running:
    """A command started by :meth:`CLI.start`."""

    def __init__(self, process: multiprocessing.process.BaseProcess, folder: Path) -> None:
        self.process, self.folder = process, folder

    def signal(self, number: int = signal.SIGINT) -> None:
        os.kill(self.process.pid, number)

    def wait(self, timeout: float = HANG) -> Result:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            raise AssertionError(f"still running after {timeout} s")
        code = self.process.exitcode
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's number
        texts = [self.folder / name for name in ("stdout", "stderr")]
        return Result(code, *(path.read_text() if path.exists() else "" for path in texts))


class CLI:
    """Runs ``musicgym ARGS`` in children of one preloaded server."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)

    def start(self, args: list[str], cwd: Path, file_size: int | None = None) -> Running:
        folder = Path(tempfile.mkdtemp(prefix="cli-"))
        out, err = str(folder / "stdout"), str(folder / "stderr")
        process = self.context.Process(
            target=_child, args=([str(a) for a in args], str(cwd), out, err, file_size)
        )
        process.start()
        return Running(process, folder)

    def run(
        self, args: list[str], cwd: Path, timeout: float = HANG, file_size: int | None = None
    ) -> Result:
        return self.start(args, cwd, file_size).wait(timeout)


def wait_for(condition, timeout: float = HANG, every: float = 0.02) -> None:
    """Poll ``condition()`` until it holds."""
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(every)

"""Benchmark runs as Ray tasks (``musicgym bench agents --ray [ADDRESS]``; the ``ray`` extra).

Each run of a benchmark (one agent and seed) is a :class:`RayJob`: the function that the local
``--jobs N`` path runs in a worker process, with the same arguments, and the folder under
``--out`` that it reads and writes. :func:`run_jobs` sends each job to Ray as a task that asks for
its CPUs, and returns the jobs' results in order, as the local path does. Any benchmark whose
runs are such calls can use it (``bench chorales`` will: one job per tuned agent and seed).

* **Where.** With an address (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``) the tasks go to that
  cluster; without one a local Ray is started here with ``local_cpus`` CPUs, and stopped at the
  end. An unreachable address, or no Ray installed, is one line.
* **Files.** A task writes where the function writes, on the node that runs it. A node that sees
  the driver's ``--out`` (this machine, or a shared file system: told by a marker file the driver
  leaves there for the length of the call) writes in place. Any other node is first given the
  job's folder as the driver has it (so that ``--load`` and resumed trainings find their files),
  works in the driver's working folder if that path exists there (else in a temporary one), and
  sends the folder back as a gzipped tar, which replaces the driver's copy: ``measures.json``,
  checkpoints and TensorBoard events all come back.
* **Failures.** A job that raises, or whose worker process or node dies (tasks are not retried),
  is reported in one line and gives a ``RunFailure``; the other jobs' results are kept, as with
  ``--jobs``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicgym.fileio import write_text


@dataclass(frozen=True)
class RayJob:
    """One run of a benchmark as a Ray task."""

    label: str
    """How reports name the job, e.g. ``rltuner-q (seed 0)``."""
    function: Callable[..., Any]
    """What runs it (picklable: a module-level function), the one the local path calls."""
    args: tuple[Any, ...]
    """Its arguments (picklable)."""
    folder: str
    """The folder under ``--out`` that the function reads and writes, e.g. ``runs/prior-seed0``."""
    num_cpus: float = 1.0
    """CPUs the task asks Ray for (our runs use one torch thread)."""


def pack_folder(folder: Path) -> bytes | None:
    """The files of ``folder`` as a gzipped tar (``None`` if there is no folder)."""
    if not folder.is_dir():
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=".")
    return buffer.getvalue()


def unpack_folder(data: bytes, folder: Path) -> None:
    """Replace ``folder`` by the files of a :func:`pack_folder` archive: they are unpacked beside
    it first, so that a failure leaves the old folder as it was."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            if hasattr(tarfile, "data_filter"):  # no absolute paths, links out, or devices
                archive.extractall(staging, filter="data")
            else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
                archive.extractall(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run_job(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    out: str,
    folder: str,
    marker: str,
    cwd: str,
    shipped: bytes | None,
) -> tuple[Any, bytes | None]:  # pragma: no cover - runs in a Ray worker
    """The Ray task: the job's result, and its folder as an archive where the node does not see
    the driver's ``out`` (see the module docstring)."""
    scratch = None
    if os.path.isdir(cwd):
        os.chdir(cwd)
    else:
        scratch = tempfile.mkdtemp(prefix="musicgym-ray-")
        os.chdir(scratch)
    in_place = (Path(out) / marker).is_file()
    target = Path(out) / folder
    try:
        if not in_place:
            if target.exists():
                shutil.rmtree(target)
            if shipped is not None:
                unpack_folder(shipped, target)
        result = function(*args)
        return result, None if in_place else pack_folder(target)
    finally:
        if not in_place:
            shutil.rmtree(target, ignore_errors=True)
        if scratch is not None:
            os.chdir(tempfile.gettempdir())
            shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class RunFailure:
    """What a run that failed gives in place of its result: why, in one line."""

    error: str


def run_jobs(
    jobs: Sequence[RayJob], out: str | os.PathLike[str], address: str = "", local_cpus: int = 0
) -> list[Any]:
    """Run ``jobs`` as Ray tasks (the cluster at ``address``, or a local Ray of ``local_cpus``
    CPUs, all of this machine's if 0) and return their results in order; a job that failed is
    reported (``LABEL: failed (...)``) and gives a :class:`RunFailure`."""
    from musicgym.ray_cluster import connect

    ray = connect(address, num_cpus=local_cpus or None, log_to_driver=True)
    from ray import exceptions

    out_folder = Path(out)
    out_folder.mkdir(parents=True, exist_ok=True)
    marker = f".musicgym-ray-{uuid.uuid4().hex}"
    write_text(
        out_folder / marker, "the folder a bench run on Ray writes into; removed at the end\n"
    )
    try:
        task = ray.remote(max_retries=0)(_run_job)
        pending = [
            task.options(num_cpus=job.num_cpus, name=job.label).remote(
                job.function,
                job.args,
                str(out),
                job.folder,
                marker,
                os.getcwd(),
                pack_folder(out_folder / job.folder) if address else None,
            )
            for job in jobs
        ]
        results = []
        for job, reference in zip(jobs, pending):
            try:
                result, archive = ray.get(reference)
            except exceptions.RayTaskError as error:  # the function raised
                cause = error.cause if error.cause is not None else error
                results.append(_report(job, f"{type(cause).__name__}: {_first_line(cause)}"))
            except exceptions.RayError as error:  # its worker or node died, or Ray failed
                results.append(_report(job, f"{type(error).__name__}: {_first_line(error)}"))
            else:
                if archive is not None:
                    unpack_folder(archive, out_folder / job.folder)
                results.append(result)
        return results
    finally:
        with contextlib.suppress(OSError):
            (out_folder / marker).unlink()
        ray.shutdown()  # stops the local Ray; leaves a cluster running


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def _report(job: RayJob, why: str) -> RunFailure:
    print(f"{job.label}: failed ({why})", flush=True)
    return RunFailure(why)

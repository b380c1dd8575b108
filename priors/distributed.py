"""Prior training on several processes with torch ``DistributedDataParallel`` (DDP).

Two ways to start it, the same training either way::

    musicgym prior train --ddp 2 --data essen ...             # N processes on this machine
    torchrun --nproc_per_node 2 -m musicgym.priors.train --data essen ...  # or torchrun, any
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 4 \\    # number of machines (one
        --rdzv_backend c10d --rdzv_endpoint HEAD:29500 \\       # command on each)
        -m musicgym.priors.train ...

Every process runs :func:`musicgym.priors.train.train` on its own share of each batch; DDP averages
the gradients (gloo on the CPU, nccl on GPUs: process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``), so
every process keeps the same weights. ``--batch-size`` stays the *global* batch.

* **Sharding.** Every process holds the same :class:`~musicgym.priors.train.SegmentSampler`,
  seeded alike, draws the same global batch of segments and keeps its rank's rows
  (:meth:`musicgym.priors.replicas.Replicas.share`).
  That is a deterministic split by rank of one stream, which a single process with the same
  batch would draw whole; the loss is normalised by the global frame count, so the gradient is
  the single process's (tested to 1e-5 after 5 steps). The trainer draws segments by step, with
  replacement, not by epoch, so there is no epoch for a ``DistributedSampler.set_epoch`` to
  reshuffle: the shared generator (saved in ``last.pt``) plays that part, at every step.
* **Writing.** Rank 0 alone claims the run folder, validates, writes ``last.pt`` / ``best.pt``
  (atomically, ``musicgym.fileio``), TensorBoard scalars and, with ``--out``, the shipped copy and
  its model card; ``--resume`` reads ``last.pt`` in every process. Dropout masks differ by rank
  (each process seeds its torch generator by seed, step and rank), so with dropout a resumed
  multi-process run is not bit-identical to one that did not stop; its weights, optimizer and
  data stream are.
* **Stopping.** Every step the processes agree whether to stop (the step budget, the minutes,
  SIGINT / SIGTERM in any of them): all stop together, rank 0 writing ``last.pt``. A process
  that fails makes the others fail at their next collective (gloo reports the closed
  connection); ``--ddp`` then stops them all and prints one line naming the rank and its error
  (``torchrun`` stops them too, and prints its own report). Checkpoints are written atomically,
  so none is left half-written.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
from multiprocessing.connection import wait
from typing import Any

import torch

from musicgym.errors import ArgumentError, Interrupted, MusicgymError
from musicgym.priors.replicas import process_group
from musicgym.priors.train import TrainConfig, train

STOP_GRACE_S = 30.0
"""How long ``--ddp`` waits for the other processes to stop after one failed, before killing."""


class TrainingFailed(MusicgymError):
    """A process of a multi-process training failed; the others were stopped."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(
    rank: int, world_size: int, port: int, config: TrainConfig, report: Any
) -> None:  # pragma: no cover - runs in the spawned processes
    """One process of :func:`launch`: train, and send ``(status, payload)`` to ``report`` (a
    pipe: unlike a queue it holds no semaphore for a killed process to leak). It leaves
    the terminal's process group, so that a Ctrl-C reaches it once, forwarded by :func:`launch`
    (twice would stop it before it writes ``last.pt``)."""
    import threading

    from tqdm import tqdm

    os.setsid()
    # tqdm's default lock is a multiprocessing semaphore: a process killed while holding it
    # would leave the resource tracker to print a warning about it after our one line.
    tqdm.set_lock(threading.RLock())
    try:
        with process_group(config.device, rank, world_size, f"tcp://127.0.0.1:{port}"):
            summary = train(config)
        report.send((0, summary))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # done and reported: the interpreter's teardown of gloo's threads may crash
    except Interrupted as stop:
        report.send((128 + stop.signal_number, str(stop)))
        sys.exit(128 + stop.signal_number)
    except MusicgymError as error:
        report.send((2, str(error)))
        sys.exit(2)
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0]
        report.send((1, f"{type(error).__name__}: {first}"))
        sys.exit(1)


def launch(config: TrainConfig, processes: int) -> dict[str, Any]:
    """Train with ``processes`` processes on this machine (``--ddp``); returns rank 0's summary.

    A process that fails stops the others (SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`)
    and raises :class:`TrainingFailed`, one line naming its rank and its error. SIGINT / SIGTERM
    reach every process (the terminal's group, or forwarded from here); they agree to stop,
    rank 0 writes ``last.pt``, and :class:`~musicgym.errors.Interrupted` is raised here."""
    from musicgym.checks import check_device

    if processes < 1:
        raise ArgumentError(f"--ddp: expected an integer >= 1, got {processes}")
    if config.batch_size < processes:
        raise ArgumentError(
            f"--batch-size {config.batch_size}: fewer segments than the {processes} processes "
            "of --ddp (the batch is split between them)"
        )
    device = check_device(config.device)
    if device.type == "cuda" and processes > torch.cuda.device_count():
        raise ArgumentError(
            f"--ddp {processes}: more processes than the {torch.cuda.device_count()} GPUs"
        )
    context = multiprocessing.get_context("spawn")  # no forked torch state
    pipes = [context.Pipe(duplex=False) for _ in range(processes)]
    port = _free_port()
    workers = [
        context.Process(target=_worker, args=(rank, processes, port, config, send), daemon=True)
        for rank, (_, send) in enumerate(pipes)
    ]
    for worker in workers:
        worker.start()
    for _, send in pipes:
        send.close()  # the workers hold their ends
    results: dict[int, tuple[int, Any]] = {}
    failed = _wait(workers, [receive for receive, _ in pipes], results)
    first_status, first_payload = results.get(0, (workers[0].exitcode, None))
    if first_status in (130, 143):  # stopped by a signal, together: rank 0 wrote last.pt
        raise Interrupted(str(first_payload), first_status - 128)
    if failed is not None:
        payload = results.get(failed, (0, None))[1]
        if payload is None:
            payload = f"exited with {_exit_text(workers[failed].exitcode)}"
        raise TrainingFailed(
            f"prior train --ddp {processes}: rank {failed} failed ({payload}); "
            "stopped the other ranks"
        )
    return results[0][1]


def _wait(workers: list[Any], receivers: list[Any], results: dict[int, Any]) -> int | None:
    """Wait for every worker, putting the ``(status, payload)`` each reported into ``results``;
    at the first that fails (its report's status, else its exit code), stop the others. Returns
    its rank, or ``None`` if all succeeded. A signal here is forwarded to the workers, which
    stop together."""
    running = {worker.sentinel: rank for rank, worker in enumerate(workers)}
    failed: int | None = None
    with _ForwardSignals(workers):
        while running:
            for sentinel in wait(list(running)):
                rank = running.pop(sentinel)
                workers[rank].join()
                with contextlib.suppress(EOFError, OSError):
                    if receivers[rank].poll():
                        results[rank] = receivers[rank].recv()
                receivers[rank].close()
                status = results[rank][0] if rank in results else workers[rank].exitcode
                if status != 0 and failed is None:
                    failed = rank
                    if status not in (130, 143):
                        _stop(workers)
    return failed


def _stop(workers: list[Any]) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(STOP_GRACE_S)
        if worker.is_alive():
            worker.kill()
            worker.join()


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"


class _ForwardSignals:
    """While active, SIGINT and SIGTERM here are passed to the workers (which stop together and
    write ``last.pt``) instead of stopping this process."""

    def __init__(self, workers: list[Any]) -> None:
        self.workers = workers
        self.previous: dict[int, Any] = {}

    def _forward(self, number: int, frame: object) -> None:
        for worker in self.workers:
            if worker.is_alive() and worker.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(worker.pid, number)

    def __enter__(self) -> _ForwardSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

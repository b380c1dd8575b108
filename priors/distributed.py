"""Prior training on several processes with torch ``DistributedDataParallel`` (DDP).

Two ways to start it, the same training either way::

    musicgym prior train --ddp 2 --data essen ...                     # N processes on this machine
    torchrun --nproc_per_node 2 -m musicgym.priors.train --data essen ...      # or torchrun, any
    number of torchrun --nnodes 2 --node_rank 0 --nproc_per_node 4 \\           #   machines (one
    command
        --rdzv_backend c10d --rdzv_endpoint HEAD:29500 -m musicgym.priors.train ...  # on each)

Every process runs :func:`musicgym.priors.train.train` on its own share of each batch; DDP averages
the gradients (gloo on the CPU, nccl on GPUs: process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``), so
every process keeps the same weights. ``--batch-size`` stays the *global* batch.

* **Sharding.** Every process holds the same :class:`~musicgym.priors.train.SegmentSampler`, seeded
alike,
  draws the same global batch of segments and keeps its rank's rows (:meth:`Replicas.share`).
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
import datetime
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from musicgym.errors import ArgumentError, Interrupted, MusicgymError

if TYPE_CHECKING:
    from musicgym.priors.train import TrainConfig

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}
"""The ``torch.distributed`` backend of each device type."""
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)
"""How long a process waits at a collective for the others (rank 0 validates alone meanwhile);
a process that dies is noticed at once, by its closed connection."""
STOP_GRACE_S = 30.0
"""How long ``--ddp`` waits for the other processes to stop after one failed, before killing."""


class TrainingFailed(MusicgymError):
    """A process of a multi-process training failed; the others were stopped."""


@dataclass(frozen=True)
class Replicas:
    """This process's place among the training processes: rank 0 of 1 unless it runs in a
    process group (``torchrun`` or ``--ddp``). The hooks of :func:`musicgym.priors.train.train`."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    def log_likelihood(self, model: nn.Module) -> Callable[[torch.Tensor, bool], torch.Tensor]:
        """What the training step calls for the log-likelihoods ``(B, T)`` of its segments:
        ``model.log_likelihood`` itself, or the same in DDP (any prior with a
        ``log_likelihood(note_states, play_only)`` method)."""
        if self.world_size == 1:
            return model.log_likelihood
        device = next(model.parameters()).device
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(_LogLikelihood(model), device_ids=device_ids)

    def share(
        self, segments: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This process's rows of the global batch ``segments`` ``(B, T, N, 2)`` and its frame
        ``mask`` ``(B, T)``, and the count its summed log-likelihood is divided by: the global
        frame count over the number of processes (DDP averages the gradients, so their sum is
        the gradient of the global mean)."""
        frames = mask.sum()
        if self.world_size == 1:
            return segments, mask, frames
        B = len(segments)
        rows = slice(self.rank * B // self.world_size, (self.rank + 1) * B // self.world_size)
        return segments[rows], mask[rows], frames / self.world_size

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds in any process (one all-reduce): every process gets the same
        answer, so all stop at the same step."""
        if self.world_size == 1:
            return flag
        return bool(_all_max([float(flag)])[0])

    def same(self, value: int, message: str) -> None:
        """:class:`~musicgym.errors.ArgumentError` ``message`` in every process unless ``value``
        is the same in all (e.g. the step they resume from; one all-reduce)."""
        if self.world_size == 1:
            return
        largest, minus_smallest = _all_max([float(value), -float(value)])
        if largest != -minus_smallest:
            raise ArgumentError(message)

    def seed(self, seed: int, step: int) -> None:
        """Seed this process's torch generator (dropout) by the run's seed, the step and its
        rank, once the weights are drawn (or loaded) alike everywhere; one process keeps its
        generator as it is (its state is in ``last.pt``)."""
        if self.world_size > 1:
            import numpy as np

            torch.manual_seed(
                int(np.random.SeedSequence([seed, step, self.rank]).generate_state(1)[0])
            )


class _LogLikelihood(nn.Module):
    """DDP calls the ``forward`` of the module it wraps: this one's is the prior's
    ``log_likelihood``."""

    def __init__(self, prior: nn.Module) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, note_states: torch.Tensor, play_only: bool) -> torch.Tensor:
        return self.prior.log_likelihood(note_states, play_only)


def _all_max(values: list[float]) -> list[float]:
    """The element-wise maximum of ``values`` over the processes (one all-reduce; on the GPU
    where the backend is nccl)."""
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def replicas() -> Replicas:
    """The :class:`Replicas` of this process (its process group, if one is initialised)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Replicas(dist.get_rank(), dist.get_world_size())
    return Replicas()


@contextlib.contextmanager
def process_group(
    device: str, rank: int | None = None, world_size: int | None = None, init_method: str = "env://"
) -> Iterator[Replicas]:
    """Join the process group for the length of the block and yield this process's
    :class:`Replicas`. Without ``rank`` / ``world_size`` they come from ``torchrun``'s
    environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); with no ``WORLD_SIZE`` there either,
    the block runs as the one process it is. On ``cuda`` the process takes GPU ``LOCAL_RANK``."""
    if rank is None and "WORLD_SIZE" not in os.environ:
        yield Replicas()
        return
    import torch.distributed as dist

    if not dist.is_available():
        raise ArgumentError("torch.distributed is not available in this build of torch")
    from musicgym.checks import check_device

    device_type = check_device(device).type
    rank = int(os.environ["RANK"]) if rank is None else rank
    world_size = int(os.environ["WORLD_SIZE"]) if world_size is None else world_size
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    dist.init_process_group(
        BACKENDS[device_type],
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        yield Replicas(rank, world_size)
    finally:
        dist.destroy_process_group()


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

    from musicgym.priors.train import train

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

"""What one training process shares with the others when :func:`musicgym.priors.train.train`
runs in a torch ``DistributedDataParallel`` process group (``torchrun`` or ``--ddp``, see
:mod:`musicgym.priors.distributed`): its :class:`Replicas` (rank, the batch's share, the agreed
stop, the dropout seed) and the group it joins (:func:`process_group`). One process alone gets
``Replicas()``, whose hooks are all no-ops."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from musicgym.errors import ArgumentError

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}
"""The ``torch.distributed`` backend of each device type."""
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)
"""How long a process waits at a collective for the others (rank 0 validates alone meanwhile);
a process that dies is noticed at once, by its closed connection."""


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

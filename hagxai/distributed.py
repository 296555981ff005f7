"""Many processes under ``torchrun``: the process group, who does which share, and gathering.

``torchrun --nproc_per_node=N train.py -c CONFIG`` starts ``N`` copies of the command with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and the rendezvous address) in the environment.
:func:`init` reads them and joins the process group: NCCL when the run's device is CUDA (each
process on GPU ``LOCAL_RANK``), gloo on the CPU. Without ``WORLD_SIZE`` (or with 1) every function
here is the single-process no-op: :func:`rank` is 0, :func:`world_size` 1, :func:`gather_objects`
returns ``[obj]``, :func:`barrier` returns at once. Callers therefore write one code path.

The rules the package follows under torchrun:

* **each item once**: work over ``n`` items is split with :func:`shard_range` (contiguous,
  sizes differing by at most one) and the per-item results are put back in order with
  :func:`all_gather_objects`;
* **one writer**: only :func:`is_main` (rank 0) writes run files, checkpoints, exports, logs and
  progress bars; :func:`main_first` lets rank 0 build shared files (demo data, demo model) before
  the others read them;
* **the same numbers**: every rank holds the same state (config, folds, parameters), so
  decisions (best epoch, early stop) agree without being sent.

The functions that communicate (:func:`barrier`, :func:`all_gather_objects`,
:func:`all_gather_shards`, :func:`all_reduce_sum_`) must be called by every rank in the same
order.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from hagxai.errors import UserError

T = TypeVar("T")

ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
"""The variables torchrun sets (with ``MASTER_ADDR`` / ``MASTER_PORT``) that :func:`init` reads."""


def launched() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this process is rank 0, the only one that writes files and shows progress."""
    return rank() == 0


def device_for(spec: str) -> str:
    """The device of this rank for a config's ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Under torchrun a CUDA device (``auto`` with CUDA present, ``cuda``, ``cuda:N``) becomes
    ``cuda:LOCAL_RANK``: one GPU per process. Anything else is returned unchanged.
    """
    if not launched():
        return spec
    cuda = spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available())
    return f"cuda:{local_rank()}" if cuda else spec


def init(device: str = "auto", timeout_s: float = 1800.0) -> str:
    """Join the torchrun process group, if launched by torchrun; return this rank's device.

    NCCL for CUDA devices (and the CUDA device set to ``LOCAL_RANK``), gloo otherwise. Calling
    it again, or without torchrun, changes nothing.

    Args:
        device: the config's ``device``.
        timeout_s: how long a collective waits for the slowest rank (evidence extraction of a
            large set can keep ranks apart for a while).

    Returns:
        :func:`device_for` of ``device``.

    Raises:
        UserError: torchrun's variables are incomplete, or CUDA is asked for but there are
            fewer GPUs on this machine than processes.
    """
    spec = device_for(device)
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return spec
    missing = [name for name in (*ENV, "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise UserError(
            f"WORLD_SIZE > 1 but {', '.join(missing)} not set: start many processes with torchrun"
        )
    if not dist.is_available():
        raise UserError("this torch build has no torch.distributed; run one process")
    backend = "gloo"
    if spec.startswith("cuda"):
        if local_rank() >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {local_rank()} has no GPU ({torch.cuda.device_count()} on this "
                "machine): lower --nproc_per_node or use device=cpu"
            )
        torch.cuda.set_device(local_rank())
        backend = "nccl"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return spec


def shutdown() -> None:
    """Leave the process group (after a last barrier, so no rank exits while others still
    talk to it). Without one, nothing happens."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank reaches this point (no-op in one process)."""
    if active():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a shared file), then the others run it (and
    find the file built)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def shard_range(n: int, rank_: int | None = None, world: int | None = None) -> range:
    """The contiguous share of ``range(n)`` that rank ``rank_`` of ``world`` works on.

    Shares differ in size by at most one, the first ``n % world`` ranks take the larger, and
    together they cover ``range(n)`` once, in order (so concatenating per-rank results in rank
    order restores the original order).
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return range(start, start + base + (rank_ < extra))


def shard(items: Sequence[T]) -> list[T]:
    """This rank's contiguous share of ``items`` (:func:`shard_range`)."""
    return [items[i] for i in shard_range(len(items))]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank (``[obj]`` in one process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_objects(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0, ``None`` on the others."""
    gathered = all_gather_objects(obj)
    return gathered if is_main() else None


def all_gather_list(items: list[T]) -> list[T]:
    """Concatenate every rank's ``items`` in rank order (the inverse of :func:`shard`)."""
    return [item for part in all_gather_objects(items) for item in part]


def all_gather_shards(local: Tensor, n: int) -> Tensor:
    """Every rank's rows of ``range(n)`` shared out by :func:`shard_range`, in order, on every rank.

    The rows are copied, never added, so every rank ends with exactly the bits each row's rank
    computed (the trainer sums the rows itself, in one fixed order: see
    :mod:`hagxai.training.trainer`). ``local`` itself in one process.

    Args:
        local: ``len(shard_range(n))×…``: this rank's rows, in order (same trailing shape, dtype
            and device on every rank; on the GPU under NCCL).
        n: the rows of all ranks together.

    Returns:
        ``n×…``: row ``i`` is row ``i - shard_range(n, r).start`` of rank ``r``'s ``local``.

    Raises:
        ValueError: ``local`` does not hold this rank's share of ``range(n)``.
    """
    mine = shard_range(n)
    if local.dim() == 0 or local.shape[0] != len(mine):
        raise ValueError(
            f"rank {rank()} holds rows {mine.start}..{mine.stop} of {n} "
            f"({len(mine)} rows), got a tensor of shape {tuple(local.shape)}"
        )
    if not active():
        return local
    world = world_size()
    padded = local.new_zeros((-(-n // world), *local.shape[1:]))  # shares differ by at most one
    padded[: len(mine)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: len(shard_range(n, r, world))] for r, part in enumerate(parts)])


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum_(tensors: Sequence[Tensor]) -> None:
    """Sum ``tensors`` over the ranks, in place, in one flat message (what DDP's bucketed
    gradient all-reduce does, for a handful of small tensors)."""
    if not active() or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()

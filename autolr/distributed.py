"""Rank and world helpers, and the few collectives the range test and the tuner need.

Everything here works unchanged in a single process: with no initialized process group, reductions are
identity functions and every process is rank 0.

Example:
    >>> import torch
    >>> all_reduce_mean(torch.tensor(2.0)).item()   # no process group: unchanged
    2.0
    >>> is_rank_zero()
    True
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

__all__ = [
    "all_reduce_max",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "is_rank_zero",
]

T = TypeVar("T")


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a process group is initialized."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_rank_zero() -> bool:
    """True on the process that logs and decides."""
    return get_rank() == 0


def _collective_device(tensor: torch.Tensor) -> torch.device:
    backend = torch.distributed.get_backend()
    if backend == "nccl" and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all ranks (a new tensor; the input is not modified). No host sync."""
    if not is_distributed():
        return tensor
    out = tensor.detach().to(_collective_device(tensor), dtype=torch.float32, copy=True)
    torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
    out.div_(get_world_size())
    return out.to(tensor.device)


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise max of ``tensor`` over all ranks (a new tensor). Used for collective stop flags."""
    if not is_distributed():
        return tensor
    out = tensor.detach().to(_collective_device(tensor), copy=True)
    torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.MAX)
    return out.to(tensor.device)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Send a picklable object from rank ``src`` to every rank and return it (identity single-process)."""
    if not is_distributed():
        return obj
    box: list[Any] = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait for every rank (no-op single-process)."""
    if is_distributed():
        torch.distributed.barrier()

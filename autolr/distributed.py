"""Rank and world helpers, and the few collectives the range test and the tuner need.

Everything here works unchanged in a single process: with no initialized process group, reductions are
identity functions and every process is rank 0.

Every rank must call these collectives in the same order, or the ranks that did call one wait for the others
(until the process group's timeout: 30 minutes by default with gloo). So a decision taken on one rank is
shared with :func:`decide_on_rank_zero`, which also shares a failure: every rank raises instead of waiting.

Example:
    >>> import torch
    >>> all_reduce_mean(torch.tensor(2.0)).item()   # no process group: unchanged
    2.0
    >>> is_rank_zero()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

from .errors import AutoLRError

__all__ = [
    "all_reduce_max",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "decide_on_rank_zero",
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


def decide_on_rank_zero(fn: Callable[[], T]) -> T:
    """Call ``fn`` on rank 0 only and return its result on every rank.

    If ``fn`` raises on rank 0, rank 0 re-raises it and every other rank raises :class:`AutoLRError` naming
    it, so no rank is left waiting for a broadcast that never comes. In a single process this is ``fn()``.

    Example:
        >>> decide_on_rank_zero(lambda: 3e-3)   # no process group: just calls it
        0.003
    """
    if not is_distributed():
        return fn()
    value: Any = None
    error: Exception | None = None
    if is_rank_zero():
        try:
            value = fn()
        except Exception as exc:  # shared below, then re-raised here
            error = exc
    value, failure = broadcast_object((value, None if error is None else repr(error)))
    if error is not None:
        raise error
    if failure is not None:
        raise AutoLRError(f"rank 0 failed while deciding for every rank: {failure}; see rank 0's traceback")
    return value  # type: ignore[no-any-return]


def barrier() -> None:
    """Wait for every rank (no-op single-process)."""
    if is_distributed():
        torch.distributed.barrier()

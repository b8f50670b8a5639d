"""Batches: moving them to the model's device, cycling a short loader, and checking data on every rank."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from . import distributed as dist
from .errors import DataError

__all__ = ["check_data", "cycle", "keep_generators", "loader_generators", "model_device", "move_to_device"]


def move_to_device(batch: Any, device: torch.device | None, non_blocking: bool = False) -> Any:
    """Move every tensor in a (nested) tuple, list, dict or namedtuple to ``device``; others unchanged."""
    if device is None:
        return batch
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device, non_blocking) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device, non_blocking) for v in batch)
    return batch


def cycle(loader: Iterable[Any]) -> Iterator[Any]:
    """Iterate over ``loader`` forever (a new epoch when one ends); raise DataError if it yields nothing.

    A one-shot iterator (a generator, ``iter(loader)``) cannot start a new epoch: when it runs out after some
    batches, the error says so and how many it gave.
    """
    served = 0
    while True:
        empty = True
        for batch in loader:
            empty = False
            served += 1
            yield batch
        if empty and served:
            raise DataError(
                f"the loader is a one-shot iterator ({type(loader).__name__}) and ran out after {served} batches, "
                "before the range test was done (it needs num_steps x accumulation_steps batches and cycles a "
                "loader that can be iterated again); pass a DataLoader or a list of batches, or a lower num_steps"
            )
        if empty:
            raise DataError(
                "the loader yielded no batch; pass a non-empty DataLoader or iterable of batches"
            )


def loader_generators(*loaders: Any) -> list[torch.Generator]:
    """The ``torch.Generator`` objects the loaders draw their order from: ``DataLoader(generator=g)``, and a
    sampler's or batch sampler's own ``generator``. Each appears once.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> g = torch.Generator().manual_seed(0)
        >>> loader_generators(DataLoader(list(range(8)), shuffle=True, generator=g)) == [g]
        True
    """
    found: dict[int, torch.Generator] = {}
    for loader in loaders:
        batch_sampler = getattr(loader, "batch_sampler", None)
        for owner in (loader, getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
            generator = getattr(owner, "generator", None) if owner is not None else None
            if isinstance(generator, torch.Generator):
                found.setdefault(id(generator), generator)
    return list(found.values())


@contextlib.contextmanager
def keep_generators(*loaders: Any) -> Iterator[None]:
    """Put the loaders' own random generators back as they were on the way out (also on error), so the next
    epoch's order is the one it would have been without the range test."""
    saved = [(g, g.get_state()) for g in loader_generators(*loaders)]
    try:
        yield
    finally:
        for generator, state in saved:
            generator.set_state(state)


def model_device(model: torch.nn.Module) -> torch.device | None:
    devices = {p.device for p in model.parameters()}
    if len(devices) == 1:
        return devices.pop()
    return None  # no parameters, or model parallel: leave batches where they are


def check_data(data: Iterator[Any], *, val_missing: bool, device: torch.device) -> Iterator[Any]:
    """Fetch the first batch; raise DataError if the loader or the validation loader yielded nothing.

    Under torch.distributed every rank raises if any rank has no data: the verdict is all-reduced first,
    because a rank that raised alone would leave the others waiting in the next collective.
    """
    first, empty = None, False
    try:
        first = next(data)
    except DataError:
        empty = True
    where = ""
    if dist.is_distributed():
        flags = dist.all_reduce_max(torch.tensor([float(empty), float(val_missing)], device=device)).tolist()
        empty, val_missing, where = flags[0] > 0, flags[1] > 0, " on at least one rank (every rank needs one)"
    if empty:
        raise DataError(f"the loader yielded no batch{where}; pass a non-empty DataLoader or iterable of batches")
    if val_missing:
        raise DataError(f"val_loader yielded no batch{where}; pass a non-empty validation loader or val_loader=None")
    return _chain_first(first, data)


def _chain_first(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest

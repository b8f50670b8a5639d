"""Reading and writing per-param-group hyperparameters without changing their type.

A float learning rate stays a float; a tensor learning rate (fused/``capturable`` optimizers, compiled
optimizer steps) is updated in place with ``fill_`` so compiled graphs stay valid.

Example:
    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> set_lrs(opt, [0.5]); get_lrs(opt)
    [0.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .errors import ConfigurationError

__all__ = ["get_lrs", "set_group_value", "set_lrs", "validate_param_groups"]


def _value(v: Any) -> float:
    return float(v.item()) if torch.is_tensor(v) else float(v)


def validate_param_groups(optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`ConfigurationError` unless every param group has a positive ``lr``."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigurationError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}. "
            "Pass the optimizer that trains the model (for Accelerate, its .optimizer attribute)."
        )
    for i, group in enumerate(optimizer.param_groups):
        if "lr" not in group:
            raise ConfigurationError(
                f"optimizer.param_groups[{i}] has no 'lr' key (keys: {sorted(k for k in group if k != 'params')}). "
                "autolr sweeps the 'lr' of every group; give each group a learning rate."
            )
        lr = _value(group["lr"])
        if not lr > 0:
            raise ConfigurationError(
                f"optimizer.param_groups[{i}]['lr'] is {lr!r}; it must be > 0 because autolr keeps the ratios "
                "between groups. Set a positive placeholder lr (e.g. 1e-3) on every group."
            )


def get_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """The learning rate of every param group, as floats (one host read per tensor LR)."""
    return [_value(g["lr"]) for g in optimizer.param_groups]


def set_group_value(group: dict[str, Any], key: str, value: float) -> None:
    """Set ``group[key]``, in place for a tensor (``fill_``), as a float otherwise."""
    current = group.get(key)
    if torch.is_tensor(current):
        current.fill_(value)
    else:
        group[key] = float(value)


def set_lrs(optimizer: torch.optim.Optimizer, lrs: Sequence[float]) -> None:
    """Set one learning rate per param group (types kept)."""
    if len(lrs) != len(optimizer.param_groups):
        raise ConfigurationError(
            f"got {len(lrs)} learning rates for {len(optimizer.param_groups)} param groups; pass one per group"
        )
    for group, lr in zip(optimizer.param_groups, lrs):
        set_group_value(group, "lr", lr)

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

__all__ = ["effective_lrs", "get_lrs", "set_group_value", "set_lrs", "unwrap_optimizer", "validate_param_groups"]


def _value(v: Any) -> float:
    return float(v.item()) if torch.is_tensor(v) else float(v)


def unwrap_optimizer(optimizer: Any) -> Any:
    """The torch optimizer inside framework wrappers, or ``optimizer`` itself.

    Accelerate's ``AcceleratedOptimizer`` and Lightning's ``LightningOptimizer`` hold the real optimizer as
    ``.optimizer`` and share its param groups and state. autolr registers its step hooks, takes snapshots and
    writes learning rates on the real one; the wrapper's ``step()`` still reaches it, so hooks fire whichever
    of the two the training loop steps.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> class Wrapper:
        ...     def __init__(self, optimizer): self.optimizer = optimizer
        >>> unwrap_optimizer(Wrapper(Wrapper(opt))) is opt
        True
    """
    seen = {id(optimizer)}
    while True:
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or id(inner) in seen:
            return optimizer
        seen.add(id(inner))
        optimizer = inner


def validate_param_groups(optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`ConfigurationError` unless ``optimizer`` is a usable torch optimizer whose every param group
    has a positive ``lr``. Pass it through :func:`unwrap_optimizer` first."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        hint = ""
        if isinstance(optimizer, torch.nn.Module):
            hint = " That is a model: the arguments are (model, optimizer, ...), in that order."
        raise ConfigurationError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}.{hint} "
            "Pass the optimizer that trains the model (framework wrappers that hold it as .optimizer, such as "
            "Accelerate's AcceleratedOptimizer, are unwrapped automatically)."
        )
    if not hasattr(optimizer, "_optimizer_step_post_hooks") or not hasattr(optimizer, "param_groups"):
        raise ConfigurationError(
            f"{type(optimizer).__name__} subclasses torch.optim.Optimizer but never ran Optimizer.__init__ (it has "
            "no step hooks or param groups), and it exposes no .optimizer attribute holding the real optimizer. "
            "Pass the torch optimizer it wraps."
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


def effective_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """The learning rate each group will train at, per-group multipliers (``lr_scale``) included.

    Recipes such as timm's layer-wise LR decay give every group the same ``lr`` and a ``lr_scale`` that their
    scheduler multiplies in when it writes the LR. When the groups' ``lr`` values are not already in the
    ratios of their ``lr_scale`` (that is, nothing has applied them yet), the effective LR is
    ``lr * lr_scale``; otherwise it is ``lr``. autolr sweeps and plans with these, so the ratios between
    groups, layer decay included, are kept.

    Example:
        >>> import torch
        >>> ps = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
        >>> opt = torch.optim.SGD([{"params": [ps[0]], "lr_scale": 0.5}, {"params": [ps[1]]}], lr=0.1)
        >>> effective_lrs(opt)
        [0.05, 0.1]
    """
    lrs = get_lrs(optimizer)
    scales = [float(g.get("lr_scale", 1.0)) for g in optimizer.param_groups]
    if _proportional(lrs, scales):
        return lrs
    return [lr * s for lr, s in zip(lrs, scales)]


def _proportional(lrs: Sequence[float], scales: Sequence[float]) -> bool:
    """True when ``lrs`` already stand in the ratios of ``scales`` (and the scales are not all equal)."""
    if all(s == scales[0] for s in scales) or not all(s > 0 for s in scales):
        return False
    return all(abs(lr / lrs[0] - s / scales[0]) <= 1e-9 * (s / scales[0]) for lr, s in zip(lrs, scales))


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

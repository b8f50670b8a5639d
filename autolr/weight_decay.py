"""Weight decay on the torch side: which parameters get it, splitting param groups, and Smith's sweep.

The rules of *which* parameters get no decay live in :func:`autolr.plan.split_no_decay` (pure, on names and
module types); this module reads those names off a model, splits an optimizer's param groups accordingly
(keeping every other setting and the optimizer state, which is keyed by parameter), and runs Smith's
weight-decay sweep: one range test per candidate value, keeping the one that reaches the lowest loss.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    >>> opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    >>> split_param_groups(opt, model, 0.05, exclude_embeddings=True)
    [0, 0]
    >>> [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups]
    [(1, 0.05), (3, 0.0)]
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from .param_groups import set_group_value
from .plan import split_no_decay
from .range_test import lr_find
from .report import Decision
from .result import LRFindResult

__all__ = ["named_params_info", "split_param_groups", "sweep_weight_decay"]


def named_params_info(model: torch.nn.Module) -> list[tuple[str, str, int]]:
    """``(qualified name, owning module's type name, ndim)`` of every parameter (shared ones once)."""
    info = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                info.append((f"{module_name}.{name}" if module_name else name, type(module).__name__, p.ndim))
    return info


def split_param_groups(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, weight_decay: float, *, exclude_embeddings: bool
) -> list[int]:
    """Split every param group into a decayed and a non-decayed group (in place, before any step).

    Every other setting of a group is kept, and so is the optimizer state (keyed by parameter). Empty parts
    are dropped. With ``weight_decay <= 0`` nothing is split and every group's decay is set to 0.

    Returns:
        For each new group, the index of the group it came from.
    """
    groups = optimizer.param_groups
    if weight_decay <= 0:
        for group in groups:
            if "weight_decay" in group:
                set_group_value(group, "weight_decay", 0.0)
        return list(range(len(groups)))
    _, no_decay_names = split_no_decay(named_params_info(model), exclude_embeddings=exclude_embeddings)
    skip = set(no_decay_names)
    no_decay = {id(p) for name, p in model.named_parameters() if name in skip}
    new_groups, origin = [], []
    for i, group in enumerate(groups):
        settings = {k: v for k, v in group.items() if k != "params"}
        decayed = [p for p in group["params"] if id(p) not in no_decay]
        kept = [p for p in group["params"] if id(p) in no_decay]
        for params, wd in ((decayed, weight_decay), (kept, 0.0)):
            if params:
                new = {**settings, "params": params}
                if "weight_decay" in settings or wd:
                    new["weight_decay"] = wd
                new_groups.append(new)
                origin.append(i)
    groups[:] = new_groups
    return origin


def sweep_weight_decay(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    grid: Sequence[float],
    range_test: dict[str, Any],
) -> tuple[LRFindResult, float, Decision]:
    """Smith's method: a range test per weight decay in ``grid``; keep the one whose curve reaches the lowest
    smoothed loss (among those with a suggestion; ties go to the larger decay). The optimizer's own decay
    values are put back afterwards. Returns the chosen value's result, the value, and the decision (with the
    cost in steps and seconds)."""
    original = [g.get("weight_decay", 0.0) for g in optimizer.param_groups]
    started = time.perf_counter()
    results: dict[float, LRFindResult] = {}
    try:
        for wd in grid:
            for g in optimizer.param_groups:
                set_group_value(g, "weight_decay", wd)
            results[wd] = lr_find(model, optimizer, loader, **range_test)
    finally:
        for g, wd in zip(optimizer.param_groups, original):
            set_group_value(g, "weight_decay", wd)
    lowest = {wd: float(min((x for x in r.curve.smoothed if math.isfinite(x)), default=math.inf))
              for wd, r in results.items()}  # fmt: skip
    usable = {wd: v for wd, v in lowest.items() if results[wd].suggestion.lr is not None} or lowest
    best = min(usable, key=lambda wd: (usable[wd], -wd))
    steps = sum(len(r.curve) for r in results.values())
    seconds = time.perf_counter() - started
    decision = Decision(
        "weight_decay", best,
        f"Smith's weight-decay sweep: {len(results)} range tests; {best:g} reached the lowest smoothed loss "
        f"({lowest[best]:.4g}); cost {steps} steps, {seconds:.1f}s",
        alternatives={f"{wd:g}": lowest[wd] for wd in results if wd != best},
        evidence={"min_smoothed_loss": {f"{wd:g}": v for wd, v in lowest.items()}, "cost_steps": steps,
                  "cost_seconds": round(seconds, 3)},
    )  # fmt: skip
    return results[best], best, decision

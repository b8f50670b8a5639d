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

__all__ = ["model_no_decay", "named_params_info", "no_decay_params", "split_param_groups", "sweep_weight_decay"]


def _float(value: Any) -> float:
    return float(value.item()) if torch.is_tensor(value) else float(value)


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


def model_no_decay(model: torch.nn.Module) -> tuple[set[str], set[str]]:
    """The parameter names and name keywords the model itself keeps out of weight decay.

    Any submodule may declare them, as timm's vision transformers do: ``no_weight_decay()`` returns names
    relative to that submodule (``{"pos_embed", "cls_token"}``), ``no_weight_decay_keywords()`` substrings.
    Names come back qualified from ``model``'s root (e.g. ``module.pos_embed`` under DDP).

    Example:
        >>> class ViTLike(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__(); self.pos_embed = torch.nn.Parameter(torch.zeros(1, 4, 8))
        ...     def no_weight_decay(self): return {"pos_embed"}
        >>> model_no_decay(torch.nn.Sequential(ViTLike()))
        ({'0.pos_embed'}, set())
    """
    names: set[str] = set()
    keywords: set[str] = set()
    for prefix, module in model.named_modules():
        for attr, out in (("no_weight_decay", names), ("no_weight_decay_keywords", keywords)):
            fn = getattr(module, attr, None)
            if callable(fn):
                declared = fn()
                if attr == "no_weight_decay":
                    out.update(f"{prefix}.{n}" if prefix else str(n) for n in declared)
                else:
                    out.update(str(k) for k in declared)
    return names, keywords


def no_decay_params(model: torch.nn.Module, *, exclude_embeddings: bool) -> set[int]:
    """``id()`` of every parameter that gets no weight decay (:func:`autolr.plan.split_no_decay`'s rules plus
    the model's own ``no_weight_decay()`` / ``no_weight_decay_keywords()``)."""
    names, keywords = model_no_decay(model)
    _, no_decay_names = split_no_decay(named_params_info(model), exclude_embeddings=exclude_embeddings,
                                       no_decay_names=names, no_decay_keywords=keywords)
    skip = set(no_decay_names)
    return {id(p) for name, p in model.named_parameters(remove_duplicate=False) if name in skip}


def split_param_groups(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, weight_decay: float, *, exclude_embeddings: bool
) -> list[int]:
    """Split every param group into a decayed and a non-decayed group (in place, before any step).

    Every other setting of a group is kept (``lr_scale`` and other multipliers included), and so is the
    optimizer state (keyed by parameter). Groups are never merged; empty parts are dropped. A group whose
    ``weight_decay`` is 0 while another group has some was made that way on purpose (timm's and Hugging Face's
    no-decay groups): it stays whole, at 0. With ``weight_decay <= 0`` nothing is split and every group's
    decay is set to 0.

    Returns:
        For each new group, the index of the group it came from.
    """
    groups = optimizer.param_groups
    if weight_decay <= 0:
        for group in groups:
            if "weight_decay" in group:
                set_group_value(group, "weight_decay", 0.0)
        return list(range(len(groups)))
    no_decay = no_decay_params(model, exclude_embeddings=exclude_embeddings)
    decays = [_float(g.get("weight_decay", 0.0)) for g in groups]
    user_split = any(d > 0 for d in decays)
    new_groups, origin = [], []
    for i, group in enumerate(groups):
        settings = {k: v for k, v in group.items() if k != "params"}
        if user_split and "weight_decay" in group and decays[i] == 0:  # the user's own no-decay group
            new_groups.append(group)
            origin.append(i)
            continue
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
    *,
    groups: Sequence[int] | None = None,
) -> tuple[LRFindResult, float, Decision]:
    """Smith's method: a range test per weight decay in ``grid``; keep the one whose curve reaches the lowest
    smoothed loss (among those with a suggestion; ties go to the larger decay). Each value is set on the
    groups listed in ``groups`` (default: all; :class:`~autolr.AutoLR` passes its decayed groups). The
    optimizer's own decay values are put back afterwards. Returns the chosen value's result, the value, and the
    decision (with the cost in steps and seconds)."""
    original = [g.get("weight_decay", 0.0) for g in optimizer.param_groups]
    swept = [optimizer.param_groups[i] for i in (groups if groups is not None else range(len(original)))]
    started = time.perf_counter()
    results: dict[float, LRFindResult] = {}
    try:
        for wd in grid:
            for g in swept:
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

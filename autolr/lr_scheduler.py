"""The torch side of :mod:`autolr.schedule`: a standard ``LRScheduler`` driven by a pure schedule.

The lr of group ``i`` after ``t`` calls of ``step()`` is ``base_lrs[i] * schedule(t)``; a float lr stays a float
and a tensor lr is filled in place, so fused/compiled optimizers keep their graphs. Frameworks that step
schedulers themselves (Lightning, Hugging Face ``Trainer``) take it like any torch scheduler.

Example:
    >>> import torch
    >>> from autolr.schedule import OneCycle
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = as_lr_scheduler(opt, OneCycle(100))
    >>> opt.step(); sched.step(); round(opt.param_groups[0]["lr"], 5)
    0.00438
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .errors import ConfigurationError, StateError
from .param_groups import get_lrs, set_group_value
from .schedule import Schedule, _check, schedule_from_dict

__all__ = ["ScheduleLR", "as_lr_scheduler", "set_peak_lrs"]


class ScheduleLR(torch.optim.lr_scheduler.LRScheduler):
    """A torch ``LRScheduler`` whose lr for group ``i`` after ``t`` calls of ``step()`` is
    ``base_lrs[i] * schedule(t)`` (``t`` is torch's ``last_epoch``; it counts optimizer steps).

    A float lr stays a float; a tensor lr is updated in place (``fill_``). ``base_lrs`` defaults to the
    groups' current lrs and is stored as each group's ``initial_lr``. For :class:`Plateau`, call
    ``scheduler.schedule.observe(metric)`` and then ``step()``. Build it before
    ``optimizer.load_state_dict`` when resuming (construction writes the lrs).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule,
                 base_lrs: Sequence[float] | None = None, last_epoch: int = -1) -> None:
        _check(callable(schedule), "schedule", schedule, "a callable step -> multiplier", "E.g. OneCycle(1000).")
        groups = optimizer.param_groups
        if base_lrs is None and last_epoch == -1:
            base_lrs = get_lrs(optimizer)
        if base_lrs is not None:
            bases = [float(b) for b in base_lrs]
            _check(len(bases) == len(groups) and all(b > 0 for b in bases), "base_lrs", base_lrs,
                   f"{len(groups)} positive floats (one per param group)", "")
            for group, base in zip(groups, bases, strict=True):
                group["initial_lr"] = base
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = float(self.schedule(self.last_epoch))
        return [float(base) * factor for base in self.base_lrs]

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        """Advance one step and write ``base_lr * schedule(step)`` into every group (types kept)."""
        _check(epoch is None, "epoch", epoch, "None", "Call step() with no argument once per optimizer step.")
        self._step_count += 1
        self.last_epoch += 1
        self._last_lr = self.get_lr()  # type: ignore[assignment]
        self.write_lrs()

    def write_lrs(self) -> None:
        """Write the current lrs (:meth:`get_last_lr`) into the param groups (types kept), e.g. after a restore."""
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            set_group_value(group, "lr", lr)

    def rescale(self, factor: float) -> None:
        """Multiply every base lr by ``factor`` at the current position; the rest of the schedule keeps its shape."""
        self.base_lrs = [b * factor for b in self.base_lrs]
        self._last_lr = self.get_lr()  # type: ignore[assignment]
        self.write_lrs()

    def state_dict(self) -> dict[str, Any]:
        """Plain keys: ``last_epoch``, ``step_count``, ``base_lrs``, ``last_lrs``, ``schedule``
        (its ``to_dict()``, or None for a custom callable) and ``schedule_state`` (for :class:`Plateau`)."""
        to_dict, state = getattr(self.schedule, "to_dict", None), getattr(self.schedule, "state_dict", None)
        return {
            "last_epoch": self.last_epoch,
            "step_count": self._step_count,
            "base_lrs": [float(b) for b in self.base_lrs],
            "last_lrs": [float(x) for x in self._last_lr],
            "schedule": to_dict() if to_dict else None,
            "schedule_state": state() if state else {},
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the schedule is rebuilt from its dict when there is one."""
        if "last_epoch" not in state_dict:
            keys = sorted(state_dict)
            raise StateError(f"not a ScheduleLR state_dict (keys: {keys}); pass scheduler.state_dict()")
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("step_count", self._step_count))
        self.base_lrs = [float(b) for b in state_dict.get("base_lrs", self.base_lrs)]
        self._last_lr = [float(x) for x in state_dict.get("last_lrs", self._last_lr)]  # type: ignore[assignment]
        if state_dict.get("schedule") is not None:
            self.schedule = schedule_from_dict(state_dict["schedule"])
        if state_dict.get("schedule_state") and hasattr(self.schedule, "load_state_dict"):
            self.schedule.load_state_dict(state_dict["schedule_state"])


def as_lr_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, base_lrs: Sequence[float] | None = None
) -> ScheduleLR:
    """Hand ``schedule`` to torch as a standard ``LRScheduler``; call ``step()`` after each optimizer step.

    Example:
        >>> from autolr.schedule import LinearWarmup
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> sched = as_lr_scheduler(opt, LinearWarmup(4))
        >>> opt.step(); sched.step(); opt.param_groups[0]["lr"]
        0.025
    """
    return ScheduleLR(optimizer, schedule, base_lrs)


def set_peak_lrs(scheduler: Any, peak_lrs: Sequence[float]) -> None:
    """Move the peak of a scheduler someone else built to ``peak_lrs`` (one per param group), in place.

    For a framework that has already built its own schedule from the old learning rate (the Hugging Face
    ``Trainer``'s ``LambdaLR``, a ``configure_optimizers`` scheduler): the schedule keeps its shape and its
    position, only its height changes. ``base_lrs`` become ``peak_lrs``; every group's ``initial_lr``, its
    current ``lr`` and :meth:`get_last_lr` follow, and so do the absolute values some schedulers keep
    (``OneCycleLR``'s ``max_lr``/``min_lr``, ``CyclicLR``'s ``max_lrs``, ``eta_min``, ``min_lrs``), each
    multiplied by its group's ratio new peak / old peak. ``LambdaLR`` and :class:`ScheduleLR` recompute the
    current lr from the new peak (``peak * multiplier``, exactly what their next ``step()`` would compute);
    other schedulers scale it. A checkpoint saved afterwards holds the new peak, so resuming needs nothing
    more. ``SequentialLR`` and ``ChainedScheduler`` move their children too.

    Example:
        >>> opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5e-5)
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / 4))
        >>> set_peak_lrs(sched, [2e-3]); sched.base_lrs, opt.param_groups[0]["lr"]
        ([0.002], 0.0005)
    """
    groups = scheduler.optimizer.param_groups
    new = [float(x) for x in peak_lrs]
    if len(new) != len(groups) or not all(x > 0 and x < float("inf") for x in new):
        raise ConfigurationError(
            f"peak_lrs must hold one positive learning rate per param group ({len(groups)}), got {list(peak_lrs)!r}"
        )
    old = [float(b) for b in getattr(scheduler, "base_lrs", None) or
           [g.get("initial_lr", _float(g["lr"])) for g in groups]]
    ratios = [n / o if o > 0 else 1.0 for n, o in zip(new, old)]
    for sched in [scheduler, *getattr(scheduler, "_schedulers", ())]:
        if getattr(sched, "base_lrs", None) is not None:
            sched.base_lrs = list(new) if sched is scheduler else [b * r for b, r in zip(sched.base_lrs, ratios)]
        for name in ("max_lrs", "min_lrs"):
            values = getattr(sched, name, None)
            if isinstance(values, list) and len(values) == len(ratios):
                setattr(sched, name, [v * r for v, r in zip(values, ratios)])
        if isinstance(getattr(sched, "eta_min", None), (int, float)):
            sched.eta_min = sched.eta_min * ratios[0]
    for group, peak, ratio in zip(groups, new, ratios):
        if "initial_lr" in group:
            group["initial_lr"] = peak
        for key in ("max_lr", "min_lr"):  # OneCycleLR
            if isinstance(group.get(key), (int, float)):
                group[key] = group[key] * ratio
    current = _closed_form(scheduler)
    if current is None:
        current = [_float(g["lr"]) * r for g, r in zip(groups, ratios)]
    for group, lr in zip(groups, current):
        set_group_value(group, "lr", lr)
    for sched in [scheduler, *getattr(scheduler, "_schedulers", ())]:
        if getattr(sched, "_last_lr", None) is not None:
            sched._last_lr = list(current)


def _closed_form(scheduler: Any) -> list[float] | None:
    """The lrs ``scheduler`` sets at its current position, from its base lrs (None: it has no closed form)."""
    if isinstance(scheduler, ScheduleLR):
        return scheduler.get_lr()
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR) and scheduler.last_epoch >= 0:
        return [float(base) * float(fn(scheduler.last_epoch))
                for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    return None


def _float(value: Any) -> float:
    return float(value.item()) if torch.is_tensor(value) else float(value)

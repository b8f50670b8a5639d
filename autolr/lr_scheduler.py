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

from .errors import StateError
from .param_groups import get_lrs, set_group_value
from .schedule import Schedule, _check, schedule_from_dict

__all__ = ["ScheduleLR", "as_lr_scheduler"]


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

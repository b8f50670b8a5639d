"""Learning-rate schedules as pure ``step -> multiplier`` functions. Never imports torch.

A schedule maps the number of optimizer steps taken so far (``step``, from 0) to a multiplier of the base
learning rate. Schedules are frozen dataclasses: compose them with :class:`Join`, save them with
``to_dict()`` and rebuild them with :func:`schedule_from_dict`. Decaying schedules reach their final value
at ``step == total_steps`` and hold it afterwards; a negative step counts as 0. :class:`Plateau` is the one
stateful schedule: its multiplier changes only in :meth:`Plateau.observe`. :func:`autolr.lr_scheduler.as_lr_scheduler`
hands any schedule to torch as a standard ``LRScheduler``.

Example:
    >>> s = warmup_cosine(total_steps=100, warmup_steps=10)
    >>> [round(s(t), 3) for t in (0, 5, 10, 55, 100, 500)]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    >>> schedule_from_dict(s.to_dict()) == s
    True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol

from .errors import ConfigurationError

__all__ = [
    "Constant", "CosineDecay", "ExponentialRamp", "Join", "LinearDecay", "LinearRamp", "LinearWarmup",
    "OneCycle", "Plateau", "Schedule", "StepDecay", "schedule_from_dict",
    "warmup_cosine",
]

logger = logging.getLogger(__name__)


class Schedule(Protocol):
    """Anything that maps an optimizer step (0, 1, ...) to a learning-rate multiplier."""

    def __call__(self, step: int) -> float: ...


_STEPS_FIX = "Count optimizer steps, e.g. epochs * len(train_loader)."
_FACTOR_FIX = "A factor is a fraction of the base lr: 0 reaches 0, 1 keeps the base lr."


def _check(ok: bool, name: str, value: Any, need: str, fix: str) -> None:
    if not ok:
        raise ConfigurationError(f"{name} must be {need}, got {value!r}. {fix}".rstrip())


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _fraction(step: int, total: float) -> float:
    """``step / total`` clamped to ``[0, 1]``."""
    return min(max(step, 0), total) / total


def _cos(start: float, end: float, frac: float) -> float:
    return end + (start - end) * (1.0 + math.cos(math.pi * frac)) / 2.0


class _Serial:
    """``to_dict()`` for the dataclass schedules: ``{"name": ..., **constructor arguments}``."""

    name: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :func:`schedule_from_dict` is the inverse."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self) if f.init}}  # type: ignore[arg-type]


@dataclass(frozen=True)
class Constant(_Serial):
    """``factor`` at every step."""

    factor: float = 1.0
    name: ClassVar[str] = "constant"

    def __post_init__(self) -> None:
        _check(self.factor >= 0, "factor", self.factor, ">= 0", "Use 1.0 to keep the base learning rate.")

    def __call__(self, step: int) -> float:
        return float(self.factor)


@dataclass(frozen=True)
class LinearWarmup(_Serial):
    """``start_factor + (1 - start_factor) * step / warmup_steps``, then 1.0 from ``warmup_steps`` on."""

    warmup_steps: int
    start_factor: float = 0.0
    name: ClassVar[str] = "linear_warmup"

    def __post_init__(self) -> None:
        _check(_is_int(self.warmup_steps, 1), "warmup_steps", self.warmup_steps, "an int >= 1", _STEPS_FIX)
        _check(0 <= self.start_factor <= 1, "start_factor", self.start_factor, "in [0, 1]", _FACTOR_FIX)

    def __call__(self, step: int) -> float:
        return self.start_factor + (1.0 - self.start_factor) * _fraction(step, self.warmup_steps)


@dataclass(frozen=True)
class CosineDecay(_Serial):
    """``final + (1 - final) * (1 + cos(pi * step / total_steps)) / 2``, from 1.0 down to ``final_factor``."""

    total_steps: int
    final_factor: float = 0.0
    name: ClassVar[str] = "cosine_decay"

    def __post_init__(self) -> None:
        _check(_is_int(self.total_steps, 1), "total_steps", self.total_steps, "an int >= 1", _STEPS_FIX)
        _check(0 <= self.final_factor <= 1, "final_factor", self.final_factor, "in [0, 1]", _FACTOR_FIX)

    def __call__(self, step: int) -> float:
        return _cos(1.0, self.final_factor, _fraction(step, self.total_steps))


@dataclass(frozen=True)
class LinearDecay(_Serial):
    """``1 - (1 - final_factor) * step / total_steps``: a straight line from 1.0 to ``final_factor``."""

    total_steps: int
    final_factor: float = 0.0
    name: ClassVar[str] = "linear_decay"

    def __post_init__(self) -> None:
        _check(_is_int(self.total_steps, 1), "total_steps", self.total_steps, "an int >= 1", _STEPS_FIX)
        _check(0 <= self.final_factor <= 1, "final_factor", self.final_factor, "in [0, 1]", _FACTOR_FIX)

    def __call__(self, step: int) -> float:
        return 1.0 - (1.0 - self.final_factor) * _fraction(step, self.total_steps)


@dataclass(frozen=True)
class OneCycle(_Serial):
    """Smith's one-cycle policy, relative to the peak learning rate.

    With ``s = pct_start * total_steps``, ``initial = 1 / div_factor`` and
    ``final = initial / final_div_factor``: from step 0 to ``s`` the multiplier rises from ``initial`` to 1,
    from ``s`` to ``total_steps`` it falls from 1 to ``final``; ``anneal`` is ``"cos"`` (half cosine) or
    ``"linear"``. E.g. ``OneCycle(80)`` gives 0.04 at step 0, 1.0 at step 20 and 4e-6 at step 80.
    """

    total_steps: int
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal: str = "cos"
    name: ClassVar[str] = "one_cycle"

    def __post_init__(self) -> None:
        _check(_is_int(self.total_steps, 1), "total_steps", self.total_steps, "an int >= 1", _STEPS_FIX)
        _check(0 < self.pct_start < 1, "pct_start", self.pct_start, "in (0, 1)", "0.25 is common.")
        _check(self.div_factor >= 1, "div_factor", self.div_factor, ">= 1", "25 starts at peak/25.")
        _check(self.final_div_factor >= 1, "final_div_factor", self.final_div_factor, ">= 1", "1e4 ends at peak/25e4.")
        _check(self.anneal in ("cos", "linear"), "anneal", self.anneal, "'cos' or 'linear'", "")

    def __call__(self, step: int) -> float:
        initial = 1.0 / self.div_factor
        final = initial / self.final_div_factor
        s = self.pct_start * self.total_steps
        t = min(max(step, 0), self.total_steps)
        start, end, frac = (initial, 1.0, t / s) if t <= s else (1.0, final, (t - s) / (self.total_steps - s))
        return _cos(start, end, frac) if self.anneal == "cos" else start + (end - start) * frac


@dataclass(frozen=True)
class StepDecay(_Serial):
    """``gamma ** (step // step_size)``: multiplied by ``gamma`` every ``step_size`` steps (no end)."""

    step_size: int
    gamma: float = 0.1
    name: ClassVar[str] = "step_decay"

    def __post_init__(self) -> None:
        _check(_is_int(self.step_size, 1), "step_size", self.step_size, "an int >= 1", _STEPS_FIX)
        _check(0 < self.gamma <= 1, "gamma", self.gamma, "in (0, 1]", "0.1 divides the lr by 10.")

    def __call__(self, step: int) -> float:
        return float(self.gamma ** (max(step, 0) // self.step_size))


@dataclass(frozen=True)
class Join(_Serial):
    """Piecewise schedule: ``schedules[i]`` runs from ``boundaries[i-1]`` (0 for the first) to
    ``boundaries[i]`` and sees the local step ``step - boundaries[i-1]``."""

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]
    name: ClassVar[str] = "join"

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedules", tuple(self.schedules))
        object.__setattr__(self, "boundaries", tuple(self.boundaries))
        b = self.boundaries
        _check(len(self.schedules) >= 1, "schedules", self.schedules, "non-empty", "")
        _check(
            len(b) == len(self.schedules) - 1 and all(_is_int(x, 1) for x in b) and list(b) == sorted(set(b)),
            "boundaries", b, f"{len(self.schedules) - 1} increasing ints >= 1", "Give one boundary per join.",
        )

    def __call__(self, step: int) -> float:
        starts = (0, *self.boundaries)
        i = sum(1 for x in self.boundaries if step >= x)
        return float(self.schedules[i](step - starts[i]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "schedules": [s.to_dict() for s in self.schedules],  # type: ignore[attr-defined]
                "boundaries": list(self.boundaries)}


def warmup_cosine(
    total_steps: int, warmup_steps: int, *, start_factor: float = 0.0, final_factor: float = 0.0
) -> Schedule:
    """Linear warmup for ``warmup_steps``, then cosine decay over the remaining steps (a :class:`Join`).

    Example:
        >>> warmup_cosine(100, 0) == CosineDecay(100)
        True
    """
    _check(_is_int(total_steps, 1), "total_steps", total_steps, "an int >= 1", _STEPS_FIX)
    _check(_is_int(warmup_steps, 0) and warmup_steps < total_steps, "warmup_steps", warmup_steps,
           f"an int in [0, total_steps={total_steps})", "Use about 5% of total_steps.")
    decay = CosineDecay(total_steps - warmup_steps, final_factor)
    if warmup_steps == 0:
        return decay
    return Join((LinearWarmup(warmup_steps, start_factor), decay), (warmup_steps,))


@dataclass(frozen=True)
class ExponentialRamp(_Serial):
    """The range test's sweep: ``(end_lr / start_lr) ** (step / (num_steps - 1))``, relative to ``start_lr``.

    ``num_steps`` counts points, so step 0 is ``start_lr`` and step ``num_steps - 1`` is ``end_lr``.
    """

    start_lr: float
    end_lr: float
    num_steps: int
    name: ClassVar[str] = "exponential_ramp"

    def __post_init__(self) -> None:
        _check(self.start_lr > 0, "start_lr", self.start_lr, "> 0", "1e-7 is a common start.")
        _check(self.end_lr > self.start_lr, "end_lr", self.end_lr, f"> start_lr={self.start_lr}", "The sweep goes up.")
        _check(_is_int(self.num_steps, 2), "num_steps", self.num_steps, "an int >= 2", "100 points is common.")

    def __call__(self, step: int) -> float:
        return (self.end_lr / self.start_lr) ** _fraction(step, self.num_steps - 1)

    def lr(self, step: int) -> float:
        """The learning rate at ``step``: ``start_lr * self(step)``."""
        return self.start_lr * self(step)


@dataclass(frozen=True)
class LinearRamp(ExponentialRamp):
    """A linear sweep: ``1 + (end_lr / start_lr - 1) * step / (num_steps - 1)``, relative to ``start_lr``."""

    name: ClassVar[str] = "linear_ramp"

    def __call__(self, step: int) -> float:
        return 1.0 + (self.end_lr / self.start_lr - 1.0) * _fraction(step, self.num_steps - 1)


@dataclass(eq=False)
class Plateau(_Serial):
    """Multiply the lr by ``factor`` when a metric stopped improving for more than ``patience`` epochs.

    Call :meth:`observe` once per epoch. A value improves when it beats the best by more than
    ``threshold * |best|`` (lower for ``mode="min"``, higher for ``"max"``); a non-finite value never
    improves. The multiplier never goes below ``min_factor``. ``step`` is ignored.
    """

    factor: float = 0.1
    patience: int = 5
    threshold: float = 1e-4
    mode: str = "min"
    min_factor: float = 1e-3
    best: float | None = field(default=None, init=False)
    num_bad_epochs: int = field(default=0, init=False)
    current_factor: float = field(default=1.0, init=False)
    name: ClassVar[str] = "plateau"

    def __post_init__(self) -> None:
        _check(0 < self.factor < 1, "factor", self.factor, "in (0, 1)", "0.1 divides the lr by 10.")
        _check(_is_int(self.patience, 0), "patience", self.patience, "an int >= 0", "It counts epochs.")
        _check(self.threshold >= 0, "threshold", self.threshold, ">= 0", "1e-4 means 0.01% better.")
        _check(self.mode in ("min", "max"), "mode", self.mode, "'min' or 'max'", "Use 'max' for accuracy.")
        _check(0 <= self.min_factor <= 1, "min_factor", self.min_factor, "in [0, 1]", _FACTOR_FIX)

    def __call__(self, step: int) -> float:
        return self.current_factor

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[union-attr]

    def observe(self, metric: float) -> bool:
        """Record one epoch's metric; returns True when the multiplier was just reduced."""
        value, best = float(metric), self.best
        sign = 1.0 if self.mode == "min" else -1.0
        if math.isfinite(value) and (best is None or sign * (best - value) > self.threshold * abs(best)):
            self.best, self.num_bad_epochs = value, 0
            return False
        self.num_bad_epochs += 1
        if self.num_bad_epochs <= self.patience:
            return False
        self.num_bad_epochs = 0
        new = max(self.current_factor * self.factor, self.min_factor)
        reduced, self.current_factor = new < self.current_factor, new
        if reduced:
            logger.info("plateau: lr multiplier reduced to %.3g (best metric %s)", new, self.best)
        return reduced

    def state_dict(self) -> dict[str, Any]:
        """``best``, ``num_bad_epochs`` and ``current_factor``."""
        return {
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "current_factor": self.current_factor,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; missing keys keep their fresh values."""
        self.best = state.get("best")
        self.num_bad_epochs = int(state.get("num_bad_epochs", 0))
        self.current_factor = float(state.get("current_factor", 1.0))


_REGISTRY: dict[str, type] = {
    c.name: c for c in (Constant, LinearWarmup, CosineDecay, LinearDecay, OneCycle, StepDecay, Join,
                        ExponentialRamp, LinearRamp, Plateau)
}


def schedule_from_dict(data: Mapping[str, Any]) -> Schedule:
    """Rebuild a schedule from its ``to_dict()`` (nested :class:`Join` pieces included)."""
    kwargs = dict(data)
    name = kwargs.pop("name", None)
    _check(name in _REGISTRY, "name", name, f"one of {sorted(_REGISTRY)}", "Pass a dict made by to_dict().")
    if name == "join":
        kwargs["schedules"] = [schedule_from_dict(s) for s in kwargs.get("schedules", ())]
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:
        raise ConfigurationError(f"bad arguments for schedule {name!r}: {e}. Pass a to_dict() result.") from e

"""The range-test curve: plain numpy data, serialisable, no torch.

A :class:`Curve` is what a range test measured: one point per optimizer step, the learning rate of the
first param group at that step, and the loss. Other groups were scaled by the same factor, so their
learning rates are ``lrs * group_ratios[i]``.

Example:
    >>> import numpy as np
    >>> c = Curve(lrs=np.geomspace(1e-4, 1, 5), losses=np.array([2.0, 1.9, 1.5, 1.2, 3.0]))
    >>> c.stop_reason
    'completed'
    >>> round(float(c.smoothed[1]), 3)
    1.947
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["STOP_REASONS", "Curve", "ema"]

StopReason = Literal["completed", "diverged", "non_finite", "interrupted"]

#: Why a range test stopped, and what each reason means.
STOP_REASONS: dict[str, str] = {
    "completed": "ran every requested step without diverging",
    "diverged": "the smoothed loss rose above divergence_factor x its best value",
    "non_finite": "a loss was NaN or infinite",
    "interrupted": "stopped by the user (KeyboardInterrupt with keyboard_interrupt='stop')",
}

#: Default EMA decay used for the smoothed curve shown to users and for the divergence check.
DEFAULT_SMOOTHING = 0.9


def ema(values: Sequence[float] | np.ndarray, beta: float = DEFAULT_SMOOTHING) -> np.ndarray:
    """Bias-corrected exponential moving average, skipping non-finite values.

    Args:
        values: raw values, in order.
        beta: decay in ``[0, 1)``; 0 returns the input unchanged.

    Returns:
        An array of the same length. Positions before the first finite value are NaN; a non-finite value
        leaves the average where it was (so one NaN does not poison the rest of the curve).

    Example:
        >>> ema([1.0, 3.0], beta=0.5).tolist()
        [1.0, 2.3333333333333335]
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    x = np.asarray(values, dtype=float)
    out = np.full(x.shape, np.nan)
    avg, weight = 0.0, 0.0
    for i, v in enumerate(x):
        if math.isfinite(v):
            avg = beta * avg + (1.0 - beta) * v
            weight = beta * weight + (1.0 - beta)
        if weight > 0:
            out[i] = avg / weight
    return out


@dataclass(frozen=True, eq=False)
class Curve:
    """Loss against learning rate, as measured by a range test.

    Attributes:
        lrs: learning rate of param group 0 at each recorded step (increasing).
        losses: raw loss at each step (training loss, or validation loss in validation mode). May hold NaN/inf.
        smoothing: EMA decay used for :attr:`smoothed`.
        stop_reason: one of :data:`STOP_REASONS`.
        num_steps: the number of steps that were requested.
        skipped_steps: optimizer steps a GradScaler skipped (inf/NaN gradients); not recorded as points.
        wall_time: seconds the sweep took.
        group_ratios: learning rate of each param group divided by group 0's (kept fixed during the sweep).
        mode: ``"exponential"`` or ``"linear"``.
        loss_kind: ``"train"`` or ``"validation"``.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothing: float = DEFAULT_SMOOTHING
    stop_reason: str = "completed"
    num_steps: int = 0
    skipped_steps: int = 0
    wall_time: float = 0.0
    group_ratios: tuple[float, ...] = (1.0,)
    mode: str = "exponential"
    loss_kind: str = "train"
    smoothed: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lrs = np.asarray(self.lrs, dtype=float).reshape(-1)
        losses = np.asarray(self.losses, dtype=float).reshape(-1)
        if lrs.shape != losses.shape:
            raise ValueError(f"lrs and losses must have the same length, got {lrs.size} and {losses.size}")
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(f"stop_reason must be one of {sorted(STOP_REASONS)}, got {self.stop_reason!r}")
        object.__setattr__(self, "lrs", lrs)
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "group_ratios", tuple(float(r) for r in self.group_ratios))
        object.__setattr__(self, "smoothed", ema(losses, self.smoothing))

    def __len__(self) -> int:
        return int(self.lrs.size)

    @property
    def stop_description(self) -> str:
        """The stop reason in words."""
        return STOP_REASONS[self.stop_reason]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (NaN/inf become ``None``)."""

        def clean(a: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in a]

        return {
            "lrs": clean(self.lrs),
            "losses": clean(self.losses),
            "smoothed": clean(self.smoothed),
            "smoothing": self.smoothing,
            "stop_reason": self.stop_reason,
            "num_steps": self.num_steps,
            "skipped_steps": self.skipped_steps,
            "wall_time": self.wall_time,
            "group_ratios": list(self.group_ratios),
            "mode": self.mode,
            "loss_kind": self.loss_kind,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curve:
        """Inverse of :meth:`to_dict`."""

        def arr(values: Sequence[float | None]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=float)

        return cls(
            lrs=arr(data["lrs"]),
            losses=arr(data["losses"]),
            smoothing=float(data.get("smoothing", DEFAULT_SMOOTHING)),
            stop_reason=str(data.get("stop_reason", "completed")),
            num_steps=int(data.get("num_steps", len(data["lrs"]))),
            skipped_steps=int(data.get("skipped_steps", 0)),
            wall_time=float(data.get("wall_time", 0.0)),
            group_ratios=tuple(data.get("group_ratios", (1.0,))),
            mode=str(data.get("mode", "exponential")),
            loss_kind=str(data.get("loss_kind", "train")),
        )

"""The divergence guard of :class:`~autolr.tuner.AutoLR`: keep a last good state, and when training blows up,
go back to it with a lower learning rate.

Every ``every`` optimizer steps the guard takes a CPU snapshot of the model, optimizer, scaler and scheduler
(no RNG state: replaying the same batches is not the point). Observed losses feed a smoothed divergence rule;
when it fires, :meth:`DivergenceGuard.intervene` restores the snapshot, rescales the scheduler's base LRs by
``lr_factor`` (:meth:`~autolr.lr_scheduler.ScheduleLR.rescale`: the rest of the schedule keeps its shape,
lower), and returns the :class:`Decision` that says so. After ``max_retries`` interventions it raises
:class:`~autolr.errors.DivergenceError`.

Example:
    >>> import torch
    >>> from autolr.lr_scheduler import ScheduleLR
    >>> from autolr.schedule import Constant
    >>> model = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> sched = ScheduleLR(opt, Constant())
    >>> guard = DivergenceGuard(every=10, lr_factor=0.5, max_retries=2, divergence_factor=4.0)
    >>> guard.take(model, opt, None, sched, step=0)
    >>> [guard.diverged(v) for v in (1.0, 1.0, 1e6)]
    [False, False, True]
    >>> decision = guard.intervene(step=3, value=1e6, scheduler=sched)
    >>> opt.param_groups[0]["lr"], guard.lr_scale, decision.name
    (0.05, 0.5, 'guard')
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from .errors import DivergenceError, StateError
from .monitor import DivergenceRule
from .report import Decision
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .lr_scheduler import ScheduleLR

__all__ = ["DivergenceGuard"]

#: EMA decay of the observed loss the guard's divergence rule smooths.
GUARD_SMOOTHING = 0.9


class DivergenceGuard:
    """Last-good-state snapshots and LR back-off for a training run.

    Attributes:
        step: the optimizer step of the current snapshot.
        retries: interventions so far.
        lr_scale: product of the LR factors applied so far (1.0 = the plan's LRs).
    """

    def __init__(self, *, every: int, lr_factor: float, max_retries: int, divergence_factor: float) -> None:
        self.every, self.lr_factor = every, lr_factor
        self.max_retries, self.divergence_factor = max_retries, divergence_factor
        self.rule = DivergenceRule(GUARD_SMOOTHING, divergence_factor)
        self.snapshot: Snapshot | None = None
        self.step = 0
        self.retries = 0
        self.lr_scale = 1.0

    def due(self, step: int) -> bool:
        """Whether a new snapshot is due at ``step`` (none yet, or ``every`` steps since the last)."""
        return self.snapshot is None or step - self.step >= self.every

    def take(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, scheduler: Any,
             step: int) -> None:
        """Replace the snapshot with the current state (the new last good state)."""
        self.close()
        extra = {"scheduler": scheduler} if scheduler is not None else {}
        self.snapshot = Snapshot.take(model, optimizer, scaler=scaler, extra=extra, rng=False)
        self.step = step

    def diverged(self, value: float) -> bool:
        """Feed one observed loss; True when the smoothed loss has diverged (or the loss is not finite)."""
        return self.rule.update(value) is not None

    def intervene(self, *, step: int, value: float, scheduler: ScheduleLR | None) -> Decision:
        """Restore the last good state and lower the LR; the caller resumes counting from :attr:`step`.

        Raises:
            StateError: no snapshot was taken (training started before ``lr_find``).
            DivergenceError: more than ``max_retries`` interventions.
        """
        if self.snapshot is None or scheduler is None:
            raise StateError("the divergence guard has no snapshot; call tuner.lr_find() before training")
        self.retries += 1
        if self.retries > self.max_retries:
            raise DivergenceError(
                f"training diverged again at step {step} (loss {value:.4g}) after {self.max_retries} "
                f"guard interventions (restored step {self.step}, LR scaled down to {self.lr_scale:g} of the "
                "plan). Lower the learning rate further, check the data for bad batches, or add gradient clipping."
            )
        self.snapshot.restore()
        self.lr_scale *= self.lr_factor
        scheduler.rescale(self.lr_factor)
        self.rule = DivergenceRule(GUARD_SMOOTHING, self.divergence_factor)
        return Decision(
            "guard", self.lr_scale,
            f"loss diverged at step {step} ({value:.4g}); restored the state of step {self.step} "
            f"and multiplied the learning rate by {self.lr_factor:g} (now {self.lr_scale:g} of the plan)",
            evidence={"step": step, "loss": value if math.isfinite(value) else str(value), "retry": self.retries},
            step=step,
        )

    def close(self) -> None:
        """Free the snapshot."""
        if self.snapshot is not None:
            self.snapshot.close()
            self.snapshot = None

"""Reading per-step losses back from the device late, in batches, and the divergence rule applied to them.

Both the range test and the :class:`~autolr.tuner.AutoLR` guard write each step's loss into a tensor on the
model's device (no host sync) and copy a batch of them to (pinned) host memory every few steps. The host
analyses a batch only when the *next* batch is issued, so it waits on a copy that finished long ago and the
GPU is never starved. :class:`DivergenceRule` is the one stop rule both use.

Example:
    >>> rule = DivergenceRule(smoothing=0.0, factor=4.0)
    >>> [rule.update(v) for v in (2.0, 1.0, 3.0, 5.0)]
    [None, None, None, 'diverged']
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["DivergenceRule", "LossBuffer", "LossStream"]


class DivergenceRule:
    """Bias-corrected EMA of the loss; ``update`` says when it diverged.

    A value is ``"non_finite"`` when NaN/inf, and ``"diverged"`` when the smoothed loss rises above its best
    value by ``factor - 1`` times the best's magnitude (``factor`` × best for positive losses; negative losses,
    e.g. a negative log-likelihood, are handled too).
    """

    def __init__(self, smoothing: float, factor: float) -> None:
        self.beta, self.factor = smoothing, factor
        self.avg = self.weight = 0.0
        self.best = math.inf
        self.smoothed = math.nan

    def update(self, value: float) -> str | None:
        if not math.isfinite(value):
            return "non_finite"
        self.avg = self.beta * self.avg + (1 - self.beta) * value
        self.weight = self.beta * self.weight + (1 - self.beta)
        self.smoothed = self.avg / self.weight
        limit = self.best + (self.factor - 1) * abs(self.best)
        if math.isfinite(self.best) and self.best != 0 and self.smoothed > limit:
            return "diverged"
        self.best = min(self.best, self.smoothed)
        return None


class _HostCopy:
    """A pinned host mirror of a device tensor, copied asynchronously, with an event to wait on."""

    def __init__(self, like: torch.Tensor) -> None:
        cuda = like.device.type == "cuda"
        self.host = torch.empty(like.shape, dtype=like.dtype, pin_memory=cuda)
        self.event: Any = torch.cuda.Event() if cuda else None

    def start(self, source: torch.Tensor) -> None:
        self.host[: source.numel()].copy_(source, non_blocking=self.event is not None)
        if self.event is not None:
            self.event.record()

    def wait(self) -> None:
        if self.event is not None:
            self.event.synchronize()


class LossBuffer:
    """The range test's losses: one slot per step on the device, analysed a check late by ``rule``.

    ``stop_at`` is the index of the first point that broke the rule, ``reason`` why (``"completed"`` if none).
    """

    def __init__(self, num_steps: int, device: torch.device, rule: DivergenceRule) -> None:
        self.losses = torch.full((num_steps,), math.nan, dtype=torch.float32, device=device)
        self.copy = _HostCopy(self.losses)
        self.rule = rule
        self.pending = 0  # values covered by the copy in flight
        self.seen = 0
        self.stop_at: int | None = None
        self.reason = "completed"

    @property
    def host(self) -> torch.Tensor:
        return self.copy.host

    def check(self, count: int) -> None:
        """Analyse the values copied at the previous check, then start copying the first ``count``."""
        self.copy.wait()  # issued a whole check earlier: in practice already done
        if self.pending > self.seen and self.stop_at is None:
            for j, v in enumerate(self.host[self.seen : self.pending].tolist(), start=self.seen):
                reason = self.rule.update(v)
                if reason is not None:
                    self.stop_at, self.reason = j, reason
                    break
            self.seen = self.pending
        if self.stop_at is None:
            self.copy.start(self.losses[:count])
            self.pending = count

    def flush(self, count: int) -> None:
        """Final, synchronous read of every value (end of the sweep)."""
        self.check(count)
        self.check(count)


class LossStream:
    """The losses a training loop observes: a ring of ``size`` slots on the device, read a batch late."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer: torch.Tensor | None = None
        self.copy: _HostCopy | None = None
        self.count = 0  # values written into the buffer since the last batch was issued
        self.pending: tuple[int, int] | None = None  # (first step, count) of the copy in flight

    def add(self, loss: torch.Tensor, step: int) -> list[tuple[int, float]]:
        """Record the loss of ``step``; returns the ``(step, loss)`` values that became readable (maybe none)."""
        value = loss.detach().reshape(()).float()
        if self.buffer is None or self.buffer.device != value.device:
            self.buffer = torch.empty(self.size, device=value.device)
            self.copy = _HostCopy(self.buffer)
        self.buffer[self.count] = value
        self.count += 1
        if self.count < self.size:
            return []
        ready = self.collect()
        assert self.copy is not None
        self.copy.start(self.buffer)
        self.pending, self.count = (step - self.size + 1, self.size), 0
        return ready

    def collect(self) -> list[tuple[int, float]]:
        """The values of the copy in flight (waits for it; it was issued a whole batch earlier)."""
        if self.pending is None or self.copy is None:
            return []
        self.copy.wait()
        first, n = self.pending
        self.pending = None
        return list(zip(range(first, first + n), self.copy.host[:n].tolist()))

    def flush(self, step: int) -> list[tuple[int, float]]:
        """Everything observed so far (one synchronous read)."""
        out = self.collect()
        if self.count and self.buffer is not None:
            first = step - self.count + 1
            out += list(zip(range(first, first + self.count), self.buffer[: self.count].tolist()))
            self.count = 0
        return out

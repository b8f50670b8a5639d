"""Decisions as data, and the sinks that render them.

Every choice autolr makes (the learning rate, the schedule, the weight decay, a guard intervention) is a
:class:`Decision`: a value, the alternatives that were considered, a plain-language reason and the numbers
behind it. The core hands decisions, curves and training metrics to :class:`Reporter` objects; the
terminal summary here and the W&B reporter in ``autolr.integrations.wandb`` are two of them.

Example:
    >>> d = Decision("lr", 3e-3, "steepest stable descent", alternatives={"minimum": 1e-2})
    >>> d.to_dict()["alternatives"]
    {'minimum': 0.01}
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import AutoLRWarning

if TYPE_CHECKING:
    from .result import LRFindResult

__all__ = [
    "Decision", "LoggingReporter", "LossFeed", "Reporter", "emit_summary", "format_lr", "format_summary",
    "group_metrics", "safe_report", "show_progress",
]

logger = logging.getLogger("autolr")


def format_lr(value: float | None) -> str:
    """Format a learning rate compactly (``3.2e-03``); ``None`` becomes ``"none"``."""
    if value is None or not math.isfinite(value):
        return "none"
    return f"{value:.2e}"


@dataclass(frozen=True)
class Decision:
    """One decision autolr made, with what it considered and why.

    Attributes:
        name: what was decided, e.g. ``"lr"``, ``"schedule"``, ``"weight_decay"``, ``"guard"``.
        value: the value chosen (a float, a string, a small dict; JSON-ready).
        reason: plain-language explanation a user can act on.
        alternatives: other candidates, name -> value.
        evidence: the numbers the decision was based on, name -> value.
        step: training step the decision was taken at (``None`` for decisions before training).
    """

    name: str
    value: Any
    reason: str
    alternatives: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "value": self.value,
            "reason": self.reason,
            "alternatives": dict(self.alternatives),
            "evidence": dict(self.evidence),
            "step": self.step,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            value=data.get("value"),
            reason=str(data.get("reason", "")),
            alternatives=dict(data.get("alternatives", {})),
            evidence=dict(data.get("evidence", {})),
            step=data.get("step"),
        )


class Reporter:
    """Receives what autolr measured and decided. Override the methods you need; all default to no-ops.

    The core calls, in order: :meth:`range_test_end` once per range test, :meth:`decisions` when a plan
    is applied, :meth:`training_metrics` during training (batched, never more than once per step),
    :meth:`decisions` again for guard interventions, and :meth:`close` at the end. A reporter must never
    raise into training: the core catches and warns, but a well-behaved reporter handles its own errors.

    Example:
        >>> class Collect(Reporter):
        ...     def __init__(self):
        ...         self.names = []
        ...     def decisions(self, decisions):
        ...         self.names += [d.name for d in decisions]
        >>> r = Collect(); r.decisions([Decision("lr", 1e-3, "because")]); r.names
        ['lr']
    """

    def range_test_end(self, result: LRFindResult) -> None:
        """A range test finished (state already restored); ``result`` holds the curve and suggestion."""

    def decisions(self, decisions: Sequence[Decision]) -> None:
        """Decisions were taken (a plan applied, or a guard intervention during training)."""

    def training_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Metrics for one training step (learning rates, weight decay, observed loss)."""

    def close(self) -> None:
        """Training is over; flush and release resources."""


class LossFeed(Reporter):
    """A reporter that forwards the observed training loss every ``interval`` optimizer steps (the search
    adapters' pruning bridges build on it): :meth:`due_loss` says which value is due, once per step.

    Example:
        >>> feed = LossFeed(interval=2)
        >>> [feed.due_loss(s, {"autolr/train_loss": 1.0}) for s in (1, 2, 2, 4)]
        [None, 1.0, None, 1.0]
    """

    def __init__(self, interval: int = 1) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an integer >= 1, got {interval!r}")
        self.interval = interval
        self.guard_interventions = 0
        self._last_step = -1

    def count_guards(self, decisions: Sequence[Decision]) -> Decision | None:
        """Count the guard interventions among ``decisions``; the last one, or None when there is none."""
        guards = [d for d in decisions if d.name == "guard"]
        self.guard_interventions += len(guards)
        return guards[-1] if guards else None

    def due_loss(self, step: int, metrics: Mapping[str, float]) -> float | None:
        """The loss to forward for ``step`` (inf for a non-finite one), or None: no loss in ``metrics``, not on the
        interval, or that step already forwarded (the guard rewinds steps)."""
        value = metrics.get("autolr/train_loss")
        if value is None or step <= self._last_step or step % self.interval:
            return None
        self._last_step = step
        value = float(value)
        return value if math.isfinite(value) else float("inf")


def group_metrics(lrs: Sequence[Any], groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The per-group training metrics reporters get after an optimizer step: ``autolr/lr/group<i>`` (the LR that
    step ran at) and ``autolr/weight_decay/group<i>`` (float decays only: a tensor one would need a host read).

    Example:
        >>> group_metrics([0.1], [{"weight_decay": 0.05}])
        {'autolr/lr/group0': 0.1, 'autolr/weight_decay/group0': 0.05}
    """
    metrics = {f"autolr/lr/group{i}": lr for i, lr in enumerate(lrs)}  # as given: no host read here
    for i, group in enumerate(groups):
        wd = group.get("weight_decay")
        if isinstance(wd, (int, float)):
            metrics[f"autolr/weight_decay/group{i}"] = float(wd)
    return metrics


_warned_reporters: set[str] = set()


def safe_report(fn: Callable[..., None], *args: Any) -> None:
    """Call a reporter method; a failure warns once per reporter type and never reaches training."""
    try:
        fn(*args)
    except Exception as exc:  # reporting must never break training
        name = type(getattr(fn, "__self__", fn)).__name__
        if name not in _warned_reporters:
            _warned_reporters.add(name)
            warnings.warn(f"autolr reporter {name} failed and was skipped: {exc!r}", AutoLRWarning, stacklevel=3)


def format_summary(result: LRFindResult | None = None, decisions: Sequence[Decision] = ()) -> str:
    """A short, human-readable summary of a range test and/or a plan."""
    lines: list[str] = []
    if result is not None:
        c, s = result.curve, result.suggestion
        lines.append(
            f"autolr range test: {len(c)} points, lr {format_lr(c.lrs[0] if len(c) else None)}"
            f" -> {format_lr(c.lrs[-1] if len(c) else None)}, stopped: {c.stop_reason}"
            f" ({c.stop_description}), {c.wall_time:.1f}s"
        )
        if s.lr is None:
            lines.append(f"  no learning rate suggested: {s.reason}")
        else:
            lines.append(
                f"  suggested lr {format_lr(s.lr)} ({s.method}, confidence {s.confidence:.2f}): {s.reason}"
            )
        # "minimum 5.9e-03" would read as "the loss minimum is at 5.9e-03": say what that rule is
        alts = ", ".join(
            f"{k}{' (min-loss/10)' if k == 'minimum' else ''} {format_lr(v)}" for k, v in s.alternatives.items()
        )
        if alts:
            lines.append(f"  alternatives: {alts}")
    for d in decisions:
        value = format_lr(d.value) if isinstance(d.value, float) else d.value
        lines.append(f"  {d.name}: {value} — {d.reason}")
    return "\n".join(lines)


def show_progress(progress: bool | None) -> bool:
    """Whether a progress bar is drawn for ``progress=``: ``True`` always, ``False`` never, ``None`` (auto) only
    where a bar renders: stderr is a terminal, or the code runs in a Jupyter kernel (notebook, lab, Colab,
    VS Code), whose output area draws it. Redirected to a file, a pipe or a CI log, auto draws no bar, so the
    output gets none of the carriage returns a bar redraws itself with."""
    if progress is not None:
        return bool(progress)
    if "ipykernel.zmqshell" in sys.modules:
        return True
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, OSError, ValueError):  # a replaced or closed stream
        return False


def emit_summary(text: str, *, echo: bool) -> None:
    """Log ``text`` at INFO on the ``autolr`` logger; with ``echo``, also write it to stderr (through tqdm,
    so it does not break progress bars). ``echo`` is ``progress is not False``: runs see the summary without
    configuring logging (plain lines, fine in a log file too); ``progress=False`` keeps stderr quiet."""
    logger.info("%s", text)
    if echo and text:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)


class LoggingReporter(Reporter):
    """Writes the summary of range tests and decisions to the ``autolr`` logger (INFO)."""

    def range_test_end(self, result: LRFindResult) -> None:
        logger.info("%s", format_summary(result))

    def decisions(self, decisions: Sequence[Decision]) -> None:
        if decisions:
            logger.info("autolr plan\n%s", format_summary(None, decisions))

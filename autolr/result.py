"""What :func:`autolr.lr_find` returns: the curve, the suggestion, and ways to use, save and show them.

Example:
    >>> import numpy as np
    >>> from autolr.curve import Curve
    >>> from autolr.suggest import suggest
    >>> curve = Curve(lrs=np.geomspace(1e-5, 1, 60), losses=np.linspace(2, 1, 60))
    >>> result = LRFindResult(curve, suggest(curve.lrs, curve.losses))
    >>> LRFindResult.from_dict(result.to_dict()).curve.stop_reason
    'completed'
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .curve import Curve
from .errors import AutoLRWarning
from .suggest import Suggestion

if TYPE_CHECKING:
    import torch

__all__ = ["LRFindResult", "check_fallback"]

logger = logging.getLogger("autolr")

_FORMAT_VERSION = 1


def check_fallback(fallback: Any) -> None:
    """Validate a hyperparameter search's ``fallback=(low, high)`` LR range (None is fine); see
    :meth:`LRFindResult.search_range`. The search adapters call it before the range test runs."""
    if fallback is None:
        return
    ok = isinstance(fallback, (tuple, list)) and len(fallback) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in fallback
    )
    if not ok or not fallback[0] < fallback[1]:
        raise ValueError(f"fallback must be a (low, high) pair of LRs with 0 < low < high, got {fallback!r}")


@dataclass(frozen=True, eq=False)
class LRFindResult:
    """The outcome of a range test. State has already been restored when you get one.

    Attributes:
        curve: the measured :class:`~autolr.curve.Curve`.
        suggestion: the :class:`~autolr.suggest.Suggestion` for param group 0.
        initial_lrs: every param group's learning rate before the test.
        settings: the range-test settings used (start/end LR, steps, mode, ...), JSON-ready.
        first_curve: when a fine-tune was swept twice (``settings["swept_twice"]``), the first, shorter sweep,
            which showed no clear descent; ``curve`` is then the longer one the suggestion was read from.
    """

    curve: Curve
    suggestion: Suggestion
    initial_lrs: tuple[float, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    first_curve: Curve | None = None

    @property
    def lr(self) -> float | None:
        """Shortcut for ``suggestion.lr``."""
        return self.suggestion.lr

    def suggested_lrs(self) -> list[float] | None:
        """The suggested learning rate of every param group (ratios between groups kept), or None."""
        if self.suggestion.lr is None:
            return None
        return [self.suggestion.lr * r for r in self.curve.group_ratios]

    def apply(self, optimizer: torch.optim.Optimizer) -> list[float] | None:
        """Set the suggested learning rate on every param group, keeping the ratios between groups.

        Returns the learning rates set, or ``None`` (with a warning, optimizer untouched) when there is no
        suggestion.

        Example:
            >>> import torch
            >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            >>> LRFindResult(Curve([1e-3], [1.0]), Suggestion(0.01, "x", 1.0, "r")).apply(opt)
            [0.01]
        """
        from .param_groups import set_lrs, unwrap_optimizer, validate_param_groups

        optimizer = unwrap_optimizer(optimizer)
        validate_param_groups(optimizer)
        lrs = self.suggested_lrs()
        if lrs is None:
            warnings.warn(
                f"autolr has no learning rate to apply, the optimizer is unchanged: {self.suggestion.reason}",
                AutoLRWarning,
                stacklevel=2,
            )
            return None
        if len(lrs) != len(optimizer.param_groups):
            from .errors import ConfigurationError

            raise ConfigurationError(
                f"this result was measured with {len(lrs)} param groups but the optimizer has "
                f"{len(optimizer.param_groups)}; apply it to the optimizer the range test ran on"
            )
        set_lrs(optimizer, lrs)
        return lrs

    def search_range(
        self, *, divergence_margin: float = 4.0, fallback: tuple[float, float] | None = None
    ) -> tuple[float, float]:
        """A log-uniform ``(low, high)`` LR range to search, read off the curve (hyperparameter-search adapters).

        ``low`` is where the loss starts to fall (``descent_low_lr``); ``high`` is the end of the descent
        (``descent_high_lr``), but never above the divergence edge divided by ``divergence_margin``. Missing
        evidence falls back on the suggestion: ``low = lr / 10``; ``high`` = the LR of the minimum loss, else
        ``lr * 10`` (each still capped by the divergence edge). The range always contains the suggestion, and is at
        least a factor 4 wide around it.

        With no suggestion, ``fallback`` (the user's own range) is returned with an :class:`AutoLRWarning` that
        gives the reason.

        Raises:
            ValueError: the range test gave no suggestion and there is no ``fallback`` (the message has the
                reason), or a bad ``fallback``.

        Example:
            >>> LRFindResult(Curve([1e-3], [1.0]), Suggestion(0.01, "x", 1.0, "r")).search_range()
            (0.001, 0.1)
        """
        check_fallback(fallback)
        s = self.suggestion
        if s.lr is None and fallback is not None:
            warnings.warn(f"autolr: the range test gave no learning rate ({s.reason}); searching the fallback range "
                          f"{fallback[0]:.2e}..{fallback[1]:.2e} instead", AutoLRWarning, stacklevel=3)
            return float(fallback[0]), float(fallback[1])
        if s.lr is None:
            raise ValueError(f"the range test gave no learning rate to search around: {s.reason}")
        lr = float(s.lr)
        finite = s.evidence_lr
        low = finite("descent_low_lr") or lr / 10
        high = finite("descent_high_lr") or finite("min_loss_lr") or lr * 10
        divergence = finite("divergence_lr")
        if divergence is not None:
            high = min(high, divergence / divergence_margin)
        low, high = min(low, lr / 2), max(high, lr * 2)  # contains the suggestion, with room on both sides
        return low, high

    # -- serialisation ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything in the result."""
        return {
            "format_version": _FORMAT_VERSION,
            "curve": self.curve.to_dict(),
            "suggestion": self.suggestion.to_dict(),
            "initial_lrs": list(self.initial_lrs),
            "settings": dict(self.settings),
            **({"first_curve": self.first_curve.to_dict()} if self.first_curve is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LRFindResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            curve=Curve.from_dict(data["curve"]),
            suggestion=Suggestion.from_dict(data["suggestion"]),
            initial_lrs=tuple(data.get("initial_lrs", ())),
            settings=dict(data.get("settings", {})),
            first_curve=Curve.from_dict(data["first_curve"]) if data.get("first_curve") else None,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result as JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LRFindResult:
        """Read a result written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    # -- display ----------------------------------------------------------------------------------------
    def summary(self) -> str:
        """A few lines of text: range, stop reason, suggestion, reason, alternatives."""
        from .report import format_summary

        return format_summary(self)

    def plot(self, ax: Any = None, *, show_alternatives: bool = True) -> Any:
        """Draw loss against learning rate (log x axis): raw and smoothed, suggestion and alternatives.

        Needs matplotlib (``pip install "torch-autolr[plot]"``). Returns the matplotlib ``Axes``.
        """
        from .plotting import plot_curve

        return plot_curve(self, ax=ax, show_alternatives=show_alternatives)

    def save_report(self, directory: str | os.PathLike[str], decisions: Any = ()) -> Path:
        """Write ``report.html``, ``curve.png`` and ``result.json`` into ``directory``; returns the HTML path."""
        from .local_report import write_report

        return write_report(self, directory, decisions=decisions)

    def __repr__(self) -> str:
        s = self.suggestion
        return (
            f"LRFindResult(lr={s.lr!r}, method={s.method!r}, confidence={s.confidence:.2f}, "
            f"points={len(self.curve)}, stop_reason={self.curve.stop_reason!r})"
        )

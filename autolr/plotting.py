"""Draw a range-test curve with matplotlib: loss against learning rate, the suggestion and why it stopped.

matplotlib is optional (``pip install "torch-autolr[plot]"``) and imported only when a plot is drawn. Nothing
here calls ``plt.show()``; pass your own ``ax`` to draw on a figure you manage, or use :func:`new_figure`
for a figure that belongs to no GUI backend (safe in scripts, servers and tests).

Example:
    >>> import numpy as np
    >>> from autolr import Curve, LRFindResult, Suggestion
    >>> curve = Curve(lrs=np.geomspace(1e-5, 1, 50), losses=np.linspace(2, 1, 50))
    >>> result = LRFindResult(curve, Suggestion(1e-3, "steepest", 0.8, "steepest descent"))
    >>> ax = plot_curve(result, ax=new_figure().add_subplot())
    >>> ax.get_xscale()
    'log'
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .report import format_lr

if TYPE_CHECKING:
    from .result import LRFindResult

__all__ = ["RULE_STYLES", "new_figure", "plot_curve"]

_INSTALL_HINT = 'plotting needs matplotlib: pip install "torch-autolr[plot]"'
_TITLE_REASON_CHARS = 48

#: How each strategy's alternative is drawn: what the rule is (so "minimum" does not read as the loss minimum),
#: colour and line style. The suggestion itself is the solid orange line.
RULE_STYLES: dict[str, tuple[str, str, Any]] = {
    "default": ("default rule", "tab:cyan", (0, (6, 2))),
    "steepest": ("steepest-descent rule", "tab:green", "--"),
    "minimum": ("min-loss/10 rule", "tab:purple", "-."),
    "valley": ("valley rule", "tab:brown", ":"),
}
_OTHER_STYLES: tuple[tuple[str, Any], ...] = (
    ("tab:pink", (0, (3, 1, 1, 1, 1, 1))), ("tab:olive", (0, (1, 2))), ("tab:gray", (0, (8, 2, 2, 2))),
)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc


def new_figure(figsize: tuple[float, float] = (7.0, 4.5)) -> Any:
    """A matplotlib ``Figure`` attached to the Agg canvas only (no pyplot, no window, no global state)."""
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _shorten(text: str, limit: int = _TITLE_REASON_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _y_limits(
    lrs: np.ndarray, losses: np.ndarray, smoothed: np.ndarray, divergence_lr: float | None
) -> tuple[float, float] | None:
    """Limits that show the descent and the minimum, ignoring the diverged tail.

    With a divergence LR from the analysis: the 2nd-98th percentile of the raw losses before it (and the
    smoothed curve there), so a flat, noisy curve shows its noise band rather than a sliver. Otherwise: the
    smoothed curve up to its minimum and the raw losses there.
    """
    if divergence_lr is not None:
        keep = (lrs < divergence_lr) & np.isfinite(losses)
        if keep.sum() >= 5:
            low, high = (float(v) for v in np.percentile(losses[keep], [2, 98]))
            inside = smoothed[keep & np.isfinite(smoothed)]
            if inside.size:
                low, high = min(low, float(inside.min())), max(high, float(inside.max()))
            return _padded(low, high)
    finite = np.isfinite(smoothed)
    if not finite.any():
        return None
    best = int(np.nanargmin(np.where(finite, smoothed, np.nan)))
    head_smooth = smoothed[: best + 1][finite[: best + 1]]
    head_raw = losses[: best + 1][np.isfinite(losses[: best + 1])]
    top = float(head_smooth.max())
    bottom = float(min(head_smooth.min(), head_raw.min() if head_raw.size else np.inf))
    return _padded(bottom, top)


def _padded(bottom: float, top: float) -> tuple[float, float]:
    """``(bottom, top)`` with 10% of the span below and 15% above (10% of ``|top|`` when the span is empty)."""
    span = top - bottom
    if span <= 0 or not math.isfinite(span):
        span = abs(top) * 0.1 or 1.0
    return bottom - 0.1 * span, top + 0.15 * span


def _loss_at(lrs: np.ndarray, values: np.ndarray, lr: float) -> float | None:
    ok = np.isfinite(values) & (lrs > 0)
    if not ok.any():
        return None
    return float(np.interp(math.log10(lr), np.log10(lrs[ok]), values[ok]))


def plot_curve(result: LRFindResult, ax: Any = None, *, show_alternatives: bool = True) -> Any:
    """Plot loss against learning rate on a log x axis, with the suggestion and the stop point marked.

    Draws the raw loss (light) and the smoothed loss (for a fine-tune swept twice, also the first sweep's smoothed
    loss, grey dashed), a vertical line and label at the suggested learning
    rate, a line of its own colour and style at each alternative, labelled by what its rule is
    (:data:`RULE_STYLES`: ``min-loss/10 rule``, ``steepest-descent rule``, ...), the loss minimum and the
    divergence point the rules start from (triangles on the x axis, from ``evidence``), and the stop point with
    its reason. The y axis is limited to the descent and the minimum, so a diverged tail does not squash the
    interesting part.

    Args:
        result: a range-test result.
        ax: matplotlib ``Axes`` to draw on; by default a new pyplot figure (shown inline in notebooks).
        show_alternatives: also mark what the other strategies suggested, and the loss minimum and divergence
            point they are read from.

    Returns:
        The matplotlib ``Axes``.

    Raises:
        ImportError: matplotlib is not installed.

    Example:
        >>> ax = result.plot()                        # doctest: +SKIP
        >>> ax.figure.savefig("lr_find.png")          # doctest: +SKIP
    """
    _require_matplotlib()
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7.0, 4.5))
    curve, s = result.curve, result.suggestion
    lrs = np.asarray(curve.lrs, dtype=float)
    losses = np.where(np.isfinite(curve.losses), curve.losses, np.nan)
    smoothed = np.asarray(curve.smoothed, dtype=float)

    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"{curve.loss_kind} loss")
    ax.grid(True, which="major", alpha=0.3)
    first = result.first_curve
    if first is not None and len(first):  # a fine-tune swept twice: the first sweep, for comparison
        ax.plot(np.asarray(first.lrs, dtype=float), np.asarray(first.smoothed, dtype=float), color="tab:gray",
                linestyle="--", linewidth=1.2, label=f"first sweep ({first.num_steps} steps, smoothed)")
    if len(curve):
        ax.plot(lrs, losses, color="tab:blue", alpha=0.3, linewidth=1, label="loss")
        ax.plot(lrs, smoothed, color="tab:blue", linewidth=2, label=f"smoothed (EMA {curve.smoothing:g})")
        limits = _y_limits(lrs, losses, smoothed, s.evidence_lr("divergence_lr"))
        if limits is not None:
            ax.set_ylim(*limits)
        stop_y = float(smoothed[-1]) if math.isfinite(smoothed[-1]) else math.inf
        if limits is not None:
            stop_y = min(stop_y, limits[1])  # a diverged stop point sits on the top edge
        if math.isfinite(stop_y):
            ax.plot([lrs[-1]], [stop_y], "x", color="tab:red", label=f"stop: {curve.stop_reason}")

    if show_alternatives:
        others = itertools.cycle(_OTHER_STYLES)
        for name, value in s.alternatives.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0 or value == s.lr:
                continue
            rule, color, style = RULE_STYLES.get(name) or (f"{name} rule", *next(others))
            ax.axvline(value, color=color, linestyle=style, linewidth=1.3, alpha=0.85,
                       label=f"{rule} {format_lr(value)}")
        # what the rules read off the curve, as ticks on the x axis (the EMA drawn lags, the analysis does not)
        marks = (("min_loss_lr", "loss minimum at", "black"), ("divergence_lr", "divergence at", "tab:red"))
        for key, what, color in marks:
            value = s.evidence_lr(key)
            if value is not None:
                ax.plot([value], [0.0], "^", color=color, markersize=8, clip_on=False, zorder=5,
                        transform=ax.get_xaxis_transform(), label=f"{what} {format_lr(value)}")

    if s.lr is not None and math.isfinite(s.lr) and s.lr > 0:
        label = f"suggested {format_lr(s.lr)} ({s.method})"
        ax.axvline(s.lr, color="tab:orange", linewidth=1.5, label=label)
        y = _loss_at(lrs, smoothed, s.lr) if len(curve) else None
        if y is not None:
            ax.plot([s.lr], [y], "o", color="tab:orange")
            ax.annotate(
                format_lr(s.lr), (s.lr, y), xytext=(6, 6), textcoords="offset points", color="tab:orange"
            )
        ax.set_title(
            f"LR range test: {format_lr(s.lr)} suggested, confidence {s.confidence:.2f} "
            f"(stopped: {curve.stop_reason})"
        )
    else:
        ax.set_title(f"LR range test: no suggestion ({_shorten(s.reason)})", fontsize="medium")
    ax.legend(loc="best", fontsize="small")
    return ax

"""Suggestion rules compared by the benchmark, each applied to the same measured curve.

Every rule receives the *raw* per-step losses of one shared range-test curve and applies the smoothing its
own library applies before its rule runs, so that the differences come from the rules (smoothing included),
not from different sweeps:

``torch-lr-finder``
    The installed library's own code: ``LRFinder.plot(suggest_lr=True)`` (skip 10 first / 5 last points,
    steepest index-based ``np.gradient``) on its smoothing (EMA with new-sample weight 0.05, started at the
    first loss, no bias correction).
``lightning``
    The installed library's own code: ``_LRFinder.suggestion()`` (skip 10 / 1, steepest
    ``torch.gradient`` w.r.t. the *linear* LR since 2.5.3) on its smoothing (EMA beta 0.98, bias-corrected).
``fastai:valley`` / ``fastai:steep`` / ``fastai:minimum`` / ``fastai:slide``
    fastai cannot be installed here. These are re-implementations written for this benchmark from the
    published description of fastai v2's rules (``research/anchors.md`` section 2), *not* fastai's code:
    bias-corrected EMA (beta 0.98), cut the first ``num_steps // 10`` and the last 5 points, truncate at
    the first NaN, then apply the rule.
``autolr:<name>``
    :func:`autolr.suggest.suggest` with ``method=name`` for every name in ``autolr.suggest.STRATEGIES``
    (autolr smooths internally). ``autolr:default`` is the suggestion ``autolr.lr_find`` itself returned,
    when the benchmark ran ``autolr.lr_find``.

A rule that cannot suggest returns ``None`` (the benchmark then scores the textbook default and flags it).

Example:
    >>> import numpy as np
    >>> lrs = np.geomspace(1e-7, 10, 100)
    >>> losses = 2 - np.tanh(np.log10(lrs / 1e-3)) + np.where(lrs > 0.3, 50 * (lrs - 0.3), 0)
    >>> 1e-4 < fastai_steep(lrs, losses) < 1e-2
    True
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "ANCHOR_RULES",
    "autolr_rules",
    "ema_debiased",
    "ema_torch_lr_finder",
    "fastai_minimum",
    "fastai_slide",
    "fastai_steep",
    "fastai_valley",
    "lightning_rule",
    "torch_lr_finder_rule",
]

Rule = Callable[[np.ndarray, np.ndarray], "float | None"]

#: Range-test length the fastai cut (``num_steps // 10``) is computed from.
FASTAI_NUM_STEPS = 100


def ema_debiased(losses: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """Bias-corrected EMA as fastai's ``AvgSmoothLoss`` and Lightning's LR finder compute it (a NaN poisons
    every later value, as it does there)."""
    out = np.empty(len(losses))
    avg = 0.0
    for i, v in enumerate(losses):
        avg = beta * avg + (1 - beta) * float(v)
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def ema_torch_lr_finder(losses: Sequence[float], smooth_f: float = 0.05) -> np.ndarray:
    """torch-lr-finder's smoothing: starts at the first loss, new-sample weight ``smooth_f``, no bias
    correction."""
    out = np.empty(len(losses))
    for i, v in enumerate(losses):
        out[i] = float(v) if i == 0 else smooth_f * float(v) + (1 - smooth_f) * out[i - 1]
    return out


# ---------------------------------------------------------------------------------------------------------
# Installed anchors, called through their own code
# ---------------------------------------------------------------------------------------------------------
def torch_lr_finder_rule(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """torch-lr-finder 0.2.x's own suggestion (``LRFinder.plot(suggest_lr=True)``) on its smoothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch_lr_finder import LRFinder

    finder = LRFinder.__new__(LRFinder)  # only ``history`` is read by plot(); no model needed
    finder.history = {"lr": [float(v) for v in lrs], "loss": list(ema_torch_lr_finder(losses))}
    fig, ax = plt.subplots()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            _, lr = finder.plot(skip_start=10, skip_end=5, log_lr=True, suggest_lr=True, ax=ax)
    except RuntimeError:  # fewer than skip_start + skip_end + 2 points
        return None
    finally:
        plt.close(fig)
    lr = float(lr)
    return lr if math.isfinite(lr) and lr > 0 else None


def lightning_rule(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """Lightning's own ``_LRFinder.suggestion()`` (defaults ``skip_begin=10, skip_end=1``) on its
    smoothing."""
    from lightning.pytorch.tuner.lr_finder import _LRFinder

    finder = _LRFinder(mode="exponential", lr_min=float(lrs[0]), lr_max=float(lrs[-1]), num_training=len(lrs))
    finder.results = {"lr": [float(v) for v in lrs], "loss": [float(v) for v in ema_debiased(losses)]}
    logger = logging.getLogger("lightning.pytorch.tuner.lr_finder")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # it logs an error when it has too few points; we record None
    try:
        lr = finder.suggestion()
    finally:
        logger.setLevel(level)
    return None if lr is None else float(lr)


# ---------------------------------------------------------------------------------------------------------
# fastai's published rules, re-implemented from their description
# ---------------------------------------------------------------------------------------------------------
def _fastai_view(lrs: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth (beta 0.98, bias-corrected), cut ``num_steps // 10`` first and 5 last points, stop at NaN."""
    smooth = ema_debiased(losses)
    lrs = np.asarray(lrs, float)[FASTAI_NUM_STEPS // 10 : -5]
    smooth = smooth[FASTAI_NUM_STEPS // 10 : -5]
    bad = np.flatnonzero(~np.isfinite(smooth))
    if bad.size:
        lrs, smooth = lrs[: bad[0]], smooth[: bad[0]]
    return lrs, smooth


def fastai_valley(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """fastai ``valley``: the longest strictly decreasing subsequence of the smoothed loss; with ``n`` its
    length and ``end`` the index where the first longest one ends, ``start = end - n`` and the suggestion is
    the LR at ``start + n//3 + n//6`` (about half way down the valley)."""
    x, y = _fastai_view(lrs, losses)
    if x.size < 2:
        return None
    length = np.ones(x.size, dtype=int)
    for i in range(1, x.size):
        smaller = y[:i] > y[i]
        if smaller.any():
            length[i] = 1 + int(length[:i][smaller].max())
    end = int(np.argmax(length))  # first index where the longest run ends
    n = int(length[end])
    start = end - n
    return float(x[max(0, start + n // 3 + n // 6)])


def fastai_steep(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """fastai ``steep``: the LR where the forward difference of the smoothed loss per unit log(LR) is most
    negative."""
    x, y = _fastai_view(lrs, losses)
    if x.size < 2:
        return None
    slope = np.diff(y) / np.diff(np.log(x))
    return float(x[int(np.argmin(slope))])


def fastai_minimum(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    """fastai ``minimum``: the LR of the lowest smoothed loss, divided by 10."""
    x, y = _fastai_view(lrs, losses)
    if x.size < 1:
        return None
    return float(x[int(np.argmin(y))] / 10)


def fastai_slide(
    lrs: np.ndarray, losses: np.ndarray, *, window: int = 15, threshold: float = 0.005
) -> float | None:
    """fastai ``slide``: index-based gradient of the smoothed loss; a window of ``window`` points slides
    leftward from the right end while the gradients at its two edges differ by more than ``threshold``; the
    suggestion is the last left edge visited."""
    x, y = _fastai_view(lrs, losses)
    if x.size < 2:
        return None
    grad = np.gradient(y)
    right, left = x.size - 1, x.size - 1 - window
    if left < 0:
        return None
    lr = x[left]
    while left >= 0 and abs(grad[right] - grad[left]) > threshold:
        lr = x[left]
        right, left = right - 1, left - 1
    return float(lr)


#: Anchor rules by the name the benchmark reports.
ANCHOR_RULES: dict[str, Rule] = {
    "torch-lr-finder": torch_lr_finder_rule,
    "lightning": lightning_rule,
    "fastai:valley": fastai_valley,
    "fastai:steep": fastai_steep,
    "fastai:minimum": fastai_minimum,
    "fastai:slide": fastai_slide,
}


# ---------------------------------------------------------------------------------------------------------
# autolr
# ---------------------------------------------------------------------------------------------------------
def autolr_strategy_names() -> list[str]:
    """Names in ``autolr.suggest.STRATEGIES`` (``["default"]`` while the registry does not exist yet)."""
    import autolr.suggest

    names = list(getattr(autolr.suggest, "STRATEGIES", {}) or ["default"])
    if "default" not in names:
        names.insert(0, "default")
    return names


def autolr_rules(lrs: np.ndarray, losses: np.ndarray) -> dict[str, dict[str, object]]:
    """Every autolr strategy on the raw curve: ``{"autolr:<name>": {"lr", "reason"}}``."""
    from autolr.suggest import suggest

    out: dict[str, dict[str, object]] = {}
    for name in autolr_strategy_names():
        try:
            s = suggest(lrs, losses, method=name)
            lr = None if s.lr is None or not math.isfinite(float(s.lr)) or s.lr <= 0 else float(s.lr)
            out[f"autolr:{name}"] = {"lr": lr, "reason": s.reason}
        except Exception as exc:  # a strategy that crashes is recorded as no suggestion, with the error
            out[f"autolr:{name}"] = {"lr": None, "reason": f"error: {type(exc).__name__}: {exc}"}
    return out

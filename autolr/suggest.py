"""Curve -> learning-rate suggestion. Pure numpy/scipy (imported lazily); never imports torch.

Every rule reads the same :class:`Features`, computed once by :func:`analyse`; the x axis is always log10 LR.

1. Keep the finite points and resample them on a uniform log10-LR grid (NaN gaps are interpolated).
2. Noise ``sigma``: robust spread of second differences (``1.4826 * MAD / sqrt(6)``), blind to smooth trends.
3. Clip outliers to a 5-point running median ``+- 3 sigma`` (Hampel filter). Points after the minimum where
   that median exceeds ``min + 2 * max(drop, 3 sigma)`` have blown up: they are left out, like NaN, so the
   divergence tail cannot drag the smoothed minimum.
4. Smooth with a zero-phase Savitzky-Golay filter (quadratic, about one decade wide); its first derivative is
   the slope against log10 LR. The EMA shown to users lags and shifts the curve right, so it is never analysed.
5. Read off: the start level (median raw loss over the plateau before the descent, at least one window); the
   smoothed minimum (its LR is the noise-weighted middle of the bottom, see ``Features.x_min``); the drop
   between them; ``snr = drop / noise of the smoothed curve``; the descent (left of the minimum, where the
   smoothed loss has made 10% and 90% of its drop, and at least 2 smoothed noise from either end); and the
   divergence (first LR after the minimum where the smoothed loss has regained half the drop, and at least
   ``MIN_SNR`` smoothed noise; else the first blown-up point or the first LR of a trailing run of NaN/inf).
   Half the drop, not more: a sweep stopped at "4x the best EMA" often ends before more.

The :func:`default` rule: ``min(min_loss_lr / 2, divergence_lr / 10)`` (``MIN_LOSS_FACTOR``,
``DIVERGENCE_FACTOR``; without divergence, ``min_loss_lr / 2``), never below the start of the descent (10% of
the drop made). On a benchmark of small tasks the constant-LR optimum sits near half the min-loss LR, and one
decade below the divergence LR keeps the pick clear of instability on curves whose minimum lies close to the
blow-up. When the loss is still falling at the last LR (no minimum inside the sweep), the centre of the
steepest part of the descent instead (the minimum would only echo end_lr).

No LR (``lr=None``) is suggested when there are fewer than ``MIN_POINTS`` finite losses, when the loss rises
within the first half-window (start_lr too high), or when the curve is flat: ``snr < MIN_SNR`` without
a sustained divergence, or ``snr < WEAK_SNR`` (nothing learned; the reason says to raise num_steps or end_lr).
A drop of ``WEAK_SNR <= snr < MIN_SNR`` followed by a sustained divergence (the smoothed loss stays above the
divergence level to the end of the sweep, or blows up / turns NaN; typical of small-batch, noisy losses) gives
a **weak** suggestion: the same rule on the noisier minimum, with confidence ``WEAK_CONFIDENCE`` and a reason
that says so; the other strategies, which need a clear descent, give None there. Every threshold is a fraction
of the drop or a multiple of the noise, so suggestions do not change when a constant is added to the loss or
the loss is rescaled.

Confidence is the mean of three scores in [0, 1], times a shape factor. Scores: descent length (2 decades or
more -> 1), drop/noise (``MIN_SNR`` -> 0, 10x that -> 1), agreement of the steepest and minimum/10 rules (same
LR -> 1, 2 decades apart -> 0). Shape: 1 when divergence was seen, 0.8 for a minimum inside the sweep without
divergence, 0.5 when the loss was still falling at the last LR. A weak suggestion has ``WEAK_CONFIDENCE``.

Example:
    >>> import numpy as np
    >>> lrs = np.geomspace(1e-7, 10, 100)
    >>> x = np.log10(lrs)
    >>> losses = 0.5 + 2 / (1 + np.exp(2 * (x + 3.5))) + np.exp(4 * (x + 0.5))
    >>> s = suggest(lrs, losses)
    >>> 1e-3 < s.lr < 1e-1, s.method
    (True, 'default')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "STRATEGIES",
    "Features",
    "Suggestion",
    "analyse",
    "default",
    "is_weak",
    "minimum",
    "smooth_log",
    "steepest",
    "suggest",
    "valley",
]

#: Fewest finite losses worth analysing.
MIN_POINTS = 15
#: Width of the smoothing window, in decades of LR (at least 5 and at most a quarter of the points).
WINDOW_DECADES = 1.0
#: A drop (or rise) counts only when it is this many times the noise of the smoothed curve.
MIN_SNR = 6.0
#: A drop of at least this many smoothed noise, followed by divergence, still gives a (weak) suggestion. Pure
#: noise curves of 100 points (Gaussian or Student-t, 3 dof) exceed it about 10% of the time, ``MIN_SNR``
#: about 1%; a weak answer also needs the divergence, which pure noise does not show.
WEAK_SNR = 4.0
#: The default rule: ``min(min_loss_lr / MIN_LOSS_FACTOR, divergence_lr / DIVERGENCE_FACTOR)``.
MIN_LOSS_FACTOR = 2.0
DIVERGENCE_FACTOR = 10.0
#: Confidence of a weak suggestion (drop between ``WEAK_SNR`` and ``MIN_SNR`` times the noise).
WEAK_CONFIDENCE = 0.1


@dataclass(frozen=True)
class Suggestion:
    """A suggested learning rate (for param group 0), or ``None`` with the reason why not.

    Attributes:
        lr: the suggested learning rate, or ``None`` when the curve shows no good one.
        method: name of the strategy that produced ``lr``.
        confidence: 0 (a guess) to 1 (a clear, long, stable descent).
        reason: plain language; when ``lr`` is None, says what the user should change.
        alternatives: what every other strategy suggested, name -> lr (or None).
        evidence: numbers read off the curve (e.g. ``min_loss_lr``, ``steepest_lr``, ``divergence_lr``,
            ``descent_low_lr``, ``descent_high_lr``, ``loss_drop``); absent keys were not found.
    """

    lr: float | None
    method: str
    confidence: float
    reason: str
    alternatives: Mapping[str, float | None] = field(default_factory=dict)
    evidence: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "method": self.method,
            "confidence": self.confidence,
            "reason": self.reason,
            "alternatives": dict(self.alternatives),
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suggestion:
        return cls(
            lr=data.get("lr"),
            method=str(data.get("method", "")),
            confidence=float(data.get("confidence", 0.0)),
            reason=str(data.get("reason", "")),
            alternatives=dict(data.get("alternatives", {})),
            evidence=dict(data.get("evidence", {})),
        )


def _empty() -> np.ndarray:
    return np.empty(0)


@dataclass(frozen=True, eq=False)
class Features:
    """What :func:`analyse` read off a curve. Positions are log10 LR; ``x``, ``smoothed``, ``slope`` share a grid.

    Attributes:
        problem: why no LR can be suggested (with the fix), or None.
        n_finite: number of finite losses.
        x, smoothed, slope: uniform log10-LR grid (up to the blow-up), smoothed loss, d(smoothed)/d(log10 LR).
        half: half the smoothing window, in grid points.
        i_min: grid index of the smoothed minimum.
        x_min: log10 LR of the minimum: the grid positions averaged with weights ``exp(-z^2 / 2)``, ``z`` the
            smoothed loss above its minimum in smoothed-noise units, so a flat bottom gives its middle instead
            of an argmin that jumps with the noise.
        start: median raw loss over the plateau before the descent; drop: ``start - smoothed minimum``.
        sigma: raw noise; snr: ``drop / (noise of the smoothed curve)``.
        divergence: first log10 LR after the minimum where the smoothed loss rose by
            ``max(drop / 2, MIN_SNR * smoothed noise)``; else the first blown-up point, or the first LR of a
            trailing run of NaN/inf losses.
        descent: (low, high) log10 LRs where the smoothed loss has made 10% and 90% of its drop (and at least
            2 smoothed noise from either end).
        at_end: the loss was still falling at the last LR (no minimum inside the sweep).
    """

    problem: str | None
    n_finite: int
    x: np.ndarray = field(default_factory=_empty)
    smoothed: np.ndarray = field(default_factory=_empty)
    slope: np.ndarray = field(default_factory=_empty)
    half: int = 0
    i_min: int = 0
    x_min: float = math.nan
    start: float = math.nan
    drop: float = math.nan
    sigma: float = math.nan
    snr: float = math.nan
    divergence: float | None = None
    descent: tuple[float, float] | None = None
    at_end: bool = False


def _crossing(x: np.ndarray, s: np.ndarray, j: int, level: float) -> float:
    """log10 LR where ``s`` crosses ``level`` between grid points j-1 and j (linear interpolation)."""
    if j <= 0 or s[j] == s[j - 1]:
        return float(x[max(j, 0)])
    t = (level - s[j - 1]) / (s[j] - s[j - 1])
    return float(x[j - 1] + min(max(t, 0.0), 1.0) * (x[j] - x[j - 1]))


def analyse(lrs: ArrayLike, losses: ArrayLike) -> Features:
    """Read the features every strategy uses off a range-test curve (see the module docstring for the steps).

    Args:
        lrs: learning rate of each step, strictly increasing (points with LR <= 0 or non-finite are ignored).
        losses: raw loss of each step; NaN/inf are ignored.

    Raises:
        ValueError: when the lengths differ or the learning rates are not increasing.
    """
    from scipy.ndimage import median_filter
    from scipy.signal import savgol_coeffs, savgol_filter

    lr, loss = np.asarray(lrs, dtype=float).ravel(), np.asarray(losses, dtype=float).ravel()
    if lr.shape != loss.shape:
        raise ValueError(f"lrs and losses must have the same length, got {lr.size} and {loss.size}")
    valid = np.isfinite(lr) & (lr > 0)
    if np.any(np.diff(lr[valid]) <= 0):
        raise ValueError("lrs must be strictly increasing (one learning rate per step of the sweep)")
    ok = valid & np.isfinite(loss)
    n = int(ok.sum())
    if n < MIN_POINTS:
        why = f"only {n} finite loss values, need at least {MIN_POINTS}: run the range test with more num_steps"
        return Features(why + " (and check why losses are NaN/inf)", n)
    first, last = int(np.argmax(ok)), len(ok) - 1 - int(np.argmax(ok[::-1]))
    m = int(valid[first : last + 1].sum())
    x = np.linspace(math.log10(lr[first]), math.log10(lr[last]), m)
    y = np.interp(x, np.log10(lr[ok]), loss[ok])
    dx = float(x[1] - x[0])
    w = max(5, min(round(WINDOW_DECADES / dx), m // 4) // 2 * 2 + 1)
    p = median_filter(y, size=5, mode="nearest")
    start = float(np.median(y[:w]))
    i_p = int(np.argmin(p))
    d0 = start - float(p[i_p])
    gone = np.flatnonzero(p[i_p:] > start + d0)  # the loss came back above start + drop: blow-up, not noise
    stop = max(i_p + int(gone[0]) if gone.size else m, min(m, MIN_POINTS))
    sigma = 1.4826 * float(np.median(np.abs(np.diff(y[:stop], 2)))) / math.sqrt(6.0)
    sigma = max(sigma, 1e-9 * float(np.ptp(np.percentile(y[:stop], [5, 95]))))  # >= 90% equal values: flat
    cap = float(p[i_p]) + 2.0 * max(d0, 3.0 * sigma)
    over = np.flatnonzero(p[i_p:] > cap)  # past the blow-up: left out like NaN, so the smoother cannot ring
    end = max(i_p + int(over[0]) if over.size else m, min(m, MIN_POINTS))
    w = min(w, (end - 1) // 2 * 2 + 1)
    y_clean = np.minimum(np.maximum(y, p - 3 * sigma), np.minimum(p + 3 * sigma, cap))[:end]
    s = savgol_filter(y_clean, w, 2, mode="interp")
    g = savgol_filter(y_clean, w, 2, deriv=1, delta=dx, mode="interp")
    sigma_s = sigma * float(np.linalg.norm(savgol_coeffs(w, 2)))
    i_min = int(np.argmin(s))
    before = np.flatnonzero(s[: i_min + 1] >= start - 0.1 * (start - s[i_min]))  # the plateau before the descent
    start = float(np.median(y[: max(w, int(before[-1]) + 1 if before.size else 0)]))
    drop = start - float(s[i_min])
    snr = drop / sigma_s if sigma_s > 0 else 0.0
    level = float(s[i_min]) + max(0.5 * drop, MIN_SNR * sigma_s)
    up = np.flatnonzero(s[i_min:] >= level) if sigma_s > 0 else np.empty(0, int)
    divergence = _crossing(x, s, i_min + int(up[0]), level) if up.size else None
    trailing = valid[last + 1 :]
    # a blow-up, not a noise bump: the smoothed loss stays above the level from the crossing on (or the loss left
    # the capped range / ended in NaN/inf without an earlier crossing)
    sustained = bool(np.all(s[i_min + int(up[0]) :] >= level)) if up.size else end < m or bool(trailing.any())
    if divergence is None and end < m:  # the loss left the capped range
        divergence = float(x[end])
    elif divergence is None and trailing.any():  # the sweep ended in NaN/inf losses
        divergence = math.log10(lr[last + 1 :][trailing][0])
    x = x[:end]
    half = w // 2
    problem, descent, at_end = None, None, False
    if divergence is not None and i_min <= half and sigma_s > 0:
        problem = (
            f"the loss rises from the first points (diverged at {10**divergence:.1e}): start_lr too high: "
            "lower start_lr (e.g. 100x lower)"
        )
    elif snr < WEAK_SNR or (snr < MIN_SNR and not (divergence is not None and sustained)):
        problem = (
            f"model not learning in this range: the loss drop is {max(snr, 0):.1f}x its noise (need {MIN_SNR:g}x, "
            f"or {WEAK_SNR:g}x followed by divergence)"
        )
        problem += (
            f", then it diverged at {10**divergence:.1e}: check the loss/labels and the model"
            if divergence is not None
            else ": check the loss/labels, or raise end_lr / num_steps"
        )
        problem += " (a network that learns slowly may need num_steps=300 or more to show a descent)"
    elif snr >= MIN_SNR:  # descent: 10% and 90% of the drop made (and 2 smoothed noise past either end)
        margin = max(0.1 * drop, 2.0 * sigma_s)
        above = np.flatnonzero(s[: i_min + 1] >= start - margin)
        j_lo = int(above[-1]) if above.size else 0
        low = _crossing(x, s, j_lo + 1, start - margin) if j_lo < i_min else float(x[j_lo])
        j_hi = j_lo + int(np.flatnonzero(s[j_lo : i_min + 1] <= s[i_min] + margin)[0])
        high = _crossing(x, s, j_hi, float(s[i_min]) + margin) if j_hi > j_lo else float(x[j_hi])
        descent, at_end = (low, high), divergence is None and i_min >= end - 1 - half
    excess = (s - s[i_min]) / sigma_s if sigma_s > 0 else np.where(np.arange(end) == i_min, 0.0, np.inf)
    x_min = float(np.average(x, weights=np.exp(-0.5 * np.minimum(excess, 40.0) ** 2)))
    return Features(problem, n, x, s, g, half, i_min, x_min, start, drop, sigma, snr, divergence, descent, at_end)


def steepest(f: Features) -> float | None:
    """LR of the most negative slope of the smoothed loss against log10 LR, up to the minimum.

    None on a weak curve (see :func:`is_weak`). The first half-window (and, when the loss still falls at the
    end, the last one) is skipped: there the Savitzky-Golay slope is an extrapolation.
    """
    if f.problem or f.descent is None:
        return None
    lo = min(f.half, f.i_min)
    hi = max(lo, f.i_min - f.half) if f.at_end else f.i_min
    return float(10 ** f.x[lo + int(np.argmin(f.slope[lo : hi + 1]))])


def minimum(f: Features) -> float | None:
    """LR of the smoothed minimum divided by 10 (one decade left in log10 LR), never below the first LR."""
    if f.problem or f.descent is None:
        return None
    return float(10 ** max(f.x_min - 1.0, f.x[0]))


def valley(f: Features) -> float | None:
    """fastai-like valley: the longest decreasing subsequence of the smoothed loss up to the minimum.

    With k points in that subsequence, ending at grid point e, the valley is taken as the k grid points before
    e (k * step decades of log10 LR); the suggestion is its middle. Known to land low under one-cycle.
    """
    if f.problem or f.descent is None:
        return None
    s = f.smoothed[: f.i_min + 1]
    run = np.ones(s.size, dtype=int)
    for i in range(1, s.size):
        higher = np.flatnonzero(s[:i] > s[i])
        if higher.size:
            run[i] = run[higher].max() + 1
    end = int(np.argmax(run))
    return float(10 ** f.x[max(0, end - int(run[end]) // 2)])


def is_weak(f: Features) -> bool:
    """A usable but weak curve: no problem, yet no clear descent (``WEAK_SNR <= snr < MIN_SNR``, diverged)."""
    return f.problem is None and f.descent is None


def _default_choice(f: Features) -> tuple[float, str] | None:
    if f.problem:
        return None
    if f.descent is None:  # weak: the rule on the noisier minimum, never before the first LR
        x_pick, how = _below_minimum(f)
        if x_pick < f.x[0]:
            x_pick, how = float(f.x[0]), how + ", raised to the first LR"
        return float(10**x_pick), how + "; weak curve, low confidence"
    low, high = f.descent
    inside = np.flatnonzero((f.x >= low) & (f.x <= high) & (f.slope < 0))
    x_steep = (low + high) / 2
    if inside.size:  # centre of the steepest part: slope-weighted mean where the slope is >= half its peak
        fall = -f.slope[inside]
        part = fall >= 0.5 * fall.max()
        x_steep = float(np.average(f.x[inside][part], weights=fall[part]))
    if f.at_end:
        x_pick, how = x_steep, "centre of the steepest part of the descent"
        if not low <= x_pick <= high:
            x_pick, how = min(max(x_pick, low), high), how + ", moved inside the descent"
        return float(10**x_pick), how
    x_pick, how = _below_minimum(f)
    if x_pick < low:
        x_pick, how = low, how + ", raised to the start of the descent"
    return float(10**x_pick), how


def _below_minimum(f: Features) -> tuple[float, str]:
    """log10 of ``min(min_loss_lr / MIN_LOSS_FACTOR, divergence_lr / DIVERGENCE_FACTOR)``, and the rule in words."""
    x_pick = f.x_min - math.log10(MIN_LOSS_FACTOR)
    how = f"min_loss_lr / {MIN_LOSS_FACTOR:g}"
    if f.divergence is not None and f.divergence - math.log10(DIVERGENCE_FACTOR) < x_pick:
        x_pick, how = f.divergence - math.log10(DIVERGENCE_FACTOR), f"divergence_lr / {DIVERGENCE_FACTOR:g}"
    return x_pick, how


def default(f: Features) -> float | None:
    """Robust default: ``min(min_loss_lr / 2, divergence_lr / 10)``, never below the start of the descent (where
    10% of the drop is made). When the loss is still falling at the last LR, the centre of the steepest part of
    the descent instead (the slope-weighted mean position of the descent's grid points whose slope is at least
    half the steepest; on a broad descent the slope peak is flat and its argmin jumps with noise), clamped to the
    descent. On a weak curve (:func:`is_weak`) the same rule, never below the first LR.
    """
    choice = _default_choice(f)
    return None if choice is None else choice[0]


#: Suggestion strategies by name; each maps :class:`Features` to an LR or None.
STRATEGIES: dict[str, Callable[[Features], float | None]] = {
    "default": default,
    "steepest": steepest,
    "minimum": minimum,
    "valley": valley,
}


def smooth_log(lrs: ArrayLike, losses: ArrayLike) -> np.ndarray:
    """The zero-phase smoothed loss at each input LR (for plotting); NaN where the LR is invalid, outside the
    finite span, past the blow-up, or where the curve has too few finite points.

    Example:
        >>> lrs = np.geomspace(1e-5, 1, 40)
        >>> bool(np.allclose(smooth_log(lrs, np.linspace(3, 1, 40)), np.linspace(3, 1, 40)))
        True
    """
    f = analyse(lrs, losses)
    lr = np.asarray(lrs, dtype=float).ravel()
    out = np.full(lr.shape, np.nan)
    if f.x.size:
        with np.errstate(divide="ignore", invalid="ignore"):
            xl = np.log10(lr)
        keep = np.isfinite(xl) & (xl >= f.x[0]) & (xl <= f.x[-1])
        out[keep] = np.interp(xl[keep], f.x, f.smoothed)
    return out


def _evidence(f: Features, picks: Mapping[str, float | None]) -> dict[str, float]:
    ev: dict[str, float] = {"finite_points": float(f.n_finite)}
    if math.isfinite(f.drop):
        ev.update(snr=float(f.snr))
        if f.start != 0:  # relative to the start level: scale invariant
            ev.update(loss_drop=f.drop / abs(f.start), noise=f.sigma / abs(f.start))
    if f.divergence is not None:
        ev["divergence_lr"] = float(10**f.divergence)
    if f.problem is None:
        ev["min_loss_lr"] = float(10**f.x_min)
    if f.problem is None and f.descent is not None:
        ev.update(
            descent_low_lr=float(10 ** f.descent[0]),
            descent_high_lr=float(10 ** f.descent[1]),
        )
        for name in ("steepest", "valley"):
            if picks.get(name) is not None:
                ev[f"{name}_lr"] = float(picks[name])  # type: ignore[arg-type]
    return ev


def _confidence(f: Features, picks: Mapping[str, float | None]) -> float:
    """Confidence in [0, 1], as described in the module docstring."""
    low, high = f.descent or (0.0, 0.0)
    length = min(max((high - low) / 2.0, 0.0), 1.0)
    clarity = min(max(math.log10(max(f.snr, 1e-12) / MIN_SNR), 0.0), 1.0)
    found = [math.log10(v) for k in ("steepest", "minimum") if (v := picks.get(k)) is not None]
    agree = min(max(1.0 - (max(found) - min(found)) / 2.0, 0.0), 1.0) if found else 0.0
    shape = 1.0 if f.divergence is not None else (0.5 if f.at_end else 0.8)
    return round(shape * (length + clarity + agree) / 3.0, 3)


def suggest(lrs: ArrayLike, losses: ArrayLike, *, method: str = "default") -> Suggestion:
    """Suggest a learning rate from a range-test curve.

    Args:
        lrs: learning rate of each step (strictly increasing).
        losses: raw loss of each step; NaN/inf are ignored.
        method: a name in :data:`STRATEGIES`; the others are reported in ``alternatives``.

    Returns:
        A :class:`Suggestion`. ``lr`` is None (with the fix in ``reason``) for too few points, a flat curve or
        a loss rising from the first points. ``confidence``: see the module docstring. ``evidence``
        holds, when found: ``min_loss_lr``, ``steepest_lr``, ``valley_lr``, ``descent_low_lr``,
        ``descent_high_lr``, ``divergence_lr``, ``loss_drop`` and ``noise`` (both relative to the start level),
        ``snr`` and ``finite_points``.

    Raises:
        ValueError: for an unknown ``method``, or inputs :func:`analyse` rejects.
    """
    if method not in STRATEGIES:
        raise ValueError(f"method must be one of {sorted(STRATEGIES)}, got {method!r}")
    f = analyse(lrs, losses)
    picks = {name: rule(f) for name, rule in STRATEGIES.items()}
    others = {name: lr for name, lr in picks.items() if name != method}
    evidence = _evidence(f, picks)
    lr = picks[method]
    if f.problem or lr is None:
        why = f.problem or f"strategy {method!r} found no LR"
        if is_weak(f):
            why += f": the descent is weak (drop {f.snr:.1f}x noise, under {MIN_SNR:g}x); the default rule answers"
        return Suggestion(None, method, 0.0, why, others, evidence)
    choice = _default_choice(f)
    how = choice[1] if method == "default" and choice else f"{method} rule"
    if f.descent is None:  # weak: only the default rule answers
        parts = [
            f"weak descent: the loss drop is only {f.snr:.1f}x its noise (need {MIN_SNR:g}x for a confident "
            f"answer): rerun with more num_steps or larger batches to confirm",
            f"noisy loss minimum at {10**f.x_min:.1e}",
            f"diverged at {10**f.divergence:.1e}" if f.divergence is not None else "no divergence seen",
            f"chose {lr:.1e} ({how})",
        ]
        return Suggestion(lr, method, WEAK_CONFIDENCE, "; ".join(parts), others, evidence)
    low, high = f.descent
    parts = [
        f"steepest stable descent {10**low:.1e}..{10**high:.1e} ({high - low:.1f} decades, "
        f"drop {min(f.snr, 1e4):.0f}x noise)"
    ]
    if f.at_end:
        parts.append(f"loss still falling at the last LR {10 ** f.x[-1]:.1e}: end_lr may be too low, raise it")
    else:
        parts.append(f"loss minimum at {10**f.x_min:.1e}")
    parts.append(f"diverged at {10**f.divergence:.1e}" if f.divergence is not None else "no divergence seen")
    parts.append(f"chose {lr:.1e} ({how})")
    return Suggestion(lr, method, _confidence(f, picks), "; ".join(parts), others, evidence)

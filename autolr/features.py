"""Range-test curve -> :class:`Features`: what every suggestion rule reads. Pure numpy (the median and
Savitzky-Golay filters are bitwise ports of scipy's); never imports torch. The x axis is always log10 LR.

:func:`analyse` works in five steps:

1. Keep the finite points and resample them on a uniform log10-LR grid (NaN gaps are interpolated).
2. Noise ``sigma``: robust spread of second differences (``1.4826 * MAD / sqrt(6)``), blind to smooth trends, over
   the points before the loss comes back above its start (at least ``MIN_POINTS``; a rise from the start is only
   reported once confirmed with the noise of two smoothing windows, so a calm first stretch cannot make a flat
   curve's first noise bump read as a blow-up; and only when the rise is sustained, see step 5).
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
   Half the drop, not more: a sweep stopped at "4x the best EMA" often ends before more. When that first
   crossing is a noise bump (the loss falls back below the level), the start of the final run above the level
   counts instead, if that run ends in a blow-up or spans a whole window (``sustained``).

It also classifies the curve: ``problem`` (no LR can be read, with the fix), a clear descent (``snr >= MIN_SNR``),
a weak one (``WEAK_SNR <= snr < MIN_SNR`` then a sustained divergence), or ``flat`` (no descent, then a sustained
divergence at least ``FLAT_MIN_DECADES`` after the first LR). :mod:`autolr.suggest` turns that into a suggestion.

Example:
    >>> import numpy as np
    >>> lrs = np.geomspace(1e-7, 10, 100)
    >>> x = np.log10(lrs)
    >>> f = analyse(lrs, 0.5 + 2 / (1 + np.exp(2 * (x + 3.5))) + np.exp(4 * (x + 0.5)))
    >>> f.problem is None, f.flat, -5 < f.descent[0] < f.descent[1] < f.x_min < f.divergence < 0
    (True, False, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "FLAT_MIN_DECADES",
    "LONG_SWEEP_POINTS",
    "MIN_POINTS",
    "MIN_SNR",
    "WEAK_SNR",
    "WINDOW_DECADES",
    "Features",
    "analyse",
    "smooth_log",
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
#: From this many finite points on, "not learning" advises a larger batch rather than more steps: a fine-tune's
#: second sweep (3 x 100 steps) that stops at its blow-up has about 250.
LONG_SWEEP_POINTS = 200
#: A flat curve must run this many decades (from the first LR) before its sustained divergence to count as
#: ``flat`` (shorter: the loss rises from the start, ``start_lr`` too high).
FLAT_MIN_DECADES = 2.0


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
        flat: a sustained divergence at least ``FLAT_MIN_DECADES`` after the first LR, with no descent before
            it: ``snr < WEAK_SNR``, a minimum in the first half-window, or a weak dip (``snr < MIN_SNR``) more
            than ``FLAT_MIN_DECADES`` below the divergence. The curve's only information is the stability edge
            (see :func:`autolr.suggest.default`).
        start_too_high: the loss rises from the first points (``problem`` says so): the minimum sits in the first
            half-window and a sustained blow-up follows (not a bump the loss falls back from), on a curve that is
            not flat. A longer sweep would not help; a lower ``start_lr`` would.
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
    flat: bool = False
    start_too_high: bool = False


def _crossing(x: np.ndarray, s: np.ndarray, j: int, level: float) -> float:
    """log10 LR where ``s`` crosses ``level`` between grid points j-1 and j (linear interpolation)."""
    if j <= 0 or s[j] == s[j - 1]:
        return float(x[max(j, 0)])
    t = (level - s[j - 1]) / (s[j] - s[j - 1])
    return float(x[j - 1] + min(max(t, 0.0), 1.0) * (x[j] - x[j - 1]))


# numpy ports of what analyse() used from scipy and numpy, operation for operation, so the results are bitwise the
# same (tests/test_suggest.py checks them against scipy and numpy): importing scipy.signal took about 1.2 s of a
# first lr_find call, and the first np.median or np.percentile imports numpy.ma (about 40 ms).


def _median(a: np.ndarray) -> float:
    """``float(np.median(a))`` of a non-empty 1-d array."""
    s = np.sort(a)
    if np.isnan(s[-1]):  # sorted last; np.median gives NaN then
        return math.nan
    mid = s.size // 2
    return float(s[mid]) if s.size % 2 else float((s[mid - 1] + s[mid]) / 2)


def _percentile_range(a: np.ndarray, low: float, high: float) -> float:
    """``float(np.ptp(np.percentile(a, [low, high])))`` of a non-empty 1-d array (linear interpolation)."""
    s = np.sort(a)
    if np.isnan(s[-1]):
        return math.nan
    out = []
    for q in (low / 100, high / 100):
        at = (s.size - 1) * q  # numpy's virtual index, neighbours and _lerp
        i, j = (-1, -1) if at >= s.size - 1 else (math.floor(at), math.floor(at) + 1)
        t, a0, b0 = at - i, s[i], s[j]
        diff = b0 - a0
        out.append(b0 - diff * (1 - t) if t >= 0.5 else a0 + diff * t)
    return float(max(out) - min(out))


def _median_filter5(y: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.median_filter(y, size=5, mode="nearest")`` of a 1-d array."""
    padded = np.concatenate((np.repeat(y[:1], 2), y, np.repeat(y[-1:], 2)))
    return np.partition(np.lib.stride_tricks.sliding_window_view(padded, 5), 2, axis=1)[:, 2]


def _savgol_coeffs(w: int, deriv: int = 0, delta: float = 1.0) -> np.ndarray:
    """``scipy.signal.savgol_coeffs(w, 2, deriv, delta)`` for an odd window ``w`` (convolution order)."""
    x = np.arange(w // 2, -(w // 2) - 1, -1, dtype=float)
    rhs = np.zeros(3)
    rhs[deriv] = math.factorial(deriv) / delta**deriv
    return np.linalg.lstsq(x ** np.arange(3.0)[:, None], rhs, rcond=np.finfo(float).eps * w)[0]


def _savgol_filter(y: np.ndarray, w: int, deriv: int = 0, delta: float = 1.0) -> np.ndarray:
    """``scipy.signal.savgol_filter(y, w, 2, deriv=deriv, delta=delta, mode="interp")`` for an odd ``5 <= w <=
    len(y)``: the interior is ``scipy.ndimage.convolve1d`` (zero padding) with its summation order, each end the
    quadratic fitted to the first or last ``w`` points."""
    n, half, eps = y.size, w // 2, np.finfo(float).eps
    fw = _savgol_coeffs(w, deriv, delta)[::-1]  # correlation weights, centre at fw[half]
    padded = np.concatenate((np.zeros(half), y, np.zeros(half)))
    upper, lower = fw[half + 1 :], fw[half - 1 :: -1]
    symmetric = bool(np.all(np.abs(upper - lower) <= eps))
    if symmetric or np.all(np.abs(upper + lower) <= eps):  # ndimage's (anti)symmetric loop
        out = y * fw[half]
        for j in range(-half, 0):
            left, right = padded[half + j : half + j + n], padded[half - j : half - j + n]
            out += (left + right if symmetric else left - right) * fw[half + j]
    else:  # its general loop
        out = padded[2 * half :] * fw[2 * half]
        for j in range(-half, half):
            out += padded[half + j : half + j + n] * fw[half + j]
    t = np.arange(w, dtype=float)  # the ends: scipy's polyfit (scaled Vandermonde, lstsq) and polyval
    lhs = t[:, None] ** np.arange(2.0, -1.0, -1.0)[None, :]
    scale = np.sqrt(np.sum(lhs * lhs, axis=0))
    lhs /= scale
    for edge, at, ends in ((y[:w], t[:half], slice(0, half)), (y[n - w :], t[w - half :], slice(n - half, n))):
        c = (np.linalg.lstsq(lhs, edge[:, None], rcond=w * eps)[0].T / scale).T
        if deriv:
            c = c[:-1] * np.array([[2.0], [1.0]])
        v = np.zeros((half, 1))
        for k in range(c.shape[0]):
            v = v * at[:, None] + c[k, ...]
        out[ends] = (v / delta**deriv).reshape(half)
    return out


def analyse(lrs: ArrayLike, losses: ArrayLike) -> Features:
    """Read the features every strategy uses off a range-test curve (see the module docstring for the steps).

    Args:
        lrs: learning rate of each step, strictly increasing (points with LR <= 0 or non-finite are ignored).
        losses: raw loss of each step; NaN/inf are ignored.

    Raises:
        ValueError: when the lengths differ or the learning rates are not increasing.
    """
    f = _analyse(lrs, losses, wide_noise=False)
    if f.start_too_high:
        # confirm a rise from the start against the noise of two smoothing windows: when the minimum sits at the
        # start, the noise is otherwise read off its first MIN_POINTS points, and a calm stretch there turns a flat
        # curve's first noise bump into a "blow-up" (a trained model's sweep, seen on the fine-tuning benchmark)
        wide = _analyse(lrs, losses, wide_noise=True)
        if not wide.start_too_high:
            return wide
    return f


def _analyse(lrs: ArrayLike, losses: ArrayLike, *, wide_noise: bool) -> Features:
    """:func:`analyse`; ``wide_noise`` reads the noise off at least two smoothing windows instead of MIN_POINTS."""
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
    p = _median_filter5(y)
    start = _median(y[:w])
    i_p = int(np.argmin(p))
    d0 = start - float(p[i_p])
    gone = np.flatnonzero(p[i_p:] > start + d0)  # the loss came back above start + drop: blow-up, not noise
    stop = max(i_p + int(gone[0]) if gone.size else m, min(m, max(MIN_POINTS, 2 * w) if wide_noise else MIN_POINTS))
    sigma = 1.4826 * _median(np.abs(np.diff(y[:stop], 2))) / math.sqrt(6.0)
    sigma = max(sigma, 1e-9 * _percentile_range(y[:stop], 5, 95))  # >= 90% equal values: flat
    cap = float(p[i_p]) + 2.0 * max(d0, 3.0 * sigma)
    over = np.flatnonzero(p[i_p:] > cap)  # past the blow-up: left out like NaN, so the smoother cannot ring
    end = max(i_p + int(over[0]) if over.size else m, min(m, MIN_POINTS))
    w = min(w, (end - 1) // 2 * 2 + 1)
    y_clean = np.minimum(np.maximum(y, p - 3 * sigma), np.minimum(p + 3 * sigma, cap))[:end]
    s = _savgol_filter(y_clean, w)
    g = _savgol_filter(y_clean, w, deriv=1, delta=dx)
    sigma_s = sigma * float(np.linalg.norm(_savgol_coeffs(w)))
    i_min = int(np.argmin(s))
    before = np.flatnonzero(s[: i_min + 1] >= start - 0.1 * (start - s[i_min]))  # the plateau before the descent
    start = _median(y[: max(w, int(before[-1]) + 1 if before.size else 0)])
    drop = start - float(s[i_min])
    snr = drop / sigma_s if sigma_s > 0 else 0.0
    level = float(s[i_min]) + max(0.5 * drop, MIN_SNR * sigma_s)
    up = np.flatnonzero(s[i_min:] >= level) if sigma_s > 0 else np.empty(0, int)
    divergence = _crossing(x, s, i_min + int(up[0]), level) if up.size else None
    trailing = valid[last + 1 :]
    # a blow-up, not a noise bump: the smoothed loss stays above the level from the crossing on (or the loss left
    # the capped range / ended in NaN/inf without an earlier crossing)
    sustained = bool(np.all(s[i_min + int(up[0]) :] >= level)) if up.size else end < m or bool(trailing.any())
    if up.size and not sustained:  # a noise bump first: a trailing run above the level that ends in a blow-up
        j = i_min + int(np.flatnonzero(s[i_min:] < level)[-1]) + 1  # (or spans a whole window) is the divergence
        if j < end and (end < m or trailing.any() or end - j >= w):
            divergence, sustained = _crossing(x, s, j, level), True
    if divergence is None and end < m:  # the loss left the capped range
        divergence = float(x[end])
    elif divergence is None and trailing.any():  # the sweep ended in NaN/inf losses
        divergence = math.log10(lr[last + 1 :][trailing][0])
    x = x[:end]
    half = w // 2
    problem, descent, at_end = None, None, False
    excess = (s - s[i_min]) / sigma_s if sigma_s > 0 else np.where(np.arange(end) == i_min, 0.0, np.inf)
    x_min = float(np.average(x, weights=np.exp(-0.5 * np.minimum(excess, 40.0) ** 2)))
    # a sustained blow-up after a stretch of FLAT_MIN_DECADES or more: the stability edge, readable without a descent
    edge = divergence is not None and sustained and divergence - x[0] >= FLAT_MIN_DECADES
    # no descent either: a minimum in the first half-window, or a weak one far below the blow-up (a noise dip)
    far = divergence is not None and divergence - x_min > FLAT_MIN_DECADES
    flat = edge and (snr < WEAK_SNR or i_min <= half or (snr < MIN_SNR and far))
    # a rise from the start is a blow-up only when it is sustained: a bump the loss falls back from is noise (a new
    # head's binary loss at batch 8 read as "diverged at 3.5e-05" on the fine-tuning benchmark)
    start_too_high = divergence is not None and sustained and i_min <= half and sigma_s > 0 and not flat
    if start_too_high:
        problem = (
            f"the loss rises from the first points (diverged at {10**divergence:.1e}): start_lr too high: "
            "lower start_lr (e.g. 100x lower)"
        )
    elif flat:
        pass  # the flat tier: see _default_choice
    elif snr < WEAK_SNR or (snr < MIN_SNR and not (divergence is not None and sustained)):
        problem = (
            f"model not learning in this range: the loss drop is {max(snr, 0):.1f}x its noise (need {MIN_SNR:g}x, "
            f"or {WEAK_SNR:g}x followed by divergence)"
        )
        long_sweep = n >= LONG_SWEEP_POINTS
        if divergence is not None and sustained:
            problem += f", then it diverged at {10**divergence:.1e}: check the loss/labels and the model"
        elif divergence is not None:  # the rise fell back: noise, not a blow-up to read an edge from
            problem += f"; its rise at {10**divergence:.1e} fell back (noise, not a divergence): check the loss/labels"
        else:
            problem += ": check the loss/labels, or raise end_lr" + ("" if long_sweep else " / num_steps")
        problem += (
            " (the sweep is long already: a loss this noisy may need a larger batch in the range test)"
            if long_sweep
            else " (a network that learns slowly may need num_steps=300 or more to show a descent)"
        )
    elif snr >= MIN_SNR:  # descent: 10% and 90% of the drop made (and 2 smoothed noise past either end)
        margin = max(0.1 * drop, 2.0 * sigma_s)
        above = np.flatnonzero(s[: i_min + 1] >= start - margin)
        j_lo = int(above[-1]) if above.size else 0
        low = _crossing(x, s, j_lo + 1, start - margin) if j_lo < i_min else float(x[j_lo])
        j_hi = j_lo + int(np.flatnonzero(s[j_lo : i_min + 1] <= s[i_min] + margin)[0])
        high = _crossing(x, s, j_hi, float(s[i_min]) + margin) if j_hi > j_lo else float(x[j_hi])
        descent, at_end = (low, high), divergence is None and i_min >= end - 1 - half
    return Features(
        problem, n, x, s, g, half, i_min, x_min, start, drop, sigma, snr, divergence, descent, at_end, flat,
        start_too_high,
    )


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

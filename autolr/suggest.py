"""Curve -> learning-rate suggestion. Pure numpy; never imports torch.

Every rule reads the same :class:`~autolr.features.Features`, computed once by :func:`~autolr.features.analyse`
(resampling, noise, outlier clipping, zero-phase smoothing, then the start level, minimum, drop, descent and
divergence: see :mod:`autolr.features`); the x axis is always log10 LR.

The :func:`default` rule: ``min(min_loss_lr / 2, divergence_lr / 10)`` (``MIN_LOSS_FACTOR``,
``DIVERGENCE_FACTOR``; without divergence, ``min_loss_lr / 2``). On a benchmark of small tasks the constant-LR
optimum sits near half the min-loss LR, and one decade below the divergence LR keeps the pick clear of
instability on curves whose minimum lies close to the blow-up. The pick may lie below the start of the descent:
the divergence LR is a hard limit, while the descent starts where the *sweep* (about a dozen steps per decade)
shows progress, and a slow optimizer (plain SGD) makes progress below that LR in a run of hundreds of steps.
When the loss is still falling at the last LR (no minimum inside the sweep), the centre of the steepest part of
the descent instead (the minimum would only echo end_lr).

No LR (``lr=None``) is suggested when there are fewer than ``MIN_POINTS`` finite losses, when the loss rises
within the first half-window and diverges within ``FLAT_MIN_DECADES`` of the first LR (start_lr too high), or
when the curve is flat with no sustained divergence: ``snr < MIN_SNR`` without one (nothing to read: the reason
says to check the loss/labels or raise num_steps / end_lr).
A drop of ``WEAK_SNR <= snr < MIN_SNR`` followed by a sustained divergence (the smoothed loss stays above the
divergence level to the end of the sweep, or blows up / turns NaN; typical of small-batch, noisy losses) gives
a **weak** suggestion: the same rule on the noisier minimum, with confidence ``WEAK_CONFIDENCE`` and a reason
that says so; the other strategies, which need a clear descent, give None there.
A **flat** curve that then blows up (``snr < WEAK_SNR``, or a minimum in the first half-window, or a weak dip
more than ``FLAT_MIN_DECADES`` below the blow-up; and a sustained divergence at least ``FLAT_MIN_DECADES`` after
the first LR) has one piece of information, the stability edge: the default guesses
``divergence_lr / FLAT_DIVERGENCE_FACTOR`` (as far below the edge as the rule lands on clear curves) with
confidence ``FLAT_CONFIDENCE`` and a reason that says it is a guess. A network on a plateau (an LSTM on a
long-range task) shows such a curve however long the sweep: it leaves the plateau only after more steps at one
LR than a sweep spends anywhere. ``min_loss_lr`` is left out of the evidence, so a one-cycle plan reads the edge.

**Fine-tuning** (``finetune=True``; :func:`autolr.lr_find` reads it off the weights, see
:mod:`autolr.pretrained`): the rules are the same, and a clear curve is read as above. A sweep on a trained model is
usually flat (little left to gain in a few dozen steps; the noise hides the descent), and there the stability edge
is the answer, not a guess: confidence ``FINETUNE_FLAT_CONFIDENCE`` (0.15, so ``min_confidence=0.1`` applies it).
One 100-step sweep reads that edge unsteadily (between seeds it moved by up to 0.6 decades on the fine-tuning
benchmark, ``benchmarks/finetune.py``), so :func:`autolr.lr_find` sweeps such a curve again with ``RESWEEP_FACTOR``
(3) times the steps (:func:`needs_resweep`), and :func:`reread_edge` reads the longer sweep like any sweep: a clear
descent (three times the steps average the noise down) by the default rule, with its divergence cap kept at the same
distance from the edge (a sweep 3x as long blows up about sqrt(3)x lower, so ``divergence_lr * sqrt(3) / 10``:
``RESWEEP_EDGE_EXPONENT``) and its usual confidence (at least ``FINETUNE_RESWEPT_CONFIDENCE``, what the same sweep
gets without a descent); still no
clear descent by ``divergence_lr / FLAT_DIVERGENCE_FACTOR``, with confidence ``FINETUNE_RESWEPT_CONFIDENCE`` (0.3).
That lands within about 0.15 decades of the best constant LR on most of the benchmark's tasks. Every reason starts
with ``fine-tune (<why>)``. A fine-tune's suggestion is its best constant LR; :func:`autolr.make_plan` doubles it
for the peak of a warmup + decay schedule.

Every threshold is a fraction of the drop or a multiple of the noise, so suggestions do not change when a
constant is added to the loss or the loss is rescaled.

Confidence is the mean of three scores in [0, 1], times a shape factor. Scores: descent length (2 decades or
more -> 1), drop/noise (``MIN_SNR`` -> 0, 10x that -> 1), agreement of the steepest and minimum/10 rules (same
LR -> 1, 2 decades apart -> 0). Shape: 1 when divergence was seen, 0.8 for a minimum inside the sweep without
divergence, 0.5 when the loss was still falling at the last LR. A weak suggestion has ``WEAK_CONFIDENCE``, a
flat one ``FLAT_CONFIDENCE``; ``lr_find`` logs a warning for both.

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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .features import MIN_POINTS, MIN_SNR, Features, analyse, smooth_log

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
    "needs_resweep",
    "reread_edge",
    "smooth_log",
    "steepest",
    "suggest",
    "valley",
]

#: The default rule: ``min(min_loss_lr / MIN_LOSS_FACTOR, divergence_lr / DIVERGENCE_FACTOR)``.
MIN_LOSS_FACTOR = 2.0
DIVERGENCE_FACTOR = 10.0
#: Confidence of a weak suggestion (drop between ``WEAK_SNR`` and ``MIN_SNR`` times the noise).
WEAK_CONFIDENCE = 0.1
#: A flat curve (:attr:`Features.flat`) gets a guess from the stability edge alone:
#: ``divergence_lr / FLAT_DIVERGENCE_FACTOR``. The factor is how far below the divergence LR the default rule
#: lands on curves with a clear descent (geometric mean 18 over the benchmark's tuning-half curves, rounded to 20).
FLAT_DIVERGENCE_FACTOR = 20.0
#: Confidence of that guess.
FLAT_CONFIDENCE = 0.05
#: Confidence of a fine-tune's flat-curve reading (the model started trained, see :mod:`autolr.pretrained`): the
#: expected shape there (a trained model has little to gain in a short sweep, so noise hides the descent), and
#: ``divergence_lr / FLAT_DIVERGENCE_FACTOR`` lands within half a decade of the best constant LR on the fine-tuning
#: benchmark's tuning tasks (``benchmarks/finetune.py``), where it is the best rule measured. Above 0.1, so
#: ``min_confidence=0.1`` keeps it; under the ``0.2`` that also skips weak suggestions.
FINETUNE_FLAT_CONFIDENCE = 0.15
#: A fine-tune's sweep with no clear descent is run again with this many times the steps
#: (:func:`autolr.lr_find`'s ``resweep_steps``) and read by :func:`reread_edge`.
RESWEEP_FACTOR = 3
#: Confidence of the edge read off that longer sweep when it still shows no clear descent (:func:`reread_edge`; a
#: clear descent there gets the usual confidence of its reading, and at least this much: it is no less evidence than
#: none): steadier than one 100-step sweep's (between seeds, within about 0.15 decades on most of the fine-tuning
#: benchmark's tasks). Above 0.2, so ``min_confidence=0.2`` (which skips weak and flat single-sweep readings) keeps
#: it.
FINETUNE_RESWEPT_CONFIDENCE = 0.3
#: A sweep ``k`` times as long blows up about ``k ** RESWEEP_EDGE_EXPONENT`` times lower: its noise accumulates over
#: ``k`` times the steps at each LR, and a random walk's spread grows as the square root of its steps. On the
#: fine-tuning benchmark the 300-step sweep's divergence LR sat a median 0.25 decades under the 100-step sweep's (182
#: pairs; sqrt(3) is 0.24 decades). So :func:`reread_edge` caps a clear descent in the longer sweep at
#: ``divergence_lr * k ** RESWEEP_EDGE_EXPONENT / DIVERGENCE_FACTOR``: the same distance below the edge as the
#: default rule keeps on a sweep of the first sweep's length.
RESWEEP_EDGE_EXPONENT = 0.5


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
        finetune: the curve was read as a fine-tune's (the model started trained); :func:`autolr.make_plan`
            then sets the peak of a warmup + decay schedule at twice ``lr``.
    """

    lr: float | None
    method: str
    confidence: float
    reason: str
    alternatives: Mapping[str, float | None] = field(default_factory=dict)
    evidence: Mapping[str, float] = field(default_factory=dict)
    finetune: bool = False

    def evidence_lr(self, key: str) -> float | None:
        """``evidence[key]`` (a learning rate such as ``"divergence_lr"``) when it is a positive, finite number;
        else None.

        Example:
            >>> Suggestion(1e-3, "default", 0.5, "", evidence={"divergence_lr": 0.1}).evidence_lr("divergence_lr")
            0.1
        """
        v = self.evidence.get(key)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "method": self.method,
            "confidence": self.confidence,
            "reason": self.reason,
            "alternatives": dict(self.alternatives),
            "evidence": dict(self.evidence),
            "finetune": self.finetune,
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
            finetune=bool(data.get("finetune", False)),
        )


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
    """A usable but weak curve: no problem, yet no clear descent (``WEAK_SNR <= snr < MIN_SNR`` then diverged, or
    flat then diverged: :attr:`Features.flat`)."""
    return f.problem is None and f.descent is None


def _default_choice(f: Features, divergence_factor: float = DIVERGENCE_FACTOR) -> tuple[float, str] | None:
    if f.problem:
        return None
    if f.flat and f.divergence is not None:  # the stability edge alone: as far below it as the rule usually lands
        return float(10 ** (f.divergence - math.log10(FLAT_DIVERGENCE_FACTOR))), (
            f"divergence_lr / {FLAT_DIVERGENCE_FACTOR:g}; no descent"
        )
    if f.descent is None:  # weak: the rule on the noisier minimum, never before the first LR
        x_pick, how = _below_minimum(f, divergence_factor)
        if x_pick < f.x[0]:
            x_pick, how = float(f.x[0]), how + ", raised to the first LR"
        return float(10**x_pick), how + "; weak curve, low confidence"
    if not f.at_end:  # a minimum inside the sweep: the rule below it
        x_pick, how = _below_minimum(f, divergence_factor)
        return float(10**x_pick), how
    low, high = f.descent
    inside = np.flatnonzero((f.x >= low) & (f.x <= high) & (f.slope < 0))
    x_pick, how = (low + high) / 2, "centre of the steepest part of the descent"
    if inside.size:  # centre of the steepest part: slope-weighted mean where the slope is >= half its peak
        fall = -f.slope[inside]
        part = fall >= 0.5 * fall.max()
        x_pick = float(np.average(f.x[inside][part], weights=fall[part]))
    if not low <= x_pick <= high:
        x_pick, how = min(max(x_pick, low), high), how + ", moved inside the descent"
    return float(10**x_pick), how


def _below_minimum(f: Features, divergence_factor: float = DIVERGENCE_FACTOR) -> tuple[float, str]:
    """log10 of ``min(min_loss_lr / MIN_LOSS_FACTOR, divergence_lr / divergence_factor)``, and the rule in words."""
    if _cap_binds(f, divergence_factor):
        return f.divergence - math.log10(divergence_factor), f"divergence_lr / {divergence_factor:.2g}"  # type: ignore[operator]
    return f.x_min - math.log10(MIN_LOSS_FACTOR), f"min_loss_lr / {MIN_LOSS_FACTOR:g}"


def _cap_binds(f: Features, divergence_factor: float) -> bool:
    """Whether ``divergence_lr / divergence_factor`` lies below ``min_loss_lr / MIN_LOSS_FACTOR`` (the rule below
    the minimum then answers with the cap)."""
    return f.divergence is not None and f.divergence - math.log10(divergence_factor) < f.x_min - math.log10(
        MIN_LOSS_FACTOR
    )


def default(f: Features) -> float | None:
    """Robust default: ``min(min_loss_lr / 2, divergence_lr / 10)``. When the loss is still falling at the last
    LR, the centre of the steepest part of the descent instead (the slope-weighted mean position of the descent's
    grid points whose slope is at least half the steepest; on a broad descent the slope peak is flat and its
    argmin jumps with noise), clamped to the descent. On a weak curve (:func:`is_weak`) the same rule, never
    below the first LR.
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


def _evidence(f: Features, picks: Mapping[str, float | None]) -> dict[str, float]:
    ev: dict[str, float] = {"finite_points": float(f.n_finite)}
    if math.isfinite(f.drop):
        ev.update(snr=float(f.snr))
        if f.start != 0:  # relative to the start level: scale invariant
            ev.update(loss_drop=f.drop / abs(f.start), noise=f.sigma / abs(f.start))
    if f.divergence is not None:
        ev["divergence_lr"] = float(10**f.divergence)
    if f.problem is None and not f.flat:
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


def suggest(
    lrs: ArrayLike, losses: ArrayLike, *, method: str = "default", finetune: bool = False,
    finetune_reason: str | None = None,
) -> Suggestion:
    """Suggest a learning rate from a range-test curve.

    Args:
        lrs: learning rate of each step (strictly increasing).
        losses: raw loss of each step; NaN/inf are ignored.
        method: a name in :data:`STRATEGIES`; the others are reported in ``alternatives``.
        finetune: the model started trained (:func:`autolr.lr_find` reads it off the weights). The rules are the
            same; the reason says so, and a flat curve, the expected shape of a fine-tune's sweep, is read as the
            stability edge with confidence ``FINETUNE_FLAT_CONFIDENCE`` instead of a low-confidence guess
            (:func:`autolr.lr_find` then sweeps again, longer: :func:`reread_edge`).
        finetune_reason: why the model was read as trained (put in the reason); only with ``finetune=True``.

    Returns:
        A :class:`Suggestion`. ``lr`` is None (with the fix in ``reason``) for too few points, a flat curve or
        a loss rising from the first points. ``confidence``: see the module docstring. ``evidence``
        holds, when found: ``min_loss_lr``, ``steepest_lr``, ``valley_lr``, ``descent_low_lr``,
        ``descent_high_lr``, ``divergence_lr``, ``loss_drop`` and ``noise`` (both relative to the start level),
        ``snr`` and ``finite_points``.

    Raises:
        ValueError: for an unknown ``method``, or inputs :func:`analyse` rejects.
    """
    _check_method(method)
    return _suggest(analyse(lrs, losses), method, finetune, finetune_reason, DIVERGENCE_FACTOR)


def _check_method(method: str) -> None:
    if method not in STRATEGIES:
        raise ValueError(f"method must be one of {sorted(STRATEGIES)}, got {method!r}")


def _suggest(
    f: Features, method: str, finetune: bool, finetune_reason: str | None, divergence_factor: float
) -> Suggestion:
    """:func:`suggest` on an analysed curve, with the default rule's divergence cap ``divergence_lr /
    divergence_factor``."""
    choice = _default_choice(f, divergence_factor)
    default_lr = None if choice is None else choice[0]
    picks = {name: default_lr if name == "default" else rule(f) for name, rule in STRATEGIES.items()}
    others = {name: lr for name, lr in picks.items() if name != method}
    evidence = _evidence(f, picks)
    lr = picks[method]
    ft = f"fine-tune ({finetune_reason or 'finetune=True'}): " if finetune else ""
    if f.problem or lr is None:
        why = f.problem or f"strategy {method!r} found no LR"
        if f.flat:
            why += f": there is no descent (drop {max(f.snr, 0):.1f}x noise); the default rule guesses from divergence"
        elif is_weak(f):
            why += f": the descent is weak (drop {f.snr:.1f}x noise, under {MIN_SNR:g}x); the default rule answers"
        return Suggestion(None, method, 0.0, ft + why, others, evidence, finetune)
    how = choice[1] if method == "default" and choice else f"{method} rule"
    if finetune and f.flat and f.divergence is not None:  # the usual shape of a fine-tune's sweep
        parts = [
            f"{ft}little descent (the loss drop is {max(f.snr, 0):.1f}x its noise), as expected of a trained model "
            "in a short sweep",
            f"the stability edge carries over: diverged at {10**f.divergence:.1e}",
            f"chose {lr:.1e} ({how}: as far below the edge as the best constant LR of a fine-tune usually lies); "
            "the best LR may sit up to half a decade either side; a warmup + decay schedule peaks at twice this",
        ]
        return Suggestion(lr, method, FINETUNE_FLAT_CONFIDENCE, "; ".join(parts), others, evidence, finetune)
    if f.flat and f.divergence is not None:  # no descent: only the default rule answers, from the stability edge
        noise = f" (per-step noise {evidence['noise']:.0%} of the loss)" if "noise" in evidence else ""
        parts = [
            f"no descent: the loss drop is only {max(f.snr, 0):.1f}x its noise{noise}, so the model learned "
            "nothing measurable in this sweep: a plateau it takes longer to leave, a descent hidden by noise, an "
            "already trained model, or a problem in the loss, labels or model",
            f"the only reading is the stability edge: diverged at {10**f.divergence:.1e}",
            f"chose {lr:.1e} ({how}): a guess, right for a plateau; if noise hides the descent (small batches) or "
            "the model is already trained, the best LR is likely far lower: check that training at it makes "
            "progress",
        ]
        return Suggestion(lr, method, FLAT_CONFIDENCE, "; ".join(parts), others, evidence)
    if f.descent is None:  # weak: only the default rule answers
        parts = [
            f"{ft}weak descent: the loss drop is only {f.snr:.1f}x its noise (need {MIN_SNR:g}x for a confident "
            f"answer): rerun with more num_steps or larger batches to confirm",
            f"noisy loss minimum at {10**f.x_min:.1e}",
            f"diverged at {10**f.divergence:.1e}" if f.divergence is not None else "no divergence seen",
            f"chose {lr:.1e} ({how})",
        ]
        return Suggestion(lr, method, WEAK_CONFIDENCE, "; ".join(parts), others, evidence, finetune)
    low, high = f.descent
    parts = [
        f"{ft}steepest stable descent {10**low:.1e}..{10**high:.1e} ({high - low:.1f} decades, "
        f"drop {min(f.snr, 1e4):.0f}x noise)"
    ]
    if f.at_end:
        parts.append(f"loss still falling at the last LR {10 ** f.x[-1]:.1e}: end_lr may be too low, raise it")
    else:
        parts.append(f"loss minimum at {10**f.x_min:.1e}")
    parts.append(f"diverged at {10**f.divergence:.1e}" if f.divergence is not None else "no divergence seen")
    parts.append(f"chose {lr:.1e} ({how})")
    if lr < 10 ** f.x[0] * (1 - 1e-9):  # a decade below a divergence that came soon after the start
        parts.append(f"below the sweep's first LR {10 ** f.x[0]:.1e}: rerun with a lower start_lr to see it")
    return Suggestion(lr, method, _confidence(f, picks), "; ".join(parts), others, evidence, finetune)


def needs_resweep(lrs: ArrayLike, losses: ArrayLike) -> bool:
    """Whether a fine-tune's curve is worth sweeping again, longer: it has enough points and no clear descent
    (flat, weak, or "not learning in this range"), and the loss did not rise from the first points (``start_lr``
    too high: a longer sweep would not help).

    Example:
        >>> lrs = np.geomspace(1e-7, 10, 100)
        >>> noise = np.random.default_rng(0).normal(0, 0.05, 100)
        >>> needs_resweep(lrs, 2.3 + noise + np.exp(3 * (np.log10(lrs) + 1)))   # flat, then it blows up
        True
    """
    f = analyse(lrs, losses)
    return f.n_finite >= MIN_POINTS and f.descent is None and not f.start_too_high


def reread_edge(
    lrs: ArrayLike, losses: ArrayLike, first: Suggestion, *, first_steps: int, steps: int,
    method: str = "default", finetune_reason: str | None = None,
) -> Suggestion:
    """Read a fine-tune's longer sweep (``steps`` steps), run because its first sweep (``first_steps`` steps,
    suggestion ``first``) showed no clear descent (:func:`needs_resweep`).

    The longer sweep is read like any sweep. When it shows a clear descent (its drop is at least ``MIN_SNR`` times
    its noise: three times the steps average the noise down), the default rule reads that descent, with its usual
    confidence, but never less than ``FINETUNE_RESWEPT_CONFIDENCE``, which the same sweep would get with no descent.
    Its divergence cap keeps its distance from the edge: a sweep ``k = steps / first_steps`` times as long blows up
    about ``k ** RESWEEP_EDGE_EXPONENT`` times lower, so the cap is ``divergence_lr * k ** 0.5 / DIVERGENCE_FACTOR``.
    When it still shows none, the default rule reads the stability edge alone:
    ``divergence_lr / FLAT_DIVERGENCE_FACTOR``, with confidence ``FINETUNE_RESWEPT_CONFIDENCE`` (with three times
    the steps the edge reading is about three times steadier between seeds on the fine-tuning benchmark). When the
    longer sweep shows neither, ``first`` is kept (or, if it had no LR, whatever the longer curve gives). Another
    ``method`` reads the longer curve with its own rule. The evidence adds ``resweep_steps``, ``first_steps`` and
    ``first_divergence_lr``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> def sweep(n):  # a trained model: flat at 2.3 (noisy), then it blows up near LR 0.1
        ...     lrs = np.geomspace(1e-7, 10, n)
        ...     return lrs, 2.3 + rng.normal(0, 0.05, n) + np.exp(3 * (np.log10(lrs) + 1))
        >>> first = suggest(*sweep(100), finetune=True)
        >>> s = reread_edge(*sweep(300), first, first_steps=100, steps=300)
        >>> s.confidence == FINETUNE_RESWEPT_CONFIDENCE, 1e-4 < s.lr < 1e-2
        (True, True)
    """
    ft = f"fine-tune ({finetune_reason or 'finetune=True'}): "
    snr = first.evidence.get("snr")
    drop = f"loss drop {max(snr, 0):.1f}x its noise, " if snr is not None else ""
    head = (f"{ft}the {first_steps}-step sweep showed no clear descent ({drop}as expected of a trained model), so a "
            f"{steps}-step sweep looked again")
    extra = {"resweep_steps": float(steps), "first_steps": float(first_steps)}
    was = first.evidence.get("divergence_lr")
    if was is not None:
        extra["first_divergence_lr"] = float(was)
    _check_method(method)
    f = analyse(lrs, losses)
    if method == "default" and f.problem is None and f.descent is not None:
        longer = max(steps / first_steps, 1e-9) if first_steps > 0 else 1.0
        factor = DIVERGENCE_FACTOR / longer**RESWEEP_EDGE_EXPONENT
        second = _suggest(f, "default", True, finetune_reason, factor)
        moved = factor != DIVERGENCE_FACTOR and not f.at_end and _cap_binds(f, factor)  # the pick is the moved cap
        why = (f" ({longer:.3g}x the steps: it blows up about {longer**RESWEEP_EDGE_EXPONENT:.2g}x lower than a "
               f"{first_steps}-step sweep, so the cap divergence_lr / {DIVERGENCE_FACTOR:g} keeps its distance from "
               "the edge)") if moved else ""  # fmt: skip
        # a short, just-clear descent can score under the edge reading's confidence; it is no less evidence than no
        # descent on the same sweep (a 0.2-decade descent at 6x noise scored 0.05, and min_confidence=0.1 dropped it)
        return replace(second, confidence=max(second.confidence, FINETUNE_RESWEPT_CONFIDENCE),
                       reason=f"{head} and shows a clear descent, read as any sweep: {second.reason.removeprefix(ft)}"
                              + why, evidence={**second.evidence, **extra})  # fmt: skip
    if method == "default" and f.problem is None and f.divergence is not None:
        picks = {name: rule(f) for name, rule in STRATEGIES.items() if name != "default"}
        lr = float(10 ** (f.divergence - math.log10(FLAT_DIVERGENCE_FACTOR)))
        evidence = {**_evidence(f, picks), **extra}
        parts = [
            f"{head}: still no clear descent, so it reads the stability edge: diverged at {10**f.divergence:.1e} "
            "(the first sweep: " + (f"{was:.1e})" if was is not None else "no edge seen)"),
            f"chose {lr:.1e} (divergence_lr / {FLAT_DIVERGENCE_FACTOR:g}: as far below the edge as the best constant "
            "LR of a fine-tune lies; a warmup + decay schedule peaks at twice this)",
        ]
        return Suggestion(lr, method, FINETUNE_RESWEPT_CONFIDENCE, "; ".join(parts), picks, evidence, True)
    if method == "default" and first.lr is not None:
        return replace(first, reason=f"{first.reason}; a {steps}-step sweep showed no descent and no stability edge "
                                     "either, so this reading stands")
    second = _suggest(f, method, True, finetune_reason, DIVERGENCE_FACTOR)
    return replace(second, reason=f"{head}: {second.reason.removeprefix(ft)}")

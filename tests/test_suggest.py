"""Tests for autolr.suggest: synthetic range-test curves with known descent, minimum and blow-up."""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from autolr.features import MIN_SNR, WEAK_SNR, analyse, smooth_log
from autolr.suggest import (
    FLAT_CONFIDENCE,
    FLAT_DIVERGENCE_FACTOR,
    STRATEGIES,
    WEAK_CONFIDENCE,
    Suggestion,
    needs_resweep,
    suggest,
)

EVIDENCE_KEYS = {"min_loss_lr", "steepest_lr", "valley_lr", "descent_low_lr", "descent_high_lr", "divergence_lr"}
EVIDENCE_KEYS |= {"loss_drop", "noise"}


@dataclass
class Synthetic:
    lrs: np.ndarray
    losses: np.ndarray
    clean: np.ndarray
    low: float  # log10 LR where the clean loss has made 10% of its drop

    @property
    def true_min_lr(self) -> float:
        return float(self.lrs[np.argmin(self.clean)])


def synthetic(
    n: int = 100,
    *,
    start: float = 1e-7,
    end: float = 10.0,
    low: float = -4.0,
    high: float = -2.0,
    top: float = 2.3,
    bottom: float = 0.4,
    blowup: float = -0.5,
    rate: float = 4.0,
    mult: float = 0.0,
    add: float = 0.0,
    seed: int = 0,
    stop_factor: float | None = None,
) -> Synthetic:
    """Flat at ``top``, a logistic descent in log10 LR (10% of the drop at ``low``, 90% at ``high``) towards
    ``bottom``, plus an exponential blow-up that adds one full drop at log10 LR ``blowup``. Noise is
    multiplicative (lognormal, ``mult``) and additive (``add``, in loss units), seeded. With ``stop_factor``
    the sweep stops like a range test: once an EMA of the loss exceeds ``stop_factor`` x its best value.
    """
    lrs = np.geomspace(start, end, n)
    x = np.log10(lrs)
    width = (high - low) / (2 * math.log(9))
    drop = top - bottom
    clean = bottom + drop / (1 + np.exp((x - (low + high) / 2) / width)) + drop * np.exp(rate * (x - blowup))
    rng = np.random.default_rng(seed)
    losses = clean * np.exp(mult * rng.standard_normal(n)) + add * rng.standard_normal(n)
    if stop_factor is not None:
        avg, best = losses[0], losses[0]
        for i in range(1, n):
            avg = 0.9 * avg + 0.1 * losses[i]
            best = min(best, avg)
            if i > 10 and avg > stop_factor * best:
                lrs, losses, clean = lrs[: i + 1], losses[: i + 1], clean[: i + 1]
                break
    return Synthetic(lrs, losses, clean, low)


GOOD = synthetic(mult=0.05, seed=1)

VARIETY = [
    dict(),
    dict(mult=0.05, seed=2),
    dict(mult=0.1, seed=3),
    dict(mult=0.15, seed=4),
    dict(add=0.1, seed=5),
    dict(mult=0.05, stop_factor=4.0, seed=6),
    dict(low=-6.0, high=-3.0, blowup=-1.5, mult=0.08, seed=7),
    dict(low=-3.0, high=-2.0, blowup=-1.0, rate=8.0, mult=0.05, seed=8),
    dict(low=-5.0, high=-2.0, mult=0.05, seed=9),
    dict(n=300, mult=0.1, seed=10),
    dict(n=60, mult=0.05, seed=11),
    dict(top=0.9, bottom=0.6, mult=0.03, seed=12),
    dict(start=1e-5, end=1.0, low=-3.5, high=-2.5, blowup=-1.5, mult=0.05, seed=13),
    dict(low=-2.6, high=-2.2, blowup=-1.8, mult=0.05, seed=14),
]


def _lg(value: float | None) -> float:
    assert value is not None
    return math.log10(value)


# -- strategies on a good curve ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(STRATEGIES))
def test_every_strategy_returns_an_lr_inside_the_sweep(method: str) -> None:
    s = suggest(GOOD.lrs, GOOD.losses, method=method)
    assert s.method == method
    assert s.lr is not None and GOOD.lrs[0] <= s.lr <= GOOD.lrs[-1]
    assert 0.0 < s.confidence <= 1.0
    assert set(s.alternatives) == set(STRATEGIES) - {method}
    assert all(v is not None and GOOD.lrs[0] <= v <= GOOD.lrs[-1] for v in s.alternatives.values())


def test_strategies_read_the_curve_as_documented() -> None:
    f = analyse(GOOD.lrs, GOOD.losses)
    s = suggest(GOOD.lrs, GOOD.losses)
    ev = s.evidence
    assert abs(_lg(ev["min_loss_lr"]) - _lg(GOOD.true_min_lr)) < 0.25
    assert s.alternatives["minimum"] == pytest.approx(ev["min_loss_lr"] / 10)
    # the steepest slope of the clean curve (against log10 LR) sits at the middle of the logistic descent
    assert abs(_lg(s.alternatives["steepest"]) - (-3.0)) < 0.5
    assert s.alternatives["steepest"] == ev["steepest_lr"] and s.alternatives["valley"] == ev["valley_lr"]
    assert f.problem is None and f.descent is not None and not f.at_end
    # the clean curve falls all the way to its minimum: the valley is the whole run, the pick its middle
    valley = suggest(GOOD.lrs, GOOD.clean).alternatives["valley"]
    assert abs(_lg(valley) - (-7.0 + _lg(ev["min_loss_lr"])) / 2) < 0.1


def test_minimum_rule_never_goes_below_the_sweep() -> None:
    c = synthetic(start=1e-3, end=10, low=-3.0, high=-2.5, blowup=-1.9, mult=0.03)
    s = suggest(c.lrs, c.losses, method="minimum")
    assert s.evidence["min_loss_lr"] < 1e-2 and s.lr == pytest.approx(1e-3)


def test_evidence_is_complete_and_consistent_on_a_good_curve() -> None:
    ev = suggest(GOOD.lrs, GOOD.losses).evidence
    assert set(ev) >= EVIDENCE_KEYS
    assert ev["descent_low_lr"] < ev["descent_high_lr"] < ev["min_loss_lr"] < ev["divergence_lr"]
    assert abs(_lg(ev["descent_low_lr"]) - GOOD.low) < 0.3
    # divergence: first LR after the minimum where the clean loss regains half its drop
    x, top, bottom = np.log10(GOOD.lrs), GOOD.clean[0], GOOD.clean.min()
    after = x > _lg(GOOD.true_min_lr)
    half_back = x[after][np.argmax(GOOD.clean[after] >= bottom + 0.5 * (top - bottom))]
    assert abs(_lg(ev["divergence_lr"]) - half_back) < 0.2
    assert ev["loss_drop"] == pytest.approx((top - bottom) / top, abs=0.03)  # relative drop, start to minimum
    assert 0.02 < ev["noise"] < 0.1  # 5% multiplicative noise, relative to the start level


@pytest.mark.parametrize("params", VARIETY, ids=[str(i) for i in range(len(VARIETY))])
def test_default_lands_below_the_minimum_and_a_decade_below_the_blow_up(params: dict) -> None:
    c = synthetic(**params)
    s = suggest(c.lrs, c.losses)
    assert s.lr is not None, s.reason
    ev = s.evidence
    cap = ev.get("divergence_lr", math.inf) / 10
    assert s.lr == pytest.approx(min(ev["min_loss_lr"] / 2, cap), rel=1e-9)
    assert s.lr <= c.true_min_lr
    # inside the descent, unless the descent starts less than a decade below the blow-up (then at the cap)
    assert ev["descent_low_lr"] <= s.lr or (cap < ev["descent_low_lr"] and s.lr == pytest.approx(cap, rel=1e-9))
    assert 10**c.low / 2 <= s.lr or cap < 10**c.low
    assert "chose" in s.reason and f"{s.lr:.1e}" in s.reason


def test_default_is_half_the_minimum_or_a_tenth_of_the_divergence() -> None:
    s = suggest(GOOD.lrs, GOOD.clean)
    ev = s.evidence
    assert s.lr == pytest.approx(min(ev["min_loss_lr"] / 2, ev["divergence_lr"] / 10), rel=1e-9)
    assert "min_loss_lr / 2" in s.reason
    # a minimum close to the blow-up: a decade below the divergence LR
    c = synthetic(low=-5.0, high=-3.0, blowup=-2.5, rate=2.0, mult=0.02, seed=3)
    s = suggest(c.lrs, c.losses)
    ev = s.evidence
    assert ev["divergence_lr"] / 10 < ev["min_loss_lr"] / 2
    assert s.lr == pytest.approx(ev["divergence_lr"] / 10, rel=1e-9) and "divergence_lr / 10" in s.reason


def test_default_keeps_a_decade_below_the_blow_up_when_the_descent_starts_late() -> None:
    # the descent starts less than a decade below the divergence: the stability edge wins, not the descent's start
    c = synthetic(low=-2.6, high=-2.2, blowup=-1.8, mult=0.05, seed=14)
    s = suggest(c.lrs, c.losses)
    assert s.evidence["divergence_lr"] / 10 < s.evidence["descent_low_lr"]
    assert s.lr == pytest.approx(s.evidence["divergence_lr"] / 10, rel=1e-9)
    assert "divergence_lr / 10" in s.reason and "raised" not in s.reason


def test_default_below_the_first_lr_says_so() -> None:
    # the sweep starts just before a short descent and diverges within a decade of its first LR
    c = synthetic(start=1e-3, end=1.0, low=-3.0, high=-2.6, blowup=-2.2, mult=0.03, seed=3, stop_factor=4)
    s = suggest(c.lrs, c.losses)
    assert s.lr is not None and s.lr < c.lrs[0]
    assert s.lr == pytest.approx(s.evidence["divergence_lr"] / 10, rel=1e-9)
    assert "below the sweep's first LR 1.0e-03: rerun with a lower start_lr to see it" in s.reason
    assert "below the sweep's first LR" not in suggest(GOOD.lrs, GOOD.losses).reason


def test_default_prefers_the_long_descent_over_a_noisy_dip() -> None:
    # strong noise in the flat part makes the plain steepest rule pick noise; the default stays in the descent
    picks = [suggest(c.lrs, c.losses) for c in (synthetic(mult=0.3, seed=s) for s in range(8))]
    assert all(p.lr is not None and 10**-4.3 <= p.lr <= 3e-2 for p in picks)
    spread = np.ptp([math.log10(p.lr) for p in picks if p.lr])
    steep_spread = np.ptp([math.log10(p.alternatives["steepest"] or 1.0) for p in picks])
    assert spread < 0.6 < steep_spread


@pytest.mark.parametrize(("offsets", "factor"), [((20, 45, 60, 70), 20.0), ((-6, -4, -2), 4.0), ((-5, -2), 5.0)])
def test_spikes_do_not_move_the_suggestion(offsets: tuple[int, ...], factor: float) -> None:
    spiky = GOOD.losses.copy()
    at_min = int(np.argmin(GOOD.clean))
    spiky[[o if o > 0 else at_min + o for o in offsets]] *= factor
    base, s = suggest(GOOD.lrs, GOOD.losses), suggest(GOOD.lrs, spiky)
    assert abs(_lg(s.lr) - _lg(base.lr)) < 0.15


def test_confidence_drops_with_noise() -> None:
    clean = suggest(GOOD.lrs, GOOD.clean).confidence
    noisy = suggest(*(lambda c: (c.lrs, c.losses))(synthetic(mult=0.3, seed=5))).confidence
    assert 0.7 < clean <= 1.0 and 0.0 <= noisy < clean


# -- honest failures --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_flat_curve_gives_no_lr(seed: int) -> None:
    lrs = np.geomspace(1e-7, 10, 100)
    s = suggest(lrs, 2.0 + 0.05 * np.random.default_rng(seed).standard_normal(100))
    assert s.lr is None and s.confidence == 0.0
    assert "not learning" in s.reason and "end_lr" in s.reason
    assert set(s.alternatives) == set(STRATEGIES) - {"default"} and not any(s.alternatives.values())


def test_a_long_flat_sweep_advises_a_larger_batch_not_more_steps() -> None:
    """A sweep of LONG_SWEEP_POINTS or more already has the steps: its "not learning" reason points at the noise."""
    from autolr.features import LONG_SWEEP_POINTS

    short, long_ = (
        suggest(np.geomspace(1e-7, 10, n), 2.0 + 0.05 * np.random.default_rng(0).standard_normal(n))
        for n in (100, LONG_SWEEP_POINTS)
    )
    assert short.lr is None and "num_steps=300" in short.reason and "larger batch" not in short.reason
    assert long_.lr is None and "not learning" in long_.reason and "larger batch" in long_.reason
    assert "num_steps" not in long_.reason


def test_constant_curve_gives_no_lr() -> None:
    s = suggest(np.geomspace(1e-6, 1, 50), np.full(50, 1.5))
    assert s.lr is None and "not learning" in s.reason


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 7])
def test_noisy_descent_then_divergence_gives_a_weak_suggestion(seed: int) -> None:
    # a real descent buried in strong additive noise (drop 4-6x the smoothed noise), then a blow-up
    c = synthetic(add=1.2, seed=seed)
    s = suggest(c.lrs, c.losses)
    ev = s.evidence
    assert WEAK_SNR <= ev["snr"] < MIN_SNR
    assert s.lr is not None and s.confidence == WEAK_CONFIDENCE and "weak descent" in s.reason
    assert 10**c.low / 10 <= s.lr <= ev["min_loss_lr"] and s.lr <= ev["divergence_lr"] / 10 * (1 + 1e-9)
    assert not any(s.alternatives.values())  # the other strategies need a clear descent
    assert suggest(c.lrs, c.losses, method="steepest").lr is None


@pytest.mark.parametrize("seed", range(4))
def test_flat_then_diverging_curve_guesses_from_the_stability_edge(seed: int) -> None:
    # nothing learned for 6 decades, then a blow-up: the divergence LR is the curve's only information
    lrs = np.geomspace(1e-7, 10, 100)
    losses = 2.0 + np.exp(4 * (np.log10(lrs) + 1)) + 0.05 * np.random.default_rng(seed).standard_normal(100)
    s = suggest(lrs, losses)
    divergence = s.evidence["divergence_lr"]
    assert 3e-3 < divergence < 0.3  # where the exp term rises out of the noise, not an earlier noise bump
    assert not any(s.alternatives.values())  # the other strategies need a descent
    assert s.lr == pytest.approx(divergence / FLAT_DIVERGENCE_FACTOR)
    assert s.confidence == FLAT_CONFIDENCE and s.method == "default"
    assert "no descent" in s.reason and "stability edge" in s.reason and "a guess" in s.reason
    assert "min_loss_lr" not in s.evidence  # so the one-cycle plan reads the divergence, not a noise minimum
    named = suggest(lrs, losses, method="minimum")
    assert named.lr is None and "no descent" in named.reason


def test_flat_tier_holds_over_many_noise_draws() -> None:
    lrs = np.geomspace(1e-7, 10, 100)
    tiers = []
    for seed in range(20):
        noise = 0.05 * np.random.default_rng(seed).standard_normal(100)
        s = suggest(lrs, 2.0 + np.exp(4 * (np.log10(lrs) + 1)) + noise)
        assert s.lr == pytest.approx(s.evidence["divergence_lr"] / FLAT_DIVERGENCE_FACTOR)
        tiers.append((s.confidence, s.evidence["snr"] >= WEAK_SNR))
    # a noise dip of 4-6x far below the blow-up (seed 0) is not read as a weak descent either
    assert all(conf == FLAT_CONFIDENCE for conf, _ in tiers) and any(dip for _, dip in tiers)


def test_flat_stretch_shorter_than_two_decades_is_still_start_lr_too_high() -> None:
    lrs = np.geomspace(1e-3, 10, 100)
    x = np.log10(lrs)
    losses = 2.0 + np.exp(3 * (x + 1.8)) + 0.05 * np.random.default_rng(2).standard_normal(100)
    s = suggest(lrs, losses)
    assert s.lr is None and "start_lr too high" in s.reason


def test_flat_curve_suggestion_gives_a_one_cycle_peak_below_the_edge() -> None:
    from autolr.plan import make_plan

    lrs = np.geomspace(1e-7, 10, 100)
    losses = 2.0 + np.exp(4 * (np.log10(lrs) + 1)) + 0.05 * np.random.default_rng(0).standard_normal(100)
    s = suggest(lrs, losses)
    plan = make_plan(s, param_group_lrs=[1e-3], optimizer_name="Adam", total_steps=300, schedule="onecycle")
    divergence = s.evidence["divergence_lr"]
    assert plan.peak_lr == pytest.approx(math.sqrt(s.lr * divergence / 4))  # about divergence / 9
    assert s.lr < plan.peak_lr < divergence / 4


#: A real sweep (losses to 3 decimals): a pretrained char transformer fine-tuned on prose, AdamW, batch 16, seed 3 of
#: ``prose_transformer_adamw_b16`` (benchmarks/finetune.py). Flat near 2.35 until about 1e-2, then it blows up; its
#: first 15 points happen to be calm (noise 0.05 against 0.14-0.16 over any longer stretch).
CALM_START_SWEEP = [
    2.213, 2.359, 2.297, 2.318, 2.333, 2.407, 2.456, 2.325, 2.375, 2.355, 2.281, 2.211, 2.35, 2.629, 1.905, 2.586,
    2.463, 2.628, 2.244, 2.476, 2.128, 2.391, 2.385, 2.483, 2.683, 2.187, 2.657, 2.441, 2.478, 2.236, 2.494, 2.365,
    2.511, 2.05, 2.378, 2.328, 2.297, 2.217, 2.031, 2.752, 2.48, 2.323, 2.25, 2.168, 2.362, 2.293, 2.388, 2.401,
    2.227, 2.126, 2.289, 2.636, 2.291, 2.62, 2.193, 2.413, 2.314, 2.259, 2.259, 2.467, 2.425, 2.367, 2.184, 2.299,
    2.416, 2.549, 2.455, 2.636, 2.767, 2.921, 2.647, 2.66, 2.889, 2.94, 3.13, 2.914, 3.354, 3.456, 3.59, 3.337,
    3.501, 3.209, 3.403, 4.484, 5.43, 8.185, 14.691, 24.531, 36.114,
]


def test_a_calm_start_is_not_taken_for_the_noise_level() -> None:
    """Read off its first 15 points only, the noise is so low that the first later bump reads as a blow-up at 2e-6
    ("start_lr too high", no LR). A rise from the start is confirmed against the noise of two smoothing windows first:
    this curve is flat, with its edge near 2e-2, and a fine-tune gets an LR (and a second sweep)."""
    from autolr.features import _analyse

    lrs = np.geomspace(1e-7, 10, 100)[: len(CALM_START_SWEEP)]
    narrow = _analyse(lrs, CALM_START_SWEEP, wide_noise=False)
    assert narrow.start_too_high and narrow.problem is not None and "rises from the first points" in narrow.problem
    f = analyse(lrs, CALM_START_SWEEP)
    assert f.problem is None and f.flat and not f.start_too_high and 1e-2 < 10**f.divergence < 5e-2
    s = suggest(lrs, CALM_START_SWEEP, finetune=True)
    assert s.lr == pytest.approx(10**f.divergence / FLAT_DIVERGENCE_FACTOR) and needs_resweep(lrs, CALM_START_SWEEP)


#: A real sweep (losses to 3 decimals): the GRU body of a pretrained char LM with a new head telling intact from
#: corrupted prose windows, Adam, batch 8, seed 6 of ``corrupt_cls_gru_adam`` (benchmarks/finetune.py). A binary loss
#: at batch 8 is noisy (0.59-0.92 in the first 20 points); the first point is low, so the smoothed loss starts at its
#: minimum and a bump near 3e-5 climbs past the divergence level, then falls back. The sweep blows up near 0.7.
NOISY_START_SWEEP = [
    0.597, 0.651, 0.722, 0.699, 0.645, 0.735, 0.787, 0.781, 0.642, 0.922, 0.697, 0.803, 0.734, 0.601, 0.631, 0.773,
    0.757, 0.677, 0.858, 0.753, 0.76, 0.599, 0.593, 0.609, 0.641, 0.729, 0.754, 0.656, 0.694, 0.765, 0.702, 0.733,
    0.913, 0.829, 0.742, 0.847, 0.815, 0.76, 0.815, 0.773, 0.753, 0.658, 0.749, 0.672, 0.609, 0.617, 0.63, 0.608,
    0.699, 0.743, 0.713, 0.662, 0.755, 0.714, 0.717, 0.686, 0.699, 0.643, 0.71, 0.755, 0.846, 0.8, 0.65, 0.648,
    0.644, 0.659, 0.652, 0.627, 0.699, 1.09, 0.631, 0.997, 0.785, 0.726, 0.834, 0.807, 0.62, 2.244, 0.565, 1.318,
    0.87, 0.654, 0.88, 0.535, 0.623, 2.598, 2.97, 2.167, 3.165, 1.762, 4.763, 3.144, 4.58, 0.69, 9.97,
]


def test_a_rise_from_the_start_that_falls_back_is_noise_not_a_blow_up() -> None:
    """"The loss rises from the first points (start_lr too high)" needs a sustained rise. This curve's bump at 3.5e-5
    falls back below the level; read as a blow-up it gave no LR and no second sweep. It reads as no clear descent, so a
    fine-tune sweeps again, longer."""
    lrs = np.geomspace(1e-7, 10, 100)[: len(NOISY_START_SWEEP)]
    f = analyse(lrs, NOISY_START_SWEEP)
    assert not f.start_too_high and f.descent is None
    assert f.problem is not None and "rises from the first points" not in f.problem
    assert needs_resweep(lrs, NOISY_START_SWEEP)
    # nor is it called a divergence (which reads like a stability edge to stay below)
    assert "fell back (noise, not a divergence)" in f.problem and "diverged at" not in f.problem


@pytest.mark.parametrize("points", [100, 30])
def test_curve_rising_from_the_start_asks_for_a_lower_start_lr(points: int) -> None:
    lrs = np.geomspace(1e-3, 10, 100)
    losses = 2.0 * np.exp(np.log10(lrs) + 3) + 0.05 * np.random.default_rng(1).standard_normal(100)
    s = suggest(lrs[:points], losses[:points])
    assert s.lr is None and "start_lr too high" in s.reason and "lower start_lr" in s.reason
    assert analyse(lrs[:points], losses[:points]).start_too_high and not needs_resweep(lrs[:points], losses[:points])
    assert "divergence_lr" in s.evidence


def test_too_few_points_says_how_many_and_what_to_change() -> None:
    lrs, losses = GOOD.lrs[:40].copy(), GOOD.losses[:40].copy()
    losses[12:] = np.nan
    s = suggest(lrs, losses)
    assert s.lr is None and "only 12 finite" in s.reason and "num_steps" in s.reason


def test_descent_to_the_end_is_not_a_failure() -> None:
    c = synthetic(low=-3.0, high=0.5, blowup=5.0, mult=0.05, seed=3)
    s = suggest(c.lrs, c.losses)
    assert s.lr is not None and abs(_lg(s.lr) - (-1.25)) < 0.3  # middle of the logistic descent
    assert "end_lr may be too low" in s.reason and "centre of the steepest part" in s.reason
    assert "divergence_lr" not in s.evidence and s.evidence["min_loss_lr"] > 10**0.5  # near the end of the sweep
    assert s.confidence <= 0.5


def test_trailing_non_finite_losses_mark_the_divergence() -> None:
    i = int(np.argmin(GOOD.clean)) + 4
    losses = GOOD.losses.copy()
    losses[i:] = np.inf
    losses[i + 1 :] = np.nan
    s = suggest(GOOD.lrs, losses)
    assert s.lr is not None
    assert s.evidence["divergence_lr"] == pytest.approx(GOOD.lrs[i])


# -- inputs and the record --------------------------------------------------------------------------------
def test_unknown_method_raises_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="steepest") as err:
        suggest(GOOD.lrs, GOOD.losses, method="fastest")
    assert all(name in str(err.value) for name in STRATEGIES) and "fastest" in str(err.value)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        suggest(GOOD.lrs, GOOD.losses[:-1])
    with pytest.raises(ValueError, match="increasing"):
        suggest(GOOD.lrs[::-1], GOOD.losses)


@pytest.mark.parametrize("curve", [GOOD, synthetic(n=10)], ids=["good", "too-few"])
def test_to_dict_from_dict_round_trip(curve: Synthetic) -> None:
    s = suggest(curve.lrs, curve.losses)
    data = json.loads(json.dumps(s.to_dict()))
    assert Suggestion.from_dict(data) == s


def test_smooth_log_is_zero_phase_and_stops_at_the_blow_up() -> None:
    smoothed = smooth_log(GOOD.lrs, GOOD.losses)
    assert smoothed.shape == GOOD.lrs.shape
    finite = np.isfinite(smoothed)
    assert finite[:70].all() and not finite[-5:].any()  # the blow-up is not smoothed
    # no lag: the smoothed minimum sits at the clean minimum (an EMA's would move right)
    assert abs(math.log10(GOOD.lrs[np.nanargmin(smoothed)]) - _lg(GOOD.true_min_lr)) < 0.25
    assert np.nanmax(np.abs(smoothed[:70] - GOOD.clean[:70])) < 0.15
    quadratic = 1.0 + (np.log10(GOOD.lrs) + 3) ** 2 / 20
    np.testing.assert_allclose(smooth_log(GOOD.lrs, quadratic), quadratic, rtol=1e-9)


def test_module_is_pure_and_imports_scipy_lazily() -> None:
    import autolr.suggest as module

    tree = ast.parse(Path(module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    top_names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    top_names |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    every = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    every |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "scipy" not in top_names and not any(name.startswith("torch") for name in every)


def test_numpy_ports_match_scipy_and_numpy_bitwise() -> None:
    """analyse() uses numpy ports of scipy's median and Savitzky-Golay filters and of np.median/np.percentile
    (their imports cost a first lr_find call about 1.3 s); they must give exactly the same numbers."""
    ndimage, signal = pytest.importorskip("scipy.ndimage"), pytest.importorskip("scipy.signal")
    from autolr import features as f

    rng = np.random.default_rng(0)
    for i in range(300):
        n = int(rng.integers(5, 200))
        y = rng.standard_normal(n).cumsum() * 10 ** rng.uniform(-4, 4)
        if i % 3 == 1:
            y = np.round(y, 1)  # ties
        elif i % 3 == 2:
            y = rng.choice([0.0, 1.0, 2.5], n)
        assert f._median(y) == float(np.median(y))
        assert f._median(y[:-1]) == float(np.median(y[:-1]))
        assert f._percentile_range(y, 5, 95) == float(np.ptp(np.percentile(y, [5, 95])))
        assert np.array_equal(f._median_filter5(y), ndimage.median_filter(y, size=5, mode="nearest"))
        w = min(int(rng.integers(2, n // 2 + 3)) * 2 + 1, n - 1 + n % 2)
        if w < 5:
            continue
        dx = float(rng.uniform(1e-3, 0.5))
        assert np.array_equal(f._savgol_coeffs(w), signal.savgol_coeffs(w, 2))
        assert np.array_equal(f._savgol_filter(y, w), signal.savgol_filter(y, w, 2, mode="interp"))
        expected = signal.savgol_filter(y, w, 2, deriv=1, delta=dx, mode="interp")
        assert np.array_equal(f._savgol_filter(y, w, deriv=1, delta=dx), expected)


# -- properties ---------------------------------------------------------------------------------------------
@st.composite
def curves(draw: st.DrawFn, max_noise: float = 0.15, max_bottom: float = 0.7) -> Synthetic:
    low = draw(st.floats(-6.0, -3.0))
    high = low + draw(st.floats(1.0, 3.0))
    return synthetic(
        n=draw(st.sampled_from([60, 100, 200])),
        low=low,
        high=high,
        blowup=high + draw(st.floats(0.5, 2.0)),
        rate=draw(st.floats(2.0, 8.0)),
        top=(top := draw(st.floats(0.5, 5.0))),
        bottom=top * draw(st.floats(0.05, max_bottom)),
        mult=draw(st.floats(0.0, max_noise)),
        add=draw(st.floats(0.0, 0.02)),
        seed=draw(st.integers(0, 2**16)),
        stop_factor=draw(st.sampled_from([None, 4.0])),
    )


PROPERTY = settings(max_examples=25, deadline=None)


@PROPERTY
@given(curves(max_noise=0.3), st.sampled_from(sorted(STRATEGIES)))
def test_any_suggestion_lies_inside_the_sweep(c: Synthetic, method: str) -> None:
    s = suggest(c.lrs, c.losses, method=method)
    assert 0.0 <= s.confidence <= 1.0
    assert s.lr is None or c.lrs[0] <= s.lr <= c.lrs[-1]


@PROPERTY
@given(curves(max_noise=0.05, max_bottom=0.5))
def test_default_inside_the_descent_property(c: Synthetic) -> None:
    s = suggest(c.lrs, c.losses)
    assert s.lr is not None, s.reason
    assert 10**c.low / 2 <= s.lr <= c.true_min_lr


@PROPERTY
@given(curves(), st.floats(1e-3, 1e3), st.floats(-50.0, 50.0))
def test_invariant_to_shifting_and_rescaling_the_loss(c: Synthetic, scale: float, shift: float) -> None:
    a, b = suggest(c.lrs, c.losses), suggest(c.lrs, scale * c.losses + shift)
    assert (a.lr is None) == (b.lr is None)
    if a.lr is not None:
        assert b.lr == pytest.approx(a.lr, rel=1e-6)
        assert b.confidence == pytest.approx(a.confidence, abs=1e-3)
    for key in ("min_loss_lr", "divergence_lr", "descent_low_lr", "descent_high_lr", "steepest_lr"):
        assert (key in a.evidence) == (key in b.evidence)
        if key in a.evidence:
            assert b.evidence[key] == pytest.approx(a.evidence[key], rel=1e-6)


@PROPERTY
@given(curves(max_noise=0.05, max_bottom=0.5), st.data())
def test_nan_points_away_from_the_descent_are_ignored(c: Synthetic, data: st.DataObject) -> None:
    flat_end = int(np.searchsorted(np.log10(c.lrs), c.low - 1.0))  # a decade before the descent starts
    assume(flat_end >= 4)
    where = data.draw(st.lists(st.integers(0, flat_end - 1), min_size=1, max_size=4, unique=True))
    holed = c.losses.copy()
    holed[where] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    a, b = suggest(c.lrs, c.losses), suggest(c.lrs, holed)
    snr = a.evidence["snr"]
    if not 0.75 * MIN_SNR < snr < 1.33 * MIN_SNR:  # a curve right at the flatness threshold may tip over
        assert (a.lr is None) == (b.lr is None)
    if a.lr is not None and b.lr is not None and snr >= 2 * MIN_SNR:
        # within a factor of 2 (0.3 decades, about one step of a 4-per-decade LR grid) even in the worst case
        # hypothesis finds; typical changes are under 0.02 decades
        assert abs(_lg(b.lr) - _lg(a.lr)) < 0.3
        assert abs(_lg(b.evidence["min_loss_lr"]) - _lg(a.evidence["min_loss_lr"])) < 0.3


@PROPERTY
@given(curves(max_noise=0.3))
def test_deterministic(c: Synthetic) -> None:
    assert suggest(c.lrs, c.losses).to_dict() == suggest(c.lrs.copy(), list(c.losses)).to_dict()


@st.composite
def flat_then_blowup(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float]:
    """A curve with no descent (noise only) until a blow-up that starts 2.5-7 decades into the sweep."""
    n = draw(st.integers(40, 200))
    lrs = np.geomspace(1e-7, 10, n)
    edge = draw(st.floats(-4.5, 0.5))  # log10 LR where the exponential rise starts
    noise = draw(st.floats(0.005, 0.2))
    seed = draw(st.integers(0, 2**16))
    x = np.log10(lrs)
    losses = 1.0 + np.exp(np.minimum(5 * (x - edge), 30))
    return lrs, losses + noise * np.random.default_rng(seed).standard_normal(n), edge


@PROPERTY
@given(flat_then_blowup(), st.floats(1e-3, 1e3), st.floats(-50.0, 50.0))
def test_flat_tier_is_invariant_and_stays_below_the_edge(curve, scale: float, shift: float) -> None:
    lrs, losses, edge = curve
    a, b = suggest(lrs, losses), suggest(lrs, scale * losses + shift)
    assert (a.lr is None) == (b.lr is None) and a.confidence == pytest.approx(b.confidence, abs=1e-3)
    if a.lr is None:
        return
    assert b.lr == pytest.approx(a.lr, rel=1e-6)
    assert lrs[0] <= a.lr <= a.evidence["divergence_lr"] / 10
    if a.confidence == FLAT_CONFIDENCE:
        assert a.lr == pytest.approx(a.evidence["divergence_lr"] / FLAT_DIVERGENCE_FACTOR)
        assert a.evidence["divergence_lr"] < 10 ** (edge + 1.5)  # read where the blow-up is, not past it

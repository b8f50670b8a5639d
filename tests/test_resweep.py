"""A fine-tune whose sweep shows no clear descent is swept again, 3x longer, and read like any sweep (its descent if
it shows one, else its stability edge); under a warmup + decay schedule a fine-tune's peak is twice the suggestion.
Real training steps on a really trained model; the curve readers on synthetic curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from autolr import lr_find
from autolr.errors import ConfigurationError
from autolr.features import analyse
from autolr.plan import DIVERGENCE_MARGIN, FINETUNE_DECAY_PEAK, make_plan
from autolr.suggest import (
    DIVERGENCE_FACTOR,
    FINETUNE_FLAT_CONFIDENCE,
    FINETUNE_RESWEPT_CONFIDENCE,
    FLAT_DIVERGENCE_FACTOR,
    Suggestion,
    needs_resweep,
    reread_edge,
    suggest,
)
from tests import tasks


def _regression(n: int, batch: int, noise: float, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n * batch, 4, generator=g) * 2 - 1
    y = torch.sin(2 * x[:, :1] + x[:, 1:2]) + noise * torch.randn(n * batch, 1, generator=g)
    return list(zip(x.split(batch), y.split(batch)))


def _trained() -> tuple[nn.Module, torch.optim.Optimizer]:
    """A regression MLP trained to convergence on clean data (its LayerNorm scales moved)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for x, y in _regression(400, 64, 0.0, 0):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model, opt


#: Fine-tuning batches of the same function under heavy label noise: nothing left to learn, so the sweep is flat
#: (the loss drop is ~2x its noise) until the LR damages the model.
FLAT = _regression(300, 8, 0.5, 10)


def test_a_flat_fine_tune_is_swept_again_longer_and_read_at_its_edge() -> None:
    model, opt = _trained()
    before, rng = tasks.full_state(model, opt), torch.get_rng_state()
    result = lr_find(model, opt, FLAT, loss_fn=nn.MSELoss(), progress=False)
    tasks.assert_same_state(before, tasks.full_state(model, opt))  # both sweeps undone
    assert torch.equal(rng, torch.get_rng_state())
    s, settings = result.suggestion, result.settings
    assert settings["finetune"] and settings["swept_twice"] and settings["resweep_steps"] == 300
    assert result.curve.num_steps == 300 and 100 < len(result.curve.lrs) <= 300  # the curve read is the long one
    edge = analyse(result.curve.lrs, result.curve.losses).divergence
    assert edge is not None and s.lr == pytest.approx(10 ** edge / FLAT_DIVERGENCE_FACTOR, rel=1e-12)
    assert s.confidence == FINETUNE_RESWEPT_CONFIDENCE and s.finetune and s.method == "default"
    assert s.evidence["first_steps"] == 100 and s.evidence["resweep_steps"] == 300
    assert "the 100-step sweep showed no clear descent" in s.reason and "a 300-step sweep" in s.reason

    # the first sweep is exactly what a single sweep gives (the state was restored in between)
    once = lr_find(model, opt, FLAT, loss_fn=nn.MSELoss(), progress=False, resweep_steps=0)
    assert not once.settings["swept_twice"] and once.settings["resweep_steps"] == 0 and len(once.curve.lrs) <= 100
    assert once.suggestion.confidence == FINETUNE_FLAT_CONFIDENCE
    assert once.suggestion.evidence["divergence_lr"] == s.evidence["first_divergence_lr"]
    assert needs_resweep(once.curve.lrs, once.curve.losses)
    assert once.first_curve is None and result.first_curve is not None  # the result keeps the first sweep too
    assert result.first_curve.losses.tolist() == once.curve.losses.tolist()
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_both_sweeps_are_saved_and_plotted(tmp_path) -> None:
    model, opt = _trained()
    result = lr_find(model, opt, FLAT, loss_fn=nn.MSELoss(), progress=False)
    loaded = type(result).load(result.save(tmp_path / "r.json"))
    assert loaded.first_curve is not None and loaded.first_curve.num_steps == 100
    assert loaded.first_curve.losses.tolist() == result.first_curve.losses.tolist()
    assert loaded.settings["swept_twice"] and loaded.suggestion == result.suggestion
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    labels = [line.get_label() for line in loaded.plot().get_lines()]
    assert "first sweep (100 steps, smoothed)" in labels


def test_fresh_models_and_clear_fine_tunes_are_swept_once() -> None:
    model, opt = _trained()
    as_fresh = lr_find(model, opt, FLAT, loss_fn=nn.MSELoss(), progress=False, finetune=False)
    assert not as_fresh.settings["swept_twice"] and as_fresh.settings["resweep_steps"] == 0
    assert as_fresh.curve.num_steps == 100  # a plateau from scratch keeps its own reading (from-scratch rule)

    clear = _regression(100, 8, 0.0, 11)  # a shifted function: a real descent to read
    shifted = [(x, y + 2.0 * x[:, 2:3]) for x, y in clear]
    moved = lr_find(model, opt, shifted, loss_fn=nn.MSELoss(), progress=False)
    assert moved.settings["finetune"] and not moved.settings["swept_twice"]
    assert moved.suggestion.lr == suggest(moved.curve.lrs, moved.curve.losses).lr


@pytest.mark.parametrize("bad", [-1, 50, 2.5, True, "300", None.__class__])
def test_resweep_steps_is_checked_before_any_step(bad: object) -> None:
    model, opt = _trained()
    before = tasks.full_state(model, opt)
    with pytest.raises(ConfigurationError, match=r"resweep_steps must be None \(3 x num_steps\), 0 .* or an int"):
        lr_find(model, opt, FLAT, loss_fn=nn.MSELoss(), progress=False, resweep_steps=bad)  # type: ignore[arg-type]
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_a_numpy_resweep_length_is_taken_as_is() -> None:
    model, opt = _trained()
    result = lr_find(model, opt, FLAT, loss_fn=nn.MSELoss(), progress=False, resweep_steps=np.int64(200))
    assert result.settings["swept_twice"] and result.settings["resweep_steps"] == 200
    assert result.curve.num_steps == 200 and result.suggestion.evidence["resweep_steps"] == 200


@pytest.mark.parametrize("error", [RuntimeError("loader broke"), KeyboardInterrupt()])
def test_a_failure_in_the_second_sweep_restores_the_state_then_raises(error: BaseException) -> None:
    model, opt = _trained()
    before = tasks.full_state(model, opt)
    calls = [0]

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 150:  # well into the second sweep (the first one stops at or before step 100)
            raise error
        return nn.functional.mse_loss(out, target)

    with pytest.raises(type(error)):
        lr_find(model, opt, FLAT, loss_fn=loss_fn, progress=False)
    assert calls[0] == 150
    tasks.assert_same_state(before, tasks.full_state(model, opt))


# --- the readers, on synthetic curves ---------------------------------------------------------------------
def _curve(n: int, *, dip: float = 0.0, noise: float = 0.05, edge: float = -1.0, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
    """A trained model's sweep: level 2.3 (noisy), an optional dip of ``dip``, a blow-up near 10**edge."""
    lrs = np.geomspace(1e-7, 10, n)
    x = np.log10(lrs)
    losses = 2.3 - dip / (1 + np.exp(-3 * (x + 4))) + np.exp(3 * (x - edge))
    return lrs, losses + np.random.default_rng(seed).normal(0, noise, n)


def test_needs_resweep_only_without_a_clear_descent_and_with_something_to_read() -> None:
    assert needs_resweep(*_curve(100))  # flat, then it blows up
    assert not needs_resweep(*_curve(100, dip=1.0, noise=0.01))  # a clear descent: read as it is
    assert not needs_resweep(*[a[:10] for a in _curve(100)])  # too few points
    lrs = np.geomspace(1e-2, 10, 100)
    assert not needs_resweep(lrs, 2.3 + np.exp(3 * np.log10(lrs / 1e-2)))  # rising from the start: start_lr too high


def test_reread_edge_reads_the_longer_curve_and_falls_back_honestly() -> None:
    first = suggest(*_curve(100), finetune=True, finetune_reason="given")
    assert first.confidence == FINETUNE_FLAT_CONFIDENCE
    long = _curve(300, seed=1)
    s = reread_edge(*long, first, first_steps=100, steps=300, finetune_reason="given")
    assert s.lr == pytest.approx(10 ** analyse(*long).divergence / FLAT_DIVERGENCE_FACTOR, rel=1e-12)
    assert s.confidence == FINETUNE_RESWEPT_CONFIDENCE and s.reason.startswith("fine-tune (given): the 100-step")
    assert Suggestion.from_dict(s.to_dict()) == s

    # the longer sweep never blew up: the first reading stands, and says so
    lrs = np.geomspace(1e-7, 1e-2, 300)
    calm = 2.3 + np.random.default_rng(2).normal(0, 0.05, 300)
    kept = reread_edge(lrs, calm, first, first_steps=100, steps=300)
    assert kept.lr == first.lr and kept.confidence == first.confidence and kept.reason.endswith("this reading stands")

    # no LR from the first sweep, nothing from the second either: None, with the second sweep's reason
    none = Suggestion(None, "default", 0.0, "fine-tune (given): model not learning in this range", finetune=True)
    nothing = reread_edge(lrs, calm, none, first_steps=100, steps=300, finetune_reason="given")
    assert nothing.lr is None and "a 300-step sweep looked again" in nothing.reason

    # the longer sweep shows a clear descent (its noise averaged down): read by the default rule, like any sweep
    clear = _curve(300, dip=0.5, noise=0.02, seed=4)
    assert analyse(*clear).descent is not None
    read = reread_edge(*clear, first, first_steps=100, steps=300, finetune_reason="given")
    plain = suggest(*clear, finetune=True, finetune_reason="given")
    assert read.lr == plain.lr and read.confidence == plain.confidence and read.finetune
    assert read.lr != pytest.approx(10 ** analyse(*clear).divergence / FLAT_DIVERGENCE_FACTOR, rel=1e-3)
    assert "looked again and shows a clear descent, read as any sweep: steepest stable descent" in read.reason
    assert read.evidence["resweep_steps"] == 300 and read.evidence["first_steps"] == 100
    assert read.evidence["first_divergence_lr"] == first.evidence["divergence_lr"]
    assert read.evidence["min_loss_lr"] == plain.evidence["min_loss_lr"]

    # another strategy reads the longer curve with its own rule
    clear = _curve(300, dip=1.0, noise=0.01)
    steep = reread_edge(*clear, first, first_steps=100, steps=300, method="steepest")
    assert steep.lr == suggest(*clear, method="steepest").lr and steep.method == "steepest"


#: A real 300-step second sweep (losses to 3 decimals): the LSTM body of a pretrained char LM with a new head telling
#: intact from corrupted prose windows, SGD+momentum, batch 16, seed 1 of ``corrupt_cls_lstm_sgdm_b16``
#: (benchmarks/finetune.py). A clear but short descent (0.2 decades at 6x its noise) just before 0.2, then it blows up.
SHORT_DESCENT_SWEEP = [
    0.745, 0.702, 1.002, 0.755, 0.813, 0.858, 0.763, 0.834, 0.823, 0.653, 0.807, 0.758, 0.568, 0.697, 0.717, 0.724,
    0.773, 0.857, 0.811, 0.771, 0.607, 0.738, 0.611, 0.996, 0.973, 0.824, 0.87, 0.714, 0.931, 0.828, 0.777, 0.686,
    0.765, 0.837, 0.612, 0.654, 0.862, 0.863, 0.764, 0.679, 0.854, 0.671, 0.831, 0.675, 0.675, 0.623, 0.852, 0.631,
    1.012, 0.726, 0.804, 0.672, 0.736, 0.726, 0.801, 0.857, 0.771, 0.777, 0.743, 0.662, 0.758, 0.755, 0.703, 0.629,
    0.669, 0.656, 0.625, 0.9, 0.82, 0.479, 0.86, 0.812, 0.671, 0.715, 0.729, 0.865, 0.618, 0.758, 0.615, 0.793,
    0.684, 0.679, 0.814, 0.667, 0.902, 0.756, 0.757, 0.725, 0.793, 0.747, 0.709, 0.801, 0.675, 0.59, 0.734, 0.672,
    0.725, 0.653, 0.664, 0.743, 0.67, 0.853, 0.702, 0.625, 0.699, 0.898, 0.583, 0.67, 0.76, 0.712, 0.81, 0.619,
    0.794, 0.645, 0.774, 0.8, 0.663, 0.632, 0.797, 0.9, 0.863, 0.829, 0.807, 0.787, 0.643, 0.68, 0.804, 0.62, 0.694,
    0.765, 0.717, 0.785, 0.745, 0.753, 0.664, 0.626, 0.698, 0.674, 0.72, 0.577, 0.813, 0.75, 0.664, 0.672, 0.695,
    0.671, 0.672, 0.677, 0.765, 0.666, 0.748, 0.733, 0.661, 0.712, 0.702, 0.702, 0.674, 0.658, 0.676, 0.686, 0.694,
    0.708, 0.682, 0.693, 0.713, 0.705, 0.673, 0.688, 0.691, 0.695, 0.685, 0.685, 0.689, 0.684, 0.69, 0.696, 0.695,
    0.693, 0.682, 0.68, 0.676, 0.678, 0.66, 0.681, 0.629, 0.705, 0.75, 0.782, 0.667, 0.714, 0.732, 0.663, 0.686,
    0.69, 0.689, 0.702, 0.702, 0.688, 0.68, 0.709, 0.708, 0.672, 0.707, 0.656, 0.642, 0.613, 0.96, 0.678, 0.676,
    0.674, 0.673, 0.739, 0.622, 0.725, 0.681, 0.687, 0.662, 0.633, 0.613, 0.654, 0.675, 0.579, 0.781, 0.649, 0.706,
    0.719, 0.626, 0.623, 0.927, 0.781, 0.814, 0.755, 0.596, 0.712, 0.921, 0.739, 0.861, 0.598, 0.585, 0.567, 0.538,
    0.601, 0.572, 0.632, 0.618, 0.651, 0.571, 0.724, 0.59, 0.942, 0.643, 0.673, 0.729, 0.751, 0.842, 0.652, 0.779,
    1.697, 0.63, 0.536, 0.818, 1.147, 0.494, 1.187, 1.035, 0.538, 0.509, 0.393, 0.428, 0.751, 0.972, 2.51, 0.633,
    2.182, 1.237, 1.658, 2.561, 1.404, 0.926, 0.763, 0.776, 2.473, 1.223, 0.582, 1.356, 0.821, 1.236, 3.988, 0.961,
    3.377, 5.94, 0.844, 3.564, 2.587, 1.279, 5.707, 1.454, 4.81, 0.994, 7.78,
]


def test_a_clear_descent_in_the_longer_sweep_is_trusted_at_least_as_much_as_none() -> None:
    """Read alone, a short, just-clear descent scores a low confidence (0.05 here), under the 0.3 of an edge reading of
    a sweep with no descent; min_confidence=0.1 (the Hugging Face callback's default) then dropped the LR, which
    sits near the best one (0.08, against 0.1). In the longer sweep it gets at least the edge reading's confidence."""
    lrs = np.geomspace(1e-7, 10, 300)[: len(SHORT_DESCENT_SWEEP)]
    alone = suggest(lrs, SHORT_DESCENT_SWEEP, finetune=True)
    assert analyse(lrs, SHORT_DESCENT_SWEEP).descent is not None and alone.confidence < 0.1
    first = suggest(*_curve(100, edge=0.0), finetune=True)
    read = reread_edge(lrs, SHORT_DESCENT_SWEEP, first, first_steps=100, steps=300)
    assert read.lr == alone.lr and read.confidence == FINETUNE_RESWEPT_CONFIDENCE
    assert "shows a clear descent, read as any sweep" in read.reason


def test_a_clear_descent_in_the_longer_sweep_keeps_the_caps_distance_from_its_lower_edge() -> None:
    """A sweep 3x as long blows up about sqrt(3)x lower, so the cap divergence_lr / 10, set on sweeps of the first
    sweep's length, is divergence_lr * sqrt(3) / 10 there. It applies only where the cap binds."""
    lrs = np.geomspace(1e-7, 10, 300)
    x = np.log10(lrs)
    noise = np.random.default_rng(0).normal(0, 0.01, 300)
    cliff = 1.0 - 0.3 / (1 + np.exp(-4 * (x + 2.5))) + np.exp(6 * (x + 1.4)) + noise  # minimum close to the blow-up
    first = suggest(*_curve(100), finetune=True)
    plain = suggest(lrs, cliff, finetune=True)
    assert plain.reason.endswith("(divergence_lr / 10)")
    read = reread_edge(lrs, cliff, first, first_steps=100, steps=300)
    edge = 10 ** analyse(lrs, cliff).divergence
    assert read.lr == pytest.approx(edge * math.sqrt(3) / DIVERGENCE_FACTOR, rel=1e-9)
    assert read.lr == pytest.approx(plain.lr * math.sqrt(3), rel=1e-9) and read.lr < plain.evidence["min_loss_lr"] / 2
    assert "(divergence_lr / 5.8) (3x the steps: it blows up about 1.7x lower than a 100-step sweep" in read.reason
    assert read.confidence == plain.confidence
    # a longer sweep of the same length as the first (resweep_steps=num_steps) is read as the first would be
    same = reread_edge(lrs, cliff, first, first_steps=300, steps=300)
    assert same.lr == plain.lr and "blows up about" not in same.reason
    # where min_loss_lr / 2 is the lower of the two, nothing changes
    gentle = 1.0 - 0.3 / (1 + np.exp(-4 * (x + 4))) + np.exp(6 * (x + 1.4)) + noise
    assert suggest(lrs, gentle, finetune=True).reason.endswith("(min_loss_lr / 2)")
    assert reread_edge(lrs, gentle, first, first_steps=100, steps=300).lr == suggest(lrs, gentle, finetune=True).lr


# --- the plan: a fine-tune's peak under warmup + decay ----------------------------------------------------
def _plan(s: Suggestion, schedule: str, **kw: object) -> float:
    return make_plan(s, param_group_lrs=[1e-4, 1e-5], optimizer_name="AdamW", total_steps=100, schedule=schedule,
                     **kw).peak_lr  # type: ignore[arg-type]


def test_a_fine_tunes_peak_is_twice_the_suggestion_under_warmup_and_decay_only() -> None:
    fine = Suggestion(1e-3, "default", 0.3, "edge", evidence={"divergence_lr": 2e-2}, finetune=True)
    fresh = Suggestion(1e-3, "default", 0.3, "edge", evidence={"divergence_lr": 2e-2})
    for schedule in ("linear", "warmup_cosine"):
        plan = make_plan(fine, param_group_lrs=[1e-4, 1e-5], optimizer_name="AdamW", total_steps=100,
                         schedule=schedule)
        assert plan.peak_lr == FINETUNE_DECAY_PEAK * 1e-3 and plan.lrs == pytest.approx((2e-3, 2e-4), rel=1e-12)
        assert "fine-tune under warmup + decay: peak 2.00e-03 = 2 x the suggestion" in plan.decision("lr").reason
        assert _plan(fresh, schedule) == 1e-3  # from scratch: unchanged
    assert _plan(fine, "constant") == _plan(fine, "step") == 1e-3
    assert _plan(fine, "onecycle") == _plan(fresh, "onecycle")  # one-cycle has its own peak rule
    assert _plan(fine, "constant", decays=True) == 2e-3  # a framework's own decaying schedule
    assert _plan(fine, "linear", decays=False) == 1e-3
    near = Suggestion(1e-3, "default", 0.3, "edge", evidence={"divergence_lr": 6e-3}, finetune=True)
    assert _plan(near, "linear") == pytest.approx(6e-3 / DIVERGENCE_MARGIN)  # capped below the edge
    edge = Suggestion(1e-3, "default", 0.3, "edge", evidence={"divergence_lr": 3e-3}, finetune=True)
    assert _plan(edge, "linear") == 1e-3  # never below the suggestion
    with pytest.raises(ConfigurationError, match="decays must be None"):
        _plan(fine, "linear", decays="yes")
    assert math.isclose(_plan(fine, "linear", min_confidence=0.5), 1e-4)  # not applied: the current lr

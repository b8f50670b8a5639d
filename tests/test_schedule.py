"""Schedules: exact values, composition, serialisation, validation, and the torch LRScheduler adapter."""

from __future__ import annotations

import io
import json
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autolr.errors import ConfigurationError, StateError
from autolr.lr_scheduler import ScheduleLR, as_lr_scheduler, set_peak_lrs
from autolr.schedule import (
    Constant,
    CosineDecay,
    ExponentialRamp,
    Join,
    LinearDecay,
    LinearRamp,
    LinearWarmup,
    OneCycle,
    Plateau,
    StepDecay,
    schedule_from_dict,
    warmup_cosine,
)

COS_QUARTER = (1 + math.cos(math.pi / 4)) / 2  # 0.8535533905932737
ONE_CYCLE_END = 1 / 25 / 1e4  # 4e-6

# (schedule, step, expected multiplier), each value worked out by hand from the documented formula.
EXACT = [
    (Constant(), 0, 1.0),
    (Constant(0.5), 10**6, 0.5),
    (LinearWarmup(4), 0, 0.0),
    (LinearWarmup(4), 1, 0.25),
    (LinearWarmup(4), 4, 1.0),
    (LinearWarmup(4, start_factor=0.2), 2, 0.6),
    (CosineDecay(100), 0, 1.0),
    (CosineDecay(100), 25, COS_QUARTER),
    (CosineDecay(100), 50, 0.5),
    (CosineDecay(100), 100, 0.0),
    (CosineDecay(100, final_factor=0.1), 50, 0.55),
    (CosineDecay(100, final_factor=0.1), 100, 0.1),
    (LinearDecay(10), 5, 0.5),
    (LinearDecay(10, final_factor=0.2), 5, 0.6),
    (LinearDecay(10), 10, 0.0),
    (OneCycle(80), 0, 1 / 25),
    (OneCycle(80), 10, (1 / 25 + 1) / 2),
    (OneCycle(80), 20, 1.0),
    (OneCycle(80), 35, ONE_CYCLE_END + (1 - ONE_CYCLE_END) * COS_QUARTER),
    (OneCycle(80), 50, (1 + ONE_CYCLE_END) / 2),
    (OneCycle(80), 80, ONE_CYCLE_END),
    (OneCycle(80, anneal="linear"), 35, 1 - (1 - ONE_CYCLE_END) * 0.25),
    (OneCycle(100, pct_start=0.5, div_factor=10, final_div_factor=100), 0, 0.1),
    (OneCycle(100, pct_start=0.5, div_factor=10, final_div_factor=100), 50, 1.0),
    (OneCycle(100, pct_start=0.5, div_factor=10, final_div_factor=100), 100, 1e-3),
    (StepDecay(10, gamma=0.5), 9, 1.0),
    (StepDecay(10, gamma=0.5), 10, 0.5),
    (StepDecay(10, gamma=0.5), 25, 0.25),
    (warmup_cosine(100, 10), 0, 0.0),
    (warmup_cosine(100, 10), 5, 0.5),
    (warmup_cosine(100, 10), 10, 1.0),
    (warmup_cosine(100, 10), 55, 0.5),
    (warmup_cosine(100, 10), 100, 0.0),
    (Join((Constant(0.5), StepDecay(1, gamma=0.5), Constant(0.1)), (3, 7)), 2, 0.5),
    (Join((Constant(0.5), StepDecay(1, gamma=0.5), Constant(0.1)), (3, 7)), 3, 1.0),  # local step 0
    (Join((Constant(0.5), StepDecay(1, gamma=0.5), Constant(0.1)), (3, 7)), 6, 0.125),  # local step 3
    (Join((Constant(0.5), StepDecay(1, gamma=0.5), Constant(0.1)), (3, 7)), 7, 0.1),
    (ExponentialRamp(1e-5, 1e-1, 5), 0, 1.0),
    (ExponentialRamp(1e-5, 1e-1, 5), 2, 100.0),
    (ExponentialRamp(1e-5, 1e-1, 5), 4, 1e4),
    (LinearRamp(1.0, 5.0, 5), 1, 2.0),
    (LinearRamp(1.0, 5.0, 5), 4, 5.0),
]

# Schedules with an end, and that end (the value is held from there on).
WITH_END = [
    (LinearWarmup(4), 4),
    (CosineDecay(50, 0.1), 50),
    (LinearDecay(50, 0.1), 50),
    (OneCycle(80), 80),
    (warmup_cosine(100, 10), 100),
    (ExponentialRamp(1e-7, 10.0, 100), 99),
    (LinearRamp(1e-3, 1.0, 10), 9),
]

ALL = [s for s, _, _ in EXACT] + [Plateau(factor=0.5, patience=2, mode="max")]


@pytest.mark.parametrize(("schedule", "step", "expected"), EXACT)
def test_exact_values(schedule, step, expected):
    assert schedule(step) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("schedule", "end"), WITH_END)
def test_holds_final_value_after_the_end(schedule, end):
    assert schedule(end + 1) == schedule(end + 1000) == pytest.approx(schedule(end), rel=1e-12)


@pytest.mark.parametrize(("schedule", "end"), WITH_END)
def test_negative_step_counts_as_zero(schedule, end):
    assert schedule(-5) == schedule(0)


def test_exponential_ramp_is_the_range_test_sweep():
    ramp = ExponentialRamp(1e-5, 1e-1, 5)
    assert [ramp.lr(t) for t in range(5)] == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)


def test_warmup_cosine_without_warmup_is_plain_cosine():
    assert warmup_cosine(100, 0) == CosineDecay(100)


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_to_dict_round_trips_through_json(schedule):
    data = json.loads(json.dumps(schedule.to_dict()))
    rebuilt = schedule_from_dict(data)
    assert rebuilt == schedule
    assert [rebuilt(t) for t in range(0, 120, 7)] == [schedule(t) for t in range(0, 120, 7)]


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: Constant(-1.0), "factor"),
        (lambda: LinearWarmup(0), "warmup_steps"),
        (lambda: LinearWarmup(5, start_factor=1.5), "start_factor"),
        (lambda: CosineDecay(0), "total_steps"),
        (lambda: CosineDecay(True), "total_steps"),
        (lambda: CosineDecay(10, final_factor=-0.1), "final_factor"),
        (lambda: LinearDecay(2.5), "total_steps"),
        (lambda: OneCycle(10, pct_start=1.0), "pct_start"),
        (lambda: OneCycle(10, div_factor=0.5), "div_factor"),
        (lambda: OneCycle(10, final_div_factor=-1), "final_div_factor"),
        (lambda: OneCycle(10, anneal="exp"), "anneal"),
        (lambda: StepDecay(0), "step_size"),
        (lambda: StepDecay(5, gamma=-0.1), "gamma"),
        (lambda: warmup_cosine(10, 10), "warmup_steps"),
        (lambda: warmup_cosine(0, 0), "total_steps"),
        (lambda: Join((Constant(), Constant()), ()), "boundaries"),
        (lambda: Join((Constant(), Constant(), Constant()), (5, 3)), "boundaries"),
        (lambda: Join((), ()), "schedules"),
        (lambda: Plateau(factor=1.5), "factor"),
        (lambda: Plateau(patience=-1), "patience"),
        (lambda: Plateau(mode="avg"), "mode"),
        (lambda: Plateau(min_factor=2.0), "min_factor"),
        (lambda: ExponentialRamp(0.0, 1.0, 10), "start_lr"),
        (lambda: ExponentialRamp(1.0, 0.5, 10), "end_lr"),
        (lambda: LinearRamp(1e-3, 1.0, 1), "num_steps"),
        (lambda: schedule_from_dict({"name": "cosine"}), "name"),
        (lambda: schedule_from_dict({"name": "cosine_decay", "steps": 3}), "cosine_decay"),
    ],
)
def test_bad_arguments_name_the_argument(make, argument):
    with pytest.raises(ConfigurationError, match=argument):
        make()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigurationError, match="one_cycle") as info:
        schedule_from_dict({"name": "onecycle_v2"})
    assert "'onecycle_v2'" in str(info.value)


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, 10_000), step=st.integers(-10, 20_000), final=st.floats(0.0, 1.0))
def test_decays_stay_between_final_and_one(total, step, final):
    for schedule in (CosineDecay(total, final), LinearDecay(total, final), OneCycle(total)):
        assert 0.0 <= schedule(step) <= 1.0 + 1e-12


class TestPlateau:
    def test_reduces_after_patience_is_exceeded(self):
        plateau = Plateau(factor=0.1, patience=2, min_factor=0.0)
        assert [plateau.observe(1.0) for _ in range(4)] == [False, False, False, True]
        assert plateau(0) == plateau(10**6) == pytest.approx(0.1)

    def test_improvement_resets_the_count(self):
        plateau = Plateau(patience=1)
        results = [plateau.observe(m) for m in (1.0, 1.0, 0.5, 0.5, 0.4, 0.4)]
        assert results == [False] * 6 and plateau(0) == 1.0

    def test_threshold_is_relative_to_the_best(self):
        plateau = Plateau(patience=0, threshold=0.1)
        plateau.observe(1.0)
        assert plateau.observe(0.95) is True  # needs < 0.9 to count as better
        assert plateau.best == 1.0

    def test_max_mode_min_factor_and_non_finite(self):
        plateau = Plateau(factor=0.1, patience=0, mode="max", min_factor=0.05)
        plateau.observe(0.8)
        assert plateau.observe(0.9) is False  # higher is better
        assert plateau.observe(float("nan")) is True  # NaN never improves
        assert plateau.observe(0.1) is True and plateau(0) == pytest.approx(0.05)
        assert plateau.observe(0.1) is False and plateau(0) == pytest.approx(0.05)

    def test_state_dict_round_trip_is_plain(self):
        plateau = Plateau(patience=1)
        for m in (1.0, 2.0, 2.0, 3.0):
            plateau.observe(m)
        state = json.loads(json.dumps(plateau.state_dict()))
        assert state == {"best": 1.0, "num_bad_epochs": 1, "current_factor": pytest.approx(0.1)}
        fresh = Plateau(patience=1)
        fresh.load_state_dict(state)
        assert fresh.observe(5.0) is True and fresh(0) == pytest.approx(0.01)


def _sgd(lrs=(0.1, 0.01)):
    groups = [{"params": [torch.nn.Parameter(torch.ones(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=1.0)


def _train(optimizer, scheduler, steps):
    seen = []
    for _ in range(steps):
        for group in optimizer.param_groups:
            group["params"][0].grad = torch.ones(2)
        optimizer.step()
        scheduler.step()
        seen.append([float(g["lr"]) for g in optimizer.param_groups])
    return seen


class TestScheduleLR:
    def test_is_a_torch_scheduler_and_keeps_group_ratios(self):
        optimizer = _sgd()
        scheduler = as_lr_scheduler(optimizer, LinearDecay(4))
        assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
        assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            seen = _train(optimizer, scheduler, 5)
        expected = [[0.1 * f, 0.01 * f] for f in (0.75, 0.5, 0.25, 0.0, 0.0)]
        assert seen == [pytest.approx(e, abs=1e-15) for e in expected]
        assert all(type(g["lr"]) is float for g in optimizer.param_groups)
        assert scheduler.get_last_lr() == pytest.approx([0.0, 0.0])

    def test_base_lrs_override_the_current_lrs(self):
        optimizer = _sgd()
        as_lr_scheduler(optimizer, OneCycle(10), base_lrs=[1.0, 0.5])
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.04, 0.02])
        assert [g["initial_lr"] for g in optimizer.param_groups] == [1.0, 0.5]

    @pytest.mark.parametrize("make", [torch.optim.SGD, torch.optim.Adam])
    def test_tensor_lr_is_updated_in_place(self, make):
        param = torch.nn.Parameter(torch.ones(2))
        optimizer = make([param], lr=torch.tensor(0.01))
        lr = optimizer.param_groups[0]["lr"]
        scheduler = ScheduleLR(optimizer, LinearWarmup(4))
        assert optimizer.param_groups[0]["lr"] is lr and lr.item() == 0.0
        param.grad = torch.ones(2)
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] is lr
        assert lr.item() == pytest.approx(0.0025) and lr.dtype == torch.float32

    def test_resume_from_state_dict_gives_the_same_trajectory(self):
        schedule = warmup_cosine(10, 2)
        optimizer = _sgd()
        scheduler = ScheduleLR(optimizer, schedule)
        full = _train(optimizer, scheduler, 4)
        opt_state, sched_state = optimizer.state_dict(), scheduler.state_dict()
        full += _train(optimizer, scheduler, 8)

        json.dumps(sched_state)  # plain types only
        buffer = io.BytesIO()
        torch.save(sched_state, buffer)
        buffer.seek(0)
        restored_state = torch.load(buffer, weights_only=True)

        optimizer2 = _sgd(lrs=(5.0, 5.0))
        scheduler2 = ScheduleLR(optimizer2, Constant())  # built first, as torch recommends
        optimizer2.load_state_dict(opt_state)
        scheduler2.load_state_dict(restored_state)
        assert scheduler2.schedule == schedule and scheduler2.last_epoch == 4
        assert full[:4] + _train(optimizer2, scheduler2, 8) == full

    def test_plateau_state_travels_with_the_scheduler(self):
        optimizer = _sgd()
        scheduler = ScheduleLR(optimizer, Plateau(patience=0))
        for metric in (1.0, 2.0):
            scheduler.schedule.observe(metric)
            _train(optimizer, scheduler, 1)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
        state = scheduler.state_dict()
        scheduler2 = ScheduleLR(_sgd(), Plateau(patience=0))
        scheduler2.load_state_dict(state)
        assert scheduler2.schedule.state_dict() == scheduler.schedule.state_dict()

    def test_errors(self):
        with pytest.raises(ConfigurationError, match="base_lrs"):
            ScheduleLR(_sgd(), Constant(), base_lrs=[1.0])
        scheduler = ScheduleLR(_sgd(), Constant())
        with pytest.raises(ConfigurationError, match="epoch"):
            scheduler.step(3)
        with pytest.raises(StateError, match="state_dict"):
            scheduler.load_state_dict({"lr": 1.0})


class TestSetPeakLrs:
    """Moving the peak of a scheduler someone else built (the Hugging Face Trainer's LambdaLR, ...)."""

    @staticmethod
    def _opt(lr: float = 5e-5) -> torch.optim.Optimizer:
        ps = [torch.nn.Parameter(torch.zeros(2)) for _ in range(2)]
        return torch.optim.AdamW([{"params": [ps[0]]}, {"params": [ps[1]], "weight_decay": 0.0}], lr=lr)

    @staticmethod
    def _warmup_linear(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min((t + 1) / 4, max(0.0, (20 - t) / 16)))

    @staticmethod
    def _advance(opt, sched, steps):
        for _ in range(steps):
            opt.step()
            sched.step()

    def _trajectory(self, opt, sched, steps=20):
        out = []
        for _ in range(steps):
            out.append([g["lr"] for g in opt.param_groups])
            opt.step()
            sched.step()
        return out

    @pytest.mark.parametrize("after", [0, 3])
    def test_lambda_lr_follows_exactly_a_schedule_built_at_the_new_peak(self, after):
        opt = self._opt()
        sched = self._warmup_linear(opt)
        self._advance(opt, sched, after)
        set_peak_lrs(sched, [2e-3, 1e-3])
        reference_opt = self._opt()
        reference_opt.param_groups[0]["lr"], reference_opt.param_groups[1]["lr"] = 2e-3, 1e-3
        reference = self._warmup_linear(reference_opt)
        self._advance(reference_opt, reference, after)
        assert sched.base_lrs == [2e-3, 1e-3] and [g["initial_lr"] for g in opt.param_groups] == [2e-3, 1e-3]
        assert sched.get_last_lr() == reference.get_last_lr()
        assert self._trajectory(opt, sched) == self._trajectory(reference_opt, reference)
        restored = self._warmup_linear(self._opt())  # a checkpoint saved afterwards carries the new peak
        restored.load_state_dict(sched.state_dict())
        assert restored.base_lrs == [2e-3, 1e-3]

    def test_onecycle_and_step_lr_keep_their_shape(self):
        for build in (lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-3, total_steps=20),
                      lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5)):
            opt, ref_opt = self._opt(), self._opt()
            sched, ref = build(opt), build(ref_opt)
            self._advance(opt, sched, 2)
            self._advance(ref_opt, ref, 2)
            set_peak_lrs(sched, [b * 4 for b in sched.base_lrs])
            for a, b in zip(self._trajectory(opt, sched, 15), self._trajectory(ref_opt, ref, 15)):
                assert a == pytest.approx([4 * x for x in b], rel=1e-9)

    def test_schedule_lr_and_errors(self):
        opt = self._opt(0.1)
        sched = ScheduleLR(opt, OneCycle(10))
        set_peak_lrs(sched, [0.2, 0.2])
        assert sched.base_lrs == [0.2, 0.2] and opt.param_groups[0]["lr"] == pytest.approx(0.2 * OneCycle(10)(0))
        with pytest.raises(ConfigurationError, match="one positive learning rate per param group"):
            set_peak_lrs(sched, [0.1])
        with pytest.raises(ConfigurationError, match="one positive learning rate per param group"):
            set_peak_lrs(sched, [0.1, 0.0])

"""AutoLR: plan application, self-stepping schedules, weight-decay split, guard, resume, detach, bad input."""

from __future__ import annotations

import gc
import math
import warnings
import weakref

import pytest
import torch
from torch import nn

import autolr
from autolr import AutoLR, ConfigurationError, DivergenceError
from autolr.plan import make_plan
from autolr.suggest import Suggestion
from tests import tasks


class EmbNet(nn.Module):
    """Embedding + Linear + LayerNorm + BatchNorm: every kind of no-decay parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.fc = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.bn = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.norm(self.fc(self.emb(x).mean(1)))))


def emb_batches(n: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    return [(torch.randint(0, 20, (32, 4), generator=g), torch.randint(0, 3, (32,), generator=g)) for _ in range(n)]


def _loop(model, opt, tuner, data, steps, scaler=None):
    lrs = []
    for i in range(steps):
        x, y = data[i % len(data)]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        tuner.observe(loss)
        lrs.append([g["lr"] for g in opt.param_groups])
    return lrs


def test_plan_is_applied_and_the_schedule_steps_itself_per_optimizer_step() -> None:
    model = tasks.BNDropoutNet()
    opt = tasks.two_group_optimizer(model, lr=0.01)
    tuner = AutoLR(model, opt, schedule="onecycle", weight_decay=None, progress=False)
    plan = tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=50)
    assert plan.schedule_name == "onecycle" and plan.total_steps == 50
    assert plan.lrs[1] == pytest.approx(plan.lrs[0] / 10)  # group ratio kept
    assert isinstance(tuner.scheduler, torch.optim.lr_scheduler.LRScheduler)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([b * plan.schedule(0) for b in plan.lrs])
    lrs = _loop(model, opt, tuner, tasks.batches(), 20)
    for t, row in enumerate(lrs, start=1):  # after the t-th optimizer step the schedule is at step t
        assert row == pytest.approx([b * plan.schedule(t) for b in plan.lrs], rel=1e-12)
    assert tuner.step == 20
    assert {d.name for d in plan.decisions} >= {"lr", "schedule", "weight_decay", "no_decay"}
    assert "one-cycle peak" in plan.decision("lr").reason


def test_epoch_granularity_steps_only_at_end_epoch() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tuner = AutoLR(model, opt, schedule="step", step_granularity="epoch", weight_decay=None, progress=False)
    plan = tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), epochs=6)
    assert plan.total_steps == 6 and plan.step_granularity == "epoch"
    per_epoch = []
    for _ in range(6):
        lrs = _loop(model, opt, tuner, tasks.batches(), 4)
        assert len({row[0] for row in lrs}) == 1  # constant within the epoch
        per_epoch.append(lrs[0][0])
        tuner.end_epoch()
    assert per_epoch == pytest.approx([plan.lrs[0] * plan.schedule(e) for e in range(6)])
    assert per_epoch[0] > per_epoch[-1]


def test_plateau_is_driven_by_the_metric() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="plateau", weight_decay=None, progress=False)
    plan = tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss())
    assert plan.step_granularity == "metric"
    start = opt.param_groups[0]["lr"]
    _loop(model, opt, tuner, tasks.batches(), 5)
    assert opt.param_groups[0]["lr"] == start  # optimizer steps don't move a plateau schedule
    with pytest.raises(ConfigurationError, match="val_loss"):
        tuner.end_epoch()
    patience = plan.schedule.patience
    for _ in range(patience + 2):
        tuner.end_epoch(val_loss=1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(start * plan.schedule.factor)
    assert any(d.name == "plateau" for d in tuner.decisions)


def test_grad_scaler_skipped_step_does_not_advance_the_schedule() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu")
    tuner = AutoLR(model, opt, schedule="linear", weight_decay=None, scaler=scaler, progress=False)
    tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=100)
    x, y = tasks.batches()[0]
    opt.zero_grad()
    scaler.scale(nn.functional.cross_entropy(model(x), y) * float("inf")).backward()
    lr_before = opt.param_groups[0]["lr"]
    scaler.step(opt)
    scaler.update()
    assert tuner.step == 0 and opt.param_groups[0]["lr"] == lr_before
    _loop(model, opt, tuner, tasks.batches(), 1, scaler)
    assert tuner.step == 1 and opt.param_groups[0]["lr"] != lr_before


def test_manual_scheduler_step_is_warned_about_and_not_doubled() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="linear", weight_decay=None, progress=False)
    plan = tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(3):
            _loop(model, opt, tuner, tasks.batches()[i:], 1)
            tuner.scheduler.step()
    assert sum("stepped by autolr.AutoLR" in str(w.message) for w in caught) == 1
    assert opt.param_groups[0]["lr"] == pytest.approx(plan.lrs[0] * plan.schedule(3))


def test_weight_decay_split_keeps_state_and_settings() -> None:
    model = EmbNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-3)
    data = emb_batches()
    for x, y in data[:2]:  # momentum buffers exist before the split
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    momentum = {id(p): opt.state[p]["momentum_buffer"].clone() for p in model.parameters()}
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=5e-4, progress=False)
    tuner.lr_find(data, nn.CrossEntropyLoss(), total_steps=10, num_steps=40)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["weight_decay"]: sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups}
    assert groups[5e-4] == ["fc.weight", "head.weight"]
    assert groups[0.0] == ["bn.bias", "bn.weight", "emb.weight", "fc.bias", "head.bias", "norm.bias", "norm.weight"]
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in opt.param_groups)
    for p in model.parameters():  # optimizer state survived the split, bit for bit
        assert torch.equal(opt.state[p]["momentum_buffer"], momentum[id(p)])
    assert len(opt.param_groups) == 2
    _loop(model, opt, tuner, data, 3)


def test_weight_decay_on_embeddings_is_configurable() -> None:
    model = EmbNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tuner = AutoLR(model, opt, schedule="constant", exclude_embeddings=False, progress=False)
    plan = tuner.lr_find(emb_batches(), nn.CrossEntropyLoss(), total_steps=10, num_steps=30)
    assert plan.weight_decay > 0  # AdamW gets the documented auto value
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"])
    assert decayed == ["emb.weight", "fc.weight", "head.weight"]


def test_weight_decay_sweep_reports_choice_and_cost() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = tasks.full_state(model, opt)
    tuner = AutoLR(model, opt, schedule="constant", weight_decay="sweep", weight_decay_grid=(0.0, 1e-2),
                   progress=False)
    plan = tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=10, num_steps=40)
    d = plan.decision("weight_decay")
    assert plan.weight_decay in (0.0, 1e-2) and d.value == plan.weight_decay
    assert "Smith" in d.reason and d.evidence["cost_steps"] > 40
    assert set(d.evidence["min_smoothed_loss"]) == {"0", "0.01"}
    tasks.assert_same_state(  # the sweeps changed nothing but the applied plan
        {**before, "opt": {**before["opt"], "param_groups": []}},
        {**tasks.full_state(model, opt), "opt": {**before["opt"], "param_groups": []}},
    )


class Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _regression_data(n: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n * 32, 10, generator=g)
    y = x @ torch.randn(10, 1, generator=g) + 0.1 * torch.randn(n * 32, 1, generator=g)
    return list(zip(x.split(32), y.split(32)))


def _regression_loop(model: nn.Module, opt: torch.optim.Optimizer, tuner: AutoLR, steps: int) -> list[float]:
    data, losses = _regression_data(), []
    for i in range(steps):
        x, y = data[i % len(data)]
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        tuner.observe(loss)
        losses.append(loss.item())
    return losses


def test_guard_recovers_a_run_whose_lr_is_too_high() -> None:
    model = Regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, guard=True, guard_every=10,
                   guard_lr_factor=0.1, guard_max_retries=4, check_every=4, progress=False)
    too_high = make_plan(Suggestion(3.0, "manual", 1.0, "deliberately too high"), param_group_lrs=[0.01],
                         optimizer_name="SGD", total_steps=400, schedule="constant", weight_decay=None)
    tuner.apply_plan(too_high)
    losses = _regression_loop(model, opt, tuner, 300)
    guards = [d for d in tuner.decisions if d.name == "guard"]
    assert 1 <= len(guards) <= 4
    assert "restored the state of step" in guards[0].reason
    assert opt.param_groups[0]["lr"] < 3.0
    tail = losses[-100:]
    assert all(math.isfinite(v) for v in tail)
    assert sum(tail[-20:]) / 20 < sum(tail[:20]) / 20  # still decreasing after the recovery
    assert tail[-1] < 1.0


def test_guard_gives_up_with_a_clear_error() -> None:
    model = Regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, guard=True, guard_every=5,
                   guard_lr_factor=0.9, guard_max_retries=2, check_every=2, progress=False)
    tuner.apply_plan(make_plan(Suggestion(1e4, "manual", 1.0, "absurd"), param_group_lrs=[0.01],
                               optimizer_name="SGD", total_steps=100, schedule="constant", weight_decay=None))
    with pytest.raises(DivergenceError, match="after 2 guard interventions"):
        _regression_loop(model, opt, tuner, 200)


def test_resume_gives_the_same_lr_trajectory_without_a_new_range_test() -> None:
    def build():
        torch.manual_seed(0)
        model = EmbNet()
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    data = emb_batches()
    model, opt = build()
    tuner = AutoLR(model, opt, schedule="warmup_cosine", progress=False)
    tuner.lr_find(data, nn.CrossEntropyLoss(), total_steps=30, num_steps=40)
    first = _loop(model, opt, tuner, data, 12)
    checkpoint = {"tuner": tuner.state_dict(), "opt": opt.state_dict(), "model": model.state_dict()}
    import copy

    checkpoint = copy.deepcopy(checkpoint)
    rest = _loop(model, opt, tuner, data[4:] + data[:4], 18)

    model2, opt2 = build()
    steps = []
    opt2.register_step_pre_hook(lambda *_: steps.append(1))
    tuner2 = AutoLR(model2, opt2, schedule="warmup_cosine", progress=False)
    tuner2.load_state_dict(checkpoint["tuner"])
    opt2.load_state_dict(checkpoint["opt"])
    model2.load_state_dict(checkpoint["model"])
    assert not steps  # no range test was run
    assert tuner2.step == 12 and len(opt2.param_groups) == len(opt.param_groups)
    resumed = _loop(model2, opt2, tuner2, data[4:] + data[:4], 18)
    assert resumed == rest
    assert first[0] != rest[-1]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))


def test_state_dict_is_json_ready() -> None:
    import json

    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tuner = AutoLR(model, opt, progress=False)
    tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=20)
    state = json.loads(json.dumps(tuner.state_dict()))
    assert state["plan"]["schedule_name"] == "onecycle"  # auto: one-cycle for SGD


def test_detach_removes_hooks_and_references() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="linear", weight_decay=None, guard=True, progress=False)
    tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=10)
    assert len(opt._optimizer_step_post_hooks) == 1
    ref = weakref.ref(tuner)
    tuner.detach()
    assert len(opt._optimizer_step_post_hooks) == 0
    lr = opt.param_groups[0]["lr"]
    del tuner
    gc.collect()
    assert ref() is None
    _loop(model, opt, type("Noop", (), {"observe": lambda self, loss: None})(), tasks.batches(), 2)
    assert opt.param_groups[0]["lr"] == lr  # nothing steps the schedule any more


def test_observe_does_not_read_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="linear", weight_decay=None, check_every=8, progress=False)
    tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=100)
    counts = tasks.count_host_reads(monkeypatch)
    _loop(model, opt, tuner, tasks.batches(), 64)
    monkeypatch.undo()
    assert counts["item"] == 0 and counts["tolist"] == 64 // 8 - 1


@pytest.mark.parametrize(
    ("kwargs", "lr_find_kwargs", "match"),
    [
        ({"schedule": "triangle"}, {}, "schedule must be one of"),
        ({"schedule": "onecycle"}, {}, "total_steps"),
        ({"schedule": "onecycle"}, {"total_steps": 0}, "total_steps"),
        ({"weight_decay": -1.0}, {}, "weight_decay"),
        ({"step_granularity": "batch"}, {}, "step_granularity"),
        ({"guard_lr_factor": 2.0}, {}, "guard_lr_factor"),
    ],
)
def test_bad_input_raises_before_any_change(kwargs: dict, lr_find_kwargs: dict, match: str) -> None:
    """A bad AutoLR argument changes nothing; a bad lr_find argument changes nothing beyond what building the
    AutoLR did (its documented weight-decay split), and no optimizer step runs."""
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = tasks.full_state(model, opt)
    steps = []
    opt.register_step_pre_hook(lambda *_: steps.append(1))
    with pytest.raises(ConfigurationError, match=match):
        tuner = AutoLR(model, opt, progress=False, **kwargs)
        before = tasks.full_state(model, opt)  # reached only when the AutoLR arguments were fine
        tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), **lr_find_kwargs)
    assert not steps
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_adam_with_coupled_weight_decay_is_refused() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with pytest.raises(ConfigurationError, match="AdamW"):
        AutoLR(model, opt, weight_decay=0.01)
    AutoLR(model, torch.optim.Adam(model.parameters(), lr=1e-3, decoupled_weight_decay=True), weight_decay=0.01)


def test_summary_shows_the_plan() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tuner = AutoLR(model, opt, progress=False)
    tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=100)
    text = tuner.summary()
    assert "schedule: warmup_cosine" in text and "weight_decay" in text and "suggested lr" in text


def test_lr_find_twice_is_refused() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, progress=False)
    tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=10, num_steps=20)
    with pytest.raises(autolr.StateError, match="already has a plan"):
        tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=10)


def test_auto_step_off_hands_a_plain_scheduler_to_the_user() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="linear", weight_decay=None, auto_step=False, progress=False)
    plan = tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _loop(model, opt, tuner, tasks.batches(), 3)
        assert opt.param_groups[0]["lr"] == pytest.approx(plan.lrs[0] * plan.schedule(0))  # not auto-stepped
        tuner.scheduler.step()
        tuner.scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(plan.lrs[0] * plan.schedule(2))


def test_after_detach_manual_steps_work_again() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="linear", weight_decay=None, progress=False)
    plan = tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=40)
    _loop(model, opt, tuner, tasks.batches(), 2)
    tuner.detach()
    tuner.scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(plan.lrs[0] * plan.schedule(3))


def test_no_weight_decay_means_no_split_and_zero_decay() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, progress=False)
    tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=10, num_steps=30)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.0


def test_guard_resumed_run_snapshots_after_the_optimizer_is_loaded() -> None:
    model = Regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, guard=True, progress=False)
    tuner.apply_plan(make_plan(Suggestion(0.01, "manual", 1.0, "ok"), param_group_lrs=[0.01],
                               optimizer_name="SGD", total_steps=100, schedule="constant", weight_decay=None))
    assert tuner._guard.snapshot is None  # taken at the first observed step, not before a resume's loads
    _regression_loop(model, opt, tuner, 1)
    assert tuner._guard.snapshot is not None and tuner._guard.step == 1


def test_flat_curve_plan_carries_the_guess_and_says_so() -> None:
    # targets independent of the inputs: the range test sees no descent, only where SGD blows up
    from autolr.suggest import FLAT_CONFIDENCE

    model, batches = tasks.unlearnable_regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tuner = AutoLR(model, opt, schedule="onecycle", weight_decay=None, progress=False)
    plan = tuner.lr_find(batches, nn.functional.mse_loss, total_steps=200)
    s = tuner.result.suggestion
    assert s.confidence == FLAT_CONFIDENCE
    divergence = s.evidence["divergence_lr"]
    assert plan.peak_lr == pytest.approx(math.sqrt(s.lr * divergence / 4))  # the plan reads the edge
    lr_decision = next(d for d in plan.decisions if d.name == "lr")
    assert "no descent" in lr_decision.reason and "confidence 0.05" in lr_decision.reason


def test_min_confidence_keeps_the_current_lr_instead_of_a_flat_curve_guess() -> None:
    model, batches = tasks.unlearnable_regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, min_confidence=0.1, progress=False)
    plan = tuner.lr_find(batches, nn.functional.mse_loss, total_steps=50)
    assert tuner.result.suggestion.lr is not None and tuner.result.suggestion.confidence < 0.1  # a flat guess
    assert plan.lrs == (0.01,) and opt.param_groups[0]["lr"] == 0.01
    lr_decision = next(d for d in plan.decisions if d.name == "lr")
    assert "under min_confidence 0.1" in lr_decision.reason and "kept the current lrs" in lr_decision.reason


@pytest.mark.parametrize("value", [-0.1, 1.5, "high"])
def test_min_confidence_must_be_in_unit_interval(value) -> None:
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match="min_confidence"):
        AutoLR(model, opt, min_confidence=value)

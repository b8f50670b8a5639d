"""Planning: auto rules and their reasons, the one-cycle peak, weight decay, the no-decay split, round trips."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolr.errors import ConfigurationError
from autolr.plan import DIVERGENCE_MARGIN, Plan, make_plan, split_no_decay, supports_weight_decay
from autolr.report import Decision
from autolr.schedule import Constant, CosineDecay, Join, LinearDecay, OneCycle, Plateau, StepDecay
from autolr.suggest import Suggestion

EVIDENCE = {"min_loss_lr": 1e-2, "divergence_lr": 1e-1, "steepest_lr": 5e-4, "loss_drop": 0.8}


def suggestion(lr=1e-3, evidence=None, reason="steep descent 3e-4..1e-2"):
    evidence = EVIDENCE if evidence is None else evidence
    return Suggestion(lr, "valley", 0.8, reason, alternatives={"steepest": 5e-4}, evidence=evidence)


def plan(s=None, **kwargs):
    kwargs = {"param_group_lrs": [0.1, 0.01], "optimizer_name": "AdamW", "total_steps": 1000, **kwargs}
    return make_plan(suggestion() if s is None else s, **kwargs)


class TestAutoSchedule:
    @pytest.mark.parametrize(
        ("optimizer", "total", "name", "granularity", "schedule_type", "words"),
        [
            ("SGD", 1000, "onecycle", "step", OneCycle, "SGD-family"),
            ("torch.optim.SGD", 1000, "onecycle", "step", OneCycle, "one-cycle"),
            ("AdamW", 1000, "warmup_cosine", "step", Join, "warm up"),
            ("Adam", 1000, "warmup_cosine", "step", Join, "not SGD-family"),
            ("MyOptimizer", 1000, "warmup_cosine", "step", Join, "not SGD-family"),
            ("SGD", None, "plateau", "metric", Plateau, "total_steps is unknown"),
            ("AdamW", None, "plateau", "metric", Plateau, "plateau"),
        ],
    )
    def test_choice_and_reason(self, optimizer, total, name, granularity, schedule_type, words):
        p = plan(optimizer_name=optimizer, total_steps=total)
        assert p.schedule_name == name and p.step_granularity == granularity
        assert isinstance(p.schedule, schedule_type)
        decision = p.decision("schedule")
        assert decision.value == name and decision.reason.startswith("auto:") and words in decision.reason
        assert name not in decision.alternatives and "auto" not in decision.alternatives

    @pytest.mark.parametrize(("total", "warmup"), [(1000, 50), (21, 2), (20, 1), (10, 1), (2, 1), (1, 0)])
    def test_warmup_is_ceil_of_five_percent(self, total, warmup):
        p = plan(total_steps=total)
        assert p.decision("schedule").evidence["warmup_steps"] == warmup
        if warmup:  # the first step already learns: step t of the warmup runs at (t + 1) / (warmup + 1)
            assert p.schedule(0) == pytest.approx(1 / (warmup + 1)) and p.schedule(0) > 0
            assert p.schedule(warmup - 1) == pytest.approx(warmup / (warmup + 1)) and p.schedule(warmup) == 1.0
        else:
            assert p.schedule == CosineDecay(1)

    def test_explicit_warmup_and_names(self):
        assert plan(schedule="cosine", warmup_steps=0).schedule == CosineDecay(1000)
        assert plan(schedule="cosine").schedule_name == "warmup_cosine"
        assert plan(schedule="linear", warmup_steps=0).schedule == LinearDecay(1000)
        assert plan(schedule="step").schedule == StepDecay(333)
        constant = plan(schedule="constant", total_steps=None)
        assert constant.schedule == Constant() and constant.decision("schedule").reason.startswith("requested")

    def test_epoch_granularity_is_kept(self):
        assert plan(total_steps=30, step_granularity="epoch").step_granularity == "epoch"
        assert plan(total_steps=None, step_granularity="epoch").step_granularity == "metric"


class TestLearningRate:
    @pytest.mark.parametrize(
        ("lr", "evidence", "peak", "words"),
        [
            (1e-3, EVIDENCE, math.sqrt(1e-3 * 1e-2), ["sqrt", "min_loss_lr 1.00e-02", "within the cap", "2.50e-02"]),
            (1e-2, {"min_loss_lr": 0.09, "divergence_lr": 0.1}, 0.025, ["capped at", "1.00e-01 / 4 = 2.50e-02"]),
            (1e-3, {"divergence_lr": 0.4}, math.sqrt(1e-3 * 0.1), ["sqrt", "divergence_lr 4.00e-01 / 4"]),
            (0.05, {"divergence_lr": 0.1}, 0.025, ["not above", "capped at"]),
            (1e-2, {"min_loss_lr": 5e-3}, 1e-2, ["= the suggestion", "not above"]),
            (1e-3, {}, 1e-3, ["no loss minimum and no divergence"]),
            (1e-3, {"min_loss_lr": float("nan"), "divergence_lr": -1.0}, 1e-3, ["no loss minimum"]),
        ],
    )
    def test_one_cycle_peak_is_derived_from_the_curve(self, lr, evidence, peak, words):
        p = plan(suggestion(lr, evidence), optimizer_name="SGD")
        assert p.peak_lr == pytest.approx(peak, rel=1e-12)
        assert p.lrs == pytest.approx((peak, peak / 10), rel=1e-12)
        decision = p.decision("lr")
        assert decision.value == p.peak_lr and decision.alternatives["suggestion"] == lr
        for word in words:
            assert word in decision.reason
        assert "suggestion by valley" in decision.reason

    @settings(max_examples=50, deadline=None)
    @given(
        lr=st.floats(1e-6, 1.0),
        minimum=st.one_of(st.none(), st.floats(1e-6, 10.0)),
        divergence=st.one_of(st.none(), st.floats(1e-6, 10.0)),
    )
    def test_one_cycle_peak_never_passes_the_divergence_cap(self, lr, minimum, divergence):
        evidence = {k: v for k, v in (("min_loss_lr", minimum), ("divergence_lr", divergence)) if v is not None}
        peak = plan(suggestion(lr, evidence), optimizer_name="SGD").peak_lr
        assert peak > 0
        if divergence is not None:
            assert peak <= divergence / DIVERGENCE_MARGIN * (1 + 1e-12)
        else:
            assert peak >= lr

    def test_other_schedules_use_the_suggestion_and_keep_ratios(self):
        p = plan(param_group_lrs=[1e-3, 1e-4, 5e-4])
        assert p.peak_lr == 1e-3 and p.lrs == pytest.approx((1e-3, 1e-4, 5e-4))
        assert "valley (confidence 0.80)" in p.decision("lr").reason
        assert "[1.0, 0.1, 0.5]" in p.decision("lr").reason
        assert p.decision("lr").evidence["min_loss_lr"] == 1e-2

    @pytest.mark.parametrize("optimizer", ["SGD", "AdamW"])
    def test_no_suggestion_keeps_the_current_lrs(self, optimizer):
        s = Suggestion(None, "valley", 0.0, "the loss never decreased; raise end_lr")
        p = plan(s, optimizer_name=optimizer, param_group_lrs=[0.3, 0.03])
        assert p.lrs == (0.3, 0.03) and p.peak_lr == 0.3
        decision = p.decision("lr")
        assert decision.value == 0.3 and decision.alternatives["suggestion"] is None
        assert "no lr suggested" in decision.reason and "raise end_lr" in decision.reason


class TestWeightDecay:
    @pytest.mark.parametrize(
        ("optimizer", "asked", "value", "decoupled", "words"),
        [
            ("AdamW", "auto", 0.05, True, "auto: 0.05"),
            ("Adafactor", "auto", 0.05, True, "decoupled"),
            ("SGD", "auto", 5e-4, False, "SGD"),
            ("Adam", "auto", 0.0, False, "AdamW is the decoupled variant"),
            ("Adam", 0.01, 0.01, False, "AdamW is the decoupled variant"),
            ("RMSprop", 1e-5, 1e-5, False, "as L2"),
            ("torch.optim.AdamW", 0.1, 0.1, True, "as given"),
            ("SGD", None, 0.0, False, "no weight decay"),
            ("AdamW", 0, 0.0, True, "no weight decay"),
            ("MyOptimizer", "auto", 0.0, False, "no rule for MyOptimizer"),
            ("LBFGS", "auto", 0.0, False, "no weight_decay argument"),
        ],
    )
    def test_rules(self, optimizer, asked, value, decoupled, words):
        p = plan(optimizer_name=optimizer, weight_decay=asked)
        assert p.weight_decay == value and p.decoupled_weight_decay is decoupled
        decision = p.decision("weight_decay")
        assert decision.value == value and words in decision.reason

    @pytest.mark.parametrize(
        ("name", "supported"), [("AdamW", True), ("sgd", True), ("Rprop", False), ("SparseAdam", False),
                                ("torch.optim.LBFGS", False), ("SomethingNew", True)],
    )
    def test_supports_weight_decay(self, name, supported):
        assert supports_weight_decay(name) is supported

    def test_no_decay_decision(self):
        info = [("emb.weight", "Embedding", 2), ("fc.weight", "Linear", 2), ("fc.bias", "Linear", 1)]
        decision = plan(named_params_info=info).decision("no_decay")
        assert decision.value == ["bias", "normalization", "ndim<=1", "embedding"]
        assert decision.evidence == {"decay_params": 1, "no_decay_params": 2}
        kept = plan(named_params_info=info, exclude_embeddings=False)
        assert "embedding" not in kept.decision("no_decay").value and not kept.exclude_embeddings
        assert kept.decision("no_decay").evidence == {"decay_params": 2, "no_decay_params": 1}
        assert plan(weight_decay=None).decision("no_decay").value == []


def test_split_no_decay():
    info = [
        ("conv.weight", "Conv2d", 4),
        ("conv.bias", "Conv2d", 1),
        ("bn.weight", "BatchNorm2d", 1),
        ("sync.weight", "SyncBatchNorm", 1),
        ("ln.weight", "LayerNorm", 1),
        ("gn.bias", "GroupNorm", 1),
        ("inorm.weight", "InstanceNorm1d", 1),
        ("rms.weight", "LlamaRMSNorm", 1),
        ("ln2d.weight", "LayerNorm2d", 3),  # a norm layer, even with ndim > 1
        ("emb.weight", "Embedding", 2),
        ("bag.weight", "EmbeddingBag", 2),
        ("block.layer_scale", "Block", 1),
        ("bias", "Linear", 1),
        ("head.weight", "Linear", 2),
    ]
    decay, no_decay = split_no_decay(info)
    assert decay == ["conv.weight", "head.weight"]
    assert no_decay == [name for name, _, _ in info if name not in decay]
    decay, _ = split_no_decay(info, exclude_embeddings=False)
    assert decay == ["conv.weight", "emb.weight", "bag.weight", "head.weight"]
    with pytest.raises(ConfigurationError, match="named_params_info"):
        split_no_decay([("fc.weight", 2)])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"optimizer_name": "SGD"},
        {"optimizer_name": "AdamW", "param_group_lrs": [1e-3]},
        {"schedule": "linear", "weight_decay": None},
        {"schedule": "step"},
        {"schedule": "constant", "total_steps": None},
        {"total_steps": None, "optimizer_name": "Adam", "weight_decay": 1e-4},
    ],
)
def test_plan_round_trips_through_json(kwargs):
    p = plan(**kwargs)
    data = json.loads(json.dumps(p.to_dict()))
    rebuilt = Plan.from_dict(data)
    assert rebuilt == p and rebuilt.to_dict() == data
    assert [rebuilt.schedule(t) for t in range(0, 1200, 37)] == [p.schedule(t) for t in range(0, 1200, 37)]
    assert [d.name for d in rebuilt.decisions] == ["lr", "schedule", "weight_decay", "no_decay"]
    assert all(isinstance(d, Decision) for d in rebuilt.decisions)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"schedule": "cosin"}, ["schedule", "'cosin'", "onecycle", "warmup_cosine"]),
        ({"schedule": "onecycle", "total_steps": None}, ["total_steps", "schedule='onecycle'", "plateau"]),
        ({"schedule": "cosine", "total_steps": None}, ["total_steps"]),
        ({"total_steps": 0}, ["total_steps", "0", "int >= 1"]),
        ({"total_steps": True}, ["total_steps"]),
        ({"total_steps": 10.0}, ["total_steps"]),
        ({"weight_decay": -0.1}, ["weight_decay", "-0.1", ">= 0"]),
        ({"weight_decay": "high"}, ["weight_decay", "'high'"]),
        ({"weight_decay": float("nan")}, ["weight_decay"]),
        ({"weight_decay": 0.01, "optimizer_name": "LBFGS"}, ["weight_decay", "LBFGS", "AdamW"]),
        ({"param_group_lrs": []}, ["param_group_lrs"]),
        ({"param_group_lrs": [0.1, 0.0]}, ["param_group_lrs", "0.0"]),
        ({"optimizer_name": ""}, ["optimizer_name"]),
        ({"warmup_steps": 1000}, ["warmup_steps", "1000"]),
        ({"warmup_steps": -1}, ["warmup_steps"]),
        ({"step_granularity": "batch"}, ["step_granularity", "'batch'"]),
    ],
)
def test_bad_input_raises_before_anything(kwargs, words):
    with pytest.raises(ConfigurationError) as info:
        plan(**kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("bad", [None, 1e-3, Suggestion(float("nan"), "x", 0.0, ""), Suggestion(-1.0, "x", 0, "")])
def test_bad_suggestion(bad):
    with pytest.raises(ConfigurationError, match="suggestion"):
        make_plan(bad, param_group_lrs=[0.1], optimizer_name="SGD", total_steps=10)


def test_min_confidence_keeps_the_current_lrs_and_says_why() -> None:
    flat = Suggestion(1e-3, "default", 0.05, "flat curve: a guess from the stability edge")
    plan = make_plan(flat, param_group_lrs=[5e-5, 5e-5], optimizer_name="AdamW", total_steps=100,
                     min_confidence=0.1)
    assert plan.lrs == (5e-5, 5e-5) and plan.peak_lr == 5e-5
    reason = plan.decision("lr").reason
    assert "under min_confidence 0.1" in reason and "flat curve" in reason and "kept the current lrs" in reason
    applied = make_plan(flat, param_group_lrs=[5e-5, 5e-5], optimizer_name="AdamW", total_steps=100)
    assert applied.peak_lr == 1e-3
    with pytest.raises(ConfigurationError, match="min_confidence"):
        make_plan(flat, param_group_lrs=[1.0], optimizer_name="AdamW", total_steps=10, min_confidence=2)

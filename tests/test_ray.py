"""autolr.integrations.ray against real Ray Tune searches, on a local 2-CPU Ray instance started for this module."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.sample import Float, LogUniform
from torch import nn

import autolr.integrations.ray as autolr_ray
from autolr import AutoLR, lr_find
from autolr.errors import AutoLRWarning
from autolr.integrations.ray import (
    TrialPruned,
    TuneReporter,
    lr_metrics,
    lr_search_space,
    narrow_lr_range,
    suggest_lr,
)
from autolr.plan import make_plan
from autolr.report import Decision
from autolr.suggest import Suggestion
from tests import tasks

STEPS = 24  # training steps of a trial in the scheduler test


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _fit(trainable, tmp_path: Path, param_space: dict, **tune_config) -> tune.ResultGrid:
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", reuse_actors=True, **tune_config),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray_results"), verbose=0),
    )
    return tuner.fit()


def _per_trial(config: dict) -> None:
    """A trainable: suggest_lr on the trial's model, then training with the LR it set (reported each iteration)."""
    torch.manual_seed(0)
    if config["task"] == "unlearnable":
        model, data = tasks.unlearnable_regression()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        suggest_lr(model, optimizer, data, loss_fn=nn.MSELoss(), metric="loss", min_confidence=0.5)
        tune.report({"loss": 0.0, "trained_lr": 0.01})  # never reached: the trial ends in suggest_lr
        return
    model = tasks.BNDropoutNet(hidden=config["hidden"])
    optimizer = tasks.two_group_optimizer(model)  # groups at lr and lr / 10
    lr = suggest_lr(model, optimizer, tasks.batches(count=8), loss_fn=nn.CrossEntropyLoss(), metric="loss",
                    num_steps=60)
    data = tasks.batches(count=4)
    for _ in range(3):
        loss = tasks.train(model, optimizer, data, steps=2)[-1]
        groups = optimizer.param_groups
        tune.report({"loss": loss, "trained_lr": groups[0]["lr"], "ratio": groups[1]["lr"] / groups[0]["lr"], **lr})


def test_suggest_lr_sets_the_lr_every_result_carries_it_and_a_trial_without_one_ends(tmp_path: Path) -> None:
    space = {"task": tune.grid_search(["mlp", "mlp", "unlearnable"]), "hidden": tune.grid_search([16])}
    results = _fit(_per_trial, tmp_path, space, max_concurrent_trials=2)
    assert results.num_errors == 0  # a pruned trial ends cleanly (TERMINATED), it is not an error
    trained = [r for r in results if r.config["task"] == "mlp"]
    pruned = [r for r in results if r.config["task"] == "unlearnable"]
    assert len(trained) == 2 and len(pruned) == 1
    for r in trained:
        df = r.metrics_dataframe
        assert len(df) == 3
        assert (df["autolr/lr"] == df["trained_lr"]).all()  # every result: the LR the optimizer trained with
        assert df["trained_lr"].iloc[0] != 0.01  # the suggestion was applied, not the initial LR
        assert df["ratio"].to_numpy() == pytest.approx(0.1)  # group ratios kept
        assert df["autolr/confidence"].iloc[0] > 0 and df["autolr/reason"].iloc[0]
    # same model, same seed: the same suggestion in both trials (each ran its own range test, state restored)
    assert trained[0].metrics["autolr/lr"] == trained[1].metrics["autolr/lr"]
    p = pruned[0]
    assert p.error is None
    assert p.metrics["training_iteration"] == 1  # one final result, before any training
    assert "trained_lr" not in p.metrics or math.isnan(p.metrics["trained_lr"])
    assert math.isnan(p.metrics["loss"])
    assert "min_confidence" in p.metrics["autolr/pruned"] or "no learning rate" in p.metrics["autolr/pruned"]
    assert p.metrics["autolr/reason"] in p.metrics["autolr/pruned"]
    assert results.get_best_result().config["task"] == "mlp"  # the NaN of the pruned trial is never the best


def test_narrow_lr_range_gives_a_log_space_below_the_divergence_edge() -> None:
    torch.manual_seed(0)
    model = tasks.BNDropoutNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = tasks.full_state(model, optimizer)
    space, points, result = narrow_lr_range(model, optimizer, tasks.batches(count=8), loss_fn=nn.CrossEntropyLoss(),
                                            num_steps=80, end_lr=100.0)
    tasks.assert_same_state(before, tasks.full_state(model, optimizer))
    assert result.curve.stop_reason == "diverged"
    edge = result.suggestion.evidence["divergence_lr"]
    lr = result.suggestion.lr
    assert isinstance(space, Float) and isinstance(space.get_sampler(), LogUniform)
    assert space.lower < lr < space.upper <= edge / 4
    assert space.upper < result.curve.lrs[-1]  # below where the sweep stopped
    assert points == [{"lr": lr}]
    samples = space.sample(size=200)
    assert all(space.lower <= s <= space.upper for s in samples)
    assert min(samples) < lr < max(samples)
    assert (space.lower, space.upper) == pytest.approx(result.search_range())
    wide = lr_search_space(result, divergence_margin=1.0)  # up to the divergence edge itself
    assert space.upper <= wide.upper <= edge and wide.lower == space.lower
    assert lr_metrics(result) == {"autolr/lr": lr, "autolr/confidence": result.suggestion.confidence,
                                  "autolr/reason": result.suggestion.reason}


def test_narrow_lr_range_falls_back_on_the_users_range_when_there_is_no_lr() -> None:
    model, data = tasks.unlearnable_regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    flat = {"loss_fn": nn.MSELoss(), "end_lr": 1e-3}  # no descent and no divergence: no LR at all
    with pytest.raises(ValueError, match="no learning rate"):
        narrow_lr_range(model, optimizer, data, **flat)
    with pytest.warns(AutoLRWarning, match=r"fallback range 1.00e-04..1.00e\+00"):
        space, points, result = narrow_lr_range(model, optimizer, data, **flat, fallback=(1e-4, 1.0))
    assert result.suggestion.lr is None and points == []
    assert (space.lower, space.upper) == (1e-4, 1.0) and isinstance(space.get_sampler(), LogUniform)
    for bad in ((1.0, 1e-4), (0, 1), (1e-4,), "wide"):
        with pytest.raises(ValueError, match="fallback must be"):
            narrow_lr_range(model, optimizer, data, **flat, fallback=bad)


def _with_reporter(config: dict) -> None:
    """A trainable: AutoLR at the trial's LR with the TuneReporter, the loop asking it whether to stop."""
    torch.manual_seed(0)
    model = tasks.BNDropoutNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    reporter = TuneReporter(metric="loss", extra={"trial_lr": config["lr"]})
    tuner = AutoLR(model, optimizer, schedule="constant", weight_decay=None, check_every=2, reporters=[reporter],
                   progress=False)
    tuner.apply_plan(make_plan(Suggestion(config["lr"], "search", 1.0, "from the search"), param_group_lrs=[0.01],
                               optimizer_name="SGD", total_steps=STEPS, schedule="constant", weight_decay=None))
    data = tasks.batches(count=4)
    for i in range(STEPS):
        x, y = data[i % len(data)]
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        tuner.observe(loss)
        reporter.raise_if_stopped()
    tune.report({"loss": loss.item(), "autolr/step": STEPS, "finished": True, **reporter.extra})


def test_tune_reporter_lets_asha_stop_a_diverging_trial_early(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tasks.BNDropoutNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    space, points, _ = narrow_lr_range(model, optimizer, tasks.batches(count=8), loss_fn=nn.CrossEntropyLoss(),
                                       num_steps=60)
    # first the suggestion (the search algorithm's points_to_evaluate), then a deliberately diverging LR
    search = BasicVariantGenerator(points_to_evaluate=[*points, {"lr": 1e4}], max_concurrent=1)
    scheduler = ASHAScheduler(grace_period=4, max_t=STEPS + 1, reduction_factor=2)
    results = _fit(_with_reporter, tmp_path, {"lr": space}, search_alg=search, scheduler=scheduler, num_samples=2)
    assert results.num_errors == 0
    good, bad = sorted(results, key=lambda r: r.config["lr"])
    assert good.config["lr"] == points[0]["lr"]
    assert bad.config["lr"] == 1e4
    df = good.metrics_dataframe
    assert good.metrics.get("finished") is True  # trained to the end
    reported = df["autolr/step"].dropna().astype(int).tolist()
    assert reported[:-1] == list(range(1, len(reported)))  # one result per step, in order, none twice
    assert len(reported) >= STEPS - 2  # the last batch of check_every losses is read one batch late
    assert (df["trial_lr"] == good.config["lr"]).all()
    assert all(math.isfinite(v) for v in df["loss"])
    assert not bad.metrics.get("finished")  # stopped by ASHA at its first rung, long before the end
    assert bad.metrics["training_iteration"] <= 4
    assert bad.metrics_dataframe["loss"].iloc[-1] > df["loss"].iloc[3]


def test_tune_reporter_records_stops_and_guard_interventions_without_raising_into_training(monkeypatch) -> None:
    sent: list[dict] = []
    stop_at = {"step": 4}

    def report(metrics: dict) -> None:  # stands in for tune.report inside a trial
        sent.append(metrics)
        if metrics.get("autolr/step") == stop_at["step"]:
            raise SystemExit(0)  # what tune.report does when a scheduler stopped the trial

    monkeypatch.setattr(autolr_ray.tune, "report", report)
    reporter = TuneReporter(metric="train_loss", interval=2, extra={"autolr/lr": 0.1})
    reporter.training_metrics(1, {"autolr/train_loss": 1.0})  # not on the interval: not reported
    reporter.training_metrics(2, {"autolr/train_loss": 0.9})
    reporter.training_metrics(2, {"autolr/train_loss": 0.8})  # the guard rewound the steps: not reported again
    reporter.training_metrics(3, {"autolr/lr/group0": 0.1})  # no loss in these metrics
    reporter.decisions([Decision("guard", 0.05, "loss diverged at step 3", step=3)])
    reporter.raise_if_stopped()  # not stopped: nothing raised
    reporter.training_metrics(4, {"autolr/train_loss": float("nan")})  # Tune stops the trial here: no raise
    reporter.training_metrics(6, {"autolr/train_loss": 0.5})  # stopped: nothing more is reported
    assert [m["autolr/step"] for m in sent] == [2, 4]
    assert sent[0] == {"train_loss": 0.9, "autolr/step": 2, "autolr/lr": 0.1}
    assert sent[1]["train_loss"] == math.inf
    assert sent[1]["autolr/guard_interventions"] == 1 and sent[1]["autolr/guard_reason"] == "loss diverged at step 3"
    assert reporter.should_stop
    with pytest.raises(TrialPruned, match="Tune stopped the trial at step 4") as stopped:
        reporter.raise_if_stopped()
    assert stopped.value.code == 0  # Tune's graceful exit: the trial is TERMINATED, not ERROR

    # a range test the tuner runs puts its outcome into the later reports
    torch.manual_seed(0)
    model = tasks.BNDropoutNet()
    result = lr_find(model, torch.optim.SGD(model.parameters(), lr=0.01), tasks.batches(count=4),
                     loss_fn=nn.CrossEntropyLoss(), num_steps=40, progress=False)
    reporter = TuneReporter(stop_on_guard=True)
    reporter.range_test_end(result)
    reporter.training_metrics(1, {"autolr/train_loss": 2.0})
    assert sent[-1]["loss"] == 2.0 and sent[-1]["autolr/lr"] == result.suggestion.lr
    reporter.decisions([Decision("guard", 0.05, "loss diverged at step 2", step=2)])
    assert reporter.should_stop
    monkeypatch.setattr(autolr_ray, "_in_trial", lambda: True)
    with pytest.raises(TrialPruned, match="guard intervened"):
        reporter.raise_if_stopped()
    assert math.isnan(sent[-1]["loss"]) and "guard intervened" in sent[-1]["autolr/pruned"]
    with pytest.raises(ValueError, match="interval"):
        TuneReporter(interval=0)


def test_suggest_lr_outside_a_trial_applies_the_lr_or_exits_with_the_reason() -> None:
    torch.manual_seed(0)
    model = tasks.BNDropoutNet()
    optimizer = tasks.two_group_optimizer(model)
    lr = suggest_lr(model, optimizer, tasks.batches(count=8), loss_fn=nn.CrossEntropyLoss(), metric="loss",
                    num_steps=60)
    assert optimizer.param_groups[0]["lr"] == lr["autolr/lr"]
    assert optimizer.param_groups[1]["lr"] == pytest.approx(lr["autolr/lr"] / 10)
    model, data = tasks.unlearnable_regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings(), pytest.raises(TrialPruned) as pruned:
        warnings.simplefilter("error")  # outside a trial nothing is reported (tune.report would warn)
        suggest_lr(model, optimizer, data, loss_fn=nn.MSELoss(), metric="loss", min_confidence=0.5)
    assert pruned.value.code == pruned.value.reason  # a script exits with the reason, status 1
    assert optimizer.param_groups[0]["lr"] == 0.01
    with pytest.raises(ValueError, match="apply"):
        suggest_lr(model, optimizer, data, loss_fn=nn.MSELoss(), metric="loss", apply=True)

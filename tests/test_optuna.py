"""autolr.integrations.optuna against real Optuna studies (in-memory, and SQLite shared by two processes)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from autolr import AutoLR, lr_find
from autolr.plan import make_plan
from autolr.report import Decision
from autolr.suggest import Suggestion
from tests import tasks

optuna = pytest.importorskip("optuna")
from autolr.errors import AutoLRWarning  # noqa: E402
from autolr.integrations.optuna import TrialReporter, lr_search_space, narrow_lr_range, suggest_lr  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _net(hidden: int = 32) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = tasks.BNDropoutNet(hidden=hidden)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def test_suggest_lr_records_applies_and_restores_the_state() -> None:
    seen = []

    def objective(trial):
        model, opt = _net(trial.suggest_int("hidden", 8, 32))
        before = tasks.full_state(model, opt)
        result = suggest_lr(trial, model, opt, tasks.batches(count=8), loss_fn=nn.CrossEntropyLoss(), num_steps=60)
        assert opt.param_groups[0]["lr"] == result.suggestion.lr
        opt.param_groups[0]["lr"] = 0.01  # everything else is as it was before the range test
        tasks.assert_same_state(before, tasks.full_state(model, opt))
        seen.append(result.suggestion)
        return 0.0

    sampler = optuna.samplers.TPESampler(n_startup_trials=1, multivariate=True, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=3)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial, s in zip(study.trials, seen):
        assert s.lr is not None
        assert trial.user_attrs["autolr/lr"] == s.lr
        assert trial.user_attrs["autolr/confidence"] == s.confidence
        assert trial.user_attrs["autolr/reason"] == s.reason
        assert trial.params["lr"] == pytest.approx(s.lr)  # a parameter: best_params, plots, dashboard see it
    assert "lr" in study.best_params


def test_suggest_lr_prunes_a_trial_without_a_confident_suggestion() -> None:
    def objective(trial):
        model, data = tasks.unlearnable_regression()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        suggest_lr(trial, model, opt, data, loss_fn=nn.MSELoss(), min_confidence=0.5)
        raise AssertionError("the trial should have been pruned before training")

    study = optuna.create_study()
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["autolr/reason"]
    lr, confidence = trial.user_attrs["autolr/lr"], trial.user_attrs["autolr/confidence"]
    assert lr is None or confidence < 0.5
    assert "lr" not in trial.params

    with pytest.raises(optuna.TrialPruned, match=r"min_confidence|no learning rate"):
        model, data = tasks.unlearnable_regression()
        suggest_lr(study.ask(), model, torch.optim.SGD(model.parameters(), lr=0.01), data, loss_fn=nn.MSELoss(),
                   min_confidence=0.5)
    with pytest.raises(ValueError, match="apply"):
        suggest_lr(study.ask(), *_net(), tasks.batches(), loss_fn=nn.CrossEntropyLoss(), apply=True)


def test_narrow_lr_range_contains_the_suggestion_below_divergence_and_enqueues_it() -> None:
    model, opt = _net()
    study = optuna.create_study()
    low, high = narrow_lr_range(study, model, opt, tasks.batches(count=8), loss_fn=nn.CrossEntropyLoss(),
                                num_steps=60)
    assert opt.param_groups[0]["lr"] == 0.01  # the optimizer is left as it was
    lr = study.user_attrs["autolr/lr"]
    assert low < lr < high
    assert (study.user_attrs["autolr/lr_low"], study.user_attrs["autolr/lr_high"]) == (low, high)

    def objective(trial):
        model, opt = _net()
        for group in opt.param_groups:
            group["lr"] = trial.suggest_float("lr", low, high, log=True)
        return tasks.train(model, opt, tasks.batches(count=4), steps=4)[-1]

    study.optimize(objective, n_trials=2)
    assert study.trials[0].params["lr"] == pytest.approx(lr)
    assert all(low <= t.params["lr"] <= high for t in study.trials)

    result = lr_find(*_net(), tasks.batches(count=8), loss_fn=nn.CrossEntropyLoss(), num_steps=60, progress=False)
    low, high = lr_search_space(result)
    evidence = result.suggestion.evidence
    assert low <= result.lr <= high
    assert "divergence_lr" in evidence and high <= evidence["divergence_lr"] / 4
    assert low == pytest.approx(min(evidence["descent_low_lr"], result.lr / 2))


def test_narrow_lr_range_falls_back_on_the_users_range_when_there_is_no_lr() -> None:
    model, data = tasks.unlearnable_regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    flat = {"loss_fn": nn.MSELoss(), "end_lr": 1e-3}  # no descent and no divergence: no LR at all
    study = optuna.create_study()
    with pytest.raises(ValueError, match="no learning rate"):
        narrow_lr_range(study, model, optimizer, data, **flat)
    with pytest.warns(AutoLRWarning, match=r"fallback range 1.00e-04..1.00e\+00"):
        low, high = narrow_lr_range(study, model, optimizer, data, **flat, fallback=(1e-4, 1.0))
    assert (low, high) == (1e-4, 1.0)
    assert (study.user_attrs["autolr/lr_low"], study.user_attrs["autolr/lr_high"]) == (1e-4, 1.0)
    assert study.user_attrs["autolr/lr"] is None and study.user_attrs["autolr/reason"]
    study.optimize(lambda trial: trial.suggest_float("lr", low, high, log=True), n_trials=1)
    assert study.trials[0].params["lr"] != study.user_attrs["autolr/lr"]  # nothing was enqueued
    with pytest.raises(ValueError, match="fallback must be"):
        narrow_lr_range(study, model, optimizer, data, **flat, fallback=(1.0, 1e-4))


def test_lr_search_space_falls_back_when_evidence_is_missing() -> None:
    from autolr.curve import Curve
    from autolr.result import LRFindResult
    from autolr.suggest import Suggestion

    bare = LRFindResult(Curve([1e-3], [1.0]), Suggestion(0.01, "x", 0.5, "r"))
    assert lr_search_space(bare) == pytest.approx((1e-3, 0.1))
    capped = LRFindResult(Curve([1e-3], [1.0]), Suggestion(0.01, "x", 0.5, "r", evidence={"divergence_lr": 0.1}))
    assert lr_search_space(capped) == pytest.approx((1e-3, 0.025))
    with pytest.raises(ValueError, match="no learning rate"):
        lr_search_space(LRFindResult(Curve([1e-3], [1.0]), Suggestion(None, "x", 0.0, "flat curve")))


def _train_with_bridge(trial, lr: float | None, steps: int = 40) -> float:
    """Train with AutoLR and the bridge: its own range test (lr None) or a fixed, deliberately chosen LR."""
    torch.manual_seed(0)
    model, opt = _net()
    reporter = TrialReporter(trial)
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, check_every=2, reporters=[reporter],
                   progress=False)
    data = tasks.batches(count=4)
    if lr is None:
        tuner.lr_find(data, nn.CrossEntropyLoss(), total_steps=steps, num_steps=40)
    else:
        tuner.apply_plan(make_plan(Suggestion(lr, "manual", 1.0, "deliberately chosen"), param_group_lrs=[0.01],
                                   optimizer_name="SGD", total_steps=steps, schedule="constant", weight_decay=None))
    loss = torch.tensor(0.0)
    for i in range(steps):
        x, y = data[i % len(data)]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        tuner.observe(loss)
        reporter.raise_if_pruned()
    return loss.item()


def test_trial_reporter_prunes_a_diverging_trial() -> None:
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=4))
    lrs = iter([None, 1e4])
    study.optimize(lambda trial: _train_with_bridge(trial, next(lrs)), n_trials=2)
    good, bad = study.trials
    assert good.state == optuna.trial.TrialState.COMPLETE
    assert good.user_attrs["autolr/lr"] > 0 and good.user_attrs["autolr/reason"]  # the tuner's range test
    assert len(good.intermediate_values) >= 30 and all(math.isfinite(v) for v in good.intermediate_values.values())
    assert bad.state == optuna.trial.TrialState.PRUNED
    assert max(bad.intermediate_values) < 40  # stopped early


def test_trial_reporter_records_guard_interventions_and_can_prune_on_them() -> None:
    study = optuna.create_study()
    trial = study.ask()
    reporter = TrialReporter(trial, prune_on_guard=True, interval=2)
    reporter.training_metrics(1, {"autolr/train_loss": 1.0})  # not on the interval: not reported
    reporter.training_metrics(2, {"autolr/train_loss": 0.9})
    reporter.training_metrics(2, {"autolr/train_loss": 0.8})  # the guard rewound the steps: not reported again
    reporter.decisions([Decision("lr", 0.1, "plan")])
    assert not reporter.should_prune
    reporter.raise_if_pruned()
    reporter.decisions([Decision("guard", 0.1, "loss diverged at step 7", step=7)])
    frozen = study.trials[0]
    assert frozen.intermediate_values == {2: 0.9}
    assert frozen.user_attrs["autolr/guard_interventions"] == 1
    assert frozen.user_attrs["autolr/guard_reason"] == "loss diverged at step 7"
    with pytest.raises(optuna.TrialPruned, match="guard intervened"):
        reporter.raise_if_pruned()
    with pytest.raises(ValueError, match="interval"):
        TrialReporter(trial, interval=0)


def _run_two_workers(storage_arg: str) -> None:
    """Two processes running tests/optuna_worker.py (2 trials each) on one study; each must exit cleanly."""
    worker = Path(__file__).with_name("optuna_worker.py")
    procs = [subprocess.Popen([sys.executable, str(worker), storage_arg, "shared", "2"], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=90)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_processes_share_one_sqlite_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="shared", storage=storage)
    _run_two_workers(storage)
    trials = study.get_trials()
    assert len(trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["autolr/lr"] == pytest.approx(t.params["lr"]) for t in trials)


def test_two_processes_share_one_journal_file_study(tmp_path: Path) -> None:
    journal = tmp_path / "study.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="shared", storage=storage)
    _run_two_workers(str(journal))
    trials = study.get_trials()  # the journal replayed: what the two workers appended
    assert len(trials) == 4
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # no number given twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["autolr/lr"] == pytest.approx(t.params["lr"]) for t in trials)
    assert all(16 <= t.params["hidden"] <= 32 for t in trials)

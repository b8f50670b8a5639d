"""WandbReporter against real wandb in offline mode, read back from the run files (no mocks)."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest

from autolr import AutoLRWarning, ConfigurationError, Curve, Decision, LRFindResult, Suggestion
from tests.wandb_reader import find_run_dir, read_run

wandb = pytest.importorskip("wandb")

from autolr.integrations import wandb as wandb_integration  # noqa: E402
from autolr.integrations.wandb import WandbReporter  # noqa: E402

LR = 3e-3
RANGE_TEST_METRICS = ("autolr/range_test/lr", "autolr/range_test/loss", "autolr/range_test/smoothed_loss")


def make_result() -> LRFindResult:
    lrs = np.geomspace(1e-5, 1.0, 12)
    losses = np.array([2.3, 2.31, 2.28, 2.2, 2.0, 1.7, 1.4, 1.2, 1.15, 1.5, 6.0, np.nan])
    curve = Curve(lrs, losses, stop_reason="diverged", num_steps=20)
    suggestion = Suggestion(
        LR, "steepest", 0.8, "steepest stable descent 1e-4..1e-2", {"minimum": 0.04, "valley": 1e-3}, {"loss_drop": 1.1}
    )
    return LRFindResult(curve, suggestion, initial_lrs=(0.1,), settings={"start_lr": 1e-5, "end_lr": 1.0})


DECISIONS = [
    Decision("lr", LR, "the range-test suggestion", alternatives={"minimum": 0.04}, evidence={"loss_drop": 1.1}),
    Decision("schedule", "onecycle", "warmup then cosine", alternatives={"constant": None}),
]


def _last(data, key):
    return data.values(key)[-1]


def test_own_run_logs_everything_and_finishes(wandb_dir):
    result = make_result()
    reporter = WandbReporter(project="autolr-tests", name="finder", tags=("lr",), log_every=3)
    reporter.range_test_end(result)
    reporter.decisions(DECISIONS)
    for step in range(5):
        reporter.training_metrics(step, {"lr/group0": 0.1 * (step + 1), "autolr/loss": 2.0 - step / 10})
    assert reporter.owns_run and reporter.sync_command == f"wandb sync {find_run_dir(wandb_dir)}"
    reporter.close()
    assert wandb.run is None  # finished the run it started

    data = read_run(find_run_dir(wandb_dir))
    assert data.exit_code == 0 and data.tags == ("lr",)
    assert data.summary["autolr/suggested_lr"] == LR and data.summary["autolr/confidence"] == 0.8
    assert data.summary["autolr/stop_reason"] == "diverged" and data.summary["autolr/method"] == "steepest"
    assert data.summary["autolr/reason"] == "steepest stable descent 1e-4..1e-2"
    cfg = data.config["autolr"]
    assert cfg["suggested_lr"] == LR and cfg["alternatives"] == {"minimum": 0.04, "valley": 1e-3}
    assert cfg["finetune"] is False  # the reading of the start state is part of the record
    assert cfg["decisions"]["lr"] == {
        "value": LR, "reason": "the range-test suggestion", "alternatives": {"minimum": 0.04},
        "evidence": {"loss_drop": 1.1}, "step": None,
    }  # fmt: skip
    assert cfg["decisions"]["schedule"]["value"] == "onecycle" and cfg["settings"]["end_lr"] == 1.0

    # step-wise range test on its own x-axis, exact names (no globs)
    assert data.metrics["autolr/range_test/step"]["step_metric"] == ""
    for name in RANGE_TEST_METRICS:
        assert data.metrics[name]["step_metric"] == "autolr/range_test/step"
    assert not [name for name in data.metrics if "*" in name]
    assert data.values("autolr/range_test/step") == list(range(12))
    np.testing.assert_allclose(data.values("autolr/range_test/lr"), result.curve.lrs)
    np.testing.assert_allclose(data.values("autolr/range_test/loss"), result.curve.losses[:11])  # NaN left out
    np.testing.assert_allclose(data.values("autolr/range_test/smoothed_loss"), result.curve.smoothed)

    # the curve table, the plot panel, the figure, the decisions table
    rows = data.table(data.summary["autolr/range_test/curve"])
    assert [list(r) for r in rows[:1]] == [["lr", "log10_lr", "loss", "smoothed_loss"]]
    np.testing.assert_allclose([r["lr"] for r in rows], result.curve.lrs)
    np.testing.assert_allclose([r["log10_lr"] for r in rows], np.log10(result.curve.lrs))
    assert [r["loss"] for r in rows][-2:] == [6.0, None]
    np.testing.assert_allclose([r["smoothed_loss"] for r in rows], result.curve.smoothed)
    panel = data.config["_wandb"]["visualize"]["autolr/range_test/loss_vs_log10_lr"]["panel_config"]
    assert panel["fieldSettings"]["x"] == "log10_lr" and panel["fieldSettings"]["y"] == "loss"
    image = _last(data, "autolr/range_test/plot")
    assert image["_type"] == "image-file"
    assert (data.run_dir / "files" / image["path"]).read_bytes()[:4] == b"\x89PNG"
    decisions = data.table(_last(data, "autolr/decisions"))
    assert [(d["decision"], d["value"], d["reason"]) for d in decisions] == [
        ("lr", "0.003", "the range-test suggestion"), ("schedule", "onecycle", "warmup then cosine")
    ]  # fmt: skip
    assert json.loads(decisions[0]["alternatives"]) == {"minimum": 0.04} and decisions[1]["step"] == ""

    # the result JSON as an artifact
    (artifact,) = [a for a in data.artifacts if a["type"] == "autolr-range-test"]
    assert artifact["name"].startswith("autolr-range-test-") and artifact["metadata"]["suggested_lr"] == LR
    assert LRFindResult.load(artifact["files"]["result.json"]).suggestion == result.suggestion

    # training metrics: every row, prefixed, on autolr/train_step
    assert data.metrics["autolr/lr/group0"]["step_metric"] == "autolr/train_step"
    assert data.metrics["autolr/loss"]["step_metric"] == "autolr/train_step"
    assert data.values("autolr/train_step") == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(data.values("autolr/lr/group0"), [0.1, 0.2, 0.3, 0.4, 0.5])


def test_user_run_keeps_user_steps_and_stays_open(wandb_dir):
    run = wandb.init(project="users-project")
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    reporter = WandbReporter(log_every=2)
    reporter.range_test_end(make_result())
    reporter.decisions(DECISIONS)
    for step in range(4):
        reporter.training_metrics(step, {"lr/group0": 0.01 * (step + 1)})
    reporter.decisions([Decision("guard", "halve lr", "loss spiked 5x", step=3)])
    reporter.close()
    assert not reporter.owns_run and wandb.run is run  # the user's run was not finished
    for step in range(3, 6):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.finish()

    data = read_run(find_run_dir(wandb_dir))
    assert data.exit_code == 0
    assert [r["_step"] for r in data.history] == [0, 1, 2, 3, 4, 5]  # no row of ours, no step consumed
    assert [(r["_step"], r["loss"]) for r in data.history] == [(s, 1.0 / (s + 1)) for s in range(6)]
    assert not [r for r in data.history if "autolr/range_test/loss" in r]  # no step-wise range test
    ours = [r for r in data.history if "autolr/train_step" in r]
    assert [r["_step"] for r in ours] == [2]  # joined the user's pending row
    assert ours[0]["autolr/train_step"] == 3 and ours[0]["autolr/lr/group0"] == pytest.approx(0.04)
    assert data.metrics["autolr/lr/group0"]["step_metric"] == "autolr/train_step"
    assert data.summary["autolr/suggested_lr"] == LR
    assert data.summary["autolr/decision/guard"] == "halve lr" and data.summary["autolr/decision/guard/step"] == 3
    assert set(data.config["autolr"]["decisions"]) == {"lr", "schedule"}  # guard events are not the plan
    assert len(data.table(data.summary["autolr/range_test/curve"])) == 12
    guard_rows = [d for d in data.table(data.summary["autolr/decisions"]) if d["decision"] == "guard"]
    assert guard_rows == [{"decision": "guard", "value": "halve lr", "alternatives": "{}",
                           "reason": "loss spiked 5x", "evidence": "{}", "step": "3"}]  # fmt: skip
    assert [a["type"] for a in data.artifacts].count("autolr-range-test") == 1


def test_no_key_no_mode_goes_offline_and_says_how_to_sync(wandb_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    reporter = WandbReporter()
    with caplog.at_level(logging.INFO, logger="autolr"):
        reporter.range_test_end(make_result())
    run_dir = find_run_dir(wandb_dir)
    assert reporter.run.offline and reporter.sync_command == f"wandb sync {run_dir}"
    messages = [r.getMessage() for r in caplog.records if "wandb sync" in r.getMessage()]
    assert len(messages) == 1 and str(run_dir) in messages[0] and "no W&B API key" in messages[0]
    reporter.close()
    assert read_run(run_dir).summary["autolr/suggested_lr"] == LR


def test_init_failure_warns_once_and_goes_quiet(wandb_dir, tmp_path):
    reporter = WandbReporter(project="bad/name", local_dir=tmp_path / "local")  # wandb rejects '/' in init
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reporter.range_test_end(make_result())
        reporter.decisions(DECISIONS)
        reporter.training_metrics(0, {"lr/group0": 0.1})
        reporter.close()
    assert [w.category for w in caught] == [AutoLRWarning] and "init" in str(caught[0].message)
    assert reporter.run is None and wandb.run is None and not wandb_dir.exists()
    assert "the range-test suggestion" in (tmp_path / "local" / "report.html").read_text()


def test_log_failure_in_a_finished_run_warns_once(wandb_dir):
    run = wandb.init()
    run.finish()  # logging into it now raises UsageError
    reporter = WandbReporter(run=run, log_every=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reporter.range_test_end(make_result())
        reporter.training_metrics(0, {"lr/group0": 0.1})
        reporter.close()
    assert [w.category for w in caught] == [AutoLRWarning] and "range test" in str(caught[0].message)
    assert reporter.run is None


def test_read_only_wandb_dir_never_raises(wandb_dir, tmp_path):
    read_only = tmp_path / "wb"
    read_only.chmod(0o500)
    try:
        try:
            (read_only / "probe").write_text("x")
        except PermissionError:
            pass
        else:
            pytest.skip("chmod does not stop this user from writing (root)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reporter = WandbReporter()
            reporter.range_test_end(make_result())
            sync_dir = reporter.run.settings.sync_dir if reporter.run is not None else None
            reporter.close()
        ours = [w for w in caught if w.category is AutoLRWarning]
        assert len(ours) == (0 if sync_dir else 1)  # W&B fell back to another directory, or we warned once
        if sync_dir:
            assert read_run(sync_dir).summary["autolr/suggested_lr"] == LR
    finally:
        read_only.chmod(0o700)


def test_other_ranks_log_nothing(wandb_dir, monkeypatch):
    monkeypatch.setattr(wandb_integration, "is_rank_zero", lambda: False)
    reporter = WandbReporter(log_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reporter.range_test_end(make_result())
        reporter.training_metrics(0, {"lr/group0": 0.1})
        reporter.close()
    assert reporter.run is None and wandb.run is None and not wandb_dir.exists()


@pytest.mark.parametrize(("kwargs", "match"), [({"mode": "ofline"}, "mode"), ({"log_every": 0}, "log_every")])
def test_invalid_arguments_raise_before_anything_starts(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        WandbReporter(**kwargs)


def test_autolr_tuner_logs_plan_lrs_and_losses_end_to_end(wandb_dir):
    """AutoLR(wandb=...) with a real range test and a real training loop, read back from the run files."""
    import torch
    from torch import nn

    import autolr
    from tests import tasks

    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tuner = autolr.AutoLR(model, opt, schedule="onecycle", weight_decay=5e-4, check_every=4, progress=False,
                          wandb={"project": "autolr-tests", "log_every": 5})
    plan = tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=12, num_steps=40)
    for x, y in tasks.batches(count=8):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        tuner.observe(loss)
    tuner.close()
    assert wandb.run is None  # the run autolr started is finished

    data = read_run(find_run_dir(wandb_dir))
    assert data.exit_code == 0
    assert data.summary["autolr/suggested_lr"] == pytest.approx(tuner.result.lr)
    names = data.config["autolr"]["decisions"]
    assert names["schedule"]["value"] == "onecycle" and names["lr"]["value"] == pytest.approx(plan.peak_lr)
    lrs = [v for v in data.values("autolr/lr/group0") if v is not None]
    # the value at autolr/train_step t is the LR the t-th optimizer step ran at
    assert len(lrs) == 8 and lrs == pytest.approx([plan.lrs[0] * plan.schedule(t) for t in range(8)])
    assert next(v for v in data.values("autolr/weight_decay/group0") if v is not None) == pytest.approx(5e-4)
    assert len([v for v in data.values("autolr/train_loss") if v is not None]) == 8


def test_every_row_of_a_user_run_carries_the_lr_of_every_group(wandb_dir):
    """In a run the user steps, the LR trace is not one point per ``log_every`` calls: each row the user commits
    after an optimizer step carries the LR (and weight decay) of every group that step ran at."""
    import torch
    from torch import nn

    import autolr
    from tests import tasks

    run = wandb.init(project="users-project")
    model = tasks.BNDropoutNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tuner = autolr.AutoLR(model, opt, schedule="warmup_cosine", weight_decay="auto", progress=False,
                          wandb={"log_every": 50, "lr_interval": 0})
    plan = tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), total_steps=10, num_steps=30)
    for step, (x, y) in enumerate(tasks.batches(count=6)):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        run.log({"loss": loss.item(), "trainer/global_step": step})  # as Lightning's and HF's loggers do
    tuner.close()
    assert wandb.run is run
    run.finish()

    data = read_run(find_run_dir(wandb_dir))
    rows = [r for r in data.history if "loss" in r]
    assert [r["_step"] for r in rows] == list(range(6))
    groups = len(opt.param_groups)
    assert groups == 2  # decayed weights, undecayed biases and norms
    for t, row in enumerate(rows):
        assert row["autolr/train_step"] == t + 1
        for g in range(groups):
            assert row[f"autolr/lr/group{g}"] == pytest.approx(plan.lrs[g] * plan.schedule(t))
        assert row["autolr/weight_decay/group0"] == pytest.approx(0.05)
        assert row["autolr/weight_decay/group1"] == 0.0
    assert rows[0]["autolr/lr/group0"] > 0  # the warmup's first step already learns

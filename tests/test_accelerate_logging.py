"""autolr.integrations.accelerate.tracker_reporters: autolr logs into the W&B run of an Accelerator's tracker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

accelerate = pytest.importorskip("accelerate")
wandb = pytest.importorskip("wandb")

import autolr  # noqa: E402
from autolr.integrations.accelerate import tracker_reporters  # noqa: E402
from tests.wandb_reader import find_run_dir, read_run  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_accelerate() -> Any:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_no_tracker_no_reporter() -> None:
    assert tracker_reporters(accelerate.Accelerator(cpu=True)) == []


def test_autolr_logs_into_the_trackers_run_on_its_rows(wandb_dir: Path) -> None:
    acc = accelerate.Accelerator(cpu=True, log_with="wandb", gradient_accumulation_steps=2)
    acc.init_trackers("autolr-test")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    data = [(torch.randn(16, 8), torch.randint(0, 2, (16,))) for _ in range(8)]
    model, opt = acc.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    (reporter,) = tracker_reporters(acc)
    assert reporter.run is acc.get_tracker("wandb", unwrap=True) and not reporter.owns_run
    tuner = autolr.AutoLR(model, opt, schedule="warmup_cosine", reporters=[reporter], progress=False)

    def step(batch: Any) -> torch.Tensor:
        with acc.accumulate(model):
            loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
            acc.backward(loss)
            opt.step()
            opt.zero_grad()
        return loss

    tuner.lr_find(data, train_step=step, accumulation_steps=2, total_steps=8, num_steps=30)
    logged = []
    for batch in data * 2:
        loss = step(batch)
        if acc.sync_gradients:
            acc.log({"train/loss": loss.item()}, step=tuner.step)
            logged.append(tuner.step)
    tuner.close()
    assert wandb.run is not None, "autolr must not finish the tracker's run"
    acc.end_training()
    data_ = read_run(find_run_dir(wandb_dir))
    assert data_.exit_code == 0 and logged == list(range(1, 9))
    rows = [row for row in data_.history if "train/loss" in row]
    assert [row["_step"] for row in rows] == logged  # the loop's rows, at the loop's own steps
    # the range test joined the open row: W&B flushes it as step 0 when the loop logs step=1 (nothing moved)
    others = [row for row in data_.history if "train/loss" not in row]
    assert all(k.startswith(("autolr/", "_")) for row in others for k in row) and len(others) <= 1
    assert any("autolr/range_test/curve" in row and "autolr/decisions" in row for row in data_.history)
    lrs = [row.get("autolr/lr/group0") for row in rows]
    assert all(lrs) and max(lrs) == pytest.approx(tuner.plan.peak_lr, rel=1e-6)
    assert data_.summary["autolr/suggested_lr"] == pytest.approx(tuner.result.suggestion.lr)

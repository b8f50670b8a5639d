"""Smoke test of the regret benchmark (``benchmarks/suggestion_quality.py``): one tiny task end to end.

The task (synthetic badly scaled linear regression) needs nothing beyond torch and numpy; the oracle runs on
a 3-point grid with one seed, and one method (autolr's default) is scored by actually training at its LR.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

suggestion_quality = pytest.importorskip("benchmarks.suggestion_quality")
from benchmarks.tasks import DECLARED_SPLITS  # noqa: E402

TASK = "scaled_linreg_sgd"
ARGS = [
    "--tasks", TASK,
    "--seeds", "0",
    "--points-per-decade", "1",
    "--grid", "1e-5", "1e-3",
    "--methods", "autolr:default", "textbook",
]  # fmt: skip


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> tuple[dict, str]:
    out = tmp_path / f"{name}.json"
    assert suggestion_quality.main([*ARGS, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def test_one_task_one_method_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, table = _run(tmp_path, capsys, "first")

    assert {"benchmark", "code_version", "config", "range_test", "methods", "splits", "tasks", "summary",
            "cost"} <= set(result)  # fmt: skip
    assert result["methods"] == ["autolr:default", "textbook"]
    task = result["tasks"][TASK]
    assert {"split", "untrained_loss", "oracle", "curves", "suggestions", "scores"} <= set(task)
    for protocol in ("constant", "onecycle"):
        oracle = task["oracle"][protocol]
        assert oracle["grid"] == pytest.approx([1e-5, 1e-4, 1e-3])
        assert all(math.isfinite(v) for v in oracle["losses"])
        assert oracle["best_loss"] <= task["untrained_loss"]
        regret = task["scores"][protocol]["autolr:default"]["regret"]
        assert 0.0 <= regret <= 1.0
        for split in (*DECLARED_SPLITS, "untuned", "all"):
            assert set(result["summary"][split][protocol]) == {"autolr:default", "textbook"}
        summary = result["summary"]["all"][protocol]["autolr:default"]
        assert summary["worst"] == pytest.approx(regret)
        # the paired comparison reads the same per-task regrets (one task: the difference is the difference)
        versus = result["comparison"]["all"][protocol]["textbook"]
        textbook = task["scores"][protocol]["textbook"]["regret"]
        assert versus["mean_diff"] == pytest.approx(regret - textbook)
        assert versus["wins"] + versus["ties"] + versus["losses"] == 1
        assert versus["mean_diff_90"] == pytest.approx([regret - textbook] * 2)
    assert result["cost"]["all"]["range_test_steps_per_test"] > 0
    assert "| autolr:default |" in table
    assert "autolr:default paired with each method by task" in table and "| textbook | " in table

    # Everything but the range test now comes from the cache, and the table is identical.
    again, table_again = _run(tmp_path, capsys, "second")
    assert table_again == table
    assert again["summary"] == result["summary"]


def test_regret_and_clipping() -> None:
    assert suggestion_quality.regret(0.5, 0.5, 2.0) == 0.0
    assert suggestion_quality.regret(1.25, 0.5, 2.0) == pytest.approx(0.5)
    assert suggestion_quality.regret(0.1, 0.5, 2.0) == 0.0  # better than the grid's best
    assert suggestion_quality.regret(9.0, 0.5, 2.0) == 1.0
    assert suggestion_quality.clipped(math.nan, 2.0) == 2.0
    assert suggestion_quality.clipped(None, 2.0) == 2.0
    assert suggestion_quality.clipped(3.0, 2.0) == 2.0
    assert suggestion_quality.log_grid(1e-3, 1e-1, 3)[0] == "1.0000e-03"
    assert len(suggestion_quality.log_grid(1e-3, 1e-1, 3)) == 7


def test_paired_comparison_counts_and_bootstraps_by_task() -> None:
    ours, theirs = [0.0, 0.1, 0.2, 0.5, 0.30], [0.2, 0.1, 0.205, 0.1, 0.6]
    r = suggestion_quality.paired_comparison(ours, theirs)
    assert (r["wins"], r["ties"], r["losses"]) == (2, 2, 1)
    assert r["mean_diff"] == pytest.approx(np.mean(ours) - np.mean(theirs))
    assert r["median_diff"] == pytest.approx(np.median(ours) - np.median(theirs))
    low, high = r["mean_diff_90"]
    assert low < r["mean_diff"] < high  # five different differences: the interval has width
    assert 0.0 < r["p_lower_mean"] < 1.0
    assert suggestion_quality.paired_comparison(ours, theirs) == r  # seeded: deterministic
    clear = suggestion_quality.paired_comparison([0.0] * 5, [0.5] * 5)
    assert clear["p_lower_mean"] == 1.0 and clear["mean_diff_90"] == pytest.approx([-0.5, -0.5])
    with pytest.raises(ValueError, match="equally long"):
        suggestion_quality.paired_comparison([0.1, 0.2], [0.1])


def test_plateau_probe_prints_loss_blocks_and_sweep_readings(capsys: pytest.CaptureFixture[str]) -> None:
    probe = pytest.importorskip("benchmarks.plateau_probe")
    argv = ["--lrs", "0.05", "--seeds", "0", "--steps", "50", "--sweeps", "40", "--val-batches", "2"]
    assert probe.main(argv) == 0
    out = capsys.readouterr().out
    blocks = next(line for line in out.splitlines() if line.startswith("seed 0, lr 0.05:"))
    values = [float(v) for v in blocks.split(":")[1].split()]
    assert len(values) == 2 and all(0.5 < v < 2.0 for v in values)  # 50 steps: still on the plateau (loss ~1)
    assert "seed 0, 40 steps: drop" in out and "suggestion" in out
    assert "seed 0, 40 steps, validation mode (2 batches): drop" in out

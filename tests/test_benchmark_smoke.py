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


def test_search_benchmark_counts_steps_and_keeps_the_best(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/search.py`` on the synthetic regression task: 8 trials per method, one seed, a 5-point oracle."""
    pytest.importorskip("optuna")
    search = pytest.importorskip("benchmarks.search")
    from benchmarks import training
    from benchmarks.tasks import get_task

    task = get_task(TASK)
    argv = ["--tasks", TASK, "--seeds", "0", "--trials", "8", "--points-per-decade", "1",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "search.json")]  # fmt: skip
    assert search.main(argv) == 0
    table = capsys.readouterr().out
    out = json.loads((tmp_path / "search.json").read_text())
    assert out["config"]["checkpoints"] == [4, 8]
    seed = out["tasks"][TASK]["seeds"]["0"]
    assert seed["grid_points"] == 5 and seed["oracle"] < seed["untrained"]
    runs = {name: seed["methods"][name] for name in search.METHODS}
    for name, r in runs.items():
        best = r["best_so_far"]
        assert len(r["trials"]) == len(best) == 8
        assert np.all(np.diff(best) <= 0), name  # best-so-far never goes up
        values = [t["loss"] for t in r["trials"] if t["loss"] is not None]
        assert best[-1] == pytest.approx(min(values))
        for n in ("4", "8"):
            assert r["by_trials"][n]["regret"] <= 1.0
            assert r["by_budget"][n]["regret"] >= r["by_trials"][n]["regret"]  # a budget of n runs fits <= n trials
        range_steps = sum(t["range_steps"] for t in r["trials"])
        assert r["by_trials"]["8"]["steps"] == r["setup_steps"] + 8 * task.steps + range_steps
    # plain searches cost exactly their training runs; autolr's range tests are counted on top
    for name in ("random", "tpe"):
        assert runs[name]["by_trials"]["8"]["steps"] == 8 * task.steps
        assert runs[name]["by_budget"]["4"]["trials"] == 4
    per_trial = runs["tpe+autolr-per-trial"]
    assert all(0 < t["range_steps"] <= search.RANGE_STEPS for t in per_trial["trials"])
    assert per_trial["by_budget"]["4"]["trials"] < 4  # each trial costs a run plus a range test
    narrowed = runs["tpe+autolr-range"]
    assert 0 < narrowed["setup_steps"] <= search.RANGE_STEPS and narrowed["by_budget"]["4"]["trials"] == 3
    assert narrowed["trials"][0]["lr"] == pytest.approx(narrowed["suggestion"], rel=1e-4)  # enqueued first
    assert all(narrowed["lr_low"] * 0.9999 <= t["lr"] <= narrowed["lr_high"] * 1.0001 for t in narrowed["trials"])
    assert "| tpe+autolr-per-trial |" in table and "claim: 8 trials" in table

    # The search's trainer is the benchmark's trainer at the task's own hyperparameters.
    default = search.default_hparams(task, 1e-3)
    assert search.train_hparams(task, 0, default) == training.train(task, 0, 1e-3, "constant")

    # A rerun trains nothing (range tests are re-run, training comes from the cache) and prints the same tables.
    assert search.main(argv) == 0
    assert capsys.readouterr().out == table
    assert json.loads((tmp_path / "search.json").read_text())["cache"]["trained"] == 0


def test_finetune_benchmark_one_task_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/finetune.py on its cheapest task (pretraining included, in a fresh cache): pretraining must
    help, regrets are in [0, 1], and score_lr / interp_regret agree with the oracle. Needs no scikit-learn (the
    task's data is generated), so CI runs it."""
    finetune = pytest.importorskip("benchmarks.finetune")
    task, out, curves = "function_shift_mlp_adam", tmp_path / "ft.json", tmp_path / "curves.json"
    argv = ["--tasks", task, "--seeds", "0", "--points-per-decade", "1", "--methods", "autolr:default",
            "textbook-finetune", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
            "--curves", str(curves)]  # fmt: skip
    assert finetune.main(argv) == 0
    result = json.loads(out.read_text())["tasks"][task]
    assert "| textbook-finetune |" in capsys.readouterr().out
    for protocol in ("constant", "warmup_linear"):
        oracle = result["oracle"][protocol]
        assert len(oracle["grid"]) == 7 and oracle["best_loss"] < result["untrained_loss"]
        assert result["pretraining_gain"][protocol] >= 0.05  # fine-tuned beats from-scratch at its own best LR
        for method in ("autolr:default", "textbook-finetune"):
            assert 0.0 <= result["scores"][protocol][method]["regret"] <= 1.0
    saved = json.loads(curves.read_text())[task]
    assert saved["curves"][0]["lrs"] and saved["curves"][0]["start_loss"] is not None
    bench = finetune.Bench(tmp_path / "cache", seeds=(0,), points_per_decade=1)
    best = result["oracle"]["constant"]["best_lr"]
    assert finetune.interp_regret(task, "constant", best, bench=bench) == 0.0
    assert finetune.score_lr(task, "constant", best, bench=bench) == 0.0  # the oracle's own (cached) run
    assert finetune.interp_regret(task, "constant", 1e-9, bench=bench) > 0.5  # far below the grid: no progress
    assert result["seed_swap_regret"] == {"constant": None, "warmup_linear": None}  # one seed: no resolution
    assert result["oracle_floor"] == {"constant": 0.0, "warmup_linear": 0.0}  # one seed: nothing to clip


def test_seed_swap_regret_scores_each_seeds_own_best_lr_on_the_other_seed() -> None:
    """The benchmark's resolution: rows are grid LRs, columns seeds; a NaN run or one worse than L0 counts as L0."""
    finetune = pytest.importorskip("benchmarks.finetune")
    oracle = {"untrained_loss": 1.0, "losses_per_seed": [[0.9, 0.9], [0.2, 0.6], [0.5, 0.4], [None, 2.0]]}
    # seed 0's best (row 1) on seed 1: (0.6 - 0.4) / (1 - 0.4); seed 1's best (row 2) on seed 0: (0.5 - 0.2) / (1 - 0.2)
    assert finetune.seed_swap_regret(oracle) == pytest.approx((0.2 / 0.6 + 0.3 / 0.8) / 2)
    assert finetune.seed_swap_regret({"untrained_loss": 1.0, "losses_per_seed": [[0.9, 0.8], [0.2, 0.3]]}) == 0.0
    assert finetune.seed_swap_regret({"untrained_loss": 1.0, "losses_per_seed": [[0.5], [0.2]]}) is None
    # With three seeds each seed's best is scored on the mean of the other two: seed 0 picks row 0, whose mean on
    # seeds 1-2 is 0.5 against their best mean 0.3 (row 1); seed 1 picks row 1, whose mean on seeds 0 and 2 is 0.35
    # against their best mean 0.3 (row 0); seed 2 likewise.
    three = {"untrained_loss": 1.0, "losses_per_seed": [[0.1, 0.5, 0.5], [0.4, 0.3, 0.3]]}
    assert finetune.seed_swap_regret(three) == pytest.approx((0.2 / 0.7 + 2 * 0.05 / 0.7) / 3)


def test_the_autolr_fingerprint_is_the_source_a_run_started_with(monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark run reads autolr's fingerprint before its first range test; an edit to autolr/ during the run
    must not change what the run reports."""
    sq = pytest.importorskip("benchmarks.suggestion_quality")
    sq.autolr_fingerprint.cache_clear()
    started = sq.autolr_fingerprint()
    monkeypatch.setattr(Path, "read_bytes", lambda self: b"edited during the run")
    assert sq.autolr_fingerprint() == started
    sq.autolr_fingerprint.cache_clear()
    assert sq.autolr_fingerprint() != started  # a fresh read would see the edit
    monkeypatch.undo()
    sq.autolr_fingerprint.cache_clear()
    assert sq.autolr_fingerprint() == started


def test_a_method_is_scored_on_its_seed_mean_loss_so_the_oracles_own_lr_scores_zero() -> None:
    """Training noise alone must not score the oracle's LR above 0: a seed whose loss sits above the others at
    every LR adds nothing. The per-seed mean (each seed's regret clipped at 0) is kept, and scores it above 0."""
    finetune = pytest.importorskip("benchmarks.finetune")
    # Two seeds, three grid LRs; seed 1 sits 0.2 above seed 0 everywhere. The seed-mean curve is 0.8, 0.5, 0.7.
    oracle = {"untrained_loss": 1.0, "losses_per_seed": [[0.7, 0.9], [0.4, 0.6], [0.6, 0.8]],
              "losses": [0.8, 0.5, 0.7], "best_loss": 0.5}  # fmt: skip
    at_best = finetune.score_picks([0.4, 0.6], 0.5, 1.0)
    assert at_best["regret"] == 0.0
    assert at_best["regret_per_seed"] == [0.0, pytest.approx(0.2)]  # seed 0's -0.2 clipped at 0
    assert at_best["per_seed_mean"] == pytest.approx(0.1)
    assert finetune.oracle_floor(oracle) == pytest.approx(0.1)
    # Picks away from the best are still charged: seed 0 at row 0 (0.7), seed 1 at row 2 (0.8) -> mean 0.75.
    assert finetune.score_picks([0.7, 0.8], 0.5, 1.0)["regret"] == pytest.approx(0.5)
    assert finetune.score_picks([1.0, 1.0], 0.5, 1.0)["regret"] == 1.0  # no better than not fine-tuning


def test_confidence_bands_group_each_pick_by_its_suggestions_confidence() -> None:
    """Each seed's pick lands in the band of its own suggestion's confidence (0 when autolr gave none), scored by
    that seed's run; bands with no pick are left out."""
    finetune = pytest.importorskip("benchmarks.finetune")

    def task(confidences: list[float | None], regrets: list[float]) -> dict[str, object]:
        curves = [{"suggestion": {"lr": None if c is None else 1e-3, "confidence": c or 0.0}} for c in confidences]
        scores = {p: {"autolr:default": {"regret_per_seed": regrets}} for p in finetune.PROTOCOLS}
        return {"curves": curves, "scores": scores}

    tasks = {"a": task([0.3, 0.7], [0.2, 0.0]), "b": task([None, 0.3], [1.0, 0.4]), "c": task([0.5], [0.9])}
    bands = finetune.confidence_bands(tasks, ["a", "b"])  # "c" is not asked for
    assert [(b["low"], b["picks"]) for b in bands] == [(0.0, 1), (0.3, 2), (0.6, 1)]
    for protocol in finetune.PROTOCOLS:
        assert bands[0][protocol]["mean"] == 1.0  # no suggestion: confidence 0
        assert bands[1][protocol]["mean"] == pytest.approx(0.3) and bands[1][protocol]["median"] == pytest.approx(0.3)
        assert bands[2][protocol]["p90"] == 0.0


def test_a_missing_optional_method_is_named_with_its_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A method whose package is missing drops out of the tables; the run says so on stderr, with the install line
    (torch-lr-finder without its requirements, which would pull another torch)."""
    sq = suggestion_quality
    monkeypatch.setattr(sq, "available", lambda method: method != "torch-lr-finder")
    assert sq.warn_missing(["autolr:default", "torch-lr-finder", "prodigy"]) == ["torch-lr-finder"]
    assert "torch-lr-finder (pip install --no-deps torch-lr-finder)" in capsys.readouterr().err
    monkeypatch.setattr(sq, "available", lambda method: True)
    assert sq.warn_missing(None) == [] and capsys.readouterr().err == ""


def test_factor_bound_finds_the_best_single_factor_and_what_knowing_the_group_gains() -> None:
    """Two tasks whose sweeps read the same divergence LR (0.1) but whose best LRs lie a decade apart (1e-3 and
    1e-2, V-shaped loss against log10 LR): one factor for both can do no better than half a decade off each
    (regret 0.125); with the tasks in different groups each gets its own factor and regret 0. A seed without a
    reading is left out and counted."""
    finetune = pytest.importorskip("benchmarks.finetune")
    grid = [float(v) for v in np.logspace(-6, 0, 25)]

    def task(best_x: float, optimizer: str, divergences: list[float | None]) -> dict[str, object]:
        losses = [1.0 + 0.25 * abs(math.log10(v) - best_x) for v in grid]
        oracle = {"grid": grid, "losses": losses, "best_loss": 1.0, "untrained_loss": 2.0}
        curves = [{"suggestion": {"lr": 1e-3, "confidence": 0.6, "evidence": {} if d is None else {
            "divergence_lr": d}}} for d in divergences]  # fmt: skip
        scores = {p: {"autolr:default": {"regret": 0.5}} for p in finetune.PROTOCOLS}
        return {"optimizer": optimizer, "new_head": True, "curves": curves, "oracle": dict.fromkeys(
            finetune.PROTOCOLS, oracle), "scores": scores, "seed_swap_regret": dict.fromkeys(finetune.PROTOCOLS, 0.1)}

    tasks = {"a": task(-3.0, "adam", [0.1, 0.1]), "b": task(-2.0, "sgd", [0.1, None])}
    both = finetune.factor_bound(tasks, ["a", "b"])
    assert both is not None
    assert both["worst"] == pytest.approx(0.125, abs=1e-9) and both["factor"] == pytest.approx(10**-1.5)
    assert both["seeds_without_reading"] == 1 and both["n_tasks"] == 2
    assert finetune.factor_bound(tasks, ["a"])["worst"] == pytest.approx(0.0, abs=1e-9)  # type: ignore[index]
    # autolr's pick (1e-3 on every seed) is the same reading for both: the same compromise
    assert finetune.factor_bound(tasks, ["a", "b"], "autolr")["worst"] == pytest.approx(0.125, abs=1e-9)  # type: ignore[index]
    rows = {r["group"]: r for r in finetune.factor_bounds(tasks, ["a", "b"])}
    assert set(rows) == {"all", "adaptive, new head", "SGD, new head"}
    assert rows["all"]["divergence_lr"]["worst"] == pytest.approx(0.125, abs=1e-9)
    assert rows["SGD, new head"]["divergence_lr"]["worst"] == pytest.approx(0.0, abs=1e-9)
    assert rows["SGD, new head"]["divergence_lr"]["factor"] == pytest.approx(0.1)
    assert rows["all"]["autolr_worst"] == 0.5 and rows["all"]["resolution_worst"] == 0.1
    assert rows["all"]["autolr_mean"] == dict.fromkeys(finetune.PROTOCOLS, 0.5)
    assert rows["all"]["autolr_confidence"] == pytest.approx(0.6)
    tasks["b"]["curves"] = [{"suggestion": {"lr": None, "evidence": {}}}]
    assert finetune.factor_bound(tasks, ["a", "b"]) is None  # a task with no reading at all
    all_row = finetune.factor_bounds(tasks, ["a", "b"])[0]
    assert all_row["autolr_confidence"] == pytest.approx(0.4)  # 0.6 on a's two seeds, 0 where no LR was given

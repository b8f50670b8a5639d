"""Fine-tuning benchmark: suggested LR vs a grid-search oracle when the model starts pretrained.

Tasks (:mod:`benchmarks.finetune_tasks`) pretrain a small model locally (cached), then fine-tune it on a
shifted target for a short budget. For each task and protocol (``constant``; ``warmup_linear``: 10% linear
warm-up then linear decay to 0, Hugging Face's default) the **oracle** trains at every LR of a 25-point log
grid (1e-6 .. 1, 4 per decade) with every seed; score = held-out loss averaged over seeds. ``L0`` is the
held-out loss of the pretrained model *before fine-tuning* (its new head, if any, freshly initialised), so

    regret = (seed-mean loss of the method's runs - oracle loss) / (L0 - oracle loss), clipped to [0, 1]

is 0 at the grid's best and 1 when fine-tuning did no good; a NaN run, or one worse than L0, counts as L0.
A method's runs are scored like the oracle's: their losses are averaged over seeds before the regret is taken
(:func:`score_picks`; up to ``dd46d57`` each seed's regret was clipped at 0 and then averaged, which scores the
oracle's own LR above 0, :func:`oracle_floor`).
Each task also checks that pretraining helps: the same architecture trained from a random initialisation on
the same data and budget, at its own oracle LR (a coarser grid), must end at least 5% worse.

Methods read one ``autolr.lr_find`` curve (defaults: 1e-7 -> 10 over 100 steps) per task and seed, on the
pretrained model and the fine-tuning batch stream (see :func:`benchmarks.suggestion_quality._curve_rules`):
``autolr:default`` (``result.suggestion.lr``; under ``warmup_linear`` the peak of
``autolr.plan.make_plan(..., schedule="linear")``: twice a fine-tune's suggestion, capped at a quarter of the
divergence LR; for a flat fine-tune autolr reads its own second, 3x longer sweep), the other
``autolr.suggest.STRATEGIES``, the anchors' rules of :mod:`benchmarks.rules` that are installed,
``textbook-finetune`` (5e-5 AdamW, 1e-4 Adam, 1e-3 SGD) and ``prodigy`` (``Prodigy(lr=1)``). A method that
returns None is scored as ``textbook-finetune`` and counted. The suggestion from seed ``s``'s range test is
trained at seed ``s`` (the model, new head and batch stream its range test saw).

For iterating on a rule: :func:`score_lr` (trains, cached) and :func:`interp_regret` (reads the oracle grid).
Every run is cached as JSON under ``benchmarks/.cache/finetune/<code version>/runs/<task>.json``.

Usage::

    python benchmarks/finetune.py --sets tuning heldout --out ft.json
    python benchmarks/finetune.py --sets blind --methods textbook-finetune
    python benchmarks/finetune.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks import finetune_tasks as ft
from benchmarks import rules
from benchmarks.suggestion_quality import (
    RunCache,
    _curve_rules,
    autolr_fingerprint,
    available,
    clipped,
    describe_curve,
    log_grid,
    lr_key,
    one_cycle_peak,
    paired_comparison,
    regret,
    warn_missing,
    write_json,
)

BENCH_VERSION = "1"
DEFAULT_CACHE = ft.CACHE_ROOT
PROTOCOLS = ft.PROTOCOLS
SEEDS = (0, 1)
POINTS_PER_DECADE = 4
#: The from-scratch reference: a coarser grid (it only has to show that pretraining helps).
SCRATCH_GRID = (1e-5, 1.0)
SCRATCH_POINTS_PER_DECADE = 2
MIN_GAIN = 0.05
TEXTBOOK = "textbook-finetune"
SETS = (*ft.DECLARED_SPLITS, "tuning+heldout", "all")
#: Declared tasks that failed the pretraining check (fine-tuned oracle not >= 5% better than from scratch under
#: both protocols) in the first run: still run and shown in the pretraining table, left out of every summary.
DROPPED = {
    "corrupt_cls_transformer_adamw": "pretraining helps by 3% / 2% only (60 steps leave both near chance)",
    "corrupt_cls_lstm_sgdm": "pretraining helps by 3% / 8% only (blind3; found by its oracle-only run)",
    "corrupt_cls_gru_adam_b4": "pretraining helps by 11% / 4% only (blind4; found by its oracle-only run)",
}


def code_version() -> str:
    """Changes whenever the code behind a cached run changes (finetune_tasks.py, tasks.py, training.py)."""
    return f"ft{BENCH_VERSION}-{ft.code_hash()}"


@dataclass
class Bench:
    """Where runs are cached and which seeds/grid the oracle uses."""

    cache_dir: Path = DEFAULT_CACHE
    seeds: tuple[int, ...] = SEEDS
    points_per_decade: int = POINTS_PER_DECADE
    scratch_seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        ft.CACHE_ROOT = Path(self.cache_dir)  # the pretrained checkpoints live there too
        self.cache = RunCache(Path(self.cache_dir) / code_version())

    def run(self, task: ft.FineTuneTask, kind: str, protocol: str, key: str, seed: int) -> float | None:
        """One cached run: ``kind`` is ``ft`` (fine-tune at LR ``key``), ``scratch`` (train from a random
        initialisation), ``prodigy`` (``key`` ignored), ``L0`` / ``L0scratch`` (held-out loss before training)."""
        job = f"{kind}|{protocol}|{key}|{seed}"
        value = self.cache.get(task.name, job)
        if value == "missing":
            if kind == "ft":
                value = ft.train(task, seed, float(key), protocol)
            elif kind == "scratch":
                value = ft.train(task.scratch(), seed, float(key), protocol)
            elif kind == "prodigy":
                with contextlib.redirect_stdout(io.StringIO()):
                    value = ft.train_prodigy(task, seed, protocol)
            elif kind == "L0":
                value = ft.untrained_loss(task, seed)
            elif kind == "L0scratch":
                value = ft.untrained_loss(task.scratch(), seed)
            else:
                raise ValueError(kind)
            self.cache.put(task.name, job, float(value))
            self.cache.flush()
            value = self.cache.get(task.name, job)
        return value  # type: ignore[return-value]

    def untrained(self, task: ft.FineTuneTask, scratch: bool = False) -> float:
        """``L0``: mean held-out loss before fine-tuning (or, ``scratch``, of the random initialisation)."""
        seeds = self.scratch_seeds if scratch else self.seeds
        kind = "L0scratch" if scratch else "L0"
        return float(np.mean([self.run(task, kind, "-", "-", s) for s in seeds]))

    def oracle(self, task: ft.FineTuneTask, protocol: str, scratch: bool = False) -> dict[str, Any]:
        """Grid search (every seed); losses are seed means of runs clipped at the untrained loss."""
        if scratch:
            ppd = min(SCRATCH_POINTS_PER_DECADE, self.points_per_decade)
            grid, seeds, kind = log_grid(*SCRATCH_GRID, ppd), self.scratch_seeds, "scratch"
        else:
            grid, seeds, kind = log_grid(task.grid_low, task.grid_high, self.points_per_decade), self.seeds, "ft"
        l0 = self.untrained(task, scratch)
        per_seed = [[self.run(task, kind, protocol, k, s) for s in seeds] for k in grid]
        losses = [float(np.mean([clipped(v, l0) for v in row])) for row in per_seed]
        best = int(np.argmin(losses))
        return {
            "grid": [float(k) for k in grid],
            "losses": losses,
            "losses_per_seed": per_seed,
            "best_lr": float(grid[best]),
            "best_loss": losses[best],
            "best_at_grid_edge": best in (0, len(grid) - 1),
            "untrained_loss": l0,
        }


_BENCHES: dict[str, Bench] = {}


def _bench(cache_dir: str | Path | None) -> Bench:
    key = str(cache_dir or DEFAULT_CACHE)
    if key not in _BENCHES:
        _BENCHES[key] = Bench(Path(key))
    return _BENCHES[key]


def score_lr(
    task_name: str, protocol: str, lr: float, *, cache_dir: str | Path | None = None, bench: Bench | None = None
) -> float:
    """Regret of fine-tuning ``task_name`` at ``lr`` under ``protocol``: trains every seed (cached; the oracle
    grid too on first use) and scores the seed-mean loss. 0 = the oracle's loss, 1 = no better than L0.
    ``bench`` overrides the default (cache under ``cache_dir``, seeds 0 and 1, 4 grid points per decade)."""
    bench, task = bench or _bench(cache_dir), ft.get_task(task_name)
    torch.set_num_threads(1)
    o = bench.oracle(task, protocol)
    loss = np.mean([clipped(bench.run(task, "ft", protocol, lr_key(lr), s), o["untrained_loss"]) for s in bench.seeds])
    return regret(float(loss), o["best_loss"], o["untrained_loss"])


def interp_regret(
    task_name: str, protocol: str, lr: float, *, cache_dir: str | Path | None = None, bench: Bench | None = None
) -> float:
    """Cheap :func:`score_lr`: the oracle grid's seed-mean loss curve, interpolated linearly in log10(LR)
    (constant beyond the grid's ends), read at ``lr``. No training once the oracle is cached."""
    bench, task = bench or _bench(cache_dir), ft.get_task(task_name)
    return grid_regret(bench.oracle(task, protocol), [math.log10(lr)])


def grid_regret(oracle: dict[str, Any], log_lrs: Sequence[float] | np.ndarray) -> float:
    """The regret of the mean, over ``log_lrs`` (log10 LRs, e.g. one per seed), of ``oracle``'s seed-mean loss curve
    interpolated linearly in log10(LR) (constant beyond the grid's ends)."""
    loss = float(np.mean(np.interp(log_lrs, np.log10(oracle["grid"]), oracle["losses"])))
    return regret(loss, oracle["best_loss"], oracle["untrained_loss"])


# ---------------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Wants:
    """What :func:`benchmarks.suggestion_quality._curve_rules` asks of its config."""

    methods: tuple[str, ...] | None

    def wants(self, name: str) -> bool:
        name = TEXTBOOK if name == "textbook" else name
        return self.methods is None or name in self.methods


def warmup_linear_peak(task: ft.FineTuneTask, suggestion: dict[str, Any]) -> float:
    """The peak LR ``AutoLR(schedule="linear")`` trains with: the plan's ``peak_lr`` (for a fine-tune, twice the
    suggestion, capped at a quarter of the divergence LR; see :mod:`autolr.plan`)."""
    return one_cycle_peak(task, suggestion["lr"], dict(suggestion.get("evidence", {})), "linear",  # type: ignore[arg-type]
                          finetune=bool(suggestion.get("finetune", False)))


#: What ``AutoLR(min_confidence=0.1)`` (and the Hugging Face callback's default) trains with.
MIN_CONFIDENCE_METHOD = "autolr:min_confidence=0.1"


def min_confidence_pick(task: ft.FineTuneTask, default: dict[str, Any], curve: dict[str, Any]) -> dict[str, Any]:
    """The suggestion when its confidence is at least 0.1; else the optimizer's own LR (the textbook fine-tune
    default the task's optimizer is built with), which is what AutoLR keeps under ``min_confidence``."""
    confidence = float(curve["suggestion"].get("confidence", 0.0))
    if default["lr"] is not None and confidence >= 0.1:
        return {**default, "reason": f"confidence {confidence:.2f} >= 0.1: applied"}
    return {"lr": task.textbook_lr, "reason": f"confidence {confidence:.2f} < 0.1: kept the optimizer's lr"}


def curve_record(curve: dict[str, Any], seed: int) -> dict[str, Any]:
    losses = [v if v is not None and math.isfinite(v) else None for v in curve["losses"]]
    return {
        "seed": seed,
        "points": len(curve["lrs"]),
        "stop_reason": curve["stop_reason"],
        "start_loss": losses[0] if losses else None,
        "lrs": curve["lrs"],
        "losses": losses,
        "suggestion": curve.get("suggestion"),
        **({"resweep": curve["resweep"]} if "resweep" in curve else {}),
    }


def suggestions(task: ft.FineTuneTask, seeds: Sequence[int], methods: tuple[str, ...] | None) -> tuple[
    dict[str, list[dict[str, Any]]], list[dict[str, Any]]
]:
    """Range test per seed and every method's pick: ``({method: [per seed {lr, trained, fallback}]}, curves)``."""
    wants = _Wants(methods)
    out: dict[str, list[dict[str, Any]]] = {}
    curves = []
    need_curve = methods is None or any(m not in (TEXTBOOK, "prodigy") for m in methods)
    for s in seeds:
        picks: dict[str, dict[str, Any]] = {}
        if need_curve:
            with warnings_off():
                curve = ft.range_test(task, s)
            curves.append(curve_record(curve, s))
            picks = _curve_rules(task, curve, True, wants)  # type: ignore[arg-type]
            picks.pop("textbook", None)
            if wants.wants(MIN_CONFIDENCE_METHOD) and "autolr:default" in picks:
                picks[MIN_CONFIDENCE_METHOD] = min_confidence_pick(task, picks["autolr:default"], curve)
        if wants.wants(TEXTBOOK):
            picks[TEXTBOOK] = {"lr": task.textbook_lr, "reason": "textbook fine-tuning default"}
        for name, pick in picks.items():
            fallback = pick["lr"] is None
            lr = task.textbook_lr if fallback else float(pick["lr"])
            trained = {"constant": lr, "warmup_linear": lr}
            if name in ("autolr:default", MIN_CONFIDENCE_METHOD) and not fallback:
                trained["warmup_linear"] = warmup_linear_peak(task, pick)
            out.setdefault(name, []).append(
                {"seed": s, "lr": pick["lr"], "fallback": fallback, "reason": pick.get("reason", ""),
                 "trained": {p: float(lr_key(v)) for p, v in trained.items()}}
            )
    return out, curves


@contextlib.contextmanager
def warnings_off() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def score_picks(losses: Sequence[float], best: float, untrained: float) -> dict[str, Any]:
    """Score one method's runs on one task (one loss per seed, each already :func:`clipped`).

    ``regret`` is the regret of the seed-mean loss, the quantity the oracle minimises: the oracle's own LR scores
    0, and a seed whose held-out loss sits above or below the others at every LR moves it by nothing.
    ``regret_per_seed`` scores each run alone. Their mean, ``per_seed_mean`` (the benchmark's metric up to
    ``dd46d57``), clips each seed's regret at 0 before averaging, so training noise alone gives any LR, the
    oracle's included, a positive score (:func:`oracle_floor`)."""
    per_seed = [regret(v, best, untrained) for v in losses]
    return {"regret": regret(float(np.mean(losses)), best, untrained), "regret_per_seed": per_seed,
            "per_seed_mean": float(np.mean(per_seed)), "loss_per_seed": list(losses)}  # fmt: skip


def oracle_floor(oracle: dict[str, Any]) -> float:
    """What the oracle's own best LR scores under the per-seed metric (``per_seed_mean`` of :func:`score_picks`):
    its runs, one per seed, each scored against the seed-mean best. 0 under ``regret``, by construction."""
    l0 = oracle["untrained_loss"]
    row = oracle["losses_per_seed"][int(np.argmin(oracle["losses"]))]
    return score_picks([clipped(v, l0) for v in row], oracle["best_loss"], l0)["per_seed_mean"]


def seed_swap_regret(oracle: dict[str, Any]) -> float | None:
    """The benchmark's resolution on one task and protocol: each seed's own best grid LR, scored on the other seeds
    (the regret of their mean loss, against the best of their mean curve and ``L0``), averaged over the seeds. This
    is what a perfect pick from one seed's evidence scores when training noise alone moves the optimum; a method's
    regret under it cannot be told from perfect. With two seeds each is scored on the other one alone. None with
    fewer than two seeds."""
    per_seed = np.array([[clipped(v, oracle["untrained_loss"]) for v in row] for row in oracle["losses_per_seed"]])
    if per_seed.ndim != 2 or per_seed.shape[1] < 2:
        return None
    scores = []
    for a in range(per_seed.shape[1]):
        pick = int(np.argmin(per_seed[:, a]))  # seed a's own best grid LR
        others = np.delete(per_seed, a, axis=1).mean(axis=1)  # the other seeds' mean loss curve
        scores.append(regret(others[pick], others.min(), oracle["untrained_loss"]))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------
def run_task(bench: Bench, task: ft.FineTuneTask, methods: tuple[str, ...] | None, scratch: bool) -> dict[str, Any]:
    """Oracle, pretraining check, range tests, every method's regret, for one task."""
    t0 = time.time()
    res: dict[str, Any] = {"split": task.split, "description": task.description, "optimizer": task.optimizer,
                           "steps": task.steps, "new_head": task.new_head, "pretrain": task.pretrain}  # fmt: skip
    res["untrained_loss"] = bench.untrained(task)
    res["oracle"] = {p: bench.oracle(task, p) for p in PROTOCOLS}
    res["seed_swap_regret"] = {p: seed_swap_regret(res["oracle"][p]) for p in PROTOCOLS}
    res["oracle_floor"] = {p: oracle_floor(res["oracle"][p]) for p in PROTOCOLS}
    if scratch:
        res["scratch_untrained_loss"] = bench.untrained(task, scratch=True)
        res["scratch_oracle"] = {p: bench.oracle(task, p, scratch=True) for p in PROTOCOLS}
        res["pretraining_gain"] = {
            p: 1 - res["oracle"][p]["best_loss"] / res["scratch_oracle"][p]["best_loss"] for p in PROTOCOLS
        }
    sugs, curves = suggestions(task, bench.seeds, methods)
    res["curves"] = curves
    if curves and scratch:  # the same sweep from a random initialisation, for comparison (not scored)
        with warnings_off():
            res["scratch_curves"] = [curve_record(ft.range_test(task.scratch(), s), s) for s in bench.seeds]
    res["suggestions"] = sugs
    want_prodigy = (methods is None or "prodigy" in methods) and available("prodigy")
    scores: dict[str, dict[str, Any]] = {}
    for p in PROTOCOLS:
        o = res["oracle"][p]
        best, l0 = o["best_loss"], o["untrained_loss"]
        scores[p] = {}
        for name, picks in sugs.items():
            losses = [clipped(bench.run(task, "ft", p, lr_key(x["trained"][p]), x["seed"]), l0) for x in picks]
            scores[p][name] = score_picks(losses, best, l0)
        if want_prodigy:
            losses = [clipped(bench.run(task, "prodigy", p, "-", s), l0) for s in bench.seeds]
            scores[p]["prodigy"] = score_picks(losses, best, l0)
    res["scores"] = scores
    res["wall_s"] = time.time() - t0
    return res


def select_tasks(sets: Sequence[str] | None, names: Sequence[str] | None) -> list[ft.FineTuneTask]:
    if names:
        return [ft.get_task(n) for n in names]
    chosen = set(sets or ("tuning", "heldout"))
    if "all" in chosen:
        chosen |= set(ft.DECLARED_SPLITS)
    if "tuning+heldout" in chosen:
        chosen |= {"tuning", "heldout"}
    return [t for t in ft.ALL_TASKS if t.split in chosen]


def _method_order(names: Sequence[str]) -> list[str]:
    autolr_names = sorted((n for n in names if n.startswith("autolr:")), key=lambda n: (n != "autolr:default", n))
    tail = [n for n in (TEXTBOOK, "prodigy") if n in names]
    anchors = [n for n in rules.ANCHOR_RULES if n in names]
    return autolr_names + anchors + [n for n in names if n not in (*autolr_names, *anchors, *tail)] + tail


#: Lower edges of the confidence bands of :func:`confidence_bands`. 0.15 and 0.3 are the confidences autolr gives a
#: fine-tune's flat first sweep and its longer sweep's edge reading.
CONFIDENCE_BANDS = (0.0, 0.15, 0.3, 0.45, 0.6)


def _pick_confidence(curve: dict[str, Any]) -> float:
    """The confidence of a range test's suggestion; 0 when it gave no LR."""
    sug = curve.get("suggestion") or {}
    return float(sug["confidence"]) if sug.get("lr") is not None else 0.0


def confidence_bands(tasks: dict[str, dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Is autolr's confidence informative? ``autolr:default``'s picks on ``names``, one per task and seed, grouped by
    the confidence of their suggestion (0 when it gave none), with what each pick's own run scored under each
    protocol (``regret_per_seed``: median, mean, 90th percentile)."""
    picks: list[tuple[float, dict[str, float]]] = []
    for n in names:
        r = tasks[n]
        if "autolr:default" not in r["scores"][PROTOCOLS[0]]:
            continue
        for i, curve in enumerate(r["curves"]):  # in seed order, as the picks and their scores
            scored = {p: r["scores"][p]["autolr:default"]["regret_per_seed"][i] for p in PROTOCOLS}
            picks.append((_pick_confidence(curve), scored))
    rows = []
    edges = (*CONFIDENCE_BANDS, math.inf)
    for low, high in itertools.pairwise(edges):
        band = [v for c, v in picks if low <= c < high]
        if band:
            rows.append({"low": low, "high": high, "picks": len(band), **{
                p: {"median": float(np.median([v[p] for v in band])), "mean": float(np.mean([v[p] for v in band])),
                    "p90": float(np.percentile([v[p] for v in band], 90))} for p in PROTOCOLS}})  # fmt: skip
    return rows


#: Factors :func:`factor_bound` tries on a sweep reading: 1e-3 .. 100, 20 per decade.
BOUND_FACTORS = tuple(float(10**e) for e in np.arange(-3.0, 2.0 + 1e-9, 0.05))
#: Sweep readings :func:`factor_bound` scales: the divergence LR of the sweep autolr read (its second, longer one
#: when it swept again) and autolr's pick.
BOUND_ANCHORS = {
    "divergence_lr": lambda s: (s.get("evidence") or {}).get("divergence_lr"),
    "autolr": lambda s: s.get("lr"),
}


def _bound_group(r: dict[str, Any]) -> str:
    """What autolr can know of a task before its sweep: the optimizer's kind and whether the head is new."""
    kind = "adaptive" if str(r["optimizer"]).startswith("adam") else "SGD"
    return f"{kind}, {'new head' if r['new_head'] else 'same head'}"


def factor_bound(
    tasks: dict[str, dict[str, Any]], names: Sequence[str], anchor: str = "divergence_lr"
) -> dict[str, Any] | None:
    """How low could the worst case go for a rule ``LR = factor * anchor``, one factor for every task of ``names``,
    chosen in hindsight (the factor of :data:`BOUND_FACTORS` with the lowest worst case over both protocols)?

    ``anchor`` is a key of :data:`BOUND_ANCHORS`, read off each seed's sweep. Each seed's LR is scored on the
    oracle grid's seed-mean loss curve, interpolated in log10(LR) (:func:`grid_regret`), and the task's
    regret is that of the mean over seeds; a seed without a reading is left out (counted in
    ``seeds_without_reading``). An estimate for such rules only: optimistic in the factor, which is fitted to the
    very tasks it is scored on, and approximate in the score, which interpolates between grid LRs instead of
    training at the LR (on the 33 held-out and blind tasks with 8 seeds this moves autolr's own picks by 0.03 on
    average, up to 0.27 on a classifier). None when a task has no reading of ``anchor`` at all.

    Example: two tasks whose sweeps read the same edge but whose best LRs lie a decade apart cannot both be hit
    by one factor; :func:`factor_bounds` shows how far knowing the task's group closes that gap."""
    read = BOUND_ANCHORS[anchor]
    lrs, missing = {}, 0
    for n in names:
        vals = [v for c in tasks[n]["curves"] if (v := read(c.get("suggestion") or {})) is not None and v > 0]
        if not vals:
            return None
        lrs[n] = np.log10(np.array(vals, dtype=float))
        missing += len(tasks[n]["curves"]) - len(vals)

    def worst(factor: float) -> tuple[float, str]:
        shift = math.log10(factor)
        return max((grid_regret(tasks[n]["oracle"][p], lrs[n] + shift), n) for n in names for p in PROTOCOLS)

    scored = [(worst(c), c) for c in BOUND_FACTORS]
    (value, task), factor = min(scored, key=lambda t: t[0][0])
    return {"anchor": anchor, "factor": factor, "worst": value, "worst_task": task, "n_tasks": len(names),
            "seeds_without_reading": missing}  # fmt: skip


def factor_bounds(tasks: dict[str, dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`factor_bound` for every anchor, on all of ``names`` and on each group of :func:`_bound_group`, with
    autolr's worst and mean regret, its mean confidence (0 for a seed it gave no LR) and the resolution's worst."""
    groups: dict[str, list[str]] = {"all": list(names)}
    for n in names:
        groups.setdefault(_bound_group(tasks[n]), []).append(n)
    rows = []
    for group, members in groups.items():
        row: dict[str, Any] = {"group": group, "n_tasks": len(members)}
        for anchor in BOUND_ANCHORS:
            row[anchor] = factor_bound(tasks, members, anchor)
        if all("autolr:default" in tasks[n]["scores"][p] for n in members for p in PROTOCOLS):
            ours = {p: [tasks[n]["scores"][p]["autolr:default"]["regret"] for n in members] for p in PROTOCOLS}
            row["autolr_worst"] = max(max(v) for v in ours.values())
            row["autolr_mean"] = {p: float(np.mean(v)) for p, v in ours.items()}
            confidences = [_pick_confidence(c) for n in members for c in tasks[n]["curves"]]
            row["autolr_confidence"] = float(np.mean(confidences)) if confidences else None
        swaps = [tasks[n].get("seed_swap_regret", {}).get(p) for n in members for p in PROTOCOLS]
        row["resolution_worst"] = max((v for v in swaps if v is not None), default=None)
        rows.append(row)
    return rows


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {"median": float(statistics.median(values)), "mean": float(np.mean(values)), "worst": float(max(values)),
            "n_tasks": len(values)}  # fmt: skip


def summarise(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Median / mean / worst regret per method and protocol for every set; autolr:default paired with the
    others (:func:`benchmarks.suggestion_quality.paired_comparison`)."""
    first = next(iter(tasks.values()))  # every task ran the same methods
    methods = _method_order(list(first["scores"][PROTOCOLS[0]]))
    kept = [n for n in tasks if n not in DROPPED]
    groups = {s: [n for n in kept if tasks[n]["split"] == s] for s in ft.DECLARED_SPLITS}
    groups["tuning+heldout"] = groups["tuning"] + groups["heldout"]
    groups["heldout+blind sets"] = [n for n in kept if tasks[n]["split"] == "heldout" or _blind(tasks[n])]
    groups["all"] = kept
    summary: dict[str, Any] = {}
    comparison: dict[str, Any] = {}
    confidence: dict[str, Any] = {}
    for group, names in groups.items():
        if not names:
            continue
        summary[group], comparison[group] = {}, {}
        for p in PROTOCOLS:
            summary[group][p] = {}
            for m in methods:
                summary[group][p][m] = {
                    **_stats([tasks[n]["scores"][p][m]["regret"] for n in names]),
                    "per_seed": _stats([tasks[n]["scores"][p][m]["per_seed_mean"] for n in names]),
                    "fallbacks": sum(x["fallback"] for n in names for x in tasks[n]["suggestions"].get(m, [])),
                }
            if "autolr:default" in methods:
                ours = [tasks[n]["scores"][p]["autolr:default"]["regret"] for n in names]
                comparison[group][p] = {
                    m: paired_comparison(ours, [tasks[n]["scores"][p][m]["regret"] for n in names])
                    for m in methods
                    if m != "autolr:default"
                }
            swaps = [tasks[n].get("seed_swap_regret", {}).get(p) for n in names]
            if swaps and all(v is not None for v in swaps):
                summary[group][p]["oracle seed swap"] = _stats(swaps)
            summary[group][p]["oracle floor"] = _stats([tasks[n]["oracle_floor"][p] for n in names])
        confidence[group] = confidence_bands(tasks, names)
    scored = groups["heldout+blind sets"]
    bounds = {"heldout+blind sets": factor_bounds(tasks, scored)} if scored else {}
    return {"methods": methods, "groups": groups, "summary": summary, "comparison": comparison,
            "confidence": confidence, "bounds": bounds}  # fmt: skip


def run_benchmark(
    tasks: Sequence[ft.FineTuneTask],
    *,
    methods: tuple[str, ...] | None = None,
    bench: Bench | None = None,
    scratch: bool = True,
) -> dict[str, Any]:
    """Run (or read from the cache) every task; return the JSON-ready results."""
    t0 = time.time()
    autolr_fingerprint()  # the source this run imports (read before any range test)
    torch.set_num_threads(1)
    bench = bench or _bench(None)
    results = {}
    for task in tasks:
        results[task.name] = run_task(bench, task, methods, scratch)
        print(f"  {task.name}: {results[task.name]['wall_s']:.0f} s", file=sys.stderr, flush=True)
    return {
        "benchmark": "finetune",
        "code_version": code_version(),
        "autolr_fingerprint": autolr_fingerprint(),
        "seeds": list(bench.seeds),
        "points_per_decade": bench.points_per_decade,
        "tasks": results,
        **summarise(results),
        "wall_time_s": time.time() - t0,
    }


def curves_json(out: dict[str, Any]) -> dict[str, Any]:
    """Every range-test curve with what a rule needs to be judged against it (oracle LRs, L0, start loss)."""
    data = {}
    for name, r in out["tasks"].items():
        data[name] = {
            "split": r["split"],
            "optimizer": r["optimizer"],
            "new_head": r["new_head"],
            "untrained_loss_L0": r["untrained_loss"],
            "scratch_untrained_loss": r.get("scratch_untrained_loss"),
            "oracle": {
                p: {k: r["oracle"][p][k] for k in ("best_lr", "best_loss", "grid", "losses")} for p in PROTOCOLS
            },
            "curves": r["curves"],
            "scratch_curves": r.get("scratch_curves", []),
        }
    return data


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------
def _f(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None or not math.isfinite(x) else format(x, spec)


def _blind(task_result: dict[str, Any]) -> bool:
    """A blind set's task (``blind``, ``blind2``, ...): autolr's numbers stay hidden unless asked for."""
    return str(task_result["split"]).startswith("blind")


def format_report(out: dict[str, Any], show_blind_autolr: bool = False) -> str:
    """Markdown: the pretraining check, summary tables per set, per-task oracle vs each method's pick."""
    lines = [
        f"# Fine-tuning benchmark: regret vs grid oracle (code {out['code_version']}, autolr "
        f"{out['autolr_fingerprint']}, seeds {out['seeds']}, {out['points_per_decade']} points/decade)",
        "",
    ]
    tasks = out["tasks"]
    lines += ["## Does pretraining help? (best held-out loss, fine-tuned vs from scratch, per protocol)", "",
              "| task | split | L0 (before FT) | scratch init | FT best const / warmup | scratch best const / warmup "
              "| gain const / warmup | seed-swap regret const / warmup |",
              "|---|---|---:|---:|---|---|---|---|"]  # fmt: skip
    for name, r in tasks.items():
        if "pretraining_gain" not in r:
            continue
        g = r["pretraining_gain"]
        flag = "" if min(g.values()) >= MIN_GAIN else " **< 5%: not a fine-tuning task**"
        flag += " (dropped from the summaries)" if name in DROPPED else ""
        lines.append(
            f"| {name} | {r['split']} | {r['untrained_loss']:.3f} | {r['scratch_untrained_loss']:.3f} | "
            + " / ".join(f"{r['oracle'][p]['best_loss']:.3f}" for p in PROTOCOLS) + " | "
            + " / ".join(f"{r['scratch_oracle'][p]['best_loss']:.3f}" for p in PROTOCOLS) + " | "
            + " / ".join(f"{100 * g[p]:.0f}%" for p in PROTOCOLS) + flag + " | "
            + " / ".join(_f(r.get("seed_swap_regret", {}).get(p)) for p in PROTOCOLS) + " |"
        )
    methods = out["methods"]

    def autolr_hidden(names: Sequence[str]) -> bool:  # every task a blind set's, and not asked to show them
        return not show_blind_autolr and all(_blind(tasks[n]) for n in names)

    for group, names in out["groups"].items():
        if not names or group not in out["summary"]:
            continue
        lines += ["", f"## {group} ({len(names)} tasks: {', '.join(names)})", "",
                  "| method | const median | const mean | const worst | warmup median | warmup mean | warmup worst "
                  "| None→default |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for m in methods:
            if m.startswith("autolr:") and autolr_hidden(names):
                continue
            s = out["summary"][group]
            cells = [_f(s[p][m][k]) for p in PROTOCOLS for k in ("median", "mean", "worst")]
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {s[PROTOCOLS[0]][m]['fallbacks']} |")
        swap = "oracle seed swap"
        if all(swap in out["summary"][group][p] for p in PROTOCOLS):
            cells = [_f(out["summary"][group][p][swap][k]) for p in PROTOCOLS for k in ("median", "mean", "worst")]
            lines.append("| *resolution: each seed's own best LR scored on the other seeds* | " + " | ".join(cells)
                         + " | |")
    group = "heldout+blind sets"
    if out["groups"].get(group) and group in out["summary"]:
        names = out["groups"][group]
        lines += ["", f"## {group}, the per-seed metric used up to `dd46d57` (each seed's regret clipped at 0, "
                  "then averaged)", "",
                  "| method | const median | const mean | const worst | warmup median | warmup mean | warmup worst |",
                  "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        s = out["summary"][group]
        for m in methods:
            if m.startswith("autolr:") and autolr_hidden(names):
                continue
            lines.append(f"| {m} | " + " | ".join(_f(s[p][m]["per_seed"][k]) for p in PROTOCOLS
                                                  for k in ("median", "mean", "worst")) + " |")  # fmt: skip
        lines.append("| *the oracle's own LR (0 under the seed-mean metric)* | " + " | ".join(
            _f(s[p]["oracle floor"][k]) for p in PROTOCOLS for k in ("median", "mean", "worst")) + " |")
    bands = out.get("confidence", {}).get(group)
    if bands and not autolr_hidden(out["groups"][group]):
        lines += ["", f"## {group}: is autolr's confidence informative? (each pick's own run, by the confidence of "
                  "its suggestion)", "",
                  "| confidence | picks | const median | const mean | const p90 | warmup median | warmup mean "
                  "| warmup p90 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for b in bands:
            high = "" if math.isinf(b["high"]) else f"{b['high']:.2f}"
            lines.append(f"| {b['low']:.2f}-{high} | {b['picks']} | " + " | ".join(
                _f(b[p][k]) for p in PROTOCOLS for k in ("median", "mean", "p90")) + " |")  # fmt: skip
    bounds = out.get("bounds", {}).get(group)
    if bounds and not autolr_hidden(out["groups"][group]):
        lines += ["", f"## {group}: how low can the worst case go? (`LR = factor x a sweep reading`, one factor per "
                  "group of tasks, fitted in hindsight to the very tasks it is scored on)", "",
                  "| tasks (what autolr knows before the sweep) | n | factor x divergence_lr: factor, worst "
                  "| factor x autolr's pick: factor, worst | autolr: worst | resolution: worst | autolr: mean const "
                  "/ warmup | autolr: mean confidence |", "|---|---:|---|---|---:|---:|---|---:|"]  # fmt: skip
        for row in bounds:
            cells = []
            for anchor in BOUND_ANCHORS:
                b = row[anchor]
                cells.append("—" if b is None else f"{b['factor']:.3g}, {b['worst']:.3f} ({b['worst_task']})")
            mean = " / ".join(_f(row["autolr_mean"][p]) for p in PROTOCOLS) if "autolr_mean" in row else "—"
            lines.append(f"| {row['group']} | {row['n_tasks']} | " + " | ".join(cells)
                         + f" | {_f(row.get('autolr_worst'))} | {_f(row['resolution_worst'])} | {mean} | "
                         f"{_f(row.get('autolr_confidence'), '.2f')} |")  # fmt: skip
    lines += ["", "## per task: oracle LR and each method's pick (geometric mean over seeds), "
              "log10(pick / oracle LR), regret; constant | warmup_linear", ""]  # fmt: skip
    for name, r in tasks.items():
        o = r["oracle"]
        lines += [f"### {name} ({r['split']}; {r['optimizer']}, {r['steps']} steps, L0 {r['untrained_loss']:.3f}; "
                  f"oracle const {o['constant']['best_lr']:.2g} → {o['constant']['best_loss']:.3f}, warmup "
                  f"{o['warmup_linear']['best_lr']:.2g} → {o['warmup_linear']['best_loss']:.3f})", "",
                  "| method | LR const | decades | regret const | LR warmup | decades | regret warmup |",
                  "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for m in methods:
            if m not in r["scores"][PROTOCOLS[0]] or (m.startswith("autolr:") and _blind(r)
                                                       and not show_blind_autolr):  # fmt: skip
                continue
            cells = []
            for p in PROTOCOLS:
                picks = r["suggestions"].get(m)
                if picks:
                    lr = float(np.exp(np.mean([np.log(x["trained"][p]) for x in picks])))
                    cells += [f"{lr:.2g}", f"{math.log10(lr / o[p]['best_lr']):+.2f}"]
                else:
                    cells += ["(own)", ""]
                cells.append(f"{r['scores'][p][m]['regret']:.3f}")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        if r["curves"] and (not _blind(r) or show_blind_autolr):
            for c in r["curves"]:
                s = c["suggestion"] or {}
                again = ""
                if "resweep" in c:  # the suggestion was read off the second, longer sweep
                    again = (f"; swept again: {len(c['resweep']['lrs'])} points, stop={c['resweep']['stop_reason']}, "
                             f"diverged at {s.get('evidence', {}).get('divergence_lr', float('nan')):.2g}")
                lines.append(f"- seed {c['seed']}: {describe_curve(c)}{again}; autolr picked {s.get('lr')} "
                             f"(confidence {s.get('confidence', float('nan')):.2f})")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, help="declared sets to run (default: tuning heldout)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks (overrides --sets)")
    parser.add_argument("--methods", nargs="+", help="only these methods (default: every available one)")
    parser.add_argument("--quick", action="store_true", help="2 cheap tasks, 1 seed, 2 grid points per decade")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--points-per-decade", type=int)
    parser.add_argument("--no-scratch", action="store_true", help="skip the from-scratch reference")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--curves", type=Path, help="write every range-test curve here (JSON)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--show-blind-autolr", action="store_true", help="print autolr's rows on blind tasks")
    args = parser.parse_args(argv)
    logging.getLogger("autolr").setLevel(logging.ERROR)
    seeds = tuple(args.seeds) if args.seeds else ((0,) if args.quick else SEEDS)
    ppd = args.points_per_decade or (2 if args.quick else POINTS_PER_DECADE)
    bench = Bench(Path(args.cache_dir), seeds=seeds, points_per_decade=ppd, scratch_seeds=seeds[:1])
    names = args.tasks or (list(ft.QUICK_TASKS) if args.quick else None)
    warn_missing(args.methods or ("torch-lr-finder", "lightning", "prodigy"))  # the optional methods it runs
    out = run_benchmark(select_tasks(args.sets, names), methods=tuple(args.methods) if args.methods else None,
                        bench=bench, scratch=not args.no_scratch)  # fmt: skip
    print(format_report(out, args.show_blind_autolr))
    print(f"\nwall time {out['wall_time_s']:.0f} s", file=sys.stderr)
    if args.out:
        write_json(args.out, out)
    if args.curves:
        write_json(args.curves, curves_json(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

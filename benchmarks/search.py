"""Search cost: does autolr make a hyperparameter search cheaper?

Four ways to search a task's learning rate together with its other hyperparameters (weight decay, and momentum or
Adam's beta1 where the task's optimizer has one), each an Optuna study of up to ``--trials`` trials, on one
problem instance per search seed (the trials of search seed ``s`` train with task seed ``s`` and the samplers are
seeded with ``s``):

* ``random``: :class:`optuna.samplers.RandomSampler`; LR log-uniform over the task's oracle grid range.
* ``tpe``: :class:`optuna.samplers.TPESampler` (Optuna's defaults) over the same space.
* ``tpe+autolr-per-trial``: TPE over the other hyperparameters only; every trial builds its model and optimizer,
  runs :func:`autolr.integrations.optuna.suggest_lr` (a range test with ``autolr.lr_find``'s defaults, state
  restored) and trains at the LR it sets. A trial the helper prunes (no LR found) costs its range test and gives
  no value.
* ``tpe+autolr-range``: one :func:`autolr.integrations.optuna.narrow_lr_range` up front (a range test on the
  default hyperparameters), then TPE over the LR inside that range and the other hyperparameters; the helper
  enqueues the suggestion as the first trial (its other hyperparameters are the sampler's). When the range test
  gives no LR (the helper raises ``ValueError``), the study searches the task's full range, as ``tpe`` does, having
  paid for the test.

A trial's value is the task's held-out loss after its full training budget at a constant LR (the
``constant`` protocol of :mod:`benchmarks.training`; a run that ends NaN/inf or worse than untrained counts as the
untrained loss). Steps are counted the same way for every method: a training run costs the task's budget, a range
test the steps it actually ran (read through an autolr reporter passed to the helpers, pruned trials included).

Scoring: **signed** normalized regret of the best-so-far value,

    regret = (best loss so far - oracle) / (untrained loss - oracle), at most 1 (not clipped at 0)

where ``oracle`` is the best loss of the task's LR grid (``--points-per-decade`` per decade over the task's
range, the suggestion-quality benchmark's grid and cached runs) *for the same seed*, at the task's default other
hyperparameters. A search that beats the grid (a finer LR, a better weight decay) gets a negative regret. The
report gives the regret after 4/8/16/32 trials (prefixes of one search) and at equal step budgets (4/8/16/32 times
one training run), median and mean over every (task, search seed), per declared split, and the steps spent.

Declared split (fixed before any search was run): the ``design`` tasks (:data:`DESIGN_TASKS`) were the only ones
looked at while the search space and the report were written; the ``scoring`` tasks (:data:`SCORING_TASKS`) were
scored once (after one fix, the full-range fallback above, for a crash on a scoring task; see the README).

Caching: every search trial's training run is cached by (task, LR, weight decay, momentum, seed) in
``benchmarks/.cache/search/<code version>-s<SEARCH_VERSION>/<task>.json``; the oracle grid and untrained losses
share the suggestion-quality cache (``benchmarks/.cache/<code version>/runs/``). Range tests are re-run every time
(they are cheap and track the current autolr). Everything is seeded and single-threaded, so a rerun prints the same
tables.

Usage::

    python benchmarks/search.py --quick                       # 2 tasks, 1 seed, 16 trials: ~1-2 min
    python benchmarks/search.py --out results.json            # 7 tasks, 3 seeds, 32 trials
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from autolr import AutoLRWarning, Reporter
from benchmarks import training
from benchmarks.suggestion_quality import (
    DEFAULT_CACHE,
    TIE,
    RunCache,
    autolr_fingerprint,
    clipped,
    code_version,
    execute_training,
    job_key,
    log_grid,
    paired_comparison,
    write_json,
)
from benchmarks.tasks import Task, get_task

#: Bump when a change here changes what a cached search run means.
SEARCH_VERSION = "1"

METHODS = ("random", "tpe", "tpe+autolr-per-trial", "tpe+autolr-range")
#: Best-so-far is reported after this many trials (and at this many training runs' worth of steps).
CHECKPOINTS = (4, 8, 16, 32)

#: Tasks looked at while the benchmark was written (search space, report). Declared before any search ran.
DESIGN_TASKS: tuple[str, ...] = ("digits_mlp_sgd", "wine_raw_mlp_sgdm", "cancer_raw_mlp_adam")
#: Tasks scored once, with the code as it stood after the design tasks. Declared at the same time.
SCORING_TASKS: tuple[str, ...] = (
    "wine_std_mlp_sgd",
    "digits_mlp_tinybatch_sgdm",
    "cancer_std_mlp_adamw",
    "diabetes_tinybatch_sgdm",
)
QUICK_TASKS: tuple[str, ...] = ("wine_raw_mlp_sgdm", "cancer_raw_mlp_adam")  # design tasks only
SPLITS = ("design", "scoring", "all")

#: Weight decay search range (log-uniform); holds the AdamW tasks' default (0.05); 1e-6 stands in for the others' 0.
WD_RANGE = (1e-6, 1e-1)
#: Momentum (SGD+momentum) or beta1 (Adam, AdamW) search range (uniform); plain-SGD tasks have neither.
MOMENTUM_RANGE = (0.5, 0.98)
DEFAULT_MOMENTUM = 0.9
#: ``autolr.lr_find``'s default sweep length (what the helpers run).
RANGE_STEPS = 100


def sig5(x: float) -> float:
    """``x`` rounded to 5 significant digits: the value actually trained (and the cache key)."""
    return float(f"{x:.4e}")


# ---------------------------------------------------------------------------------------------------------
# Training with other hyperparameters
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HParams:
    """The hyperparameters a trial trains with (``momentum`` is beta1 for Adam/AdamW, ``None`` for plain SGD)."""

    lr: float
    weight_decay: float
    momentum: float | None

    def rounded(self) -> HParams:
        m = None if self.momentum is None else sig5(self.momentum)
        return HParams(sig5(self.lr), sig5(self.weight_decay), m)

    def key(self, seed: int) -> str:
        m = "-" if self.momentum is None else f"{self.momentum:.4e}"
        return f"{self.lr:.4e}|{self.weight_decay:.4e}|{m}|{seed}"


def default_hparams(task: Task, lr: float) -> HParams:
    """The task's own weight decay and momentum/beta1 (what the oracle grid trains with)."""
    return HParams(lr, task.weight_decay, None if task.optimizer == "sgd" else DEFAULT_MOMENTUM)


def make_optimizer(task: Task, params: Any, hp: HParams) -> torch.optim.Optimizer:
    """The task's optimizer kind with ``hp``; at the default hyperparameters it equals the task's own factory."""
    if task.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.lr, weight_decay=hp.weight_decay)
    if task.optimizer == "sgdm":
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    cls = torch.optim.Adam if task.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=hp.lr, betas=(hp.momentum, 0.999), weight_decay=hp.weight_decay)


def train_hparams(task: Task, seed: int, hp: HParams) -> float:
    """:func:`benchmarks.training.train` (constant LR) with the other hyperparameters of ``hp``: the held-out loss
    after the task's budget (``inf`` when training produced a non-finite loss)."""
    torch.set_num_threads(1)
    inst = task.make(seed)
    optimizer = make_optimizer(task, inst.model.parameters(), hp)
    if not training._steps(inst, optimizer, None):
        return math.inf
    value = inst.eval_fn(inst.model)
    return value if math.isfinite(value) else math.inf


@dataclass
class SearchCache:
    """Per-task JSON files ``{hparams|seed: loss or None (non-finite)}`` of search training runs."""

    root: Path
    enabled: bool = True
    data: dict[str, dict[str, float | None]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def _path(self, task: str) -> Path:
        return self.root / f"{task}.json"

    def loss(self, task: Task, seed: int, hp: HParams) -> float:
        """The held-out loss of ``hp`` (already rounded) on ``task``/``seed``, trained unless cached."""
        if task.name not in self.data:
            path = self._path(task.name)
            self.data[task.name] = json.loads(path.read_text()) if self.enabled and path.exists() else {}
        runs = self.data[task.name]
        key = hp.key(seed)
        if key in runs:
            self.hits += 1
            value = runs[key]
            return math.inf if value is None else float(value)
        self.misses += 1
        value = train_hparams(task, seed, hp)
        runs[key] = value if math.isfinite(value) else None
        return value

    def flush(self) -> None:
        if self.enabled:
            for task, runs in self.data.items():
                write_json(self._path(task), runs)


# ---------------------------------------------------------------------------------------------------------
# One search
# ---------------------------------------------------------------------------------------------------------
class _SweepCost(Reporter):
    """An autolr reporter that records how many optimizer steps each range test ran (the helpers return the
    suggestion or the range, not the curve)."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    @property
    def last(self) -> int:
        return self.steps[-1]

    def range_test_end(self, result: Any) -> None:
        self.steps.append(len(result.curve) + int(result.curve.skipped_steps))


def _suggest_others(trial: Any, task: Task) -> tuple[float, float | None]:
    wd = trial.suggest_float("weight_decay", *WD_RANGE, log=True)
    if task.optimizer == "sgd":
        return wd, None
    name = "momentum" if task.optimizer == "sgdm" else "beta1"
    return wd, trial.suggest_float(name, *MOMENTUM_RANGE)


def run_search(
    task: Task, method: str, seed: int, n_trials: int, cache: SearchCache, untrained: float
) -> dict[str, Any]:
    """One study of ``n_trials`` trials; returns the trials in order (value ``None`` = pruned) with their step costs
    and the up-front cost (``setup_steps``)."""
    import optuna

    from autolr.integrations.optuna import narrow_lr_range, suggest_lr

    sampler = optuna.samplers.RandomSampler(seed=seed) if method == "random" else optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    trials: list[dict[str, Any]] = []
    setup_steps = 0
    info: dict[str, Any] = {}

    def finish(hp: HParams, range_steps: int, extra: dict[str, Any]) -> float:
        hp = hp.rounded()
        loss = cache.loss(task, seed, hp)
        value = clipped(loss, untrained)  # diverged = untrained, so the sampler sees a finite, ranked value
        trials.append(
            {**asdict(hp), "loss": value, "steps": task.steps + range_steps, "range_steps": range_steps, **extra}
        )
        return value

    sweeps = _SweepCost()
    if method in ("random", "tpe", "tpe+autolr-range"):
        low, high = task.grid_low, task.grid_high
        if method == "tpe+autolr-range":
            inst = task.make(seed, num_batches=RANGE_STEPS)
            optimizer = make_optimizer(task, inst.model.parameters(), default_hparams(task, task.textbook_lr))
            with warnings.catch_warnings():  # no suggestion: search the full range, as plain TPE does
                warnings.simplefilter("ignore", AutoLRWarning)  # (the test still cost); recorded as range_fallback
                low, high = narrow_lr_range(study, inst.model, optimizer, inst.batches, loss_fn=inst.loss_fn,
                                            reporters=[sweeps], fallback=(low, high))
            fallback = study.user_attrs.get("autolr/lr") is None
            setup_steps = sweeps.last
            info = {
                "lr_low": low,
                "lr_high": high,
                "suggestion": study.user_attrs.get("autolr/lr"),
                "confidence": study.user_attrs.get("autolr/confidence"),
                "reason": study.user_attrs.get("autolr/reason"),
                "range_fallback": fallback,
            }

        def objective(trial: Any) -> float:
            lr = trial.suggest_float("lr", low, high, log=True)
            wd, m = _suggest_others(trial, task)
            return finish(HParams(lr, wd, m), 0, {})

    elif method == "tpe+autolr-per-trial":

        def objective(trial: Any) -> float:
            wd, m = _suggest_others(trial, task)
            inst = task.make(seed, num_batches=RANGE_STEPS)
            optimizer = make_optimizer(task, inst.model.parameters(), HParams(task.textbook_lr, wd, m))
            try:
                result = suggest_lr(
                    trial, inst.model, optimizer, inst.batches, loss_fn=inst.loss_fn, reporters=[sweeps]
                )
            except optuna.TrialPruned:
                trials.append(
                    {
                        "lr": None,
                        "weight_decay": sig5(wd),
                        "momentum": None if m is None else sig5(m),
                        "loss": None,
                        "steps": sweeps.last,
                        "range_steps": sweeps.last,
                        "pruned": True,
                    }
                )
                raise
            return finish(
                HParams(float(result.suggestion.lr), wd, m),
                sweeps.last,
                {"confidence": float(result.suggestion.confidence)},
            )

    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=n_trials)
    return {"setup_steps": setup_steps, "trials": trials, **info}


# ---------------------------------------------------------------------------------------------------------
# Oracle, scoring, the whole benchmark
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """What one run covers."""

    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    trials: int = 32
    methods: tuple[str, ...] = METHODS
    points_per_decade: int = 3
    cache_dir: str = str(DEFAULT_CACHE)
    use_cache: bool = True
    quick: bool = False

    @property
    def checkpoints(self) -> tuple[int, ...]:
        return tuple(c for c in CHECKPOINTS if c <= self.trials) or (self.trials,)

    @classmethod
    def quick_mode(cls, **overrides: Any) -> Config:
        return cls(**{"tasks": QUICK_TASKS, "seeds": (0,), "trials": 16, "quick": True, **overrides})

    @classmethod
    def full_mode(cls, **overrides: Any) -> Config:
        return cls(**{"tasks": DESIGN_TASKS + SCORING_TASKS, "seeds": (0, 1, 2), **overrides})


def split_of(task: str) -> str:
    return "design" if task in DESIGN_TASKS else "scoring" if task in SCORING_TASKS else "other"


def signed_regret(loss: float, oracle: float, untrained: float) -> float:
    """``(loss - oracle) / (untrained - oracle)``: at most 1 (``loss`` is already clipped to ``untrained``),
    negative when ``loss`` beats the oracle."""
    span = untrained - oracle
    return 0.0 if span <= 0 else float(min(1.0, (loss - oracle) / span))


def best_so_far(trials: Sequence[dict[str, Any]], untrained: float) -> list[float]:
    """The best (lowest) value after each trial; a pruned trial repeats the previous best (untrained at first)."""
    out, best = [], untrained
    for t in trials:
        if t["loss"] is not None:
            best = min(best, t["loss"])
        out.append(best)
    return out


def score_search(search: dict[str, Any], task: Task, oracle: float, untrained: float, config: Config) -> dict:
    """Regret and steps after each checkpoint (in trials) and at each equal step budget (checkpoint x the task's
    training budget)."""
    trials = search["trials"]
    best = best_so_far(trials, untrained)
    cumulative = np.cumsum([search["setup_steps"]] + [t["steps"] for t in trials])[1:]
    by_trials = {}
    for n in config.checkpoints:
        k = min(n, len(trials))
        by_trials[str(n)] = {
            "regret": signed_regret(best[k - 1], oracle, untrained),
            "steps": int(cumulative[k - 1]),
            "runs": float(cumulative[k - 1] / task.steps),  # in training runs' worth of steps
            "pruned": sum(1 for t in trials[:k] if t.get("pruned")),
        }
    by_budget = {}
    for n in config.checkpoints:
        budget = n * task.steps
        fit = int(np.searchsorted(cumulative, budget, side="right"))  # trials finished within the budget
        value = best[fit - 1] if fit else untrained
        by_budget[str(n)] = {
            "regret": signed_regret(value, oracle, untrained),
            "trials": fit,
            # a search that ran out of trials before the budget: says so instead of pretending it used it
            "exhausted": bool(fit == len(trials) and cumulative[-1] < budget),
        }
    return {"by_trials": by_trials, "by_budget": by_budget, "best_so_far": best}


def oracle_losses(tasks: Sequence[Task], config: Config) -> dict[str, dict[str, Any]]:
    """Untrained loss and the grid oracle per task and seed, from (and into) the suggestion-quality cache: the
    same jobs (``("train", task, "constant", lr, seed)``) and the same clipping."""
    cache = RunCache(Path(config.cache_dir) / code_version(), enabled=config.use_cache)
    grids = {t.name: log_grid(t.grid_low, t.grid_high, config.points_per_decade) for t in tasks}
    jobs: list[tuple] = [("untrained", t.name, s) for t in tasks for s in config.seeds]
    jobs += [("train", t.name, "constant", k, s) for t in tasks for k in grids[t.name] for s in config.seeds]
    execute_training(jobs, cache, 1, "oracle grid")
    out: dict[str, dict[str, Any]] = {}
    for t in tasks:
        out[t.name] = {}
        for s in config.seeds:
            untrained = float(cache.get(t.name, job_key(("untrained", t.name, s))))  # type: ignore[arg-type]
            losses = [
                clipped(cache.get(t.name, job_key(("train", t.name, "constant", k, s))), untrained)  # type: ignore[arg-type]
                for k in grids[t.name]
            ]
            best = int(np.argmin(losses))
            out[t.name][str(s)] = {
                "untrained": untrained,
                "oracle": losses[best],
                "oracle_lr": float(grids[t.name][best]),
                "oracle_at_grid_edge": best in (0, len(losses) - 1),
                "grid_points": len(losses),
            }
    return out


def run_benchmark(config: Config, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or read from the caches) every search ``config`` asks for; return the JSON-ready results."""
    import optuna

    t0 = time.time()
    autolr_fingerprint()  # the source this run imports (read before any range test)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("autolr").setLevel(logging.ERROR)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    version = code_version()
    tasks = [get_task(n) for n in config.tasks]
    oracle = oracle_losses(tasks, config)
    log(f"oracle grid ready ({time.time() - t0:.0f} s)")
    cache = SearchCache(Path(config.cache_dir) / "search" / f"{version}-s{SEARCH_VERSION}", config.use_cache)
    results: dict[str, Any] = {}
    for t in tasks:
        results[t.name] = {"split": split_of(t.name), "steps": t.steps, "optimizer": t.optimizer, "seeds": {}}
        for s in config.seeds:
            o = oracle[t.name][str(s)]
            per_method = {}
            for m in config.methods:
                started = time.time()
                search = run_search(t, m, s, config.trials, cache, o["untrained"])
                per_method[m] = {**search, **score_search(search, t, o["oracle"], o["untrained"], config)}
                log(
                    f"  {t.name} seed {s} {m}: regret after {config.trials} trials "
                    f"{per_method[m]['by_trials'][str(config.checkpoints[-1])]['regret']:+.3f} "
                    f"({time.time() - started:.1f} s, {time.time() - t0:.0f} s total)"
                )
                cache.flush()
            results[t.name]["seeds"][str(s)] = {**o, "methods": per_method}
    cache.flush()
    return _assemble(config, version, results, time.time() - t0, cache)


def _cells(
    results: dict[str, Any], names: Sequence[str], seeds: Sequence[str], method: str, kind: str, n: str, key: str
) -> list[float]:
    return [results[t]["seeds"][s]["methods"][method][kind][n][key] for t in names for s in seeds]


def _assemble(config: Config, version: str, results: dict[str, Any], wall: float, cache: SearchCache) -> dict:
    seeds = [str(s) for s in config.seeds]
    splits = {split: [n for n in results if split == "all" or results[n]["split"] == split] for split in SPLITS}
    summary: dict[str, Any] = {}
    for split, names in splits.items():
        if not names:
            continue
        summary[split] = {}
        for m in config.methods:
            row: dict[str, Any] = {"by_trials": {}, "by_budget": {}}
            for n in map(str, config.checkpoints):
                r = _cells(results, names, seeds, m, "by_trials", n, "regret")
                runs = _cells(results, names, seeds, m, "by_trials", n, "runs")
                pruned = _cells(results, names, seeds, m, "by_trials", n, "pruned")
                row["by_trials"][n] = {
                    "median": float(statistics.median(r)),
                    "mean": float(np.mean(r)),
                    "runs_mean": float(np.mean(runs)),
                    "pruned_total": int(sum(pruned)),
                }
                b = _cells(results, names, seeds, m, "by_budget", n, "regret")
                fit = _cells(results, names, seeds, m, "by_budget", n, "trials")
                row["by_budget"][n] = {
                    "median": float(statistics.median(b)),
                    "mean": float(np.mean(b)),
                    "trials_mean": float(np.mean(fit)),
                }
            row["range_fallbacks"] = sum(
                bool(results[t]["seeds"][s]["methods"][m].get("range_fallback")) for t in names for s in seeds
            )
            summary[split][m] = row
    claim = _claim(results, splits, seeds, config)
    return {
        "benchmark": "search",
        "code_version": version,
        "search_version": SEARCH_VERSION,
        "autolr_fingerprint": autolr_fingerprint(),
        "optuna_version": __import__("optuna").__version__,
        "config": {
            **asdict(config),
            "tasks": list(config.tasks),
            "seeds": list(config.seeds),
            "methods": list(config.methods),
            "checkpoints": list(config.checkpoints),
        },
        "splits": {k: v for k, v in splits.items() if k != "all"},
        "tasks": results,
        "summary": summary,
        "claim": claim,
        "cache": {"hits": cache.hits, "trained": cache.misses},
        "wall_time_s": wall,
    }


def _per_task(values: Sequence[float], n_seeds: int) -> list[float]:
    """Seed means of ``values`` laid out task by task, ``n_seeds`` each."""
    return [float(np.mean(values[i : i + n_seeds])) for i in range(0, len(values), n_seeds)]


def _claim(results: dict[str, Any], splits: dict[str, list[str]], seeds: Sequence[str], config: Config) -> dict:
    """The claim 'with autolr, 8 trials reach what plain TPE needs 32 for': every other method at 8 trials (and at
    8 runs' worth of steps) against ``tpe`` at 32 trials (at 32 runs' worth of steps), paired by (task, seed) for
    the win/tie/loss counts and by task (seed-mean regret) for the bootstrap of
    :func:`benchmarks.suggestion_quality.paired_comparison`; and, per method (``tpe`` included) and checkpoint,
    the share of (task, seed) searches whose best so far is within :data:`TIE` of (or below) TPE's after 32."""
    if "tpe" not in config.methods or not config.checkpoints or config.checkpoints[-1] < 8:
        return {}
    few, many = "8", str(config.checkpoints[-1])
    out: dict[str, Any] = {}
    for split, names in splits.items():
        if not names:
            continue
        out[split] = {}
        for m in (x for x in config.methods if x != "tpe"):
            out[split][m] = {}
            for kind in ("by_trials", "by_budget"):
                ours = _cells(results, names, seeds, m, kind, few, "regret")
                theirs = _cells(results, names, seeds, "tpe", kind, many, "regret")
                d = np.asarray(ours) - np.asarray(theirs)
                out[split][m][kind] = {
                    "runs": {
                        "wins": int(np.sum(d < -TIE)),
                        "ties": int(np.sum(np.abs(d) <= TIE)),
                        "losses": int(np.sum(d > TIE)),
                    },
                    "tasks": paired_comparison(_per_task(ours, len(seeds)), _per_task(theirs, len(seeds))),
                    "ours_median": float(np.median(ours)),
                    "tpe_median": float(np.median(theirs)),
                    "ours_mean": float(np.mean(ours)),
                    "tpe_mean": float(np.mean(theirs)),
                }
    reach: dict[str, Any] = {}
    for split, names in splits.items():
        if not names:
            continue
        target = np.asarray(_cells(results, names, seeds, "tpe", "by_trials", many, "regret")) + TIE
        reach[split] = {m: {"by_trials": {}, "by_budget": {}} for m in config.methods}
        for m in config.methods:
            for kind in ("by_trials", "by_budget"):
                for n in map(str, config.checkpoints):
                    regrets = np.asarray(_cells(results, names, seeds, m, kind, n, "regret"))
                    reach[split][m][kind][n] = float(np.mean(regrets <= target))
    return {"few": int(few), "many": int(many), "splits": out, "reach": reach}


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------
def format_tables(out: dict[str, Any]) -> str:
    """The markdown report."""
    cfg = out["config"]
    cps = [str(c) for c in cfg["checkpoints"]]
    lines = [
        f"# Search cost ({'quick' if cfg['quick'] else 'full'}): signed regret of the best trial vs the LR grid oracle",
        "",
        f"{len(cfg['tasks'])} tasks x seeds {cfg['seeds']}, up to {cfg['trials']} trials per search; oracle grid "
        f"{cfg['points_per_decade']} points/decade at default weight decay/momentum; code {out['code_version']}-s"
        f"{out['search_version']}; autolr source {out['autolr_fingerprint']}; optuna {out['optuna_version']}. "
        "Regret 0 = the grid's best LR (same seed), 1 = no better than untrained, < 0 = better than the grid. "
        "Cells: median / mean over (task, seed).",
    ]
    for split, rows in out["summary"].items():
        names = list(out["tasks"]) if split == "all" else out["splits"][split]
        lines += ["", f"## {split} ({len(names)} tasks: {', '.join(names)})", "", "### after N trials", ""]
        lines.append(
            "| method | "
            + " | ".join(f"{c} trials" for c in cps)
            + " | runs' worth of steps at "
            + " / ".join(cps)
            + " | no LR: pruned trials / failed narrowings |"
        )
        lines.append("|---|" + "---:|" * len(cps) + "---:|---:|")
        for m, row in rows.items():
            cells = [f"{row['by_trials'][c]['median']:+.3f} / {row['by_trials'][c]['mean']:+.3f}" for c in cps]
            steps = " / ".join(f"{row['by_trials'][c]['runs_mean']:.1f}" for c in cps)
            pruned = f"{row['by_trials'][cps[-1]]['pruned_total']} / {row['range_fallbacks']}"
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {steps} | {pruned} |")
        lines += ["", "### at equal steps (N training runs' worth; trials that fit, mean)", ""]
        lines.append(
            "| method | " + " | ".join(f"{c} runs" for c in cps) + " | trials that fit at " + " / ".join(cps) + " |"
        )
        lines.append("|---|" + "---:|" * len(cps) + "---:|")
        for m, row in rows.items():
            cells = [f"{row['by_budget'][c]['median']:+.3f} / {row['by_budget'][c]['mean']:+.3f}" for c in cps]
            fit = " / ".join(f"{row['by_budget'][c]['trials_mean']:.1f}" for c in cps)
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {fit} |")
    claim = out.get("claim") or {}
    if claim:
        few, many = claim["few"], claim["many"]
        lines += [
            "",
            f"## claim: {few} trials of a method vs {many} trials of plain TPE",
            "",
            f"Per (task, seed): W/T/L = the method at {few} is lower / within {TIE} / higher than TPE at {many}. Δ = "
            "method - TPE of the per-task seed-mean regrets (negative favours the method), 90% bootstrap interval "
            "over tasks, share of resamples where the method's is lower.",
            "",
            "| split | method | trials: W/T/L | trials: median (method vs tpe) | trials: Δmean | steps: W/T/L | "
            "steps: median (method vs tpe) | steps: Δmean |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for split, methods in claim["splits"].items():
            for m, r in methods.items():
                row = [split, m]
                for kind in ("by_trials", "by_budget"):
                    x = r[kind]
                    c = x["tasks"]
                    row += [
                        f"{x['runs']['wins']}/{x['runs']['ties']}/{x['runs']['losses']}",
                        f"{x['ours_median']:+.3f} vs {x['tpe_median']:+.3f}",
                        f"{c['mean_diff']:+.3f} [{c['mean_diff_90'][0]:+.3f}, {c['mean_diff_90'][1]:+.3f}] "
                        f"({c['p_lower_mean']:.0%})",
                    ]
                lines.append("| " + " | ".join(row) + " |")
        lines += [
            "",
            f"Share of (task, seed) searches whose best so far is within {TIE} of (or below) plain TPE's after {many} "
            "trials, after N trials | at N runs' worth of steps:",
            "",
            "| split | method | " + " | ".join([*(f"{c} trials" for c in cps), *(f"{c} runs" for c in cps)]) + " |",
            "|---|---|" + "---:|" * (2 * len(cps)),
        ]
        for split, methods in claim["reach"].items():
            for m, r in methods.items():
                cells = [f"{r[kind][c]:.0%}" for kind in ("by_trials", "by_budget") for c in cps]
                lines.append(f"| {split} | {m} | " + " | ".join(cells) + " |")
    # per task
    lines += ["", f"## per task (mean over seeds; after {cps[min(1, len(cps) - 1)]} / {cps[-1]} trials)", ""]
    methods = cfg["methods"]
    lines.append(
        "| task | split | oracle LR (per seed) | "
        + " | ".join(methods)
        + " | autolr range (seed 0) | per-trial autolr LR (median) |"
    )
    lines.append("|---|---|---|" + "---:|" * len(methods) + "---|---:|")
    mid = cps[min(1, len(cps) - 1)]
    for name, t in out["tasks"].items():
        seeds = list(t["seeds"])
        cells = []
        for m in methods:
            a = np.mean([t["seeds"][s]["methods"][m]["by_trials"][mid]["regret"] for s in seeds])
            b = np.mean([t["seeds"][s]["methods"][m]["by_trials"][cps[-1]]["regret"] for s in seeds])
            cells.append(f"{a:+.2f} / {b:+.2f}")
        lrs = ", ".join(f"{t['seeds'][s]['oracle_lr']:.0e}" for s in seeds)
        rng = t["seeds"][seeds[0]]["methods"].get("tpe+autolr-range")
        if not rng:
            rng_text = "—"
        elif rng["range_fallback"]:
            rng_text = "no suggestion: full range"
        else:
            rng_text = f"{rng['lr_low']:.1e}..{rng['lr_high']:.1e} (sugg. {rng['suggestion']:.1e})"
        per_trial = [
            x["lr"]
            for s in seeds
            for x in t["seeds"][s]["methods"].get("tpe+autolr-per-trial", {}).get("trials", [])
            if x["lr"] is not None
        ]
        per_trial_text = f"{np.median(per_trial):.1e}" if per_trial else "—"
        lines.append(f"| {name} | {t['split']} | {lrs} | " + " | ".join(cells) + f" | {rng_text} | {per_trial_text} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 tasks, 1 seed, 16 trials")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--tasks", nargs="+", help="only these tasks")
    parser.add_argument("--seeds", type=int, nargs="+", help="search seeds (= the tasks' training seeds)")
    parser.add_argument("--trials", type=int, help="trials per search (default 32; 16 with --quick)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="only these methods")
    parser.add_argument("--points-per-decade", type=int, help="oracle grid density (default 3)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the caches")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {"cache_dir": args.cache_dir, "use_cache": not args.no_cache}
    for name in ("tasks", "seeds", "methods"):
        if getattr(args, name):
            overrides[name] = tuple(getattr(args, name))
    if args.trials:
        overrides["trials"] = args.trials
    if args.points_per_decade:
        overrides["points_per_decade"] = args.points_per_decade
    config = Config.quick_mode(**overrides) if args.quick else Config.full_mode(**overrides)
    out = run_benchmark(config)
    print(format_tables(out))
    cache = out["cache"]
    print(
        f"\nwall time {out['wall_time_s']:.0f} s; search training runs: {cache['trained']} trained, "
        f"{cache['hits']} from the cache",
        file=sys.stderr,
    )
    if args.out:
        write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

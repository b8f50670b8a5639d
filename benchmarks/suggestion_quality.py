"""Suggestion quality: how much worse than a grid-search oracle is training at each method's suggested LR?

For every task of :mod:`benchmarks.tasks` and both protocols (constant LR; one-cycle with max LR = the
candidate), the **oracle** trains at every LR of a log grid (``--points-per-decade`` per decade over the
task's range, every seed) and keeps the LR whose held-out loss, averaged over seeds, is lowest. Every
**method** suggests an LR from its own range test on the same task (same model initialisation and batch
stream, per seed); the benchmark then *trains* at that LR (every seed) and scores

    regret = (loss at suggested LR - oracle loss) / (untrained loss - oracle loss), clipped to [0, 1]

per task and protocol, averaged over the range-test seeds. 0 = as good as the best grid LR, 1 = no better
than not training. A run whose loss is NaN/inf or worse than the untrained loss counts as the untrained loss.

Methods:
    ``autolr:default`` (what ``autolr.lr_find`` returned) and ``autolr:<name>`` for every other strategy in
    ``autolr.suggest.STRATEGIES``; the anchors' rules (see :mod:`benchmarks.rules`: torch-lr-finder and
    Lightning through their own installed code, fastai's four rules re-implemented from their description);
    ``textbook`` (1e-3 for Adam/AdamW, 1e-2 for SGD); and the LR-free optimizers ``prodigy`` and
    ``schedulefree`` (see :func:`benchmarks.training.train_lr_free`), scored the same way. All curve rules
    read one shared curve per task and seed. A method that returns ``None`` is scored as the textbook default
    and counted in the ``None->default`` column.

Caching: every training run is cached as JSON under ``benchmarks/.cache/<code version>/`` (the version
hashes ``tasks.py`` and ``training.py`` and the torch version), and each oracle under
``oracle/<task>__<protocol>__<grid>.json``. Range tests are re-run every time (they are cheap and track the
current autolr). Everything is seeded and single-threaded, so a rerun prints the same tables.

The tasks are split into declared sets (a tuning half, a held-out half and blind sets, see
:data:`benchmarks.tasks.DECLARED_SPLITS`); the tables report each set, every task outside the tuning half
(``untuned``) and all tasks, each with autolr:default paired against every other method task by task
(:func:`paired_comparison`).

Usage::

    python benchmarks/suggestion_quality.py --quick                 # 4 tasks, 1 seed, 2 points/decade
    python benchmarks/suggestion_quality.py --workers 2 --out results.json   # full run
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import logging
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks import rules, training
from benchmarks.tasks import ALL_TASKS, DECLARED_SPLITS, QUICK_TASKS, Task, get_task

#: Bump when a change outside tasks.py/training.py changes what a cached run means.
BENCH_VERSION = "1"
HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / ".cache"
SPLITS = (*DECLARED_SPLITS, "untuned", "all")
#: Aggregate splits: "untuned" is every task outside the tuning half (held-out and the blind sets).
AGGREGATES = ("untuned", "all")
LR_FREE_METHODS = training.LR_FREE
TEXTBOOK = "textbook"


def code_version() -> str:
    """A string that changes whenever the code that produces a cached number changes."""
    digest = hashlib.sha1()
    for name in ("tasks.py", "training.py"):
        digest.update((HERE / name).read_bytes())
    torch_version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    return f"v{BENCH_VERSION}-{digest.hexdigest()[:10]}-torch{torch_version}"


@functools.cache
def autolr_fingerprint() -> str:
    """Short hash of autolr's source, so a table says which autolr produced it. Read once per process: each
    ``run_benchmark`` asks for it before its first range test, so a run during which ``autolr/`` is edited reports
    the source it imported, not the edited one."""
    import autolr

    digest = hashlib.sha1()
    for path in sorted(Path(autolr.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def lr_key(lr: float) -> str:
    """The cache key (and the LR actually trained at): 5 significant digits."""
    return f"{lr:.4e}"


def log_grid(low: float, high: float, points_per_decade: int) -> list[str]:
    """LR keys ``10**(k / points_per_decade)`` for every integer ``k`` with ``low <= lr <= high``."""
    k_low = math.ceil(math.log10(low) * points_per_decade - 1e-9)
    k_high = math.floor(math.log10(high) * points_per_decade + 1e-9)
    return [lr_key(10 ** (k / points_per_decade)) for k in range(k_low, k_high + 1)]


@dataclass(frozen=True)
class Config:
    """What one benchmark run covers."""

    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    points_per_decade: int
    workers: int = 1
    range_test: str = "autolr"
    num_steps: int = 100
    cache_dir: str = str(DEFAULT_CACHE)
    use_cache: bool = True
    quick: bool = False
    methods: tuple[str, ...] | None = None
    grid_range: tuple[float, float] | None = None

    def wants(self, method: str) -> bool:
        """Whether ``method`` is benchmarked (``methods=None``: all that are available)."""
        return self.methods is None or method in self.methods

    def grid_bounds(self, task: Task) -> tuple[float, float]:
        """The oracle grid's LR range for ``task`` (``grid_range`` overrides every task's own)."""
        return self.grid_range if self.grid_range is not None else (task.grid_low, task.grid_high)

    @classmethod
    def quick_mode(cls, **overrides: Any) -> Config:
        """Four fast tasks (two per half), one seed, 2 grid points per decade."""
        return cls(
            **{"tasks": QUICK_TASKS, "seeds": (0,), "points_per_decade": 2, "quick": True, **overrides}
        )

    @classmethod
    def full_mode(cls, **overrides: Any) -> Config:
        """Every task, two seeds, 3 grid points per decade."""
        names = tuple(t.name for t in ALL_TASKS)
        return cls(**{"tasks": names, "seeds": (0, 1), "points_per_decade": 3, **overrides})


# ---------------------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RunCache:
    """Per-task JSON files of finished runs: ``{job key: loss or None (non-finite)}``."""

    root: Path
    enabled: bool = True
    data: dict[str, dict[str, float | None]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)

    def _path(self, task: str) -> Path:
        return self.root / "runs" / f"{task}.json"

    def _load(self, task: str) -> dict[str, float | None]:
        if task not in self.data:
            path = self._path(task)
            self.data[task] = json.loads(path.read_text()) if self.enabled and path.exists() else {}
        return self.data[task]

    def get(self, task: str, key: str) -> float | str | None:
        """The cached loss, ``None`` for a cached non-finite loss, or ``"missing"``."""
        return self._load(task).get(key, "missing")

    def put(self, task: str, key: str, value: float) -> None:
        self._load(task)[key] = value if math.isfinite(value) else None
        self.dirty.add(task)

    def flush(self) -> None:
        if not self.enabled:
            return
        for task in sorted(self.dirty):
            write_json(self._path(task), self.data[task])
        self.dirty.clear()


def json_safe(data: Any) -> Any:
    """``data`` with every NaN/inf float replaced by ``None`` (strict JSON)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return data


def write_json(path: Path, data: Any) -> None:
    """Write strict JSON (non-finite numbers become null) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(json_safe(data), indent=1, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)


def job_key(job: tuple) -> str:
    """Cache key of a training job within its task's file."""
    return "|".join(str(part) for part in (job[0], *job[2:]))


# ---------------------------------------------------------------------------------------------------------
# Running jobs
# ---------------------------------------------------------------------------------------------------------
def quiet_run_job(job: tuple) -> tuple[tuple, Any]:
    """:func:`benchmarks.training.run_job` with stdout silenced (prodigyopt prints on construction), so
    stdout carries only the report."""
    with contextlib.redirect_stdout(io.StringIO()):
        return training.run_job(job)


def run_jobs(jobs: Sequence[tuple], workers: int, label: str) -> Iterable[tuple[tuple, Any]]:
    """Run jobs in-process (1 worker) or in a fork pool; yields ``(job, result)`` as they finish."""
    if not jobs:
        return
    start, done = time.time(), 0
    if workers <= 1:
        results: Iterable[tuple[tuple, Any]] = map(quiet_run_job, jobs)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(workers)
        results = pool.imap_unordered(quiet_run_job, jobs, chunksize=1)
    try:
        for item in results:
            done += 1
            if done % 25 == 0 or done == len(jobs):
                print(
                    f"  {label}: {done}/{len(jobs)} ({time.time() - start:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            yield item
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def execute_training(jobs: Sequence[tuple], cache: RunCache, workers: int, label: str) -> None:
    """Run every job whose result is not cached yet, storing results in ``cache`` as they come."""
    todo = [j for j in dict.fromkeys(jobs) if cache.get(j[1], job_key(j)) == "missing"]
    # Heaviest tasks first, so the pool's tail is short.
    todo.sort(key=lambda j: -get_task(j[1]).steps * _TASK_WEIGHT.get(j[1], 1.0))
    for n, (job, value) in enumerate(run_jobs(todo, workers, label), 1):
        cache.put(job[1], job_key(job), float(value))
        if n % 50 == 0:
            cache.flush()
    cache.flush()


#: Rough relative cost per step, only used to schedule heavy jobs first.
_TASK_WEIGHT = {
    "charlm_transformer_adamw": 12.0,
    "charlm_lstm_adam": 10.0,
    "adding_lstm_adam": 3.0,
    "digits_cnn_bn_adamw": 4.0,
    "digits_cnn_bn_sgdm": 4.0,
}


# ---------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------
def clipped(loss: float | None, untrained: float) -> float:
    """A diverged run (non-finite, or worse than untrained) counts as the untrained loss."""
    if loss is None or not math.isfinite(loss) or loss > untrained:
        return untrained
    return float(loss)


def regret(loss: float, oracle: float, untrained: float) -> float:
    """Normalized regret in [0, 1]."""
    span = untrained - oracle
    if span <= 0:
        return 0.0
    return float(min(1.0, max(0.0, (loss - oracle) / span)))


@dataclass
class TaskResult:
    """Everything measured on one task."""

    task: Task
    untrained: float = math.nan
    oracle: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)
    suggestions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    scores: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def _clean(values: Iterable[float]) -> list[float | None]:
    return [float(v) if v is not None and math.isfinite(v) else None for v in values]


def free_protocol(method: str, protocol: str) -> str:
    """Schedule-Free has no schedule under either protocol: both score its one (``constant``) run."""
    return "constant" if method == "schedulefree" else protocol


#: The optional methods: the module each one imports, and the line that installs it (torch-lr-finder goes in without
#: its requirements, which would pull another torch). A missing one is left out of the tables.
OPTIONAL_METHODS: dict[str, tuple[str, str]] = {
    "torch-lr-finder": ("torch_lr_finder", "pip install --no-deps torch-lr-finder"),
    "lightning": ("lightning", "pip install lightning"),
    "prodigy": ("prodigyopt", "pip install prodigyopt"),
    "schedulefree": ("schedulefree", "pip install schedulefree"),
}


def available(method: str) -> bool:
    """Whether the package a method needs is installed (the :data:`OPTIONAL_METHODS` may be missing: they are left
    out of the tables)."""
    return method not in OPTIONAL_METHODS or importlib.util.find_spec(OPTIONAL_METHODS[method][0]) is not None


def warn_missing(methods: Sequence[str] | None) -> list[str]:
    """Say on stderr which optional methods (of ``methods``; ``None``: all) are left out of the tables because their
    package is not installed, with the command that installs it; return them."""
    wanted = OPTIONAL_METHODS if methods is None else methods
    missing = [m for m in wanted if m in OPTIONAL_METHODS and not available(m)]
    if missing:
        hints = "; ".join(f"{m} ({OPTIONAL_METHODS[m][1]})" for m in missing)
        print(f"left out of the tables, package not installed: {hints}", file=sys.stderr)
    return missing


#: Optimizer class name for each benchmark optimizer kind (what ``autolr.plan.make_plan`` reads).
OPTIMIZER_NAMES = {"sgd": "SGD", "sgdm": "SGD", "adam": "Adam", "adamw": "AdamW"}


def one_cycle_peak(
    task: Task, lr: float, evidence: dict[str, float], schedule: str = "onecycle", *, finetune: bool = False
) -> float:
    """The peak LR ``AutoLR(schedule=schedule)`` trains with for suggestion ``lr``: the plan's ``peak_lr``
    (``autolr.plan.make_plan``), which one-cycle derives from the suggestion and its curve evidence (and, for a
    ``finetune`` suggestion, a warmup + decay schedule from the suggestion)."""
    from autolr.plan import make_plan
    from autolr.suggest import Suggestion

    plan = make_plan(
        Suggestion(lr, "default", 0.0, "", {}, dict(evidence), finetune),
        param_group_lrs=[task.textbook_lr],
        optimizer_name=OPTIMIZER_NAMES[task.optimizer],
        total_steps=task.steps,
        schedule=schedule,
        weight_decay=None,
    )
    return float(plan.peak_lr)


def _curve_rules(
    task: Task, curve: dict[str, Any], used_autolr: bool, config: Config
) -> dict[str, dict[str, Any]]:
    """Every curve-reading method on one curve: ``{method: {"lr", "reason"}}``."""
    lrs = np.asarray(curve["lrs"], float)
    losses = np.asarray(curve["losses"], float)
    out: dict[str, dict[str, Any]] = {}
    strategies = rules.autolr_rules(lrs, losses)
    if used_autolr:
        s = curve["suggestion"]
        out["autolr:default"] = {"lr": s["lr"], "reason": s["reason"], "evidence": s.get("evidence", {}),
                                    "finetune": bool(s.get("finetune", False))}
        strategies.pop("autolr:default", None)
    out.update(strategies)
    default = out.get("autolr:default")
    if default is not None and default["lr"] is not None:  # under one-cycle, autolr trains at the plan's peak
        evidence = default.get("evidence")
        if evidence is None:  # the local range test: read the evidence off the same curve
            from autolr.suggest import suggest

            evidence = dict(suggest(lrs, losses).evidence)
        default["onecycle_lr"] = one_cycle_peak(task, float(default["lr"]), evidence)
    for name, rule in rules.ANCHOR_RULES.items():
        if not (config.wants(name) and available(name)):
            continue
        try:
            lr = rule(lrs, losses)
        except Exception as exc:  # an anchor that crashes on a curve is recorded as no suggestion
            out[name] = {"lr": None, "reason": f"error: {type(exc).__name__}: {exc}"}
            continue
        ok = lr is not None and math.isfinite(lr) and lr > 0
        out[name] = {"lr": float(lr) if ok else None, "reason": ""}
    out[TEXTBOOK] = {"lr": task.textbook_lr, "reason": "textbook default"}
    return {k: v for k, v in out.items() if config.wants(k)}


def run_benchmark(config: Config) -> dict[str, Any]:
    """Run (or read from cache) everything ``config`` asks for; return the JSON-ready results."""
    t0 = time.time()
    autolr_fingerprint()  # the source this run imports (read before any range test)
    torch.set_num_threads(1)
    version = code_version()
    cache = RunCache(Path(config.cache_dir) / version, enabled=config.use_cache)
    tasks = [get_task(name) for name in config.tasks]
    seeds = config.seeds
    impl = config.range_test
    if impl == "autolr" and not training.have_autolr_lr_find():
        print("autolr.lr_find is not importable: using the benchmark's local range test", file=sys.stderr)
        impl = "local"
    results = {t.name: TaskResult(t) for t in tasks}

    # 1. Untrained losses and range tests.
    execute_training(
        [("untrained", t.name, s) for t in tasks for s in seeds], cache, config.workers, "untrained"
    )
    for t in tasks:
        results[t.name].untrained = float(
            np.mean([cache.get(t.name, job_key(("untrained", t.name, s))) for s in seeds])
        )
    range_jobs = [("range", t.name, s, impl, config.num_steps) for t in tasks for s in seeds]
    curves = {(job[1], job[2]): value for job, value in run_jobs(range_jobs, config.workers, "range tests")}
    for t in tasks:
        for s in seeds:
            curve = curves[(t.name, s)]
            results[t.name].curves.append(
                {
                    "seed": s,
                    "points": len(curve["lrs"]),
                    "stop_reason": curve["stop_reason"],
                    "lrs": curve["lrs"],
                    "losses": _clean(curve["losses"]),
                    "autolr_suggestion": curve.get("suggestion"),
                }
            )
            for method, sug in _curve_rules(t, curve, impl == "autolr", config).items():
                fallback = sug["lr"] is None
                lr = t.textbook_lr if fallback else sug["lr"]
                by_protocol = {p: float(lr_key(sug.get(f"{p}_lr", lr))) for p in training.PROTOCOLS}
                results[t.name].suggestions.setdefault(method, []).append(
                    {
                        "seed": s,
                        "lr": sug["lr"],
                        "trained_lr": by_protocol["constant"],
                        "trained_lr_by_protocol": by_protocol,
                        "fallback": fallback,
                        "reason": sug["reason"],
                    }
                )

    # 2. Training runs: the oracle grid, every suggestion, the LR-free optimizers.
    jobs: list[tuple] = []
    grids = {t.name: log_grid(*config.grid_bounds(t), config.points_per_decade) for t in tasks}
    lr_free = [m for m in LR_FREE_METHODS if config.wants(m) and available(m)]
    oracle_paths: dict[tuple[str, str], Path] = {}
    for t in tasks:
        for protocol in training.PROTOCOLS:
            low, high = config.grid_bounds(t)
            seed_id = ".".join(map(str, seeds))
            grid_id = f"{low:g}-{high:g}-ppd{config.points_per_decade}-seeds{seed_id}"
            path = cache.root / "oracle" / f"{t.name}__{protocol}__{grid_id}.json"
            oracle_paths[(t.name, protocol)] = path
            if config.use_cache and path.exists():
                results[t.name].oracle[protocol] = json.loads(path.read_text())
            else:
                jobs += [("train", t.name, protocol, k, s) for k in grids[t.name] for s in seeds]
            for sugs in results[t.name].suggestions.values():
                jobs += [
                    ("train", t.name, protocol, lr_key(x["trained_lr_by_protocol"][protocol]), s)
                    for x in sugs
                    for s in seeds
                ]
            jobs += [("free", t.name, m, free_protocol(m, protocol), s) for m in lr_free for s in seeds]
    execute_training(jobs, cache, config.workers, "training runs")

    def mean_loss(t: Task, job_prefix: tuple, untrained: float) -> tuple[float, list[float | None]]:
        raw = [cache.get(t.name, job_key((*job_prefix, s))) for s in seeds]
        return float(np.mean([clipped(v, untrained) for v in raw])), [v for v in raw]  # type: ignore[misc]

    # 3. Oracle and scores.
    for t in tasks:
        res = results[t.name]
        for protocol in training.PROTOCOLS:
            if protocol not in res.oracle:
                grid_losses, per_seed = [], []
                for k in grids[t.name]:
                    m, raw = mean_loss(t, ("train", t.name, protocol, k), res.untrained)
                    grid_losses.append(m)
                    per_seed.append(raw)
                best = int(np.argmin(grid_losses))
                res.oracle[protocol] = {
                    "grid": [float(k) for k in grids[t.name]],
                    "losses": grid_losses,
                    "losses_per_seed": per_seed,
                    "best_lr": float(grids[t.name][best]),
                    "best_loss": grid_losses[best],
                    "best_at_grid_edge": best in (0, len(grid_losses) - 1),
                    "untrained_loss": res.untrained,
                    "code_version": version,
                }
                if config.use_cache:
                    write_json(oracle_paths[(t.name, protocol)], res.oracle[protocol])
            best_loss = res.oracle[protocol]["best_loss"]
            scores: dict[str, dict[str, Any]] = {}
            for method, sugs in res.suggestions.items():
                losses = [
                    mean_loss(
                        t, ("train", t.name, protocol, lr_key(x["trained_lr_by_protocol"][protocol])), res.untrained
                    )[0]
                    for x in sugs
                ]
                regrets = [regret(v, best_loss, res.untrained) for v in losses]
                scores[method] = {
                    "regret": float(np.mean(regrets)),
                    "regret_per_seed": regrets,
                    "loss_per_seed": losses,
                }
            for method in lr_free:
                loss, _ = mean_loss(
                    t, ("free", t.name, method, free_protocol(method, protocol)), res.untrained
                )
                scores[method] = {
                    "regret": regret(loss, best_loss, res.untrained),
                    "regret_per_seed": None,
                    "loss_per_seed": [loss],
                }
            res.scores[protocol] = scores

    return _assemble(config, version, impl, results, grids, time.time() - t0)


#: Two methods whose regrets on a task differ by at most this much count as tied there.
TIE = 0.01
#: Bootstrap resamples (of tasks, with replacement) behind the paired comparison's intervals.
RESAMPLES = 10_000


def paired_comparison(
    ours: Sequence[float], theirs: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, float | int]:
    """How ``ours`` compares with ``theirs``, task by task (the same tasks in the same order).

    Counts the tasks where ours is lower by more than :data:`TIE` (``wins``), higher by more (``losses``) or
    neither (``ties``), and bootstraps the tasks (resampled with replacement, paired, ``resamples`` times from
    a fixed ``seed``, so the result is deterministic) for a 90% interval of the difference of the means and of
    the medians (ours - theirs: negative is better for ours), and the fraction of resamples in which ours has
    the lower mean / median (ties count half). With 5 tasks these intervals are wide: they say how much the
    suite can resolve, not how the methods compare on tasks outside it.

    Example:
        >>> r = paired_comparison([0.0, 0.1, 0.2], [0.1, 0.3, 0.2])
        >>> (r["wins"], r["ties"], r["losses"]), round(r["mean_diff"], 3)
        ((2, 1, 0), -0.1)
    """
    a, b = np.asarray(ours, float), np.asarray(theirs, float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equally long, non-empty sequences of regrets, got {a.shape} and {b.shape}")
    d = a - b
    idx = np.random.default_rng(seed).integers(0, a.size, size=(resamples, a.size))
    mean_diff = a[idx].mean(1) - b[idx].mean(1)
    median_diff = np.median(a[idx], 1) - np.median(b[idx], 1)

    def lower(diff: np.ndarray) -> float:
        return float(np.mean(diff < 0) + 0.5 * np.mean(diff == 0))

    return {
        "wins": int(np.sum(d < -TIE)),
        "ties": int(np.sum(np.abs(d) <= TIE)),
        "losses": int(np.sum(d > TIE)),
        "mean_diff": float(d.mean()),
        "mean_diff_90": [float(v) for v in np.quantile(mean_diff, [0.05, 0.95])],
        "median_diff": float(np.median(a) - np.median(b)),
        "median_diff_90": [float(v) for v in np.quantile(median_diff, [0.05, 0.95])],
        "p_lower_mean": lower(mean_diff),
        "p_lower_median": lower(median_diff),
    }


def _methods(results: dict[str, TaskResult]) -> list[str]:
    first = next(iter(results.values()))
    names = list(first.scores[training.PROTOCOLS[0]])
    autolr_names = [n for n in names if n.startswith("autolr:")]
    autolr_names.sort(key=lambda n: (n != "autolr:default", n))
    rest = [n for n in names if not n.startswith("autolr:") and n not in (TEXTBOOK, *LR_FREE_METHODS)]
    tail = [n for n in (TEXTBOOK, *LR_FREE_METHODS) if n in names]
    return autolr_names + rest + tail


def _assemble(
    config: Config,
    version: str,
    impl: str,
    results: dict[str, TaskResult],
    grids: dict[str, list[str]],
    wall: float,
) -> dict[str, Any]:
    methods = _methods(results)
    split_tasks = {
        **{s: [n for n, r in results.items() if r.task.split == s] for s in SPLITS if s not in AGGREGATES},
        "untuned": [n for n, r in results.items() if r.task.split != "tuning"],
        "all": list(results),
    }
    summary: dict[str, dict[str, dict[str, dict[str, float | int]]]] = {}
    for split, names in split_tasks.items():
        summary[split] = {}
        for protocol in training.PROTOCOLS:
            summary[split][protocol] = {}
            for method in methods:
                values = [results[n].scores[protocol][method]["regret"] for n in names]
                fallbacks = sum(x["fallback"] for n in names for x in results[n].suggestions.get(method, []))
                summary[split][protocol][method] = {
                    "median": float(statistics.median(values)) if values else math.nan,
                    "mean": float(np.mean(values)) if values else math.nan,
                    "worst": float(max(values)) if values else math.nan,
                    "fallbacks": int(fallbacks),
                    "n_tasks": len(values),
                }
    comparison: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    if "autolr:default" in methods:
        for split, names in split_tasks.items():
            if not names:
                continue
            comparison[split] = {}
            for protocol in training.PROTOCOLS:
                ours = [results[n].scores[protocol]["autolr:default"]["regret"] for n in names]
                comparison[split][protocol] = {
                    m: paired_comparison(ours, [results[n].scores[protocol][m]["regret"] for n in names])
                    for m in methods
                    if m != "autolr:default"
                }
    cost: dict[str, dict[str, float]] = {}
    for split, names in split_tasks.items():
        rt = sum(c["points"] for n in names for c in results[n].curves)
        grid = sum(len(grids[n]) * results[n].task.steps * len(config.seeds) for n in names)
        budget = sum(results[n].task.steps * len(config.seeds) for n in names)
        cost[split] = {
            "range_test_steps_total": rt,
            "range_test_steps_per_test": rt / max(1, len(names) * len(config.seeds)),
            "grid_steps_per_protocol": grid,
            "range_test_fraction_of_grid": rt / grid if grid else math.nan,
            "range_test_fraction_of_one_training_run": rt / budget if budget else math.nan,
        }
    tasks_json = {}
    for name, r in results.items():
        t = r.task
        tasks_json[name] = {
            "split": t.split,
            "description": t.description,
            "optimizer": t.optimizer,
            "loss": t.loss,
            "steps": t.steps,
            "grid": list(config.grid_bounds(t)),
            "untrained_loss": r.untrained,
            "oracle": r.oracle,
            "curves": r.curves,
            "suggestions": r.suggestions,
            "scores": r.scores,
        }
    return {
        "benchmark": "suggestion_quality",
        "code_version": version,
        "autolr_fingerprint": autolr_fingerprint(),
        "config": {**asdict(config), "tasks": list(config.tasks), "seeds": list(config.seeds)},
        "range_test": impl,
        "methods": methods,
        "splits": {k: v for k, v in split_tasks.items() if k != "all"},  # "untuned" included
        "tasks": tasks_json,
        "summary": summary,
        "comparison": comparison,
        "cost": cost,
        "wall_time_s": wall,
    }


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------
def _f(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.3f}"


def format_tables(out: dict[str, Any]) -> str:
    """The markdown report: one summary table per split, per-task regrets, and the autolr diagnosis."""
    lines: list[str] = []
    methods = out["methods"]
    cfg = out["config"]
    lines.append(
        f"# LR suggestion quality ({'quick' if cfg['quick'] else 'full'}): normalized regret vs grid oracle"
    )
    lines.append("")
    lines.append(
        f"range test: {out['range_test']}, {cfg['num_steps']} steps; seeds {cfg['seeds']}; oracle grid "
        f"{cfg['points_per_decade']} points/decade; code {out['code_version']}; autolr source "
        f"{out['autolr_fingerprint']}. Regret 0 = grid-best, "
        "1 = no better than untrained."
    )
    for split in SPLITS:
        names = list(out["tasks"]) if split == "all" else out["splits"][split]
        if not names:
            continue
        c = out["cost"][split]
        lines += ["", f"## {split} ({len(names)} tasks: {', '.join(names)})", ""]
        lines.append(
            "| method | const median | const mean | const worst | 1cycle median | 1cycle mean | 1cycle worst "
            "| None→default | tuning cost (steps) |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for m in methods:
            row = [m]
            for protocol in training.PROTOCOLS:
                s = out["summary"][split][protocol][m]
                row += [_f(s["median"]), _f(s["mean"]), _f(s["worst"])]
            row.append(str(out["summary"][split]["constant"][m]["fallbacks"]))
            if m in LR_FREE_METHODS:
                row.append("0 (one run)")
            elif m == TEXTBOOK:
                row.append("0")
            else:
                row.append(
                    f"{c['range_test_steps_per_test']:.0f} "
                    f"({100 * c['range_test_fraction_of_grid']:.2f}% of grid)"
                )
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lines.append(
            f"Range test: {c['range_test_steps_per_test']:.1f} steps per test on average = "
            f"{100 * c['range_test_fraction_of_grid']:.2f}% of the grid's "
            f"{c['grid_steps_per_protocol']} steps "
            f"per protocol ({100 * c['range_test_fraction_of_one_training_run']:.0f}% of one training run)."
        )
        lines += format_comparison(out.get("comparison", {}).get(split))

    # Per task
    lines += ["", "## per task (regret constant / one-cycle)", ""]
    tasks = list(out["tasks"])
    lines.append("| method | " + " | ".join(tasks) + " |")
    lines.append("|---|" + "---:|" * len(tasks))
    for m in methods:
        cells = [
            f"{out['tasks'][n]['scores']['constant'][m]['regret']:.2f}/"
            f"{out['tasks'][n]['scores']['onecycle'][m]['regret']:.2f}"
            for n in tasks
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if "autolr:default" not in methods:
        return "\n".join(lines)
    lines += [
        "",
        "| task | split | untrained | oracle const (lr, loss) | oracle 1cycle (lr, loss) | "
        "autolr:default lr per seed |",
        "|---|---|---:|---|---|---|",
    ]
    for n in tasks:
        t = out["tasks"][n]
        o = t["oracle"]
        edge = {p: " (grid edge!)" if o[p]["best_at_grid_edge"] else "" for p in o}
        sug = ", ".join(
            "None" if x["lr"] is None else f"{x['lr']:.2e} (1cycle peak {x['trained_lr_by_protocol']['onecycle']:.2e})"
            for x in t["suggestions"]["autolr:default"]
        )
        lines.append(
            f"| {n} | {t['split']} | {t['untrained_loss']:.3f} | {o['constant']['best_lr']:.2e}, "
            f"{o['constant']['best_loss']:.3f}{edge['constant']} | {o['onecycle']['best_lr']:.2e}, "
            f"{o['onecycle']['best_loss']:.3f}{edge['onecycle']} | {sug} |"
        )
    lines += ["", "## autolr:default diagnosis (tasks with regret > 0.1 or no suggestion)", ""]
    any_bad = False
    for n in tasks:
        t = out["tasks"][n]
        r = {p: t["scores"][p]["autolr:default"]["regret"] for p in training.PROTOCOLS}
        none = any(x["fallback"] for x in t["suggestions"]["autolr:default"])
        if max(r.values()) <= 0.1 and not none:
            continue
        any_bad = True
        lines.append(
            f"- **{n}** (regret const {r['constant']:.2f}, 1cycle {r['onecycle']:.2f}; oracle best LR const "
            f"{t['oracle']['constant']['best_lr']:.2e}, 1cycle {t['oracle']['onecycle']['best_lr']:.2e})"
        )
        for c, x in zip(t["curves"], t["suggestions"]["autolr:default"], strict=True):
            lines.append(f"  - seed {c['seed']}: {describe_curve(c)}; picked {x['lr']}: {x['reason']}")
    if not any_bad:
        lines.append("none")
    return "\n".join(lines)


def format_comparison(comparison: dict[str, dict[str, dict[str, Any]]] | None) -> list[str]:
    """Markdown lines: autolr:default against every other method, paired by task (see
    :func:`paired_comparison`); nothing when there is no comparison."""
    if not comparison or not comparison[training.PROTOCOLS[0]]:
        return []

    def cell(r: dict[str, Any], key: str) -> str:
        low, high = r[f"{key}_diff_90"]
        return f"{r[f'{key}_diff']:+.3f} [{low:+.3f}, {high:+.3f}] ({r[f'p_lower_{key}']:.0%})"

    lines = [
        "",
        f"autolr:default paired with each method by task: wins/ties/losses (regret lower / within {TIE} / "
        "higher), then the difference of means and of medians (autolr - method; negative favours autolr) with "
        "a 90% bootstrap interval over tasks and the share of resamples where autolr's is lower.",
        "",
        "| vs | const W/T/L | const Δmean | const Δmedian | 1cycle W/T/L | 1cycle Δmean | 1cycle Δmedian |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in comparison[training.PROTOCOLS[0]]:
        row = [method]
        for protocol in training.PROTOCOLS:
            r = comparison[protocol][method]
            row += [f"{r['wins']}/{r['ties']}/{r['losses']}", cell(r, "mean"), cell(r, "median")]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def describe_curve(curve: dict[str, Any]) -> str:
    """A one-line description of a range-test curve's shape (points, start/min loss, descent, blow-up)."""
    lrs = np.asarray(curve["lrs"], float)
    raw = np.array([np.nan if v is None else v for v in curve["losses"]], float)
    finite = raw[np.isfinite(raw)]
    if finite.size == 0:
        return f"{curve['points']} pts, stop={curve['stop_reason']}, no finite loss"
    raw = np.where(np.isfinite(raw), raw, finite.max())
    # centred running median over 9 points: robust to single noisy batches
    padded = np.pad(raw, 4, mode="edge")
    smooth = np.array([np.median(padded[i : i + 9]) for i in range(raw.size)])
    i_min = int(np.argmin(smooth))
    start = float(np.nanmedian(smooth[:10]))
    low = float(smooth[i_min])
    drop = start - low
    started = np.flatnonzero(smooth[: i_min + 1] < start - 0.1 * drop)
    half = np.flatnonzero(smooth[: i_min + 1] < start - 0.5 * drop)
    desc = f"{curve['points']} pts, stop={curve['stop_reason']}, loss {start:.3g} -> min {low:.3g}"
    desc += f" at {lrs[i_min]:.1e}"
    if started.size:
        desc += f", descent begins {lrs[started[0]]:.1e}"
    if half.size:
        desc += f", half-way {lrs[half[0]]:.1e}"
    desc += f", end loss {smooth[-1]:.3g} at {lrs[-1]:.1e}"
    return desc


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 tasks, 1 seed, 2 grid points per decade")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    parser.add_argument("--points-per-decade", type=int, help="override the oracle grid density")
    parser.add_argument(
        "--range-test",
        choices=("autolr", "local"),
        default="autolr",
        help="autolr.lr_find (default) or the benchmark's stand-in sweep",
    )
    parser.add_argument("--methods", nargs="+", help="only these methods (default: every available one)")
    parser.add_argument(
        "--grid", type=float, nargs=2, metavar=("LOW", "HIGH"), help="override every task's oracle LR range"
    )
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    args = parser.parse_args(argv)
    logging.getLogger("autolr").setLevel(logging.ERROR)  # low-confidence warnings: the tables report them

    overrides: dict[str, Any] = {
        "workers": args.workers,
        "range_test": args.range_test,
        "cache_dir": args.cache_dir,
        "use_cache": not args.no_cache,
    }
    if args.tasks:
        overrides["tasks"] = tuple(args.tasks)
    if args.seeds:
        overrides["seeds"] = tuple(args.seeds)
    if args.points_per_decade:
        overrides["points_per_decade"] = args.points_per_decade
    if args.methods:
        overrides["methods"] = tuple(args.methods)
    if args.grid:
        overrides["grid_range"] = (args.grid[0], args.grid[1])
    config = Config.quick_mode(**overrides) if args.quick else Config.full_mode(**overrides)
    warn_missing(config.methods)
    out = run_benchmark(config)
    print(format_tables(out))
    print(f"\nwall time {out['wall_time_s']:.0f} s", file=sys.stderr)
    if args.out:
        write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fast offline re-scoring of a suggestion rule on cached range-test curves (seconds, no training).

Reads a results file written by ``suggestion_quality.py --out`` (every range-test curve and, per task and
protocol, the oracle grid's seed-averaged held-out losses). A *rule* maps a curve to the LR it would train
at under each protocol; its loss at that LR is **estimated** by interpolating the oracle grid's losses
linearly in log10 LR (clamped to the grid's ends), and scored in normalized regret exactly like the
benchmark (``None`` -> the textbook default). The estimate is only as good as the grid (3 points per decade,
and the oracle's loss curve can be bumpy between points), so a rule chosen here must still be confirmed by
the real benchmark, which trains at the LR.

By default it scores the current ``autolr``: ``suggest(...).lr`` under ``constant`` and the one-cycle plan's
peak (``make_plan(..., schedule="onecycle").peak_lr``) under ``onecycle``, as ``AutoLR`` trains. Use the
tuning half to choose and tune rules (the default ``--split``); look at the held-out half only at the end.

Usage::

    python benchmarks/evaluate_rules.py                               # tuning half, per task + summary
    python benchmarks/evaluate_rules.py --split all --results benchmarks/.cache/results_full.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tasks import DECLARED_SPLITS

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / ".cache" / "results_full.json"
PROTOCOLS = ("constant", "onecycle")
#: Optimizer class name for each benchmark optimizer kind (what ``make_plan`` reads).
OPTIMIZER_NAMES = {"sgd": "SGD", "sgdm": "SGD", "adam": "Adam", "adamw": "AdamW"}

#: ``rule(lrs, losses, task) -> {protocol: lr or None}``; ``task`` is the results file's task entry.
Rule = Callable[[np.ndarray, np.ndarray, dict[str, Any]], dict[str, float | None]]


def textbook(task: dict[str, Any]) -> float:
    return 1e-3 if task["optimizer"] in ("adam", "adamw") else 1e-2


def autolr_rule(lrs: np.ndarray, losses: np.ndarray, task: dict[str, Any]) -> dict[str, float | None]:
    """The installed autolr: ``suggestion.lr`` (constant) and the one-cycle plan's peak (onecycle)."""
    from autolr.plan import make_plan
    from autolr.suggest import suggest

    s = suggest(lrs, losses)
    if s.lr is None:
        return {"constant": None, "onecycle": None}
    plan = make_plan(
        s, param_group_lrs=[textbook(task)], optimizer_name=OPTIMIZER_NAMES[task["optimizer"]],
        total_steps=task["steps"], schedule="onecycle", weight_decay=None,
    )
    return {"constant": s.lr, "onecycle": plan.peak_lr}


def oracle_loss(task: dict[str, Any], protocol: str, lr: float) -> float:
    """The oracle grid's seed-averaged loss, interpolated linearly in log10 LR (clamped to the grid)."""
    o = task["oracle"][protocol]
    x = np.log10(np.asarray(o["grid"], float))
    return float(np.interp(math.log10(lr), x, np.asarray(o["losses"], float)))


def regret(task: dict[str, Any], protocol: str, lr: float) -> float:
    o = task["oracle"][protocol]
    best, untrained = o["best_loss"], task["untrained_loss"]
    span = untrained - best
    if span <= 0:
        return 0.0
    return float(min(1.0, max(0.0, (oracle_loss(task, protocol, lr) - best) / span)))


def evaluate(rule: Rule, tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{task: {protocol: {"regret", "lrs", "none"}}}`` for ``rule`` on every cached curve."""
    out: dict[str, dict[str, Any]] = {}
    for name, task in tasks.items():
        per: dict[str, Any] = {p: {"regrets": [], "lrs": [], "none": 0} for p in PROTOCOLS}
        for curve in task["curves"]:
            lrs = np.asarray(curve["lrs"], float)
            losses = np.asarray([np.nan if v is None else v for v in curve["losses"]], float)
            picks = rule(lrs, losses, task)
            for p in PROTOCOLS:
                lr = picks.get(p)
                if lr is None:
                    per[p]["none"] += 1
                    lr = textbook(task)
                lr = float(f"{lr:.4e}")  # the benchmark trains at 5 significant digits
                per[p]["lrs"].append(lr)
                per[p]["regrets"].append(regret(task, p, lr))
        for p in PROTOCOLS:
            per[p]["regret"] = float(np.mean(per[p]["regrets"]))
        out[name] = per
    return out


def summary(scores: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median / mean / worst regret over tasks, per protocol."""
    out = {}
    for p in PROTOCOLS:
        values = [s[p]["regret"] for s in scores.values()]
        out[p] = {"median": statistics.median(values), "mean": float(np.mean(values)), "worst": max(values),
                  "none": sum(s[p]["none"] for s in scores.values())}
    return out


def load(path: Path, split: str) -> dict[str, dict[str, Any]]:
    data = json.loads(Path(path).read_text())
    keep = {"all": lambda s: True, "untuned": lambda s: s != "tuning"}.get(split, lambda s: s == split)
    return {n: t for n, t in data["tasks"].items() if keep(t["split"])}


def report(scores: dict[str, dict[str, Any]], tasks: dict[str, dict[str, Any]]) -> str:
    lines = ["| task | oracle const | picks const | regret | oracle 1cycle | picks 1cycle | regret |",
             "|---|---:|---|---:|---:|---|---:|"]
    for name, s in scores.items():
        cells = [name]
        for p in PROTOCOLS:
            cells += [f"{tasks[name]['oracle'][p]['best_lr']:.2e}", ", ".join(f"{x:.2e}" for x in s[p]["lrs"])
                      + (f" ({s[p]['none']} None)" if s[p]["none"] else ""), f"{s[p]['regret']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    summ = summary(scores)
    lines.append("")
    for p in PROTOCOLS:
        m = summ[p]
        lines.append(f"{p}: median {m['median']:.3f}  mean {m['mean']:.3f}  worst {m['worst']:.3f}  "
                     f"None {m['none']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--split", choices=(*DECLARED_SPLITS, "untuned", "all"), default="tuning")
    args = parser.parse_args(argv)
    tasks = load(args.results, args.split)
    print(report(evaluate(autolr_rule, tasks), tasks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

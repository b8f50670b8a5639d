"""AutoLRCallback against Lightning's own LR finder, on the same LightningModules: one table.

Run it with::

    pip install "torch-autolr[lightning]"
    python benchmarks/lightning_side_by_side.py            # 3 modules, 3 seeds, resume and DDP checks: ~2 min
    python benchmarks/lightning_side_by_side.py --quick    # 2 modules, 1 seed: under a minute

on 2 CPU cores, one torch thread. Nothing is downloaded: the data are generated from fixed seeds or read from
the Python documentation that ships with the interpreter.

Modules (each a plain ``LightningModule`` with ``self.lr`` read in ``configure_optimizers``, as Lightning's finder
requires; no weight decay, no scheduler; 4 epochs of 32 steps, batch 64):

* ``mlp_adamw``: MLP 32-64-64-4 with LayerNorm and GELU, AdamW, on labels of a random teacher network;
* ``cnn_sgd``: two 3x3 convolutions, global max pooling and a linear head, SGD with momentum 0.9, on noisy
  12x12 images of bars in four orientations;
* ``bytes_adam`` (not with ``--quick``): an MLP over the previous 8 bytes of the Python docs, Adam.

Methods, each with its library's defaults:

* ``Tuner.lr_find``: ``Tuner(trainer).lr_find(module)`` (1e-8 to 1, 100 steps, steepest gradient), then
  ``trainer.fit`` at the LR it sets on the module;
* ``LearningRateFinder``: Lightning's callback (the same search, inside ``fit``);
* ``AutoLRCallback(constant)``: ``AutoLRCallback(schedule="constant", weight_decay=None)``: autolr's
  suggestion (1e-7 to 10, 100 steps), trained the same way as Lightning's: at one constant LR;
* ``AutoLRCallback()``: the defaults (``schedule="auto"``, ``weight_decay="auto"``): the suggestion with its
  plan (warmup + cosine for AdamW and Adam, one-cycle for SGD; decoupled weight decay), what a user gets.

Measured, for each module and seed: the suggestion; the validation loss after the short training; the
**regret** against a 7-point grid of constant LRs trained the same way (the "oracle"): (loss - best) / (untrained
- best), 1 when the run diverged or ended worse than untrained (the plan row may be negative: a schedule can beat
every constant LR); the search's wall time (``on_fit_start`` for the callbacks, the ``lr_find`` call for the
Tuner). Once per method, on ``mlp_adamw``: **resume** (fit 4 epochs with a checkpoint per epoch, then a fresh
module, callback and Trainer resumed with ``fit(ckpt_path=<epoch 1>)``: is the LR of every remaining step the same
as in the uninterrupted run?), **DDP** (``strategy="ddp_fork"``, 2 CPU processes, gloo: do both ranks get the
same LR, and is the curve the mean over the ranks or rank 0's?), and the **files** the search writes in
``default_root_dir`` (checkpoints saved, and left after ``fit``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateFinder, ModelCheckpoint
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.tuner import lr_finder as pl_lr_finder
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from autolr.integrations.lightning import AutoLRCallback
from autolr.range_test import range_test_running

EPOCHS, BATCH, TRAIN, VAL = 4, 64, 2048, 512
METHODS = ("Tuner.lr_find", "LearningRateFinder", "AutoLRCallback(constant)", "AutoLRCallback()")
CALLBACK_METHODS = METHODS[1:]


# -- data and modules ------------------------------------------------------------------------------------
def teacher_data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(TRAIN + VAL, 32, generator=g)
    w1, w2 = torch.randn(32, 64, generator=g) / 32**0.5, torch.randn(64, 4, generator=g) / 8
    y = (torch.tanh(x @ w1) @ w2 + 0.1 * torch.randn(TRAIN + VAL, 4, generator=g)).argmax(1)
    return TensorDataset(x[:TRAIN], y[:TRAIN]), TensorDataset(x[TRAIN:], y[TRAIN:])


def bars_data() -> tuple[TensorDataset, TensorDataset]:
    """Noisy 12x12 images of a 5-pixel bar: horizontal, vertical, diagonal or anti-diagonal (the class)."""
    g = torch.Generator().manual_seed(1234)
    n = TRAIN + VAL
    y = torch.randint(0, 4, (n,), generator=g)
    images = 0.3 * torch.randn(n, 1, 12, 12, generator=g)
    rows, cols = torch.randint(2, 10, (n,), generator=g), torch.randint(2, 10, (n,), generator=g)
    for i in range(n):
        r, c, k = int(rows[i]), int(cols[i]), int(y[i])
        for d in range(-2, 3):
            rr, cc = [(r, c + d), (r + d, c), (r + d, c + d), (r + d, c - d)][k]
            images[i, 0, rr, cc] += 1.0
    return TensorDataset(images[:TRAIN], y[:TRAIN]), TensorDataset(images[TRAIN:], y[TRAIN:])


def bytes_data(context: int = 8) -> tuple[TensorDataset, TensorDataset]:
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    ids = torch.tensor(list(" ".join(topics[k] for k in sorted(topics)).encode("ascii", "ignore")))
    starts = torch.randint(0, len(ids) - context - 1, (TRAIN + VAL,), generator=torch.Generator().manual_seed(1234))
    windows = torch.stack([ids[s:s + context + 1] for s in starts.tolist()])
    x, y = windows[:, :-1], windows[:, -1]
    return TensorDataset(x[:TRAIN], y[:TRAIN]), TensorDataset(x[TRAIN:], y[TRAIN:])


@dataclass(frozen=True)
class Task:
    name: str
    net: Callable[[], nn.Module]
    optimizer: str
    default_lr: float
    data: Callable[[], tuple[TensorDataset, TensorDataset]]
    grid: tuple[float, ...]


def _grid(low: float, high: float, points: int = 7) -> tuple[float, ...]:
    return tuple(10 ** (low + (high - low) * i / (points - 1)) for i in range(points))


TASKS = {
    "mlp_adamw": Task("mlp_adamw", lambda: nn.Sequential(
        nn.Linear(32, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 64), nn.LayerNorm(64), nn.GELU(),
        nn.Linear(64, 4)), "adamw", 1e-3, teacher_data, _grid(-4, 0)),
    "cnn_sgd": Task("cnn_sgd", lambda: nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 4)), "sgd", 1e-2, bars_data, _grid(-3, 1)),
    "bytes_adam": Task("bytes_adam", lambda: nn.Sequential(
        nn.Embedding(256, 16), nn.Flatten(), nn.Linear(16 * 8, 128), nn.GELU(), nn.Linear(128, 256)),
        "adam", 1e-3, bytes_data, _grid(-4, 0)),
}


class Module(pl.LightningModule):
    def __init__(self, task: Task, lr: float | None = None) -> None:
        super().__init__()
        self.task, self.net = task, task.net()
        self.lr = task.default_lr if lr is None else lr
        self.search_losses: list[float] = []  # this rank's raw losses while a finder searches

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        if range_test_running():
            self.search_losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self):
        if self.task.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        kind = torch.optim.AdamW if self.task.optimizer == "adamw" else torch.optim.Adam
        return kind(self.parameters(), lr=self.lr, weight_decay=0.0)


def val_loss(module: nn.Module, data: TensorDataset) -> float:
    module.eval()
    with torch.no_grad():
        x, y = data.tensors
        loss = float(F.cross_entropy(module.net(x), y))
    return loss if math.isfinite(loss) else math.inf


# -- one fit ---------------------------------------------------------------------------------------------
class LRs(pl.Callback):
    """The LR every optimizer step ran at."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append(float(optimizer.param_groups[0]["lr"]))


def timed(callback: pl.Callback) -> pl.Callback:
    """Time the callback's ``on_fit_start`` (where both finders search) into ``callback.search_seconds``."""
    original = callback.on_fit_start
    callback.search_seconds = 0.0  # type: ignore[attr-defined]

    def on_fit_start(trainer, pl_module):
        started = time.perf_counter()
        original(trainer, pl_module)
        callback.search_seconds += time.perf_counter() - started  # type: ignore[attr-defined]

    callback.on_fit_start = on_fit_start  # type: ignore[method-assign]
    return callback


def new_trainer(root: Path, callbacks: list[pl.Callback], **kwargs: Any) -> pl.Trainer:
    options = {"max_epochs": EPOCHS, "accelerator": "cpu", "logger": False, "enable_progress_bar": False,
               "enable_checkpointing": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
               "default_root_dir": str(root)}
    trainer = pl.Trainer(callbacks=callbacks, **{**options, **kwargs})
    saved: list[str] = []
    save = trainer.save_checkpoint

    def recording_save(path, *args, **kw):  # what the search writes to disk
        saved.append(str(path))
        return save(path, *args, **kw)

    trainer.save_checkpoint = recording_save  # type: ignore[method-assign]
    trainer.saved_checkpoints = saved  # type: ignore[attr-defined]
    return trainer


def loader(data: TensorDataset, seed: int) -> DataLoader:
    return DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(seed))


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def make_callback(method: str) -> pl.Callback:
    if method == "LearningRateFinder":
        return LearningRateFinder()
    if method == "AutoLRCallback(constant)":
        return AutoLRCallback(schedule="constant", weight_decay=None, progress=False)
    return AutoLRCallback(progress=False)


def run_method(method: str, task: Task, seed: int, train: TensorDataset, val: TensorDataset) -> dict[str, Any]:
    torch.manual_seed(seed)
    module = Module(task)
    with tempfile.TemporaryDirectory(prefix="autolr-pl-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        if method == "Tuner.lr_find":
            trainer = new_trainer(root, [])
            finder = Tuner(trainer).lr_find(module, train_dataloaders=loader(train, seed))
            search = time.perf_counter() - started
            suggestion = finder.suggestion() if finder is not None else None
            trainer.fit(module, loader(train, seed))
        else:
            finder = timed(make_callback(method))
            trainer = new_trainer(root, [finder])
            trainer.fit(module, loader(train, seed))
            search = finder.search_seconds
            if isinstance(finder, LearningRateFinder):
                suggestion = finder.optimal_lr.suggestion() if finder.optimal_lr is not None else None
            else:
                suggestion = finder.result.suggestion.lr
        wall = time.perf_counter() - started
        # Lightning's finders set module.lr (kept when they suggest nothing); autolr's plan has a peak
        trained_at = finder.plan.peak_lr if isinstance(finder, AutoLRCallback) else module.lr
        return {"suggestion": suggestion, "trained_at": trained_at, "val_loss": val_loss(module, val),
                "search_s": search, "wall_s": wall, "checkpoints_written": len(trainer.saved_checkpoints),
                "files_left": files_under(root)}


def constant_fit(task: Task, seed: int, lr: float | None, train: TensorDataset, val: TensorDataset) -> float:
    torch.manual_seed(seed)
    module = Module(task, lr)
    with tempfile.TemporaryDirectory(prefix="autolr-pl-") as tmp:
        new_trainer(Path(tmp), []).fit(module, loader(train, seed))
    return val_loss(module, val)


# -- resume ----------------------------------------------------------------------------------------------
def resume_check(method: str, task: Task) -> dict[str, Any]:
    """Fit EPOCHS epochs with a checkpoint per epoch; resume a fresh module, callback and Trainer from the
    first one: does every remaining step run at the LR it ran at in the uninterrupted fit?"""
    train, _ = task.data()
    with tempfile.TemporaryDirectory(prefix="autolr-pl-resume-") as tmp:
        root = Path(tmp)

        def fit(ckpt_path: str | None) -> tuple[list[float], bool, pl.Trainer]:
            torch.manual_seed(0)
            module, lrs, finder = Module(task), LRs(), make_callback(method)
            every = ModelCheckpoint(dirpath=root / "ckpt", filename="{epoch}", every_n_epochs=1, save_top_k=-1)
            trainer = new_trainer(root, [finder, lrs, every], enable_checkpointing=True)
            trainer.fit(module, loader(train, 0), ckpt_path=ckpt_path)
            searched = getattr(finder, "optimal_lr", None) is not None or bool(module.search_losses)
            return lrs.lrs, searched, trainer

        try:
            full, _, t0 = fit(None)
            per_epoch = t0.global_step // EPOCHS
            after, searched, _ = fit(str(root / "ckpt" / "epoch=0.ckpt"))
        except Exception as exc:  # a finder that cannot resume at all
            return {"identical": False, "searched_again": None, "detail": f"error: {exc!r}"[:120]}
    expected = full[per_epoch:]
    detail = f"{len(after)} steps after resuming at step {per_epoch} (expected {len(expected)})"
    detail += ", searched again" if searched else ", no new search"
    return {"identical": after == expected, "searched_again": searched, "detail": detail}


# -- DDP -------------------------------------------------------------------------------------------------
_LOCAL_CURVE_ATTR = "_bench_local_curve"


@contextlib.contextmanager
def lightning_local_curves() -> Iterator[None]:
    """Record each rank's own smoothed curve in Lightning's finder (before it broadcasts rank 0's)."""
    original = pl_lr_finder._LRCallback.on_train_batch_end

    def recording(self, trainer, pl_module, outputs, batch, batch_idx):
        before = len(self.losses)
        original(self, trainer, pl_module, outputs, batch, batch_idx)
        if len(self.losses) > before:
            pl_module.__dict__.setdefault(_LOCAL_CURVE_ATTR, []).append(float(self.losses[-1]))

    pl_lr_finder._LRCallback.on_train_batch_end = recording
    try:
        yield
    finally:
        pl_lr_finder._LRCallback.on_train_batch_end = original


class Report(pl.Callback):
    def __init__(self, finder: pl.Callback, out: Path) -> None:
        self.finder, self.out = finder, out

    def on_fit_end(self, trainer, pl_module):
        if isinstance(self.finder, LearningRateFinder):
            results = self.finder.optimal_lr.results
            report = {"lr": self.finder.optimal_lr.suggestion(), "curve": list(results["loss"]),
                      "local": pl_module.__dict__.get(_LOCAL_CURVE_ATTR, [])}
        else:
            report = {"lr": self.finder.result.suggestion.lr, "curve": list(self.finder.result.curve.losses),
                      "local": pl_module.search_losses}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def ddp_check(method: str, task: Task) -> dict[str, Any]:
    if "fork" not in __import__("multiprocessing").get_all_start_methods():
        return {"same_lr": None, "curve": "skipped (no fork)"}
    train, _ = task.data()
    with tempfile.TemporaryDirectory(prefix="autolr-pl-ddp-") as tmp, lightning_local_curves():
        out = Path(tmp)
        torch.manual_seed(0)
        finder = make_callback(method)
        trainer = new_trainer(out, [finder, Report(finder, out)], strategy="ddp_fork", devices=2, max_epochs=1)
        try:
            trainer.fit(Module(task), DataLoader(train, batch_size=BATCH, shuffle=True))
        except Exception as exc:
            return {"same_lr": None, "curve": f"error: {exc!r}"[:100]}
        r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    n = len(r0["curve"])
    if method == "LearningRateFinder":
        source = ("rank 0's loss only" if r0["curve"] == r1["curve"] == r0["local"][:n] != r1["local"][:n]
                  else "other")
    else:
        means = [(a + b) / 2 for a, b in zip(r0["local"], r1["local"])][:n]
        close = all(math.isclose(c, m, rel_tol=1e-5, abs_tol=1e-7) for c, m in zip(r0["curve"], means))
        source = "mean over ranks" if close and r0["curve"] == r1["curve"] and n else "other"
    return {"same_lr": r0["lr"] == r1["lr"], "curve": source, "lrs": [r0["lr"], r1["lr"]]}


# -- tables ----------------------------------------------------------------------------------------------
def regret(loss: float, best: float, untrained: float) -> float:
    if not math.isfinite(loss) or loss >= untrained:
        return 1.0
    return (loss - best) / max(untrained - best, 1e-12)


def fmt_lr(value: float | None) -> str:
    return "None" if value is None else f"{value:.1e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 modules, 1 seed, no bytes_adam: under a minute")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per module (default 3, 1 with --quick)")
    parser.add_argument("--no-ddp", action="store_true", help="skip the 2-process DDP check")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for name in ("lightning.pytorch", "lightning.fabric", "autolr"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    tasks = ["mlp_adamw", "cnn_sgd"] if args.quick else list(TASKS)
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))

    results: dict[str, Any] = {"config": {"epochs": EPOCHS, "batch": BATCH, "seeds": seeds, "quick": args.quick,
                                          "lightning": pl.__version__, "torch": torch.__version__}, "tasks": {}}
    print(f"| module | method | suggested LR (seed {', '.join(map(str, seeds))}) | trained at (peak) | val loss | "
          "regret | search s |")
    print("|---|---|---|---|---|---|---|")
    for name in tasks:
        task = TASKS[name]
        train, val = task.data()
        per: dict[str, Any] = {}
        untrained = statistics.mean(val_loss(_seeded_module(task, s), val) for s in seeds)
        grid = {lr: statistics.mean(constant_fit(task, s, lr, train, val) for s in seeds) for lr in task.grid}
        best_lr = min(grid, key=lambda lr: grid[lr])
        best = grid[best_lr]
        default = statistics.mean(constant_fit(task, s, None, train, val) for s in seeds)
        for method in METHODS:
            with contextlib.redirect_stderr(io.StringIO()):  # Lightning's finder draws a progress bar
                runs = [run_method(method, task, s, train, val) for s in seeds]
            loss = statistics.mean(r["val_loss"] for r in runs)
            per[method] = {"runs": runs, "val_loss": loss, "regret": statistics.mean(
                regret(r["val_loss"], best, untrained) for r in runs)}
            suggestions = " / ".join(fmt_lr(r["suggestion"]) for r in runs)
            trained = " / ".join(fmt_lr(r["trained_at"]) for r in runs)
            print(f"| {name} | {method} | {suggestions} | {trained} | {loss:.3f} | {per[method]['regret']:.2f} | "
                  f"{statistics.median(r['search_s'] for r in runs):.2f} |")
        print(f"| {name} | module's own lr {fmt_lr(task.default_lr)}, no search | | {fmt_lr(task.default_lr)} | "
              f"{default:.3f} | {regret(default, best, untrained):.2f} | 0 |")
        print(f"| {name} | grid oracle: best of 7 constant LRs {fmt_lr(task.grid[0])}..{fmt_lr(task.grid[-1])} | | "
              f"{fmt_lr(best_lr)} | {best:.3f} | 0 | ({len(task.grid)} fits) |")
        print(f"| {name} | untrained | | | {untrained:.3f} | 1 | |")
        results["tasks"][name] = {"untrained": untrained, "grid": {str(k): v for k, v in grid.items()},
                                  "best_lr": best_lr, "best": best, "default_lr_loss": default, "methods": per}

    print("\n| method | resume: same LR trajectory | DDP (2 ranks): same LR / curve | search checkpoints written "
          "/ files left | search s (median) |")
    print("|---|---|---|---|---|")
    checks: dict[str, Any] = {}
    task = TASKS["mlp_adamw"]
    for method in METHODS:
        runs = [r for t in results["tasks"].values() for r in t["methods"][method]["runs"]]
        written = sorted({r["checkpoints_written"] for r in runs})
        left = sorted({len(r["files_left"]) for r in runs})
        search = statistics.median(r["search_s"] for r in runs)
        if method in CALLBACK_METHODS:
            with contextlib.redirect_stderr(io.StringIO()):
                resume = resume_check(method, task)
                ddp = {"same_lr": None, "curve": "skipped"} if args.no_ddp else ddp_check(method, task)
            resume_text = f"{'yes' if resume['identical'] else 'no'} ({resume['detail']})"
            ddp_text = f"{'yes' if ddp['same_lr'] else 'no' if ddp['same_lr'] is False else '-'} / {ddp['curve']}"
        else:
            resume, ddp = {}, {}
            resume_text, ddp_text = "n/a (runs before fit)", "n/a"
        checks[method] = {"resume": resume, "ddp": ddp, "checkpoints_written": written, "files_left": left,
                          "search_s": search}
        print(f"| {method} | {resume_text} | {ddp_text} | {'/'.join(map(str, written))} / "
              f"{'/'.join(map(str, left))} | {search:.2f} |")
    results["checks"] = checks
    results["wall_s"] = time.perf_counter() - started
    print(f"\n{len(tasks)} modules x {len(seeds)} seed(s), {EPOCHS} epochs of {TRAIN // BATCH} steps; lightning "
          f"{pl.__version__}, torch {torch.__version__}, 1 thread; {results['wall_s']:.0f}s in all")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


def _seeded_module(task: Task, seed: int) -> Module:
    torch.manual_seed(seed)
    return Module(task)


if __name__ == "__main__":
    sys.exit(main())

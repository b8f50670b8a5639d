"""Why no range test reads the adding-problem LSTM: it leaves its plateau only after ~150 steps at one LR.

Prints, for a task of the regret benchmark (default ``adding_lstm_adam``):

1. the training loss in blocks of 25 steps at a few constant LRs (each seed), to show when the model leaves
   its plateau (for the adding problem: predicting the mean, loss ~1);
2. what ``autolr.lr_find`` reads from sweeps of 100 and 300 steps (drop / noise, divergence LR, suggestion
   and confidence) on the same seeds and batch stream, and from a 100-step sweep in validation mode (the loss
   of 8 fixed batches after every step: no batch-to-batch noise).

A sweep spends a few steps at each LR, so a model that needs 150 steps at a good LR before it learns
anything shows a flat curve however long the sweep is; the divergence LR is the only fact it carries.

Usage::

    python benchmarks/plateau_probe.py                       # about 30 s on one core
    python benchmarks/plateau_probe.py --lrs 0.01 0.05 --seeds 0
    python benchmarks/plateau_probe.py --task diabetes_tinybatch_sgdm --lrs 0.01 0.1
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tasks import get_task
from benchmarks.training import autolr_range_test

BLOCK = 25


def loss_blocks(task_name: str, seed: int, lr: float, steps: int | None = None) -> list[float]:
    """Mean training loss per block of ``BLOCK`` steps at constant ``lr``."""
    task = get_task(task_name)
    inst = task.make(seed, num_batches=steps)
    optimizer = inst.optimizer_factory(inst.model.parameters(), lr)
    losses = []
    for x, y in inst.batches:
        optimizer.zero_grad(set_to_none=True)
        loss = inst.loss_fn(inst.model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return [float(np.mean(losses[i : i + BLOCK])) for i in range(0, len(losses), BLOCK)]


def sweep(task_name: str, seed: int, num_steps: int, val_batches: int = 0) -> str:
    """One line: what ``autolr.lr_find`` reads from a ``num_steps`` sweep (1e-7 -> 10); with ``val_batches``,
    in validation mode on that many fixed batches of another seed's stream (no batch-to-batch noise)."""
    s = autolr_range_test(get_task(task_name), seed, num_steps=num_steps, val_batches=val_batches)["suggestion"]
    ev = s["evidence"]
    divergence = f"{ev['divergence_lr']:.2g}" if "divergence_lr" in ev else "none"
    minimum = f", minimum {ev['min_loss_lr']:.2g}" if "min_loss_lr" in ev else ""
    lr = "None" if s["lr"] is None else f"{s['lr']:.3g}"
    kind = f", validation mode ({val_batches} batches)" if val_batches else ""
    return (f"seed {seed}, {num_steps} steps{kind}: drop {ev.get('snr', float('nan')):.1f}x noise{minimum}, "
            f"divergence {divergence}, suggestion {lr} (confidence {s['confidence']:.2f})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="adding_lstm_adam")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.0464])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the task's budget)")
    parser.add_argument("--sweeps", type=int, nargs="+", default=[100, 300], help="range-test lengths")
    parser.add_argument("--val-batches", type=int, default=8, help="also sweep in validation mode (0: don't)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("autolr").setLevel(logging.ERROR)  # the low-confidence warnings: the lines below say it
    print(f"# {args.task}: training loss per {BLOCK}-step block at a constant LR")
    for seed in args.seeds:
        for lr in args.lrs:
            blocks = loss_blocks(args.task, seed, lr, args.steps)
            print(f"seed {seed}, lr {lr:g}: " + " ".join(f"{v:.2f}" for v in blocks))
    print(f"\n# {args.task}: what the range test reads")
    for seed in args.seeds:
        for n in args.sweeps:
            print(sweep(args.task, seed, n))
        if args.val_batches:
            print(sweep(args.task, seed, args.sweeps[0], args.val_batches))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

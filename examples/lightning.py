"""A PyTorch Lightning fit, auto-tuned by one callback (the lines marked ``# autolr``).

Run it with::

    pip install "torch-autolr[lightning]"
    python examples/lightning.py

A small byte-level language model (an MLP with LayerNorm over the previous 16 bytes, AdamW) learns the Python
documentation that ships with the interpreter. Nothing is downloaded. The script

1. trains it 3 epochs at the module's own ``lr=1e-3`` (no schedule), as a baseline;
2. trains it again with ``AutoLRCallback(schedule="auto", weight_decay="auto")``: the range test runs at fit
   start through the module's own ``training_step`` (with ``gradient_clip_val`` and
   ``accumulate_grad_batches=2``, as training runs it), everything is restored, and the plan (LR, warmup +
   cosine, weight decay with the biases and LayerNorm left out) is applied. The plan and the LR trace, read
   back from the ``CSVLogger``'s ``metrics.csv`` the callback logged it to, are printed;
3. resumes that fit from its epoch-1 checkpoint with a fresh callback: no new range test, and the LR trajectory
   goes on exactly as in the uninterrupted run.

About 20 s on an idle 2-core CPU.
"""

from __future__ import annotations

import csv
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

# `python examples/lightning.py` puts examples/ first on sys.path, where this file would shadow the lightning package
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from autolr.integrations.lightning import AutoLRCallback  # autolr

CONTEXT, EPOCHS = 16, 3


def byte_windows(count: int, seed: int) -> TensorDataset:
    """(previous CONTEXT bytes, next byte) pairs from the Python docs that ship with the interpreter."""
    import pydoc_data.topics

    text = " ".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)).encode("ascii", "ignore")
    ids = torch.tensor(list(text), dtype=torch.long)
    starts = torch.randint(0, len(ids) - CONTEXT - 1, (count,), generator=torch.Generator().manual_seed(seed))
    windows = torch.stack([ids[s:s + CONTEXT + 1] for s in starts.tolist()])
    return TensorDataset(windows[:, :-1], windows[:, -1])


class ByteModel(pl.LightningModule):
    """A plain LightningModule: nothing in it is for autolr."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Embedding(256, 32), nn.Flatten(), nn.Linear(32 * CONTEXT, 256), nn.GELU(),
                                 nn.LayerNorm(256), nn.Linear(256, 256))

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        loss = F.cross_entropy(self.net(inputs), targets)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        inputs, targets = batch
        self.log("val_loss", F.cross_entropy(self.net(inputs), targets))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.0)


def fit(out: Path, callbacks: list[pl.Callback], ckpt_path: str | None = None) -> tuple[pl.Trainer, ByteModel]:
    torch.manual_seed(0)
    module = ByteModel()
    train = DataLoader(byte_windows(64 * 160, seed=0), batch_size=64, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    val = DataLoader(byte_windows(1024, seed=1), batch_size=256)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", gradient_clip_val=1.0,
                         accumulate_grad_batches=2, logger=CSVLogger(out, name="logs"), log_every_n_steps=20,
                         callbacks=[*callbacks, ModelCheckpoint(dirpath=out / "ckpt", save_top_k=-1)],
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train, val, ckpt_path=ckpt_path)
    return trainer, module


def lr_trace(trainer: pl.Trainer) -> list[tuple[int, float, float]]:
    """(step, LR of group 0, LR of group 1) from the CSV logger's metrics.csv, where the callback logged them."""
    trainer.logger.save()
    with open(trainer.logger.experiment.metrics_file_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("autolr/lr/group0")]
    return [(int(r["step"]), float(r["autolr/lr/group0"]), float(r["autolr/lr/group1"])) for r in rows]


def main() -> None:
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*treespec.*")
    out = Path(tempfile.mkdtemp(prefix="autolr-lightning-"))

    started = time.perf_counter()
    plain, _ = fit(out / "plain", [])
    print(f"lr=1e-3, no schedule: val loss {float(plain.callback_metrics['val_loss']):.3f} "
          f"({time.perf_counter() - started:.0f}s)")

    started = time.perf_counter()
    tune = AutoLRCallback(schedule="auto", weight_decay="auto")  # autolr: the only line
    tuned, _ = fit(out / "tuned", [tune])
    print(f"AutoLRCallback:       val loss {float(tuned.callback_metrics['val_loss']):.3f} "
          f"({time.perf_counter() - started:.0f}s, range test {tune.result.curve.wall_time:.1f}s included)\n")

    s = tune.result.suggestion
    print(f"range test: {len(tune.result.curve)} points, suggested {s.lr:.2e} ({s.method}, "
          f"confidence {s.confidence:.2f})")
    print("plan:")
    for d in tune.plan.decisions:
        value = f"{d.value:.2e}" if isinstance(d.value, float) else d.value
        print(f"  {d.name}: {value} ({d.reason[:110]})")
    trace = lr_trace(tuned)
    print(f"\nLR trace, read back from {Path(tuned.logger.experiment.metrics_file_path).relative_to(out)} "
          f"(every {tuned.log_every_n_steps} steps of {tuned.global_step}):")
    print("  step   lr (weights)   lr (biases, LayerNorm)")
    for step, lr0, lr1 in trace:
        print(f"  {step:4d}   {lr0:.3e}      {lr1:.3e}")

    # resume from the epoch-1 checkpoint, as a new process would: a fresh module, callback and Trainer
    checkpoint = out / "tuned" / "ckpt" / f"epoch=0-step={tuned.global_step // EPOCHS}.ckpt"
    again = AutoLRCallback(schedule="auto", weight_decay="auto")
    resumed, _ = fit(out / "resumed", [again], ckpt_path=str(checkpoint))
    after = lr_trace(resumed)
    same = after == [row for row in trace if row[0] >= tuned.global_step // EPOCHS]
    print(f"\nresumed from {checkpoint.name}: no new range test ({again.plan == tune.plan and 'same plan'}), "
          f"LR trajectory identical to the uninterrupted run: {same}")
    assert same, "the resumed LR trajectory differs"


if __name__ == "__main__":
    main()

"""A Lightning fit with AutoLRCallback under strategy="ddp" on 2 CPU processes, run by tests/test_lightning.py.

Lightning starts rank 1 by running this script again; each rank writes ``rank<r>.json`` into the folder
given as the first argument: its own losses in the sweep, the curve, the plan and the LRs of training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from autolr import Reporter
from autolr.integrations.lightning import AutoLRCallback
from autolr.range_test import range_test_running


class Lit(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 4))
        self.local_losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        if range_test_running():
            self.local_losses.append(float(loss.detach()))
        self.log("train_loss", loss, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


class Flag(Reporter):
    def __init__(self) -> None:
        self.reported = False

    def range_test_end(self, result) -> None:
        self.reported = True

    def decisions(self, decisions) -> None:
        self.reported = True


class Recorder(pl.Callback):
    """Records the LR of every step and writes this rank's report at fit end (in the worker process, whichever
    way Lightning launched it)."""

    def __init__(self, initial: dict, autolr: AutoLRCallback, flag: Flag, out: Path) -> None:
        self.initial, self.autolr, self.flag, self.out = initial, autolr, flag, out
        self.lrs: list[list[float]] = []
        self.equal = None

    def on_train_start(self, trainer, pl_module):
        self.equal = all(torch.equal(v, self.initial[k]) for k, v in pl_module.state_dict().items())

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append([float(g["lr"]) for g in optimizer.param_groups])

    def on_fit_end(self, trainer, pl_module):
        result, plan = self.autolr.result, self.autolr.plan
        report = {
            "world_size": trainer.world_size, "local_losses": pl_module.local_losses,
            "sweep_calls": len(pl_module.local_losses), "curve": list(result.curve.losses),
            "suggested_lr": result.suggestion.lr, "plan": plan.to_dict(),
            "global_step": trainer.global_step, "estimated": trainer.estimated_stepping_batches,
            "lrs": self.lrs, "params_equal_at_start": self.equal, "reported": self.flag.reported,
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def main(out: Path, strategy: str = "ddp") -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    train = DataLoader(TensorDataset(x, x[:, :4].argmax(1)), batch_size=16, shuffle=True)
    module = Lit()
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    flag = Flag()
    callback = AutoLRCallback(num_steps=40, reporters=[flag])
    trainer = pl.Trainer(
        strategy=strategy, accelerator="cpu", devices=2, max_epochs=2, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False,
        callbacks=[callback, Recorder(initial, callback, flag, out)],
    )
    trainer.fit(module, train)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])

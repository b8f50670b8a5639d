"""An Ignite run with AutoLRHandler on 2 CPU processes (gloo), launched by ``ignite.distributed.Parallel``; run by
tests/test_ignite.py as ``python tests/ignite_ddp_job.py OUT_DIR`` (a subprocess with a timeout).

Each rank writes ``rank<r>.pt`` into OUT_DIR: its own losses in the sweep, the curve, the plan, the LRs of
training, whether its state was restored before the first real iteration and whether it reported.
"""

from __future__ import annotations

import socket
import sys
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from torch import nn
from torch.utils.data import TensorDataset

from autolr import Reporter
from autolr.integrations.ignite import AutoLRHandler
from autolr.range_test import range_test_running


class Flag(Reporter):
    def __init__(self) -> None:
        self.reported = False

    def range_test_end(self, result: Any) -> None:
        self.reported = True

    def decisions(self, decisions: Any) -> None:
        self.reported = True


def dataset(n: int = 160) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, x[:, :4].argmax(1))


def training(local_rank: int, out: Path) -> None:
    torch.set_num_threads(1)
    rank = idist.get_rank()
    record: dict[str, Any] = {}
    try:
        torch.manual_seed(0)  # the same initial model on every rank
        model = idist.auto_model(nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 4)))
        optimizer = idist.auto_optim(torch.optim.AdamW(model.parameters(), lr=1e-3))
        data = idist.auto_dataloader(dataset(), batch_size=32, shuffle=True)  # 16 a rank, 5 batches a rank
        local: list[float] = []
        lrs: list[list[float]] = []

        def update(engine: Engine, batch: Any) -> torch.Tensor:
            model.train()
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
            loss.backward()
            if range_test_running():
                local.append(float(loss.detach()))
            else:
                lrs.append([float(g["lr"]) for g in optimizer.param_groups])
            optimizer.step()
            return loss.detach()

        trainer = Engine(update)
        flag = Flag()
        handler = AutoLRHandler(model, optimizer, num_steps=20, progress=False, reporters=[flag]).attach(trainer)
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        expected = torch.Generator()
        expected.set_state(torch.get_rng_state())
        torch.empty((), dtype=torch.int64).random_(generator=expected)  # the base seed iter(DataLoader) draws
        restored: list[bool] = []

        @trainer.on(Events.ITERATION_STARTED(once=1))
        def check(_: Engine) -> None:
            now = model.state_dict()
            restored.extend([all(torch.equal(v, now[k]) for k, v in before.items()),
                             torch.equal(expected.get_state(), torch.get_rng_state()), not optimizer.state])

        trainer.run(data, max_epochs=2)
        record = {
            "world_size": idist.get_world_size(), "local": local, "losses": list(handler.result.curve.losses),
            "plan": handler.plan.to_dict(), "lrs": lrs, "restored": restored, "sweep_calls": len(local),
            "params": {k: v.detach().clone() for k, v in model.state_dict().items()}, "reported": flag.reported,
        }
    except Exception:
        record = {"error": traceback.format_exc()}
    torch.save(_plain(record), out / f"rank{rank}.pt")


def _plain(value: Any) -> Any:
    """Only what torch.load(weights_only=True) reads back: plain containers, numbers, strings and tensors."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if not torch.is_tensor(value) and hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(out: Path) -> None:
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_port=free_port(), start_method="fork",
                        timeout=timedelta(seconds=60)) as parallel:
        parallel.run(training, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

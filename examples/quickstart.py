"""Quickstart: a learning-rate range test on a small generated task, about 6 s on an idle 2-core CPU.

Run it with::

    pip install -e ".[dev]" && python examples/quickstart.py

It trains a small MLP with BatchNorm on a generated 10-class problem, sweeps the learning rate of AdamW
from 1e-7 to 10, prints the suggestion with its reason and alternatives, checks that the model came back
exactly as it was, and saves the plot to ``autolr_quickstart.png``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autolr


def make_task(seed: int = 0) -> tuple[nn.Module, DataLoader]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4096, 32, generator=g)
    teacher = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 10))
    with torch.no_grad():
        y = teacher(x).argmax(dim=1)
    model = nn.Sequential(nn.Linear(32, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
    return model, DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    model, loader = make_task()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    # A progress bar (on a terminal), then the summary (range, stop reason, suggestion, reason, alternatives).
    result = autolr.lr_find(model, optimizer, loader, loss_fn=nn.CrossEntropyLoss())

    restored = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    print(f"model restored bit for bit: {restored}; optimizer lr still {optimizer.param_groups[0]['lr']}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        ax = result.plot()
        ax.figure.savefig("autolr_quickstart.png", dpi=120, bbox_inches="tight")
        print("plot saved to autolr_quickstart.png")
    except ImportError:
        print('matplotlib is not installed: pip install "torch-autolr[plot]" for the plot')
    if result.lr is not None:
        result.apply(optimizer)
        print(f"applied: optimizer lr is now {optimizer.param_groups[0]['lr']:.2e}")


if __name__ == "__main__":
    main()

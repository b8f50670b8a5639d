"""An existing plain PyTorch loop, made auto-tuned by adding four lines (marked ``# autolr``).

Run it with::

    python examples/plain_loop.py

A small CNN with BatchNorm learns to classify generated 12x12 "shapes" images with SGD + momentum.
``AutoLR`` runs the range test, picks the peak LR of a one-cycle schedule from the curve, splits the
param groups so biases and BatchNorm get no weight decay, and steps the schedule itself after every
optimizer step. The script prints the plan with its reasons (once, on stderr, right after the range test)
and the LR trajectory. About 7 s on an idle 2-core CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autolr


def shapes(n: int, seed: int) -> TensorDataset:
    """Images of a horizontal bar, a vertical bar, a square or a cross, with noise; label = shape."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = 0.4 * torch.randn(n, 1, 12, 12, generator=g)
    for i, label in enumerate(labels.tolist()):
        r, c = torch.randint(2, 10, (2,), generator=g).tolist()
        if label in (0, 3):
            images[i, 0, r, 1:11] += 1.0
        if label in (1, 3):
            images[i, 0, 1:11, c] += 1.0
        if label == 2:
            images[i, 0, r - 2 : r + 2, c - 2 : c + 2] += 1.0
    return TensorDataset(images, labels)


def main() -> None:
    torch.manual_seed(0)
    train = DataLoader(shapes(2048, seed=0), batch_size=64, shuffle=True)
    val = DataLoader(shapes(512, seed=1), batch_size=256)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 4),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    epochs = 4

    tuner = autolr.AutoLR(model, optimizer, schedule="auto", weight_decay="auto")  # autolr
    tuner.lr_find(train, loss_fn, epochs=epochs)  # autolr: range test, plan (printed), scheduler attached

    trajectory = []
    for epoch in range(epochs):
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()  # the schedule steps itself after this
            tuner.observe(loss)  # autolr: monitoring (batched, no per-step sync)
            trajectory.append(optimizer.param_groups[0]["lr"])
        model.eval()
        with torch.no_grad():
            val_loss = sum(loss_fn(model(x), y).item() * len(y) for x, y in val) / len(val.dataset)
            accuracy = sum((model(x).argmax(1) == y).sum().item() for x, y in val) / len(val.dataset)
        tuner.end_epoch(val_loss=val_loss)  # autolr
        print(f"epoch {epoch + 1}: val loss {val_loss:.4f}, accuracy {accuracy:.1%}, lr {trajectory[-1]:.2e}")

    print("\nLR trajectory (every 16th step):")
    print("  " + " ".join(f"{lr:.1e}" for lr in trajectory[::16]))
    print(f"  peak {max(trajectory):.2e} at step {trajectory.index(max(trajectory))} of {len(trajectory)}")
    # The plan was printed once already (stderr, right after the range test); tuner.summary() returns it again.


if __name__ == "__main__":
    main()

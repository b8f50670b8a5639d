"""Tiny deterministic training tasks shared by the tests."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def classification_data(n: int = 256, features: int = 8, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    w = torch.randn(features, classes, generator=g)
    y = (x @ w).argmax(dim=1)
    return x, y


def loader(n: int = 256, batch_size: int = 32, shuffle: bool = True, seed: int = 0) -> DataLoader:
    x, y = classification_data(n, seed=seed)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


def batches(count: int = 8, batch_size: int = 32, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = classification_data(count * batch_size, seed=seed)
    return list(zip(x.split(batch_size), y.split(batch_size)))


class BNDropoutNet(nn.Module):
    """An MLP with BatchNorm (running stats), Dropout (RNG) and a non-persistent buffer."""

    def __init__(self, features: int = 8, hidden: int = 32, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, classes)
        )
        self.register_buffer("calls", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        return self.body(x)


def unlearnable_regression(steps: int = 100) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A zero-initialised linear model and batches whose targets are independent of the inputs: no LR lowers
    the loss, and large LRs make SGD blow up. A range test on it gives a flat curve, then divergence."""
    model = nn.Linear(10, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(64, 10, generator=g), torch.randn(64, 1, generator=g)) for _ in range(steps)]
    return model, data


def two_group_optimizer(model: BNDropoutNet, lr: float = 0.01) -> torch.optim.Optimizer:
    """SGD with the first layer at lr and the rest at lr/10 (discriminative learning rates)."""
    first = list(model.body[0].parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in first)]
    return torch.optim.SGD([{"params": first, "lr": lr}, {"params": rest, "lr": lr / 10}], momentum=0.9)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, data, steps: int, scaler=None) -> list[float]:
    """Plain training loop used as the reference."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    out = []
    for i in range(steps):
        x, y = data[i % len(data)]
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        out.append(loss.item())
    return out


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Everything comparable: params, all buffers, grads, optimizer state and groups, module modes."""
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "grads": {k: None if v.grad is None else v.grad.clone() for k, v in model.named_parameters()},
        "buffers": {k: v.clone() for k, v in model.named_buffers()},
        "modes": {k: m.training for k, m in model.named_modules()},
        "opt": copy.deepcopy(optimizer.state_dict()),
    }


def assert_same_state(a: dict, b: dict) -> None:
    for key in ("params", "buffers"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"
    for k in a["grads"]:
        assert (a["grads"][k] is None) == (b["grads"][k] is None), f"grad {k}"
        if a["grads"][k] is not None:
            assert torch.equal(a["grads"][k], b["grads"][k]), f"grad {k} differs"
    assert a["modes"] == b["modes"]
    sa, sb = a["opt"], b["opt"]
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        assert sa["state"][i].keys() == sb["state"][i].keys()
        for k, v in sa["state"][i].items():
            w = sb["state"][i][k]
            assert torch.equal(v, w) if torch.is_tensor(v) else v == w, f"optimizer state {i}.{k}"


def count_host_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count calls of the tensor methods that read values back to the host (patched until monkeypatch.undo())."""
    counts = {"item": 0, "cpu": 0, "tolist": 0, "numpy": 0}
    for name in counts:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *a, _name=name, _orig=original, **k):
            counts[_name] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return counts

"""Snapshot: exact, in-place restore of model, optimizer, scaler and RNG state, in memory or on disk."""

from __future__ import annotations

import os
import random
import stat

import numpy as np
import pytest
import torch
from torch import nn

from autolr import ConfigurationError, Snapshot
from tests import tasks


def _disturb(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    """Train with a silly LR, flip modes and flags, touch the RNGs: everything a range test may do."""
    for g in optimizer.param_groups:
        g["lr"] = 5.0
        g["initial_lr"] = 1.0
    tasks.train(model, optimizer, tasks.batches(), steps)
    model.body[1].eval()
    model.body[0].weight.requires_grad_(False)
    random.random(), np.random.rand(), torch.rand(1)


@pytest.mark.parametrize("storage", ["cpu", "disk"])
@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adamw"])
def test_restore_is_exact(storage: str, opt_name: str) -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.AdamW(model.parameters(), lr=0.001) if opt_name == "adamw" else tasks.two_group_optimizer(model)
    tasks.train(model, opt, tasks.batches(), 2)  # optimizer has state, params have grads
    model.body[3].eval()  # a submodule the user froze in eval mode must stay so
    before = tasks.full_state(model, opt)
    rng = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    param_ids = [id(p) for p in model.parameters()]
    state_ids = {k: id(v) for k, v in opt.state[next(iter(model.parameters()))].items()}

    with Snapshot.take(model, opt, storage=storage):
        _disturb(model, opt)
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    assert [id(p) for p in model.parameters()] == param_ids  # restored in place
    assert {k: id(v) for k, v in opt.state[next(iter(model.parameters()))].items()} == state_ids
    assert random.getstate() == rng[0]
    assert np.array_equal(np.random.get_state()[1], rng[1])
    assert torch.equal(torch.get_rng_state(), rng[2])
    assert "initial_lr" not in opt.param_groups[0]


def test_lazily_created_optimizer_state_is_removed() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    assert len(opt.state) == 0
    with Snapshot.take(model, opt):
        tasks.train(model, opt, tasks.batches(), 2)
        assert len(opt.state) > 0
    assert len(opt.state) == 0
    assert all(p.grad is None for p in model.parameters())


def test_restores_after_exception_and_keyboard_interrupt() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = tasks.full_state(model, opt)
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), Snapshot.take(model, opt):
            _disturb(model, opt)
            raise exc
        tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_tensor_lr_is_updated_in_place_and_stays_a_tensor() -> None:
    model = nn.Linear(3, 1)
    lr = torch.tensor(0.01)
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    with Snapshot.take(model, opt):
        opt.param_groups[0]["lr"].fill_(3.0)
    assert opt.param_groups[0]["lr"] is lr
    assert lr.item() == pytest.approx(0.01)


def test_grad_scaler_state_is_restored() -> None:
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    before = scaler.state_dict()
    with Snapshot.take(model, opt, scaler=scaler):
        loss = model(torch.randn(4, 3)).sum() * float("inf")
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        assert scaler.get_scale() < before["scale"]  # the inf step lowered the scale
    assert scaler.state_dict() == before


def test_disk_snapshot_is_private_and_removed() -> None:
    model = nn.Linear(3, 1)
    snap = Snapshot.take(model, storage="disk")
    directory = snap._store.directory
    assert directory is not None and os.path.isdir(directory)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert len(os.listdir(directory)) >= 2
    with pytest.raises(ValueError), snap:
        raise ValueError("failure inside the block")
    assert not os.path.exists(directory)


def test_extra_stateful_objects_and_closed_snapshot() -> None:
    model, ema = nn.Linear(2, 2), nn.Linear(2, 2)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    snap = Snapshot.take(model, extra={"ema": ema})
    with torch.no_grad():
        ema.weight.add_(1.0)
    snap.restore()
    assert all(torch.equal(v, ema.state_dict()[k]) for k, v in before.items())
    snap.close()
    with pytest.raises(RuntimeError, match="closed"):
        snap.restore()


def test_bad_storage_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="'cpu' or 'disk'"):
        Snapshot.take(nn.Linear(1, 1), storage="gpu")  # type: ignore[arg-type]


@pytest.mark.cuda
def test_cuda_snapshot_uses_no_gpu_memory() -> None:
    model = nn.Sequential(nn.Linear(1024, 1024), nn.BatchNorm1d(1024)).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(8, 1024, device="cuda")).sum().backward()
    opt.step()
    before = tasks.full_state(model, opt)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with Snapshot.take(model, opt) as snap:
        assert torch.cuda.max_memory_allocated() == base  # 0 extra bytes on the GPU
        assert all(t.is_pinned() for t in snap._store._memory["p0"].values())
        _disturb_cuda = model(torch.randn(8, 1024, device="cuda")).sum()
        _disturb_cuda.backward()
        opt.step()
    tasks.assert_same_state(before, tasks.full_state(model, opt))

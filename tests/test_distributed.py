"""lr_find under torch.distributed, with real processes: 2 ranks, gloo backend, CPU.

Each launch starts two worker processes that run several scenarios one after the other (a process start
costs seconds; a scenario costs milliseconds) and save what they saw to ``<scenario>.rank<r>.pt`` in a tmp
dir: curves, suggestions, full state before and after, LR trajectories, the errors they raised. The tests
below read both ranks' files and compare them.

Nothing can hang: a launch that does not finish within ``LAUNCH_TIMEOUT_S`` fails the tests and its
processes are killed, and every process group has a 30 s timeout, so a rank left waiting in a collective
raises instead of waiting for the default 30 minutes.

Workers are forked from a forkserver that imported torch (and FSDP) once, so the second launch is cheap.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import autolr
from autolr import range_test
from autolr.report import Reporter
from autolr.snapshot import Snapshot
from tests import tasks

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(
        not (torch_dist.is_available() and torch_dist.is_gloo_available()), reason="needs torch.distributed + gloo"
    ),
]

WORLD_SIZE = 2
LAUNCH_TIMEOUT_S = 120.0  # the whole launch (all its scenarios); a healthy one takes ~10 s on 2 cores
PG_TIMEOUT = timedelta(seconds=30)
_PRELOAD = ["torch", "torch.nn.parallel", "torch.distributed.fsdp", "torch._dynamo", "autolr", "tests.tasks"]


# == launching ===========================================================================================


def _launch(tmp: Path, scenarios: list[str], *, world_size: int = WORLD_SIZE, backend: str = "gloo") -> None:
    """Run the named scenarios on ``world_size`` fresh processes; fail (and kill them) if they do not finish."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "forkserver":
        multiprocessing.set_forkserver_preload(_PRELOAD)  # no effect once the server runs: then it has them
    context = torch.multiprocessing.start_processes(
        _worker, args=(str(tmp), scenarios, world_size, backend), nprocs=world_size, join=False,
        start_method=method,
    )
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):  # raises if a worker failed
            if time.monotonic() >= deadline:
                pytest.fail(f"distributed workers did not finish within {LAUNCH_TIMEOUT_S:.0f}s: hang? ({scenarios})")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join(5)


def _worker(rank: int, tmp: str, scenarios: list[str], world_size: int, backend: str) -> None:
    """One rank: join the process group, run each scenario, save its record (or its traceback)."""
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    torch_dist.init_process_group(
        backend, init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world_size, timeout=PG_TIMEOUT
    )
    try:
        for name in scenarios:
            torch.manual_seed(0)  # the same model on every rank
            started = time.perf_counter()
            try:
                record = SCENARIOS[name](rank, Path(tmp))
            except Exception:
                record = {"error": traceback.format_exc()}
            record["seconds"] = time.perf_counter() - started
            torch.save(record, Path(tmp) / f"{name}.rank{rank}.pt")
            torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()


class _Runs:
    """The records of one launch, by scenario: ``runs["nan"]`` is ``[rank 0's record, rank 1's record]``."""

    def __init__(self, tmp: Path, world_size: int = WORLD_SIZE) -> None:
        self.tmp, self.world_size = tmp, world_size

    def __getitem__(self, name: str) -> list[dict[str, Any]]:
        records = []
        for rank in range(self.world_size):
            record = torch.load(self.tmp / f"{name}.rank{rank}.pt", weights_only=True)
            if "error" in record:
                pytest.fail(f"scenario {name!r} failed on rank {rank}:\n{record['error']}")
            records.append(record)
        return records


# == scenarios (run inside the workers) ====================================================================


def _ddp(model: nn.Module) -> nn.Module:
    return nn.parallel.DistributedDataParallel(model)  # broadcast_buffers=True: rank 0's BN stats each forward


def _shard(rank: int, count: int, batch_size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's own batches (different on every rank)."""
    return tasks.batches(count=count, batch_size=batch_size, seed=100 + rank)


def _curve(result: autolr.LRFindResult) -> dict[str, Any]:
    c = result.curve
    return {
        "lrs": list(map(float, c.lrs)), "losses": list(map(float, c.losses)), "stop_reason": c.stop_reason,
        "suggested_lr": result.lr, "method": result.suggestion.method,
        "world_size": result.settings.get("world_size"),
    }


def _record_lrs(optimizer: torch.optim.Optimizer) -> tuple[list[list[float]], Any]:
    """Record every group's LR at each optimizer step: (the list it fills, the hook handle)."""
    seen: list[list[float]] = []
    handle = optimizer.register_step_pre_hook(lambda opt, *_: seen.append([float(g["lr"]) for g in opt.param_groups]))
    return seen, handle


def _scenario_restore(rank: int, tmp: Path) -> dict[str, Any]:
    """(a) + (e): DDP with BatchNorm, Dropout, 2 param groups, a DistributedSampler at epoch 2, a diverging sweep."""
    x, y = tasks.classification_data(n=128)
    sampler = DistributedSampler(TensorDataset(x, y), shuffle=True, seed=3)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, sampler=sampler)
    sampler.set_epoch(2)
    module = tasks.BNDropoutNet()
    opt = tasks.two_group_optimizer(module, lr=0.01)
    model = _ddp(module)
    tasks.train(model, opt, _shard(rank, 2), 2)  # mid-training: momentum, grads and BN stats exist
    batches_before = [b[0] for b in loader]
    rng_before = torch.get_rng_state()
    before = tasks.full_state(model, opt)
    seen, handle = _record_lrs(opt)
    result = autolr.lr_find(model, opt, loader, loss_fn=nn.CrossEntropyLoss(), num_steps=40, end_lr=100.0,
                            progress=False)
    handle.remove()
    return {
        **_curve(result), "before": before, "after": tasks.full_state(model, opt), "lr_trajectory": seen,
        "rng_before": rng_before, "rng_after": torch.get_rng_state(), "epoch_after": sampler.epoch,
        "batches_before": batches_before, "batches_after": [b[0] for b in loader],
        "lrs_after": [float(g["lr"]) for g in opt.param_groups],
    }


def _scenario_nan(rank: int, tmp: Path) -> dict[str, Any]:
    """(b): rank 1's 7th loss is NaN; rank 0's losses are all finite."""
    module = tasks.BNDropoutNet()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    model = _ddp(module)
    calls = [0]

    def compute_loss(batch: Any) -> torch.Tensor:
        calls[0] += 1
        loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
        return loss * math.nan if rank == 1 and calls[0] == 7 else loss

    before = tasks.full_state(model, opt)
    result = autolr.lr_find(model, opt, _shard(rank, 4), compute_loss=compute_loss, num_steps=40,
                            start_lr=1e-6, end_lr=1e-2, progress=False)
    return {**_curve(result), "calls": calls[0], "before": before, "after": tasks.full_state(model, opt)}


class _Counting:
    """An iterable of batches (no len) that counts the batches it served."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches, self.served = batches, 0

    def __iter__(self) -> Any:
        for batch in self.batches:
            self.served += 1
            yield batch


def _scenario_uneven(rank: int, tmp: Path) -> dict[str, Any]:
    """(c): rank 0 has 5 batches, rank 1 has 3; 20 steps cycle both."""
    model = _ddp(tasks.BNDropoutNet())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data = _Counting(_shard(rank, 5 if rank == 0 else 3))
    result = autolr.lr_find(model, opt, data, loss_fn=nn.CrossEntropyLoss(), num_steps=20, start_lr=1e-5,
                            end_lr=1e-2, progress=False)
    return {**_curve(result), "served": data.served}


def _scenario_accumulation(rank: int, tmp: Path) -> dict[str, Any]:
    """Gradient accumulation under DDP: one gradient all-reduce per optimizer step (no_sync on the other
    micro-batches), and the gradients each step applies are identical on both ranks."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    model = _ddp(tasks.BNDropoutNet())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    calls = [0]

    def counting_hook(state, bucket):  # no annotations: DDP rejects any but GradBucket
        calls[0] += 1
        return allreduce_hook(state, bucket)

    model.register_comm_hook(None, counting_hook)
    grads: list[torch.Tensor] = []
    handle = opt.register_step_pre_hook(
        lambda o, *_: grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]).clone())
    )
    result = autolr.lr_find(model, opt, _shard(rank, 6), loss_fn=nn.CrossEntropyLoss(), num_steps=10,
                            start_lr=1e-5, end_lr=1e-2, accumulation_steps=3, progress=False)
    handle.remove()
    return {**_curve(result), "comm_calls": calls[0], "grads": grads}


def _raised(fn: Callable[[], Any]) -> dict[str, Any]:
    try:
        fn()
    except Exception as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}
    return {"raised": None, "message": ""}


def _scenario_empty(rank: int, tmp: Path) -> dict[str, Any]:
    """(c'): rank 1's loader (len 0) or validation loader is empty; rank 0's are not."""
    model = _ddp(tasks.BNDropoutNet())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = tasks.full_state(model, opt)
    batches = _shard(rank, 2)
    find = dict(loss_fn=nn.CrossEntropyLoss(), num_steps=10, progress=False)
    train = _raised(lambda: autolr.lr_find(model, opt, batches if rank == 0 else [], **find))
    val = _raised(lambda: autolr.lr_find(model, opt, batches, val_loader=batches if rank == 0 else [], **find))
    return {"train": train, "val": val, "before": before, "after": tasks.full_state(model, opt)}


def _scenario_suggest_fails(rank: int, tmp: Path) -> dict[str, Any]:
    """The suggestion (computed on rank 0 only) raises on rank 0."""
    model = _ddp(tasks.BNDropoutNet())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    failing = mock.patch.object(range_test._suggest, "suggest", side_effect=RuntimeError("boom on rank 0"))
    with failing if rank == 0 else contextlib.nullcontext():
        return _raised(lambda: autolr.lr_find(model, opt, _shard(rank, 2), loss_fn=nn.CrossEntropyLoss(),
                                              num_steps=10, progress=False))


class _FileReporter(Reporter):
    """Writes the suggestion to ``report.rank<r>.json``: shows which ranks report."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def range_test_end(self, result: autolr.LRFindResult) -> None:
        path = self.directory / f"report.rank{torch_dist.get_rank()}.json"
        path.write_text(json.dumps({"lr": result.lr, "points": len(result.curve)}))


def _scenario_reporters(rank: int, tmp: Path) -> dict[str, Any]:
    """(d): a file-writing reporter and, when available, W&B offline; only rank 0 may write."""
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        del os.environ[key]
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(tmp / "wandb_dir"),
                      WANDB_CACHE_DIR=str(tmp / "wandb_cache"), WANDB_CONFIG_DIR=str(tmp / "wandb_config"),
                      WANDB_DATA_DIR=str(tmp / "wandb_data"))
    (tmp / "wandb_dir").mkdir(exist_ok=True)
    reporters: list[Reporter] = [_FileReporter(tmp)]
    try:
        from autolr.integrations.wandb import WandbReporter

        reporters.append(WandbReporter(project="autolr-distributed-test"))
    except ImportError:
        pass
    model = _ddp(tasks.BNDropoutNet())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    result = autolr.lr_find(model, opt, _shard(rank, 2), loss_fn=nn.CrossEntropyLoss(), num_steps=12,
                            progress=False, reporters=reporters)
    wandb_run = None if len(reporters) < 2 else reporters[1].run  # type: ignore[attr-defined]
    for reporter in reporters:
        reporter.close()
    return {**_curve(result), "wandb": len(reporters) == 2, "wandb_run_here": wandb_run is not None}


# -- FSDP2 ---------------------------------------------------------------------------------------------------


def _fsdp2_model(reshard_after_forward: bool = True) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    model = nn.Sequential(nn.Linear(8, 33), nn.ReLU(), nn.Linear(33, 3))  # 33 and 3 rows: uneven shards
    for layer in (model[0], model[2]):
        fully_shard(layer, reshard_after_forward=reshard_after_forward)
    fully_shard(model, reshard_after_forward=reshard_after_forward)
    return model


def _local_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """This rank's shards of params, grads and optimizer state, and which of them are DTensors."""
    out: dict[str, Any] = {}
    for i, p in enumerate(opt.param_groups[0]["params"]):
        tensors = {"data": p, "grad": p.grad, **{f"state.{k}": v for k, v in opt.state.get(p, {}).items()}}
        for k, v in tensors.items():
            if v is not None:
                out[f"{i}.{k}"] = (type(v).__name__, (v.to_local() if hasattr(v, "to_local") else v).detach().clone())
    return out


def _fsdp_steps(model: nn.Module, opt: torch.optim.Optimizer, batches: list[Any]) -> list[float]:
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _scenario_fsdp2(rank: int, tmp: Path) -> dict[str, Any]:
    """FSDP2: snapshot size, bitwise restore of shards after a diverging lr_find, exact replay afterwards."""
    model = _fsdp2_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = _shard(rank, 4)
    _fsdp_steps(model, opt, batches[:2])
    with Snapshot.take(model, rng=False) as params_and_grads:
        snapshot_bytes = params_and_grads.nbytes
    local_bytes = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    full_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    before = _local_state(model, opt)
    with Snapshot.take(model, opt, rng=False):  # tensors gone or replaced: rebuilt as DTensors with their sharding
        opt.zero_grad(set_to_none=True)
        for state in opt.state.values():
            state["exp_avg"] = torch.zeros(1)
    rebuilt = _local_state(model, opt)
    with Snapshot.take(model, opt):  # reference: the next 3 steps without a range test
        reference = _fsdp_steps(model, opt, batches[1:])
    result = autolr.lr_find(model, opt, batches, loss_fn=nn.CrossEntropyLoss(), num_steps=30, end_lr=100.0,
                            progress=False)
    after = _local_state(model, opt)
    return {
        **_curve(result), "before": before, "after": after, "rebuilt": rebuilt, "reference": reference,
        "replay": _fsdp_steps(model, opt, batches[1:]), "snapshot_bytes": snapshot_bytes,
        "local_bytes": local_bytes, "full_bytes": full_bytes,
    }


def _scenario_fsdp2_unsharded(rank: int, tmp: Path) -> dict[str, Any]:
    """FSDP2 with reshard_after_forward=False, left unsharded by an evaluation forward before lr_find."""
    model = _fsdp2_model(reshard_after_forward=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = _shard(rank, 4)
    _fsdp_steps(model, opt, batches[:2])

    def evaluate() -> bool:
        with torch.no_grad():
            model(batches[0][0])
        return any(not hasattr(p, "to_local") for p in model.parameters())  # full tensors registered

    unsharded = evaluate()
    before = _local_state(model, opt)
    local_bytes = sum(t.numel() * t.element_size() for _, t in before.values())  # shards of params, grads, state
    with Snapshot.take(model, opt, rng=False) as snapshot:
        snapshot_bytes = snapshot.nbytes
    evaluate()
    result = autolr.lr_find(model, opt, batches, loss_fn=nn.CrossEntropyLoss(), num_steps=20, progress=False)
    return {**_curve(result), "unsharded": unsharded, "before": before, "after": _local_state(model, opt),
            "snapshot_bytes": snapshot_bytes, "local_bytes": local_bytes}


# -- FSDP1 (needs CUDA) ----------------------------------------------------------------------------------


def _scenario_fsdp1(rank: int, tmp: Path) -> dict[str, Any]:
    """FSDP1 (FullyShardedDataParallel): flat local shards restored bitwise, with and without use_orig_params."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    out: dict[str, Any] = {}
    for orig in (False, True):
        torch.manual_seed(0)
        module = nn.Sequential(nn.Linear(8, 33), nn.ReLU(), nn.Linear(33, 3)).cuda()
        model = FullyShardedDataParallel(module, use_orig_params=orig)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        batches = [(x.cuda(), y.cuda()) for x, y in _shard(rank, 4)]
        _fsdp_steps(model, opt, batches[:2])
        before = _local_state(model, opt)
        result = autolr.lr_find(model, opt, batches, loss_fn=nn.CrossEntropyLoss(), num_steps=20, end_lr=100.0,
                                progress=False)
        out[f"orig={orig}"] = {**_curve(result), "before": before, "after": _local_state(model, opt)}
    return out


def _scenario_tuner(rank: int, tmp: Path) -> dict[str, Any]:
    """AutoLR under DDP: the same plan and LR trajectory on every rank; a NaN on rank 1 only makes both
    ranks' guards intervene at the same step, and they stay in sync."""
    module = tasks.BNDropoutNet()
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    model = _ddp(module)
    tuner = autolr.AutoLR(model, opt, schedule="onecycle", weight_decay="auto", guard=True, guard_every=5,
                          check_every=2, progress=False)
    plan = tuner.lr_find(_shard(rank, 4), nn.CrossEntropyLoss(), total_steps=30, num_steps=40)
    seen, handle = _record_lrs(opt)
    data = _shard(rank, 4)
    for i in range(24):
        x, y = data[i % len(data)]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        tuner.observe(loss * float("nan") if (rank == 1 and i == 15) else loss)
    handle.remove()
    tuner.detach()
    return {
        "plan": json.dumps(plan.to_dict(), sort_keys=True), "lr_trajectory": seen,
        "guards": [(d.step, d.value) for d in tuner.decisions if d.name == "guard"],
        "params": [p.detach().clone() for p in model.parameters()], "groups": len(opt.param_groups),
    }


def _scenario_resweep(rank: int, tmp: Path) -> dict[str, Any]:
    """A fine-tune (a trained regression MLP, LayerNorm scales moved) whose sweep is flat: every rank sweeps a
    second time, and the ranks agree on the curve and the edge read off it."""
    module = nn.Sequential(nn.Linear(4, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):  # the same clean data on both ranks: the same trained model
        x = torch.rand(64, 4, generator=g) * 2 - 1
        nn.functional.mse_loss(module(x), torch.sin(2 * x[:, :1] + x[:, 1:2])).backward()
        opt.step()
        opt.zero_grad()
    model = _ddp(module)
    g = torch.Generator().manual_seed(10 + rank)  # this rank's own shard of noisy labels: nothing left to learn
    x = torch.rand(180 * 8, 4, generator=g) * 2 - 1
    y = torch.sin(2 * x[:, :1] + x[:, 1:2]) + 0.5 * torch.randn(180 * 8, 1, generator=g)
    before = tasks.full_state(model, opt)
    result = autolr.lr_find(model, opt, list(zip(x.split(8), y.split(8))), loss_fn=nn.MSELoss(), num_steps=60,
                            progress=False)
    return {**_curve(result), "swept_twice": result.settings["swept_twice"], "steps": result.curve.num_steps,
            "confidence": result.suggestion.confidence, "before": before, "after": tasks.full_state(model, opt)}


SCENARIOS: dict[str, Callable[[int, Path], dict[str, Any]]] = {
    "restore": _scenario_restore,
    "nan": _scenario_nan,
    "uneven": _scenario_uneven,
    "empty": _scenario_empty,
    "suggest_fails": _scenario_suggest_fails,
    "reporters": _scenario_reporters,
    "fsdp2": _scenario_fsdp2,
    "fsdp2_unsharded": _scenario_fsdp2_unsharded,
    "fsdp1": _scenario_fsdp1,
    "tuner": _scenario_tuner,
    "accumulation": _scenario_accumulation,
    "resweep": _scenario_resweep,
}


# == fixtures: one launch per group of scenarios ============================================================


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    tmp = tmp_path_factory.mktemp("ddp")
    _launch(tmp, ["restore", "nan", "uneven", "empty", "suggest_fails", "reporters", "tuner", "accumulation",
                  "resweep"])
    return _Runs(tmp)


@pytest.fixture(scope="module")
def fsdp2(tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    tmp = tmp_path_factory.mktemp("fsdp2")
    _launch(tmp, ["fsdp2", "fsdp2_unsharded"])
    return _Runs(tmp)


# == helpers for the assertions ==========================================================================


def _same_floats(a: list[float], b: list[float]) -> bool:
    """Equal lists of floats, NaN equal to NaN (bitwise agreement of all-reduced values)."""
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def _assert_ranks_agree(records: list[dict[str, Any]]) -> None:
    first = records[0]
    for other in records[1:]:
        assert _same_floats(first["losses"], other["losses"]), "the ranks recorded different curves"
        assert first["lrs"] == other["lrs"]
        assert first["stop_reason"] == other["stop_reason"]
        assert first["suggested_lr"] == other["suggested_lr"]
        assert first["method"] == other["method"]


def _assert_same_local_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for key, (kind, tensor) in before.items():
        assert after[key][0] == kind, f"{key} was a {kind}, is a {after[key][0]} after the restore"
        assert torch.equal(after[key][1], tensor), f"{key} differs after the restore"


# == DDP ==================================================================================================


def test_ddp_ranks_share_curve_and_suggestion_and_restore_bitwise(ddp: _Runs) -> None:
    r0, r1 = ddp["restore"]
    _assert_ranks_agree([r0, r1])
    assert r0["stop_reason"] == "diverged" and r0["suggested_lr"] is not None
    assert r0["world_size"] == 2
    for r in (r0, r1):
        tasks.assert_same_state(r["before"], r["after"])  # params, BN stats, grads, momentum, groups, modes
        assert torch.equal(r["rng_before"], r["rng_after"])
        assert r["lrs_after"] == [0.01, 0.001]  # both groups back to their own LR
    for name, tensor in r0["after"]["params"].items():
        assert torch.equal(tensor, r1["after"]["params"][name]), f"param {name} differs across ranks"
    # DDP sends rank 0's buffers at the start of each forward; BatchNorm then updates its running stats from
    # this rank's batch, so after a training step the ranks' stats differ. Each rank gets its own back.
    for name, tensor in r0["after"]["buffers"].items():
        same_before = torch.equal(r0["before"]["buffers"][name], r1["before"]["buffers"][name])
        assert torch.equal(tensor, r1["after"]["buffers"][name]) == same_before, name


def test_ddp_every_rank_swept_the_same_learning_rates(ddp: _Runs) -> None:
    r0, r1 = ddp["restore"]
    assert r0["lr_trajectory"] == r1["lr_trajectory"]
    steps = len(r0["lrs"])
    assert len(r0["lr_trajectory"]) >= steps  # divergence is read a few steps late; the curve is cut
    assert [group0 for group0, _ in r0["lr_trajectory"][:steps]] == r0["lrs"]
    assert all(group1 == pytest.approx(group0 / 10, rel=1e-12) for group0, group1 in r0["lr_trajectory"])


def test_ddp_leaves_the_sampler_epoch_and_loader_alone(ddp: _Runs) -> None:
    for r in ddp["restore"]:
        assert r["epoch_after"] == 2  # the range test never calls set_epoch
        assert len(r["batches_after"]) == len(r["batches_before"]) == 4
        assert all(torch.equal(a, b) for a, b in zip(r["batches_before"], r["batches_after"]))
    r0, r1 = ddp["restore"]
    assert not torch.equal(r0["batches_before"][0], r1["batches_before"][0])  # each rank has its own shard


def test_nan_on_one_rank_stops_every_rank_at_the_same_step(ddp: _Runs) -> None:
    r0, r1 = ddp["nan"]
    _assert_ranks_agree([r0, r1])
    assert r0["stop_reason"] == "non_finite"
    assert len(r0["losses"]) == 7 and math.isnan(r0["losses"][-1])
    assert all(math.isfinite(v) for v in r0["losses"][:-1])
    assert r0["calls"] == r1["calls"] < 40  # both ranks ran the same number of steps, then stopped
    for r in (r0, r1):
        tasks.assert_same_state(r["before"], r["after"])


def test_uneven_loaders_are_cycled_without_a_hang(ddp: _Runs) -> None:
    r0, r1 = ddp["uneven"]
    _assert_ranks_agree([r0, r1])
    assert r0["stop_reason"] == "completed" and len(r0["losses"]) == 20
    assert r0["served"] == r1["served"] == 20  # 5-batch and 3-batch loaders, both cycled


def test_an_empty_loader_on_one_rank_raises_on_every_rank(ddp: _Runs) -> None:
    for r in ddp["empty"]:
        assert r["train"]["raised"] == "DataError" and "at least one rank" in r["train"]["message"]
        assert r["val"]["raised"] == "DataError" and "val_loader" in r["val"]["message"]
        tasks.assert_same_state(r["before"], r["after"])


def test_a_failure_in_the_rank_zero_suggestion_raises_on_every_rank(ddp: _Runs) -> None:
    r0, r1 = ddp["suggest_fails"]
    assert (r0["raised"], r0["message"]) == ("RuntimeError", "boom on rank 0")
    assert r1["raised"] == "AutoLRError" and "boom on rank 0" in r1["message"]


def test_only_rank_zero_reports(ddp: _Runs) -> None:
    r0, r1 = ddp["reporters"]
    _assert_ranks_agree([r0, r1])
    tmp = ddp.tmp
    assert (tmp / "report.rank0.json").exists()
    assert not (tmp / "report.rank1.json").exists()
    assert json.loads((tmp / "report.rank0.json").read_text())["lr"] == r0["suggested_lr"]
    if not r0["wandb"]:
        pytest.skip("autolr.integrations.wandb is not importable")
    assert r0["wandb_run_here"] and not r1["wandb_run_here"]
    runs = sorted(p.name for p in (tmp / "wandb_dir" / "wandb").glob("*run-*"))
    assert len(runs) == 1 and runs[0].startswith("offline-run-"), runs


# == FSDP2 ================================================================================================


def test_fsdp2_snapshot_holds_only_this_ranks_shards(fsdp2: _Runs) -> None:
    r0, r1 = fsdp2["fsdp2"]
    full = r0["full_bytes"]
    for r in (r0, r1):
        assert r["snapshot_bytes"] == 2 * r["local_bytes"]  # params + grads, local shards only
        assert r["local_bytes"] <= 0.6 * full
    assert r0["local_bytes"] + r1["local_bytes"] == full


def test_fsdp2_lr_find_restores_shards_bitwise_and_training_replays_exactly(fsdp2: _Runs) -> None:
    r0, r1 = fsdp2["fsdp2"]
    _assert_ranks_agree([r0, r1])
    assert r0["stop_reason"] == "diverged"
    for r in (r0, r1):
        assert r["before"]["0.data"][0] == "DTensor"
        _assert_same_local_state(r["before"], r["rebuilt"])
        _assert_same_local_state(r["before"], r["after"])
        assert r["replay"] == r["reference"]  # the next steps after lr_find == the same steps without it


def test_fsdp2_unsharded_module_is_resharded_before_the_snapshot(fsdp2: _Runs) -> None:
    r0, r1 = fsdp2["fsdp2_unsharded"]
    _assert_ranks_agree([r0, r1])
    for r in (r0, r1):
        assert r["unsharded"], "the evaluation pass did not leave the model unsharded: scenario is moot"
        assert r["snapshot_bytes"] == r["local_bytes"]  # no full (unsharded) tensor in the snapshot
        _assert_same_local_state(r["before"], r["after"])


# == FSDP1 (CUDA) ===========================================================================================


@pytest.mark.cuda
def test_fsdp1_restores_flat_shards_bitwise(tmp_path: Path) -> None:
    world_size = min(WORLD_SIZE, torch.cuda.device_count())
    backend = "nccl" if torch_dist.is_nccl_available() else "gloo"
    _launch(tmp_path, ["fsdp1"], world_size=world_size, backend=backend)
    records = _Runs(tmp_path, world_size)["fsdp1"]
    for key in ("orig=False", "orig=True"):
        _assert_ranks_agree([r[key] for r in records])
        for r in records:
            _assert_same_local_state(r[key]["before"], r[key]["after"])


def test_tuner_plan_schedule_and_guard_agree_across_ranks(ddp: _Runs) -> None:
    r0, r1 = ddp["tuner"]
    assert r0["plan"] == r1["plan"]
    assert r0["groups"] == r1["groups"] == 2  # weight-decay split identical on both ranks
    assert r0["lr_trajectory"] == r1["lr_trajectory"] and len(r0["lr_trajectory"]) == 24
    assert r0["guards"] == r1["guards"] and len(r0["guards"]) == 1  # the NaN on rank 1 made both intervene
    assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"]))


def test_accumulation_all_reduces_once_per_step_and_ranks_agree(ddp: _Runs) -> None:
    r0, r1 = ddp["accumulation"]
    _assert_ranks_agree([r0, r1])
    assert len(r0["lrs"]) == 10
    # the small model fits one DDP bucket: one all-reduce per optimizer step, not one per micro-batch (3 per step)
    assert r0["comm_calls"] == r1["comm_calls"] == 10
    assert len(r0["grads"]) == 10 and all(torch.equal(a, b) for a, b in zip(r0["grads"], r1["grads"]))


def test_a_flat_fine_tune_is_swept_twice_on_every_rank_and_the_ranks_agree(ddp: _Runs) -> None:
    from autolr.suggest import FINETUNE_RESWEPT_CONFIDENCE

    r0, r1 = ddp["resweep"]
    _assert_ranks_agree([r0, r1])
    assert r0["swept_twice"] and r1["swept_twice"] and r0["steps"] == r1["steps"] == 180
    assert r0["confidence"] == FINETUNE_RESWEPT_CONFIDENCE and r0["suggested_lr"] is not None
    for r in (r0, r1):
        tasks.assert_same_state(r["before"], r["after"])

"""A learning-rate range test under DistributedDataParallel: 2 processes, about 8 s on an idle 2-core CPU.

Launch it with::

    torchrun --nproc_per_node=2 examples/ddp.py

It uses the gloo backend on CPU, or nccl with one GPU per process when CUDA is available. Every rank trains
the same DDP model on its own shard of a generated 10-class problem (a ``DistributedSampler``); autolr averages
the loss over the ranks at every step, so both ranks sweep the same curve, stop at the same step and get the
same suggestion. Each rank restores its own model, optimizer and RNG state afterwards; the script checks that
on every rank, bit for bit, and each rank prints the result. Otherwise only rank 0 prints.

Without torchrun (``python examples/ddp.py``) it runs the same test in one process.

The LR found is for the global batch: 64 per rank x the number of ranks. Run the range test with the world
size you train with (``result.settings["world_size"]`` records it).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import autolr

BATCH_PER_RANK = 64


def make_data(seed: int = 0) -> TensorDataset:
    """A generated 10-class problem; the same on every rank (the sampler gives each rank its part)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8192, 32, generator=g)
    teacher = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 10))
    with torch.no_grad():
        y = teacher(x).argmax(dim=1)
    return TensorDataset(x, y)


def capture(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Copies of everything the range test must give back: parameters and buffers, optimizer state and
    settings, and the RNGs."""
    state = {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    return state


def identical(a: Any, b: Any) -> bool:
    """Bitwise equality of nested dicts/lists of tensors and plain values (same dtype, shape and bytes)."""
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        bytes_a, bytes_b = (t.detach().cpu().contiguous().reshape(-1).view(torch.uint8) for t in (a, b))
        return torch.equal(bytes_a, bytes_b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def main() -> None:
    distributed = "WORLD_SIZE" in os.environ  # set by torchrun
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)

    torch.manual_seed(0)  # DDP copies rank 0's weights to every rank anyway
    dataset = make_data()
    sampler = DistributedSampler(dataset, shuffle=True, seed=0) if distributed else None
    loader = DataLoader(dataset, batch_size=BATCH_PER_RANK, sampler=sampler, shuffle=sampler is None)
    model: nn.Module = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
    if distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    # Every rank calls lr_find with the same arguments; batches are moved to the model's device.
    # Rank 0 shows the progress bar (on a terminal) and the summary (on stderr).
    before = capture(model, optimizer)
    result = autolr.lr_find(model, optimizer, loader, loss_fn=nn.CrossEntropyLoss(), num_steps=100)
    restored = identical(before, capture(model, optimizer))
    print(f"rank {rank}: model, optimizer and RNG state restored bit for bit: {restored}", flush=True)

    if rank == 0:
        lr = "none" if result.lr is None else f"{result.lr:.2e}"
        global_batch = BATCH_PER_RANK * result.settings["world_size"]
        print(f"suggested learning rate: {lr} (world size {world_size}, global batch {global_batch})")
    if result.lr is not None:
        result.apply(optimizer)  # on every rank: the same LR everywhere
    if distributed:
        dist.destroy_process_group()
    if not restored:
        raise SystemExit(f"rank {rank}: the state after lr_find differs from the state before it")


if __name__ == "__main__":
    main()

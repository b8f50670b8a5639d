"""What the range test costs on the device it runs on: step time, snapshot and restore, host syncs.

Three workloads (a small MLP, a ResNet-style CNN, a stack of transformer blocks: 100M+ parameters on CUDA, small
on the CPU), each trained with AdamW, are measured three ways, then the whole call in fresh processes:

1. **Step overhead.** The per-step time of the range test's sweep (``result.curve.wall_time``, which times the
   sweep loop only: no snapshot, restore or analysis) against a bare training loop doing the same steps on the
   same model and batches (``zero_grad``, forward, loss, backward, ``step``; timed to a device synchronize).
   Two sweeps: autolr running the step (``loss_fn=``) and autolr delegating it (``train_step=``, the bare
   loop's body as the user's step). All three run in this process, interleaved (rotated order each
   repetition), from the same state (a snapshot restores it after each run); medians over the repetitions.
   Target on a GPU: range-test step <= 1.03x the bare step, with either way of giving the step.
2. **Snapshot and restore** (``Snapshot.take`` + ``restore`` with AdamW state, CPU and disk storage): time, peak
   extra GPU memory (``torch.cuda.max_memory_allocated`` above what was allocated before) and host memory (RSS
   held after the take, and peak RSS, from ``/proc/self/status``; the peak is reset through
   ``/proc/self/clear_refs``). The reference is one plain copy of the same tensors to the host (into preallocated
   pinned buffers on CUDA: one PCIe transfer) and back. Targets: 0 bytes of extra GPU memory with the CPU
   snapshot; take + restore within 2x one copy of the state. The first take of a kind is reported separately:
   it allocates (and pins) the host memory, later ones reuse what PyTorch's host allocator cached.
3. **Host syncs** in the steady state (from the 4th step to the restore). On CUDA the sweep runs under
   ``torch.cuda.set_sync_debug_mode("warn")`` and its warnings are counted (target 0 per step); the deferred loss
   read (an event recorded a whole check earlier, then waited on) is counted apart. On both devices the host
   reads (``Tensor.item/.cpu/.tolist/.numpy``) are counted; the bare loop is measured the same way.
4. **Whole call** (``--whole-call N`` fresh processes, default 5; 3 with ``--quick`` or on CUDA; 0 skips it): what
   a new user's first ``lr_find`` costs, one-off imports and setup included. Each process times ``import torch``,
   ``import autolr``, a first and a second ``lr_find`` (small MLP, 100 steps) and the bare loop over the same
   steps; fixed cost = whole call - sweep. See :func:`measure_whole_call`.

Usage::

    python benchmarks/overhead.py --device cpu --quick --out out/overhead.json
    python benchmarks/overhead.py --device cuda --out out/overhead.json
    python benchmarks/overhead.py --device cpu --whole-call-only --out out/whole_call.json

It prints markdown tables and writes everything, with the environment, as JSON to ``--out``. The exit status is
1 when a workload (or the whole-call part) failed (its error is in the JSON and on stderr), 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import autolr
from autolr.snapshot import Snapshot

Batch = tuple[torch.Tensor, torch.Tensor]
WARM_STEPS = 4  # the steady state starts at this step (1-based)
MiB = 2**20
ROOT = Path(__file__).resolve().parents[1]  # the repository whose autolr the whole-call subprocesses import


# -- workloads ------------------------------------------------------------------------------------------------


@dataclass
class Workload:
    """A model, its AdamW optimizer, fixed batches on the device and how to turn a batch into a loss."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: list[Batch]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    autocast_dtype: torch.dtype | None = None
    notes: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def loss(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(self.model(batch[0]), batch[1])

    def train_step(self, batch: Batch) -> torch.Tensor:
        """A user's whole training step, the bare loop's body, for ``lr_find(train_step=...)``."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.loss(batch)
        loss.backward()
        self.optimizer.step()
        return loss


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet for 32x32 images: a 3x3 stem, then stages of basic blocks (stride 2 between stages)."""

    def __init__(self, widths: Sequence[int], blocks: int, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
        cin = widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, w, 2 if (i > 0 and b == 0) else 1))
                cin = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class TransformerLM(nn.Module):
    """Token embedding, a stack of pre-norm causal transformer blocks, a final norm and an untied LM head."""

    def __init__(self, vocab: int, width: int, heads: int, layers: int, seq: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.randn(seq, width) * 0.02)
        block = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        h = self.embed(tokens) + self.pos[:t]
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def _lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def _finish(
    name: str,
    model: nn.Module,
    batches: list[Batch],
    device: torch.device,
    loss_fn: Any,
    autocast_dtype: torch.dtype | None,
    notes: str,
) -> Workload:
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    work = Workload(name, model, optimizer, batches, loss_fn, autocast_dtype, notes, device)
    for batch in batches[:2]:  # optimizer state exists, as mid-training; kernels are warm
        optimizer.zero_grad(set_to_none=True)
        with work.autocast():
            loss = work.loss(batch)
        loss.backward()
        optimizer.step()
    return work


def make_mlp(device: torch.device) -> Workload:
    cuda = device.type == "cuda"
    inp, hidden, out, batch = (1024, 2048, 1000, 256) if cuda else (256, 512, 10, 64)
    model = nn.Sequential(
        nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out)
    )
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(batch, inp, generator=g).to(device), torch.randint(0, out, (batch,), generator=g).to(device))
        for _ in range(8)
    ]
    return _finish("mlp", model, batches, device, nn.CrossEntropyLoss(), None, f"batch {batch}, fp32")


def make_cnn(device: torch.device) -> Workload:
    cuda = device.type == "cuda"
    widths, blocks, batch = ((64, 128, 256, 512), 2, 256) if cuda else ((16, 32, 64), 1, 16)
    model = ResNet(widths, blocks)
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if cuda else torch.contiguous_format
    batches = [
        (
            torch.randn(batch, 3, 32, 32, generator=g).to(device).contiguous(memory_format=fmt),
            torch.randint(0, 10, (batch,), generator=g).to(device),
        )
        for _ in range(8)
    ]
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if cuda else None
    notes = f"32x32, batch {batch}" + (", channels-last, bf16 autocast" if cuda else ", fp32")
    return _finish("resnet", model, batches, device, nn.CrossEntropyLoss(), dtype, notes)


def make_transformer(device: torch.device) -> Workload:
    cuda = device.type == "cuda"
    vocab, width, heads, layers, seq, batch = (16384, 1024, 16, 8, 512, 16) if cuda else (1000, 128, 4, 2, 32, 8)
    model = TransformerLM(vocab, width, heads, layers, seq)
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randint(0, vocab, (batch, seq), generator=g).to(device),
            torch.randint(0, vocab, (batch, seq), generator=g).to(device),
        )
        for _ in range(8)
    ]
    dtype = torch.bfloat16 if cuda else None
    notes = f"{layers} blocks, width {width}, {batch}x{seq} tokens" + (", bf16 autocast" if cuda else ", fp32")
    return _finish("transformer", model, batches, device, _lm_loss, dtype, notes)


WORKLOADS: dict[str, Callable[[torch.device], Workload]] = {
    "mlp": make_mlp,
    "resnet": make_cnn,
    "transformer": make_transformer,
}


# -- measurement helpers --------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (empty where /proc is not available)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def bare_loop(work: Workload, steps: int, on_step: Callable[[int], None] | None = None) -> float:
    """Seconds for ``steps`` plain training steps, from a synchronized device to a synchronized device."""
    model, opt, batches = work.model, work.optimizer, work.batches
    model.train()
    _sync(work.device)
    start = time.perf_counter()
    for i in range(steps):
        if on_step is not None:
            on_step(i + 1)
        opt.zero_grad(set_to_none=True)
        with work.autocast():
            loss = work.loss(batches[i % len(batches)])
        loss.backward()
        opt.step()
    _sync(work.device)
    return time.perf_counter() - start


def range_test(work: Workload, steps: int, **kwargs: Any) -> tuple[autolr.LRFindResult, float]:
    """One ``lr_find`` over ``steps`` steps at LRs too small to diverge; returns the result and its total time."""
    kwargs.setdefault("loss_fn", work.loss_fn)
    kwargs.setdefault("autocast_dtype", work.autocast_dtype)
    start = time.perf_counter()
    result = autolr.lr_find(
        work.model,
        work.optimizer,
        work.batches,
        num_steps=steps,
        start_lr=1e-7,
        end_lr=1e-5,
        divergence_factor=1e6,
        check_every=4,
        progress=False,
        **kwargs,
    )
    total = time.perf_counter() - start
    if len(result.curve) != steps:
        raise RuntimeError(f"the sweep stopped after {len(result.curve)} of {steps} steps ({result.curve.stop_reason})")
    return result, total


# -- 1. step overhead -----------------------------------------------------------------------------------------


class StepClock:
    """Wall-clock and process CPU time at the end of every optimizer step (a step post-hook), per run.

    The time from the first step's end to the last one's, over ``steps - 1``, is a per-step time that leaves
    out everything before the first step and after the last (snapshot, restore, analysis) on both sides. Process
    CPU time is what this process spent, so other load on a shared host does not count; it is the measure on the
    CPU (one thread). On CUDA the host runs ahead of the device, so there the synchronized totals are used.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.marks: list[tuple[float, float]] = []
        self._handle = optimizer.register_step_post_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.marks.append((time.perf_counter(), time.process_time()))

    def take(self) -> tuple[float, float]:
        """(wall, cpu) seconds per step of the run since the last call, and start a new run."""
        marks, self.marks = self.marks, []
        if len(marks) < 2:
            return math.nan, math.nan
        n = len(marks) - 1
        return (marks[-1][0] - marks[0][0]) / n, (marks[-1][1] - marks[0][1]) / n

    def remove(self) -> None:
        self._handle.remove()


RUNS = ("bare", "sweep", "train_step")  # the bare loop; lr_find running the step (loss_fn); lr_find(train_step=)


def measure_overhead(work: Workload, steps: int, reps: int) -> dict[str, Any]:
    """Per-step time of the sweep vs the bare loop: interleaved runs from the same state, medians over ``reps``.

    Two sweeps are measured: autolr running the step (``loss_fn``, as the rest of this benchmark) and autolr
    delegating it (``train_step=``: the bare loop's body as the user's step; autolr sets the LR, zeroes the
    gradients and reads the loss). Each repetition runs the three in a rotated order (bare, sweep, train_step;
    then sweep, train_step, bare; ...; reversed every other round). Three clocks: synchronized wall time per
    step (the sweep's ``curve.wall_time``, the bare loop's total; the measure on CUDA), wall time between step
    ends, and process CPU time between step ends (the measure on CPU).
    """
    cuda = work.device.type == "cuda"
    times: dict[str, dict[str, list[float]]] = {k: {"sync": [], "wall": [], "cpu": []} for k in RUNS}
    totals: dict[str, list[float]] = {"sweep": [], "train_step": []}
    clock = StepClock(work.optimizer)

    def run(kind: str) -> None:
        clock.take()
        if kind == "bare":
            with Snapshot.take(work.model, work.optimizer):  # the same starting state every time
                sync = bare_loop(work, steps) / steps
        else:
            delegated = {"loss_fn": None, "autocast_dtype": None, "train_step": work.train_step}
            result, total = range_test(work, steps, **(delegated if kind == "train_step" else {}))
            sync = result.curve.wall_time / steps
            totals[kind].append(total)
        wall, cpu = clock.take()
        for key, value in (("sync", sync), ("wall", wall), ("cpu", cpu)):
            times[kind][key].append(value)

    try:
        for kind in RUNS:  # warm-up: allocator, kernels, lazy imports
            run(kind)
        for series in (*times.values(), totals):
            for values in series.values():
                values.clear()
        for r in range(reps):
            order = RUNS[r % 3 :] + RUNS[: r % 3]
            for kind in order if (r // 3) % 2 == 0 else order[::-1]:
                run(kind)
    finally:
        clock.remove()
    med = {kind: {key: _median(v) for key, v in series.items()} for kind, series in times.items()}
    primary = "sync" if cuda else "cpu"
    out: dict[str, Any] = {
        "workload": work.name,
        "params": work.params,
        "notes": work.notes,
        "steps": steps,
        "reps": reps,
        "clock": "synchronized wall time" if cuda else "process CPU time between step ends",
        "bare_step_ms": 1e3 * med["bare"][primary],
    }
    for kind, prefix in (("sweep", ""), ("train_step", "train_step_")):
        out.update({
            f"{prefix or 'range_test_'}step_ms": 1e3 * med[kind][primary],
            f"{prefix}ratio": med[kind][primary] / med["bare"][primary],
            f"{prefix}ratio_sync_wall": med[kind]["sync"] / med["bare"]["sync"],
            f"{prefix}ratio_step_wall": med[kind]["wall"] / med["bare"]["wall"],
            f"{prefix}ratio_step_cpu": med[kind]["cpu"] / med["bare"]["cpu"],
            f"{prefix}lr_find_total_s": _median(totals[kind]),
        })  # fmt: skip
    out["train_step_over_range_test"] = med["train_step"][primary] / med["sweep"][primary]
    out["per_run_ms"] = {k: {c: [1e3 * x for x in v] for c, v in series.items()} for k, series in times.items()}
    return out


# -- 2. snapshot and restore ------------------------------------------------------------------------------------


def _state_tensors(work: Workload) -> list[torch.Tensor]:
    """The tensors a snapshot copies: parameters, gradients, optimizer state, buffers."""
    out: list[torch.Tensor] = []
    for p in work.model.parameters():
        out.append(p.detach())
        if p.grad is not None:
            out.append(p.grad)
        out.extend(v for v in work.optimizer.state.get(p, {}).values() if torch.is_tensor(v) and v.dim() > 0)
    out.extend(b for b in work.model.buffers())
    return out


def measure_plain_copy(work: Workload, reps: int) -> dict[str, Any]:
    """One copy of the snapshot's tensors to preallocated host buffers (pinned on CUDA), and back."""
    cuda = work.device.type == "cuda"
    tensors = [t for t in _state_tensors(work) if t.device.type == work.device.type]
    host = [torch.empty_like(t, device="cpu", pin_memory=cuda) for t in tensors]
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    to_host, to_device = [], []
    with torch.no_grad():
        for _ in range(reps + 1):
            _sync(work.device)
            start = time.perf_counter()
            for h, t in zip(host, tensors):
                h.copy_(t, non_blocking=cuda)
            _sync(work.device)
            middle = time.perf_counter()
            for h, t in zip(host, tensors):
                t.copy_(h, non_blocking=cuda)  # the same values back: the state is unchanged
            _sync(work.device)
            to_host.append(middle - start)
            to_device.append(time.perf_counter() - middle)
    to_host, to_device = to_host[1:], to_device[1:]
    return {
        "bytes": nbytes,
        "to_host_ms": 1e3 * _median(to_host),
        "to_device_ms": 1e3 * _median(to_device),
        "to_host_GBps": nbytes / _median(to_host) / 1e9,
        "to_device_GBps": nbytes / _median(to_device) / 1e9,
        "kind": "pinned D2H/H2D (PCIe)" if cuda else "host memcpy",
    }


def measure_snapshot(work: Workload, storage: str, reps: int) -> dict[str, Any]:
    """Time and memory of ``Snapshot.take`` + ``restore`` + ``close``; the first repetition is reported apart."""
    cuda = work.device.type == "cuda"
    takes, restores, gpu_extra = [], [], []
    host_held = host_peak = host_after_close = None
    nbytes = 0
    for r in range(reps + 1):
        gc.collect()
        peak_ok = _reset_peak_rss()
        before = _proc_status()
        if cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        snap = Snapshot.take(work.model, work.optimizer, storage=storage)  # type: ignore[arg-type]
        taken = time.perf_counter()
        held = _proc_status()
        snap.restore()  # synchronizes the device before it returns
        restored = time.perf_counter()
        nbytes = snap.nbytes
        snap.close()
        after = _proc_status()
        if cuda:
            gpu_extra.append(torch.cuda.max_memory_allocated() - base)
        if r == 0 and before:
            host_held = held["VmRSS"] - before["VmRSS"]
            host_peak = (after["VmHWM"] - before["VmRSS"]) if peak_ok else None
            host_after_close = after["VmRSS"] - before["VmRSS"]  # > 0: kept by an allocator cache (pinned memory)
        takes.append(taken - start)
        restores.append(restored - taken)
    take_ms, restore_ms = 1e3 * _median(takes[1:]), 1e3 * _median(restores[1:])
    return {
        "workload": work.name,
        "storage": storage,
        "snapshot_bytes": nbytes,
        "first_take_ms": 1e3 * takes[0],
        "first_restore_ms": 1e3 * restores[0],
        "take_ms": take_ms,
        "restore_ms": restore_ms,
        "take_plus_restore_over_one_copy": math.nan,  # filled in against the plain copy
        "gpu_extra_bytes": max(gpu_extra) if cuda else None,
        "host_held_bytes_first": host_held,
        "host_after_close_bytes_first": host_after_close,
        "host_peak_extra_bytes_first": host_peak,
    }


# -- 3. host syncs and host reads -----------------------------------------------------------------------------


class SyncCounter:
    """Counts, while active, host reads of tensors and (on CUDA) synchronizing calls and event waits.

    Use as a context manager to install the counters; :meth:`start` and :meth:`stop` delimit the window.
    """

    READS = ("item", "cpu", "tolist", "numpy")

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.active = False
        self.reads = dict.fromkeys(self.READS, 0)
        self.event_waits = 0
        self.flagged = 0
        self._caught: list[warnings.WarningMessage] = []
        self._mark = 0

    def start(self) -> None:
        if self.active:
            return
        self.active = True
        self._mark = len(self._caught)
        if self.cuda:
            torch.cuda.set_sync_debug_mode("warn")

    def stop(self) -> None:
        if not self.active:
            return
        if self.cuda:
            torch.cuda.set_sync_debug_mode(0)
        self.active = False
        new = self._caught[self._mark :]
        self.flagged += sum("synchroniz" in str(w.message) for w in new)

    @contextlib.contextmanager
    def installed(self) -> Iterator[SyncCounter]:
        originals: dict[str, Any] = {name: getattr(torch.Tensor, name) for name in self.READS}

        def counting(name: str, fn: Any) -> Any:
            def wrapper(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                if self.active:
                    self.reads[name] += 1
                return fn(tensor, *args, **kwargs)

            return wrapper

        event_sync = torch.cuda.Event.synchronize

        def counting_event_sync(event: torch.cuda.Event) -> None:
            if self.active:
                self.event_waits += 1
            event_sync(event)

        try:
            for name, fn in originals.items():
                setattr(torch.Tensor, name, counting(name, fn))
            torch.cuda.Event.synchronize = counting_event_sync  # type: ignore[method-assign]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._caught = caught
                yield self
        finally:
            self.stop()
            for name, fn in originals.items():
                setattr(torch.Tensor, name, fn)
            torch.cuda.Event.synchronize = event_sync  # type: ignore[method-assign]


def measure_syncs(work: Workload, steps: int) -> dict[str, Any]:
    """Host reads and syncs per step in the steady state (step WARM_STEPS to the end), sweep and bare loop."""
    cuda = work.device.type == "cuda"
    window = steps - WARM_STEPS + 1
    out: dict[str, Any] = {"workload": work.name, "steps_counted": window}

    sweep = SyncCounter(cuda)
    calls = [0]

    def compute(batch: Batch) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == WARM_STEPS:
            sweep.start()
        return work.loss(batch)

    restore = Snapshot.restore

    def restore_outside_window(snap: Snapshot) -> None:
        sweep.stop()
        restore(snap)

    Snapshot.restore = restore_outside_window  # type: ignore[method-assign]
    try:
        with sweep.installed():
            range_test(work, steps, loss_fn=None, compute_loss=compute)
    finally:
        Snapshot.restore = restore  # type: ignore[method-assign]

    bare = SyncCounter(cuda)
    with Snapshot.take(work.model, work.optimizer), bare.installed():
        bare_loop(work, steps, on_step=lambda i: bare.start() if i == WARM_STEPS else None)
        bare.stop()

    for label, counter in (("range_test", sweep), ("bare", bare)):
        reads = sum(counter.reads.values())
        out[f"{label}_host_reads"] = dict(counter.reads)
        out[f"{label}_host_reads_per_step"] = reads / window
        if cuda:
            out[f"{label}_blocking_syncs"] = counter.flagged
            out[f"{label}_blocking_syncs_per_step"] = counter.flagged / window
            out[f"{label}_event_waits_per_step"] = counter.event_waits / window
    return out


# -- 4. the whole call, in a fresh process ---------------------------------------------------------------------

# Run as `python -c WHOLE_CALL_CHILD CONFIG` in the repository root (so it imports that autolr), one fresh
# process per run: a new user's script. It prints one JSON line.
WHOLE_CALL_CHILD = r"""
import json, sys, time

cfg = json.loads(sys.argv[1])
clock = lambda: (time.perf_counter(), time.process_time())
t0 = clock()
import torch
t1 = clock()
import autolr
t2 = clock()
from torch import nn

if cfg["threads"]:
    torch.set_num_threads(cfg["threads"])
device, steps = torch.device(cfg["device"]), cfg["steps"]
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)
centers = torch.randn(10, 32, generator=g)
batches = []
for _ in range(16):
    y = torch.randint(0, 10, (32,), generator=g)
    batches.append(((centers[y] + torch.randn(32, 32, generator=g)).to(device), y.to(device)))
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)).to(device)
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)  # torch imports torch._dynamo here (its own cost)
sync()
t3 = clock()


def call():
    before = set(sys.modules)
    w0, c0 = clock()
    result = autolr.lr_find(
        model, optimizer, batches, loss_fn=loss_fn, num_steps=steps, divergence_factor=1e6, progress=True
    )
    sync()
    w1, c1 = clock()
    new = sorted(set(sys.modules) - before)
    curve = result.curve
    return {
        "whole_s": w1 - w0, "whole_cpu_s": c1 - c0, "sweep_s": curve.wall_time, "points": len(curve),
        "optimizer_steps": len(curve) + curve.skipped_steps, "lr": result.suggestion.lr,
        "new_modules": len(new), "new_packages": sorted({m.split(".")[0] for m in new}),
    }


first = call()
second = call()
sync()
b0 = clock()
for i in range(first["optimizer_steps"]):  # the same steps, model, optimizer and batches, no autolr
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(batches[i % len(batches)][0]), batches[i % len(batches)][1])
    loss.backward()
    optimizer.step()
sync()
b1 = clock()
print(json.dumps({
    "import_torch_s": t1[0] - t0[0], "import_autolr_s": t2[0] - t1[0], "import_autolr_cpu_s": t2[1] - t1[1],
    "setup_s": t3[0] - t2[0], "first": first, "second": second, "bare_s": b1[0] - b0[0],
    "bare_cpu_s": b1[1] - b0[1], "autolr_file": autolr.__file__, "threads": torch.get_num_threads(),
}))
"""


def measure_whole_call(device: torch.device, runs: int, steps: int = 100) -> dict[str, Any]:
    """The cost of a whole ``lr_find`` call, one-off imports and setup included, in ``runs`` fresh processes.

    Each process imports torch then autolr, builds a small MLP (32-64-10, batch 32, AdamW) and its batches on
    ``device``, then times a first ``lr_find`` call (defaults, but ``progress=True``: the bar is drawn, as in a
    terminal, though stderr is a pipe here; ``divergence_factor=1e6`` so that it sweeps all ``steps`` steps:
    validation, snapshot, sweep, restore, analysis, summary), a second call, and the bare loop over the same
    steps. Fixed cost = whole call - sweep (``curve.wall_time``).
    Medians over the processes.
    """
    cfg = {"device": device.type, "threads": torch.get_num_threads() if device.type == "cpu" else 0, "steps": steps}
    rows: list[dict[str, Any]] = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", WHOLE_CALL_CHILD, json.dumps(cfg)],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"whole-call process exited with {proc.returncode}: {proc.stderr[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        if not Path(row["autolr_file"]).resolve().is_relative_to(ROOT):
            raise RuntimeError(f"the whole-call process imported {row['autolr_file']}, not the autolr in {ROOT}")
        row["process_s"] = elapsed
        for call in ("first", "second"):
            c = row[call]
            c["fixed_s"] = c["whole_s"] - c["sweep_s"]
            c["over_bare"] = c["whole_s"] / row["bare_s"]
        rows.append(row)

    def med(get: Callable[[dict[str, Any]], float]) -> float:
        return _median([get(r) for r in rows])

    out: dict[str, Any] = {
        "runs": runs,
        "steps": steps,
        "device": device.type,
        "threads": rows[0]["threads"],
        "model": "MLP 32-64-10, batch 32, AdamW, CrossEntropyLoss",
        "call": f"lr_find(model, optimizer, batches, loss_fn=..., num_steps={steps}, divergence_factor=1e6, "
        "progress=True)",
        "import_torch_s": med(lambda r: r["import_torch_s"]),
        "import_autolr_s": med(lambda r: r["import_autolr_s"]),
        "setup_s": med(lambda r: r["setup_s"]),
        "bare_s": med(lambda r: r["bare_s"]),
        "process_s": med(lambda r: r["process_s"]),
        "optimizer_steps": rows[0]["first"]["optimizer_steps"],
        "first_call_new_modules": med(lambda r: r["first"]["new_modules"]),
        "first_call_new_packages": rows[0]["first"]["new_packages"],
        "suggested_lr": rows[0]["first"]["lr"],
        "per_run": rows,
    }
    for call in ("first", "second"):
        for key in ("whole_s", "whole_cpu_s", "sweep_s", "fixed_s", "over_bare"):
            out[f"{call}_{key}"] = med(lambda r, c=call, k=key: r[c][k])
    return out


# -- report ---------------------------------------------------------------------------------------------------


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / MiB:.1f} MiB" if abs(n) >= MiB else f"{n} B"


def _workload_markdown(report: dict[str, Any], cuda: bool) -> list[str]:
    """The three tables of the workloads: step overhead, snapshot and restore, host syncs."""
    lines: list[str] = []
    clock = report["overhead"][0]["clock"] if report["overhead"] else ""
    lines += [f"Step times: medians of {clock}.", ""]
    lines += [
        "| workload | params | setup | bare step (ms) | range-test step (ms) | ratio | wall-clock ratio | "
        "train_step= step (ms) | ratio | wall-clock ratio | lr_find total (s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["overhead"]:
        lines.append(
            f"| {row['workload']} | {row['params'] / 1e6:.1f}M | {row['notes']} | {row['bare_step_ms']:.2f} | "
            f"{row['range_test_step_ms']:.2f} | {row['ratio']:.3f} | {row['ratio_sync_wall']:.3f} | "
            f"{row['train_step_step_ms']:.2f} | {row['train_step_ratio']:.3f} | "
            f"{row['train_step_ratio_sync_wall']:.3f} | {row['lr_find_total_s']:.2f} |"
        )
    if report["overhead"]:
        lines += [
            "",
            "range-test step: autolr runs the step (`loss_fn=`); train_step= step: `lr_find(train_step=...)` with "
            "the bare loop's body as the user's step. Ratios are to the bare step; lr_find total is the `loss_fn=` "
            "call's (snapshot, sweep, restore, analysis).",
        ]
    lines += [
        "",
        "| workload | storage | state | take (ms) | restore (ms) | first take+restore (ms) | "
        "one copy (ms) | (take+restore)/copy | extra GPU memory | host held (first) | host peak (first) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    copies = {c["workload"]: c for c in report["plain_copy"]}
    for row in report["snapshot"]:
        copy = copies[row["workload"]]
        gpu = _fmt_bytes(row["gpu_extra_bytes"]) if cuda else "n/a (CPU)"
        lines.append(
            f"| {row['workload']} | {row['storage']} | {_fmt_bytes(row['snapshot_bytes'])} | {row['take_ms']:.1f} | "
            f"{row['restore_ms']:.1f} | {row['first_take_ms'] + row['first_restore_ms']:.1f} | "
            f"{copy['to_host_ms']:.1f} | {row['take_plus_restore_over_one_copy']:.2f} | {gpu} | "
            f"{_fmt_bytes(row['host_held_bytes_first'])} | {_fmt_bytes(row['host_peak_extra_bytes_first'])} |"
        )
    lines.append("")
    if cuda:
        lines += [
            "| workload | blocking syncs/step (range test) | (bare loop) | deferred loss reads/step | "
            "host reads/step (range test) | (bare loop) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in report["syncs"]:
            lines.append(
                f"| {row['workload']} | {row['range_test_blocking_syncs_per_step']:.3f} | "
                f"{row['bare_blocking_syncs_per_step']:.3f} | {row['range_test_event_waits_per_step']:.3f} | "
                f"{row['range_test_host_reads_per_step']:.3f} | {row['bare_host_reads_per_step']:.3f} |"
            )
    else:
        lines += [
            "| workload | host reads/step (range test) | (bare loop) | added by autolr | steps counted |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in report["syncs"]:
            added = row["range_test_host_reads_per_step"] - row["bare_host_reads_per_step"]
            lines.append(
                f"| {row['workload']} | {row['range_test_host_reads_per_step']:.3f} | "
                f"{row['bare_host_reads_per_step']:.3f} | {added:.3f} | {row['steps_counted']} |"
            )
    return lines


def _whole_call_markdown(w: dict[str, Any]) -> list[str]:
    """The whole-call table."""
    rows = [
        ("import torch", f"{w['import_torch_s']:.3f} s"),
        ("import autolr (after torch)", f"{w['import_autolr_s']:.3f} s"),
        ("model, optimizer and batches (torch's AdamW imports torch._dynamo)", f"{w['setup_s']:.3f} s"),
        ("first lr_find call, whole", f"{w['first_whole_s']:.3f} s"),
        ("  of which the sweep", f"{w['first_sweep_s']:.3f} s"),
        ("  fixed cost (whole - sweep)", f"{w['first_fixed_s']:.3f} s"),
        ("second lr_find call, whole", f"{w['second_whole_s']:.3f} s"),
        ("  fixed cost (whole - sweep)", f"{w['second_fixed_s']:.3f} s"),
        (f"bare loop, the same {w['optimizer_steps']} steps", f"{w['bare_s']:.3f} s"),
        ("first call / bare loop", f"{w['first_over_bare']:.2f}x"),
        ("second call / bare loop", f"{w['second_over_bare']:.2f}x"),
        ("whole process (interpreter start to exit)", f"{w['process_s']:.2f} s"),
    ]
    packages = ", ".join(w["first_call_new_packages"]) or "none"
    return [
        f"Whole call in a fresh process ({w['device']}, {w['threads']} thread(s)): {w['model']}, "
        f"`{w['call']}`; medians of {w['runs']} processes, wall-clock.",
        "",
        "| | median |",
        "|---|---:|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        f"The first call imported {w['first_call_new_modules']:.0f} modules (packages: {packages}).",
    ]


def markdown(report: dict[str, Any]) -> str:
    """The tables of a report."""
    env, cuda = report["environment"], report["environment"]["device_kind"] == "cuda"
    lines = [f"### autolr overhead on {env['device_name']} (torch {env['torch']}, {env['threads']} threads)", ""]
    if report["overhead"] or report["snapshot"] or report["syncs"]:
        lines += _workload_markdown(report, cuda)
    if report.get("whole_call"):
        lines += ([] if lines[-1] == "" else [""]) + _whole_call_markdown(report["whole_call"])
    if report["errors"]:
        lines += ["", "**Errors:**"] + [f"- {e['workload']}: {e['error']}" for e in report["errors"]]
    return "\n".join(lines)


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device_kind": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "autolr": getattr(autolr, "__version__", "unknown"),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda)
    else:
        env["device_name"] = env["cpu"]
    return env


def run(device: torch.device, quick: bool, names: Sequence[str], whole_call_runs: int = 0) -> dict[str, Any]:
    """Measure every workload in ``names``, then the whole call in ``whole_call_runs`` fresh processes; a failing
    part is recorded in ``errors`` and the rest go on."""
    cuda = device.type == "cuda"
    steps, reps = (16, 3) if quick else (48, 7)
    snapshot_reps = 2 if quick else 4
    report: dict[str, Any] = {
        "environment": environment(device),
        "settings": {
            "quick": quick,
            "steps": steps,
            "reps": reps,
            "snapshot_reps": snapshot_reps,
            "optimizer": "AdamW",
            "warm_steps": WARM_STEPS,
            "whole_call_runs": whole_call_runs,
        },
        "targets": {
            "gpu_step_ratio_max": 1.03,
            "gpu_extra_bytes_cpu_snapshot": 0,
            "take_plus_restore_over_one_copy_max": 2.0,
            "blocking_syncs_per_step": 0,
        },
        "overhead": [],
        "snapshot": [],
        "plain_copy": [],
        "syncs": [],
        "whole_call": None,
        "errors": [],
    }
    for name in names:
        work = None
        try:
            print(f"[overhead] {name}: building", file=sys.stderr, flush=True)
            work = WORKLOADS[name](device)
            # snapshots first: the first take of each kind is this process's first host allocation of that size
            print(
                f"[overhead] {name}: {work.params / 1e6:.1f}M params; snapshot and restore", file=sys.stderr, flush=True
            )
            for storage in ("cpu", "disk"):
                report["snapshot"].append(measure_snapshot(work, storage, snapshot_reps))
            copy = dict(workload=name, **measure_plain_copy(work, snapshot_reps))
            report["plain_copy"].append(copy)
            for row in report["snapshot"][-2:]:
                row["take_plus_restore_over_one_copy"] = (row["take_ms"] + row["restore_ms"]) / copy["to_host_ms"]
            print(f"[overhead] {name}: step overhead", file=sys.stderr, flush=True)
            report["overhead"].append(measure_overhead(work, steps, reps))
            print(f"[overhead] {name}: host syncs", file=sys.stderr, flush=True)
            report["syncs"].append(measure_syncs(work, steps))
        except Exception as exc:  # keep measuring the others; the exit status says it failed
            traceback.print_exc()
            report["errors"].append({"workload": name, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            del work
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
    if whole_call_runs > 0:
        try:
            print(f"[overhead] whole call: {whole_call_runs} fresh processes", file=sys.stderr, flush=True)
            report["whole_call"] = measure_whole_call(device, whole_call_runs)
        except Exception as exc:
            traceback.print_exc()
            report["errors"].append({"workload": "whole-call", "error": f"{type(exc).__name__}: {exc}"})
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    parser.add_argument("--out", type=Path, default=Path("overhead.json"), help="where to write the JSON report")
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: 1 on the CPU, torch's on CUDA)"
    )
    parser.add_argument(
        "--whole-call",
        type=int,
        default=None,
        metavar="N",
        help="fresh processes timing a whole first and second lr_find call (default: 5 on the CPU, 3 with --quick "
        "or on CUDA; 0: skip)",
    )
    parser.add_argument("--whole-call-only", action="store_true", help="measure the whole call only, no workloads")
    args = parser.parse_args(argv)
    whole_call_runs = args.whole_call
    if whole_call_runs is None:
        whole_call_runs = 3 if args.quick or args.device == "cuda" else 5
    if args.whole_call_only and whole_call_runs <= 0:
        parser.error("--whole-call-only needs --whole-call N with N > 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if args.threads is not None or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    torch.manual_seed(0)
    names = [] if args.whole_call_only else args.workloads
    report = run(torch.device(args.device), args.quick, names, whole_call_runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, allow_nan=True))
    print(markdown(report))
    print(f"\nJSON: {args.out}", file=sys.stderr)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

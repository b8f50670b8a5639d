"""The paths that matter on a GPU: AMP, memory formats, fused optimizers, torch.compile, memory and syncs.

Everything that torch can run on a CPU is tested on the CPU (and again on CUDA when there is a device, through
the ``device`` parameter); what only exists on a GPU is marked ``@pytest.mark.cuda`` and skipped without one:

* fp16 autocast + ``GradScaler`` (skipped steps are not points, the scaler is restored bitwise) and bf16
  without a scaler;
* a channels-last model keeps its memory format (the same tensors, the same strides) through ``lr_find``;
* fused and foreach Adam/AdamW: a float LR stays a float, a tensor LR stays the *same* tensor, updated in place;
* ``torch.compile``: a compiled model, and a compiled optimizer step whose LR changes every step, are not
  recompiled per step;
* CUDA only: the CPU snapshot costs 0 bytes of GPU memory, the steady-state sweep never blocks the host, a model
  that does not fit twice on the GPU still gets a range test, and the disk snapshot works from the GPU.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

import autolr
from autolr.param_groups import set_lrs
from autolr.range_test import sweep_lrs
from autolr.snapshot import Snapshot
from tests import tasks

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
Batches = list[tuple[torch.Tensor, torch.Tensor]]


def _find(model: nn.Module, opt: torch.optim.Optimizer, data: Any, **kwargs: Any) -> autolr.LRFindResult:
    kwargs.setdefault("progress", False)
    if "compute_loss" not in kwargs:
        kwargs.setdefault("loss_fn", nn.CrossEntropyLoss())
    return autolr.lr_find(model, opt, data, **kwargs)


def _on(device: str, data: Batches) -> Batches:
    return [(x.to(device), y.to(device)) for x, y in data]


class ConvNet(nn.Module):
    """A small CNN with BatchNorm: 4-d weights, so channels-last strides differ from contiguous ones."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _images(device: str, count: int = 4, batch_size: int = 16) -> Batches:
    g = torch.Generator().manual_seed(5)
    out = []
    for _ in range(count):
        x = torch.randn(batch_size, 3, 8, 8, generator=g).contiguous(memory_format=torch.channels_last)
        out.append((x.to(device), torch.randint(0, 3, (batch_size,), generator=g).to(device)))
    return out


def _layouts(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, tuple[int | None, tuple[int, ...]]]:
    """Storage address and strides of every parameter and optimizer state tensor, strides of every gradient
    (the sweep's ``zero_grad(set_to_none=True)`` makes new gradient tensors, as a training loop does)."""
    out: dict[str, tuple[int | None, tuple[int, ...]]] = {}
    for name, p in model.named_parameters():
        out[name] = (p.data_ptr(), p.stride())
        if p.grad is not None:
            out[f"{name}.grad"] = (None, p.grad.stride())
        for k, v in opt.state.get(p, {}).items():
            if torch.is_tensor(v) and v.dim() > 0:
                out[f"{name}.{k}"] = (v.data_ptr(), v.stride())
    return out


# -- AMP -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_autocast_with_grad_scaler(device: str) -> None:
    """Steps the scaler skips (inf fp16 gradients under a huge loss scale) are not points, and the LR does not
    advance on them; afterwards the scaler's scale and growth tracker are bitwise what they were."""
    model = tasks.BNDropoutNet().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**8)
    data = _on(device, tasks.batches())
    with torch.autocast(device, dtype=torch.float16):
        tasks.train(model, opt, data, 2, scaler)  # mid-training: optimizer state and scaler tensors exist
    scaler._scale.fill_(2.0**30)  # the sweep's first steps overflow in fp16 and are skipped
    before = tasks.full_state(model, opt)
    scaler_before = scaler.state_dict()
    scale, tracker = scaler._scale.clone(), scaler._growth_tracker.clone()
    seen: list[float] = []
    handle = opt.register_step_pre_hook(lambda o, *_: seen.append(o.param_groups[0]["lr"]))
    calls = [0]

    def compute(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        calls[0] += 1
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    try:
        result = _find(
            model,
            opt,
            data,
            compute_loss=compute,
            num_steps=30,
            start_lr=1e-4,
            end_lr=1e-2,
            scaler=scaler,
            autocast_dtype=torch.float16,
            resweep_steps=0,  # mid-training reads as a fine-tune: one sweep, so the counts below are its own
        )
    finally:
        handle.remove()
    curve = result.curve
    assert curve.skipped_steps > 0
    assert len(curve) == 30 == len(seen) and calls[0] == 30 + curve.skipped_steps
    assert seen == pytest.approx(sweep_lrs(1e-4, 1e-2, 30), rel=1e-12)  # no LR point lost to a skip
    assert all(v == v and abs(v) != float("inf") for v in curve.losses.tolist())
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    assert scaler.state_dict() == scaler_before
    assert torch.equal(scaler._scale, scale) and torch.equal(scaler._growth_tracker, tracker)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_without_scaler(device: str) -> None:
    model = tasks.BNDropoutNet().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = _on(device, tasks.batches())
    tasks.train(model, opt, data, 2)
    before = tasks.full_state(model, opt)
    dtypes: list[torch.dtype] = []
    model.body[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    result = _find(model, opt, data, num_steps=20, end_lr=1e-1, autocast_dtype=torch.bfloat16)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert len(result.curve) > 5 and result.curve.skipped_steps == 0
    tasks.assert_same_state(before, tasks.full_state(model, opt))


# -- memory format -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["cpu", "disk"])
@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_model_keeps_its_memory_format(device: str, storage: str) -> None:
    model = ConvNet().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = _images(device)
    tasks.train(model, opt, data, 2)
    conv = model.body[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert opt.state[conv]["exp_avg"].stride() == conv.stride() == conv.grad.stride()
    layouts, before = _layouts(model, opt), tasks.full_state(model, opt)

    _find(model, opt, data, num_steps=12, end_lr=1e-1, snapshot=storage)
    assert _layouts(model, opt) == layouts  # the same tensors, the same strides
    tasks.assert_same_state(before, tasks.full_state(model, opt))

    # tensors that must be rebuilt from the snapshot (gradient dropped, state entry deleted) keep the layout too
    with Snapshot.take(model, opt, storage=storage):  # type: ignore[arg-type]
        for p in model.parameters():
            p.grad = None
            opt.state[p].pop("exp_avg_sq")
    assert {k: s for k, (_, s) in _layouts(model, opt).items()} == {k: s for k, (_, s) in layouts.items()}
    tasks.assert_same_state(before, tasks.full_state(model, opt))


# -- fused / foreach optimizers: float LR stays a float, tensor LR stays the same tensor ----------------------

FLOAT_LR_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam_fused": lambda params, lr: torch.optim.Adam(params, lr=lr, fused=True),
    "adamw_fused": lambda params, lr: torch.optim.AdamW(params, lr=lr, fused=True),
    "adam_foreach": lambda params, lr: torch.optim.Adam(params, lr=lr, foreach=True),
    "adamw_foreach": lambda params, lr: torch.optim.AdamW(params, lr=lr, foreach=True),
}


@pytest.mark.parametrize("name", sorted(FLOAT_LR_OPTIMIZERS))
@pytest.mark.parametrize("device", DEVICES)
def test_float_lr_stays_a_float(device: str, name: str) -> None:
    model = tasks.BNDropoutNet().to(device)
    opt = FLOAT_LR_OPTIMIZERS[name](model.parameters(), 1e-3)
    kinds: set[type] = set()
    handle = opt.register_step_pre_hook(lambda o, *_: kinds.add(type(o.param_groups[0]["lr"])))
    result = _find(model, opt, tasks.loader(), num_steps=60)
    handle.remove()
    assert kinds == {float}
    assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["lr"] == 1e-3
    assert result.lr is not None
    result.apply(opt)
    assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["lr"] == pytest.approx(result.lr)


def _tensor_lr_optimizers(device: str) -> Iterator[tuple[str, Callable[..., torch.optim.Optimizer], torch.Tensor]]:
    yield "adam_fused", lambda params, lr: torch.optim.Adam(params, lr=lr, fused=True), torch.tensor(1e-3)
    yield "adamw_fused", lambda params, lr: torch.optim.AdamW(params, lr=lr, fused=True), torch.tensor(1e-3)
    yield "adamw_single_tensor", lambda params, lr: torch.optim.AdamW(params, lr=lr, foreach=False), torch.tensor(1e-3)
    if device == "cuda":  # capturable (CUDA graphs) allows a tensor LR with foreach; keep it on the device
        yield (
            "adamw_foreach_capturable",
            lambda params, lr: torch.optim.AdamW(params, lr=lr, foreach=True, capturable=True),
            torch.tensor(1e-3, device=device),
        )


@pytest.mark.parametrize("device", DEVICES)
def test_tensor_lr_stays_the_same_tensor_updated_in_place(device: str) -> None:
    for name, make, lr in _tensor_lr_optimizers(device):
        model = tasks.BNDropoutNet().to(device)
        opt = make(model.parameters(), lr)
        initial = lr.clone()
        seen: list[tuple[bool, float]] = []
        handle = opt.register_step_pre_hook(
            lambda o, *_, lr=lr, seen=seen: seen.append((o.param_groups[0]["lr"] is lr, float(lr)))
        )
        result = _find(model, opt, tasks.loader(), num_steps=60, start_lr=1e-6, end_lr=1.0)
        handle.remove()
        assert seen and all(same for same, _ in seen), name
        expected = sweep_lrs(1e-6, 1.0, 60)[: len(seen)]
        assert [v for _, v in seen] == pytest.approx(expected, rel=1e-6), name  # set with fill_, step by step
        assert opt.param_groups[0]["lr"] is lr and torch.equal(lr, initial), name  # restored bitwise, in place
        assert result.lr is not None, name
        result.apply(opt)
        assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(result.lr, rel=1e-6), name


# -- torch.compile -------------------------------------------------------------------------------------------


class _CountingBackend:
    """A torch.compile backend that runs graphs eagerly and counts how many it was given (compilations)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        self.graphs += 1
        return gm.forward


@pytest.fixture
def dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.usefixtures("dynamo")
def test_compiled_model_is_not_recompiled_by_lr_find() -> None:
    """The restore copies into the same tensors and sets the same flags, so no guard of the model's graph fails."""
    model = tasks.BNDropoutNet()
    backend = _CountingBackend()
    compiled = torch.compile(model, backend=backend)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = tasks.batches(count=4)
    tasks.train(compiled, opt, data, 2)
    warm = backend.graphs
    assert warm >= 1
    result = _find(compiled, opt, data, num_steps=20, end_lr=1e-1)
    assert len(result.curve) > 5
    tasks.train(compiled, opt, data, 2)
    assert backend.graphs == warm


@pytest.mark.usefixtures("dynamo")
@pytest.mark.parametrize("lr_kind", ["tensor", "float"])
def test_compiled_optimizer_step_is_not_recompiled_every_step(lr_kind: str) -> None:
    """The LR changes at every step of the sweep; the compiled ``optimizer.step`` must not follow it.

    A tensor LR (updated in place with ``fill_``) gives no new graph at all: not in the sweep, not after the
    restore, not after a second, longer sweep, not when the chosen LR is set. A float LR is a constant to dynamo:
    the first change fails a guard (``param_groups[0]['lr'] == 0.001``) and recompiles once, after which
    automatic-dynamic makes the LR a graph input, so there is exactly one extra graph however many steps follow.
    The optimizer has state before the sweep, as mid-training: the restore copies into those same state tensors.
    (Starting from an empty optimizer, the state the sweep creates is removed again, and the first real step
    recompiles once for the new state tensors: still bounded, independent of ``num_steps``.)
    """
    model = tasks.BNDropoutNet()
    lr: float | torch.Tensor = torch.tensor(1e-3) if lr_kind == "tensor" else 1e-3
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    backend = _CountingBackend()
    opt.step = torch.compile(opt.step, backend=backend)  # type: ignore[method-assign]
    data = tasks.batches(count=4)
    tasks.train(model, opt, data, 2)
    warm = backend.graphs
    assert warm >= 1
    extra = 0 if lr_kind == "tensor" else 1

    _find(model, opt, data, num_steps=12, end_lr=1e-1)
    assert backend.graphs == warm + extra
    _find(model, opt, data, num_steps=30, end_lr=1e-1)
    tasks.train(model, opt, data, 2)
    set_lrs(opt, [3e-3])
    tasks.train(model, opt, data, 2)
    assert backend.graphs == warm + extra
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor if lr_kind == "tensor" else float)
    if lr_kind == "tensor":
        assert opt.param_groups[0]["lr"] is lr


# -- CUDA only -----------------------------------------------------------------------------------------------


def _peak_extra_gpu_bytes(fn: Callable[[], Any]) -> int:
    """Peak GPU memory allocated while ``fn`` runs, above what was allocated before it."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _take_and_restore(model: nn.Module, opt: torch.optim.Optimizer, storage: str) -> None:
    snap = Snapshot.take(model, opt, storage=storage)  # type: ignore[arg-type]
    try:
        snap.restore()
    finally:
        snap.close()


def _gpu_mlp(width: int = 2048) -> tuple[nn.Module, torch.optim.Optimizer, Batches]:
    model = nn.Sequential(nn.Linear(1024, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    model = model.cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    data = [
        (torch.randn(64, 1024, generator=g).cuda(), torch.randint(0, 10, (64,), generator=g).cuda()) for _ in range(4)
    ]
    tasks.train(model, opt, data, 2)
    return model, opt, data


@pytest.mark.cuda
def test_cpu_snapshot_adds_no_gpu_memory_during_lr_find() -> None:
    model, opt, data = _gpu_mlp()
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert _peak_extra_gpu_bytes(lambda: _take_and_restore(model, opt, "cpu")) == 0

    def bare() -> None:
        for i in range(20):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(data[i % 4][0]), data[i % 4][1]).backward()
            opt.step()

    with Snapshot.take(model, opt):
        bare_peak = _peak_extra_gpu_bytes(bare)
    range_test_peak = _peak_extra_gpu_bytes(
        lambda: _find(model, opt, data, num_steps=20, start_lr=1e-6, end_lr=1e-4, divergence_factor=1e6)
    )
    # the sweep's own bookkeeping (a loss buffer, a few scalars) is all the range test may add to a bare loop
    assert range_test_peak - bare_peak < min(2**20, model_bytes // 20), (range_test_peak, bare_peak)


@pytest.mark.cuda
@pytest.mark.parametrize("storage", ["cpu", "disk"])
def test_channels_last_snapshot_stages_nothing_on_the_gpu(storage: str) -> None:
    """Pinned copies with the parameters' strides: a D2H/H2D copy between different layouts would stage through
    a contiguous temporary on the GPU."""
    model = ConvNet().cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tasks.train(model, opt, _images("cuda"), 2)
    conv = model.body[0].weight
    with Snapshot.take(model, opt, storage=storage) as snap:  # type: ignore[arg-type]
        saved = snap._store.get("p0")
        assert saved["data"].stride() == conv.stride() == saved["grad"].stride() == saved["state.exp_avg"].stride()
        assert saved["data"].is_pinned() == (storage == "cpu")
    assert _peak_extra_gpu_bytes(lambda: _take_and_restore(model, opt, storage)) == 0


@pytest.mark.cuda
def test_steady_state_sweep_never_blocks_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``set_sync_debug_mode("error")`` any synchronizing CUDA call (``.item()``, a blocking copy, ...)
    raises. It is switched on from the 4th step to the restore; the deferred loss read waits on an event that
    was recorded a whole check earlier, which this mode does not count."""
    model = tasks.BNDropoutNet().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # no inherent syncs; no scaler
    data = _on("cuda", tasks.batches())
    tasks.train(model, opt, data, 2)
    calls = [0]

    def compute(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 4:
            torch.cuda.set_sync_debug_mode("error")
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    restore = Snapshot.restore

    def restore_without_debug_mode(self: Snapshot) -> None:
        torch.cuda.set_sync_debug_mode(0)
        restore(self)

    monkeypatch.setattr(Snapshot, "restore", restore_without_debug_mode)
    try:
        result = _find(
            model,
            opt,
            data,
            compute_loss=compute,
            num_steps=40,
            start_lr=1e-5,
            end_lr=1e-2,
            divergence_factor=1e6,
            check_every=4,
        )
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert len(result.curve) == 40 and calls[0] == 40


@pytest.mark.cuda
def test_model_that_does_not_fit_twice_on_the_gpu_gets_a_range_test() -> None:
    """A ballast tensor leaves room for the model (1 GiB, frozen) plus ~0.7 GiB: a second copy of the model on the
    GPU could not exist; the CPU snapshot never needs one."""
    side = 16384  # 16384 x 16384 fp32 = 1 GiB
    model_bytes = side * side * 4
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    if free < 3 * model_bytes:
        pytest.skip(f"needs 3 GiB of free GPU memory, has {free / 2**30:.1f} GiB")
    try:
        ballast = torch.empty(free - int(1.7 * model_bytes), dtype=torch.uint8, device="cuda")
    except torch.OutOfMemoryError:
        pytest.skip("could not allocate the ballast")
    frozen = model = opt = data = None
    try:
        frozen = nn.Linear(side, side, bias=False, device="cuda").requires_grad_(False)
        model = nn.Sequential(frozen, nn.ReLU(), nn.Linear(side, 10)).cuda()
        assert torch.cuda.mem_get_info()[0] < model_bytes  # the model does not fit a second time
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        g = torch.Generator().manual_seed(0)
        data = [
            (torch.randn(8, side, generator=g).cuda(), torch.randint(0, 10, (8,), generator=g).cuda()) for _ in range(4)
        ]
        tasks.train(model, opt, data, 1)
        weight = frozen.weight.detach().cpu()  # host copies only: the GPU has no room for a second one
        head = {k: v.clone() for k, v in model[2].state_dict().items()}
        result = _find(model, opt, data, num_steps=10, end_lr=1.0, snapshot="cpu")
        assert len(result.curve) > 2
        assert torch.equal(frozen.weight.detach().cpu(), weight)
        assert all(torch.equal(v, model[2].state_dict()[k]) for k, v in head.items())
    finally:
        del ballast, frozen, model, opt, data
        torch.cuda.empty_cache()


@pytest.mark.cuda
def test_disk_snapshot_on_cuda() -> None:
    model, opt, data = _gpu_mlp(width=512)
    before = tasks.full_state(model, opt)
    dirs = set(os.listdir(tempfile.gettempdir()))
    assert _peak_extra_gpu_bytes(lambda: _take_and_restore(model, opt, "disk")) == 0
    result = _find(model, opt, data, num_steps=20, end_lr=1.0, snapshot="disk")
    assert len(result.curve) > 2
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    leftovers = {d for d in set(os.listdir(tempfile.gettempdir())) - dirs if d.startswith("autolr-snapshot-")}
    assert not leftovers


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("device", DEVICES)
def test_the_start_state_reads_the_same_on_every_device_and_dtype(device: str, dtype: torch.dtype) -> None:
    from autolr.pretrained import detect

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    normed = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 4))
    for model in (plain, normed):
        fresh = detect(model.to(device=device, dtype=dtype))
        assert not fresh.trained, fresh.reason
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.linspace(-0.5, 0.5, p.numel(), device=device, dtype=dtype).reshape(p.shape))
        assert detect(model).trained


@pytest.mark.parametrize("device", DEVICES)
def test_a_flat_fine_tune_is_swept_twice_and_restored_on_every_device(device: str) -> None:
    """The second, longer sweep of a fine-tune runs on the model's device and leaves no trace there."""
    from autolr.suggest import FINETUNE_FLAT_CONFIDENCE, FINETUNE_RESWEPT_CONFIDENCE

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 1)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):  # trained to convergence on clean data
        x = torch.rand(64, 4, generator=g) * 2 - 1
        nn.functional.mse_loss(model(x.to(device)), torch.sin(2 * x[:, :1] + x[:, 1:2]).to(device)).backward()
        opt.step()
        opt.zero_grad()
    x = torch.rand(300 * 8, 4, generator=g) * 2 - 1  # noisy labels: nothing left to learn, a flat sweep
    y = torch.sin(2 * x[:, :1] + x[:, 1:2]) + 0.5 * torch.randn(300 * 8, 1, generator=g)
    before = tasks.full_state(model, opt)
    result = autolr.lr_find(model, opt, list(zip(x.split(8), y.split(8))), loss_fn=nn.MSELoss(), progress=False)
    assert result.settings["swept_twice"] and result.curve.num_steps == 300
    # the edge read off the longer sweep, or (when it shows none) the first reading, kept: device numerics decide
    assert result.suggestion.confidence in (FINETUNE_RESWEPT_CONFIDENCE, FINETUNE_FLAT_CONFIDENCE)
    assert "300-step sweep" in result.suggestion.reason
    tasks.assert_same_state(before, tasks.full_state(model, opt))

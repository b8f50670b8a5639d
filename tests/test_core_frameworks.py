"""The autolr core against the real Accelerate and pytorch-ignite packages: small CPU models, real training steps.

* ``lr_find`` and ``AutoLR`` on the objects ``Accelerator.prepare`` returns (the ``AcceleratedOptimizer`` is
  unwrapped; stepping the wrapper still drives the plan).
* The range test over Accelerate's own step (``accumulate``, ``backward``, ``clip_grad_norm_``) and over its
  pieces (``backward=accelerator.backward``, ``autocast=accelerator.autocast`` under bf16).
* Resuming an ``AutoLR`` through Accelerate's ``save_state``/``load_state``, Ignite's ``Checkpoint`` and plain
  ``torch.save``: the LR trajectory after the resume equals the uninterrupted run's, exactly.
* Two real processes (``torchrun``, gloo) running Accelerate with gradient accumulation.

Accelerate's ``AcceleratorState`` is a process singleton (one ``mixed_precision`` per process): every test
builds its ``Accelerator`` through the ``accelerator`` fixture, which resets the singletons before and after.

Run as a script (``torchrun ... tests/test_core_frameworks.py OUT_DIR``) this file is the distributed worker.
"""

from __future__ import annotations

import contextlib
import io
import sys
import traceback
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # the distributed worker: make `tests` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest
import torch
from torch import nn

import autolr
from autolr import AutoLR
from tests import launch, tasks

LOSS = nn.CrossEntropyLoss()
ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 120.0  # the whole torchrun launch; a healthy one takes ~10 s on 2 cores


# == helpers ================================================================================================


def _reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def accelerator() -> Iterator[Callable[..., Any]]:
    """A factory of fresh ``Accelerator(cpu=True, ...)`` objects (the process singletons reset each time)."""
    accelerate = pytest.importorskip("accelerate")

    def make(**kwargs: Any) -> Any:
        _reset_accelerate()
        return accelerate.Accelerator(cpu=True, **kwargs)

    yield make
    _reset_accelerate()


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return tasks.BNDropoutNet()  # BatchNorm running stats, Dropout RNG, a non-persistent buffer


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    # SGD: the gradient's scale is the step's scale, so a loss divided once too often shows in the curve
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def _accelerate_step(acc: Any, model: nn.Module, opt: Any, calls: list[int]) -> Callable[[Any], torch.Tensor]:
    """The training step of an Accelerate loop, as its docs write it."""

    def step(batch: Any) -> torch.Tensor:
        calls[0] += 1
        with acc.accumulate(model):
            loss = LOSS(model(batch[0]), batch[1])
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
        return loss

    return step


def _count_steps(optimizer: torch.optim.Optimizer) -> list[int]:
    """Count the real optimizer steps (the post-hook fires only when the torch optimizer steps)."""
    count = [0]
    optimizer.register_step_post_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


# == 1. lr_find and AutoLR on prepared objects ==============================================================


def test_lr_find_on_prepared_objects_unwraps_and_restores_exactly(accelerator) -> None:
    from accelerate.optimizer import AcceleratedOptimizer

    acc = accelerator()
    model = _net()
    model, opt, loader = acc.prepare(model, _sgd(model), tasks.loader(shuffle=False))
    assert isinstance(opt, AcceleratedOptimizer)
    tasks.train(model, opt, tasks.batches(count=2), 2)  # mid-training: momentum, grads, BN stats exist
    hooks = len(opt.optimizer._optimizer_step_post_hooks)
    before, rng = tasks.full_state(model, opt), torch.get_rng_state()
    result = autolr.lr_find(model, opt, loader, loss_fn=LOSS, num_steps=30, end_lr=1.0, progress=False)
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    assert torch.equal(rng, torch.get_rng_state())
    assert len(opt.optimizer._optimizer_step_post_hooks) == hooks  # nothing left attached
    assert result.settings["optimizer"] == "SGD"  # the torch optimizer inside was measured
    # the same sweep on the torch optimizer directly measures the same curve
    reference = autolr.lr_find(model, opt.optimizer, loader, loss_fn=LOSS, num_steps=30, end_lr=1.0, progress=False)
    assert result.curve.losses.tolist() == reference.curve.losses.tolist()
    assert result.suggestion.lr == reference.suggestion.lr is not None


def test_autolr_on_an_accelerated_optimizer_counts_real_steps_and_follows_the_plan(accelerator) -> None:
    acc = accelerator(gradient_accumulation_steps=2)
    model = _net()
    model, opt, loader = acc.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3), tasks.loader())
    tuner = AutoLR(model, opt, schedule="warmup_cosine", weight_decay="auto", progress=False)
    assert len(opt.param_groups) == 2  # the wrapper sees the weight-decay split
    epochs = 2
    plan = tuner.lr_find(loader, LOSS, epochs=epochs, accumulation_steps=acc.gradient_accumulation_steps,
                         num_steps=30)
    assert plan.total_steps == epochs * len(loader) // 2
    seen: list[list[float]] = []
    opt.optimizer.register_step_pre_hook(lambda o, *_: seen.append([g["lr"] for g in o.param_groups]))
    micro = 0
    for _ in range(epochs):
        for x, y in loader:
            with acc.accumulate(model):
                loss = LOSS(model(x), y)
                acc.backward(loss)
                opt.step()  # the AcceleratedOptimizer: a real step every 2nd micro-batch only
                opt.zero_grad()
            tuner.observe(loss)
            micro += 1
    assert micro == 2 * plan.total_steps
    assert tuner.step == len(seen) == plan.total_steps
    expected = [lr * plan.schedule(t) for t in range(plan.total_steps) for lr in plan.lrs]
    assert [lr for lrs in seen for lr in lrs] == pytest.approx(expected, rel=1e-12)
    assert all(lr > 0 for lr in seen[0])  # the warmup's first step already learns
    assert max(s[0] for s in seen) == pytest.approx(plan.lrs[0], rel=0.05)  # the peak is reached


# == 2. the range test over Accelerate's step, and over its pieces ==========================================


def test_train_step_with_accelerate_accumulation_matches_autolr_own_accumulation(accelerator) -> None:
    acc = accelerator(gradient_accumulation_steps=2)
    model = _net()
    model, opt, loader = acc.prepare(model, _sgd(model), tasks.loader(shuffle=False))
    tasks.train(model, opt, tasks.batches(count=2), 2)
    before, rng = tasks.full_state(model, opt), torch.get_rng_state()
    calls, steps = [0], _count_steps(opt.optimizer)
    result = autolr.lr_find(model, opt, loader, train_step=_accelerate_step(acc, model, opt, calls),
                            accumulation_steps=acc.gradient_accumulation_steps, num_steps=24, end_lr=1.0,
                            progress=False)
    assert len(result.curve) == 24 == steps[0] and calls[0] == 48  # only every 2nd call is an optimizer step
    assert result.curve.skipped_steps == 0 and result.settings["step"] == "train_step"
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    assert torch.equal(rng, torch.get_rng_state())
    # autolr running the same step itself (loss / 2 per micro-batch, clip to 1.0) measures the same curve
    reference = autolr.lr_find(model, opt, loader, loss_fn=LOSS, accumulation_steps=2, max_grad_norm=1.0,
                               num_steps=24, end_lr=1.0, progress=False)
    assert result.curve.losses.tolist() == reference.curve.losses.tolist()
    assert result.suggestion.lr == reference.suggestion.lr


def test_accelerate_backward_and_autocast_pieces_under_bf16(accelerator) -> None:
    acc = accelerator(mixed_precision="bf16", gradient_accumulation_steps=2)
    model = _net()
    model, opt, loader = acc.prepare(model, _sgd(model), tasks.loader(shuffle=False))
    before, rng = tasks.full_state(model, opt), torch.get_rng_state()
    seen: list[tuple[bool, torch.dtype]] = []

    def compute_loss(batch: Any) -> torch.Tensor:
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return LOSS(model(batch[0]), batch[1])  # (the prepared model returns fp32 outputs)

    result = autolr.lr_find(model, opt, loader, compute_loss=compute_loss, backward=acc.backward,
                            autocast=acc.autocast, accumulation_steps=acc.gradient_accumulation_steps,
                            num_steps=20, end_lr=1.0, progress=False)
    assert len(result.curve) == 20 and len(seen) == 40
    assert all(on and dtype == torch.bfloat16 for on, dtype in seen)  # Accelerate's autocast was in force
    assert result.settings["amp"] == "custom"
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    assert torch.equal(rng, torch.get_rng_state())
    # accelerator.backward divides by gradient_accumulation_steps itself: the gradients must be those of
    # autolr's own bf16 step with the same accumulation (not divided a second time)
    reference = autolr.lr_find(model, opt, loader, loss_fn=LOSS, autocast_dtype=torch.bfloat16,
                               accumulation_steps=2, num_steps=20, end_lr=1.0, progress=False)
    assert result.curve.losses.tolist() == reference.curve.losses.tolist()


# == 3. resuming an AutoLR through the frameworks' checkpoints ==============================================

DATA = tasks.batches(count=8)
BEFORE, AFTER = 10, 12  # training steps before the checkpoint, and after it


def _tuner(model: nn.Module, opt: Any) -> AutoLR:
    return AutoLR(model, opt, schedule="warmup_cosine", weight_decay="auto", progress=False)


def _plan(tuner: AutoLR) -> None:
    tuner.lr_find(DATA, LOSS, total_steps=BEFORE + AFTER + 4, num_steps=30)


def _train(model: nn.Module, opt: Any, tuner: AutoLR, start: int, steps: int) -> list[list[float]]:
    """Train ``steps`` steps on DATA from batch ``start``; the LRs of every group at each step."""
    torch.manual_seed(1000 + start)  # the same dropout masks in the uninterrupted and the resumed run
    lrs = []
    for i in range(start, start + steps):
        x, y = DATA[i % len(DATA)]
        opt.zero_grad()
        loss = LOSS(model(x), y)
        loss.backward()
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        tuner.observe(loss)
    return lrs


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _assert_resumed(ref: tuple[list, list, int], model: nn.Module, opt: Any, tuner: AutoLR) -> None:
    """Train AFTER steps from the resumed state; everything must equal the uninterrupted run."""
    assert len(opt.param_groups) == 2 and tuner.step == BEFORE
    lrs = _train(model, opt, tuner, BEFORE, AFTER)
    ref_lrs, ref_params, ref_step = ref
    assert lrs == ref_lrs  # exactly
    assert len({tuple(r) for r in lrs}) > 1  # (the schedule moves over these steps)
    assert all(torch.equal(a, b) for a, b in zip(_params(model), ref_params))
    assert tuner.step == ref_step == BEFORE + AFTER


@pytest.mark.parametrize("loads", [1, 2], ids=["load_once", "load_twice"])
def test_accelerate_save_state_and_load_state_resume_the_plan_exactly(accelerator, tmp_path: Path,
                                                                       loads: int) -> None:
    def build() -> tuple[Any, nn.Module, Any, AutoLR]:
        acc = accelerator()
        model = _net()
        model, opt = acc.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
        tuner = _tuner(model, opt)
        acc.register_for_checkpointing(tuner)
        return acc, model, opt, tuner

    acc, model, opt, tuner = build()
    _plan(tuner)
    _train(model, opt, tuner, 0, BEFORE)
    acc.save_state(str(tmp_path))
    assert (tmp_path / "custom_checkpoint_0.pkl").exists()
    ref = (_train(model, opt, tuner, BEFORE, AFTER), _params(model), tuner.step)

    acc, model, opt, tuner = build()  # a fresh process would do this: nothing carried over
    assert tuner.plan is None
    for _ in range(loads):
        acc.load_state(str(tmp_path))  # the optimizer is loaded before the registered tuner
    assert tuner.plan is not None
    _assert_resumed(ref, model, opt, tuner)


@pytest.mark.parametrize("order", [("optimizer", "tuner"), ("tuner", "optimizer")], ids=["optimizer_first",
                                                                                          "tuner_first"])
def test_ignite_checkpoint_load_objects_resumes_in_either_order(tmp_path: Path, order: tuple[str, str]) -> None:
    engine_mod = pytest.importorskip("ignite.engine")
    handlers = pytest.importorskip("ignite.handlers")
    Engine, Events = engine_mod.Engine, engine_mod.Events
    epochs = (BEFORE + AFTER) // len(DATA) + 1

    def build() -> tuple[nn.Module, torch.optim.Optimizer, AutoLR, Any, list[list[float]]]:
        model = _net()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        tuner = _tuner(model, opt)
        lrs: list[list[float]] = []

        def update(engine: Any, batch: Any) -> float:
            model.train()
            opt.zero_grad()
            loss = LOSS(model(batch[0]), batch[1])
            loss.backward()
            lrs.append([g["lr"] for g in opt.param_groups])
            opt.step()
            return loss.item()

        trainer = Engine(update)
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: torch.manual_seed(e.state.epoch))
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: tuner.observe(e.state.output))
        return model, opt, tuner, trainer, lrs

    model, opt, tuner, trainer, ref_lrs = build()
    _plan(tuner)
    objects = {"model": model, "optimizer": opt, "tuner": tuner, "trainer": trainer}
    checkpoint = handlers.Checkpoint(objects, handlers.DiskSaver(str(tmp_path), require_empty=False))
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), checkpoint)
    trainer.run(DATA, max_epochs=epochs)
    saved = checkpoint.last_checkpoint
    assert saved is not None and tuner.step == epochs * len(DATA)

    model, opt, tuner, trainer, lrs = build()
    to_load = {name: {"optimizer": opt, "tuner": tuner}[name] for name in order}
    to_load.update(model=model, trainer=trainer)
    handlers.Checkpoint.load_objects(to_load=to_load, checkpoint=str(saved))  # torch.load(weights_only=True)
    assert len(opt.param_groups) == 2 and tuner.step == len(DATA) and tuner.plan is not None
    trainer.run(DATA, max_epochs=epochs)
    assert lrs == ref_lrs[len(DATA):]  # exactly
    assert tuner.step == epochs * len(DATA)
    assert tuner.scheduler is not None and tuner.scheduler.last_epoch == epochs * len(DATA)


def test_plain_torch_save_and_weights_only_load_resume_exactly() -> None:
    def build() -> tuple[nn.Module, torch.optim.Optimizer, AutoLR]:
        model = _net()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        return model, opt, _tuner(model, opt)

    model, opt, tuner = build()
    _plan(tuner)
    _train(model, opt, tuner, 0, BEFORE)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "tuner": tuner.state_dict()}, buffer)
    ref = (_train(model, opt, tuner, BEFORE, AFTER), _params(model), tuner.step)

    model, opt, tuner = build()
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # the tuner's state is plain data: no pickled classes
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    tuner.load_state_dict(state["tuner"])
    _assert_resumed(ref, model, opt, tuner)


# == 4. two processes: Accelerate on gloo, launched with torchrun ===========================================


@pytest.mark.distributed
@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="needs torch.distributed + gloo")
def test_two_accelerate_processes_share_curve_and_suggestion_and_restore_exactly(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    records = launch.run_ranks(launch.torchrun(Path(__file__).resolve(), str(tmp_path)), tmp_path,
                               timeout=LAUNCH_TIMEOUT_S)
    r0, r1 = records
    assert r0["world_size"] == r1["world_size"] == 2 and r0["distributed_type"] == "MULTI_CPU"
    assert len(r0["losses"]) == 16 and r0["calls"] == r1["calls"] == 32  # 2 calls per optimizer step
    assert r0["steps"] == r1["steps"] == 16
    assert r0["losses"] == r1["losses"] and r0["lrs"] == r1["lrs"]  # one curve: the loss is averaged over ranks
    assert r0["suggested_lr"] == r1["suggested_lr"] is not None
    for record in records:
        tasks.assert_same_state(record["before"], record["after"])
        assert torch.equal(record["rng_before"], record["rng_after"])
    for name, value in r0["after"]["params"].items():  # DDP kept the replicas identical
        assert torch.equal(value, r1["after"]["params"][name])


def _distributed_worker(out: Path) -> None:
    """One rank under torchrun: Accelerate prepares DDP, lr_find runs Accelerate's step with accumulation."""
    import accelerate
    from accelerate.utils import InitProcessGroupKwargs

    torch.set_num_threads(1)
    acc = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=2,
                                 kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=30))])
    record: dict[str, Any] = {}
    try:
        model = _net()  # the same initial model on every rank
        model, opt, loader = acc.prepare(model, _sgd(model), tasks.loader(batch_size=16))  # 8 batches per rank
        calls = [0]
        step = _accelerate_step(acc, model, opt, calls)
        for batch in tasks.batches(count=4, batch_size=16, seed=10 + acc.process_index):  # mid-training
            step(batch)
        calls[0] = 0
        steps = _count_steps(opt.optimizer)
        before, rng = tasks.full_state(model, opt), torch.get_rng_state()
        result = autolr.lr_find(model, opt, loader, train_step=step, accumulation_steps=2, num_steps=16,
                                end_lr=1.0, progress=False, resweep_steps=0)  # one sweep: the counts are its own
        record = {
            "losses": [float(v) for v in result.curve.losses], "lrs": [float(v) for v in result.curve.lrs],
            "suggested_lr": result.lr, "calls": calls[0], "steps": steps[0],
            "world_size": result.settings["world_size"], "distributed_type": acc.distributed_type.value,
            "before": before, "after": tasks.full_state(model, opt),
            "rng_before": rng, "rng_after": torch.get_rng_state(),
        }
    except Exception:
        record = {"error": traceback.format_exc()}
    finally:
        torch.save(record, out / f"rank{acc.process_index}.pt")
        with contextlib.suppress(Exception):
            acc.wait_for_everyone()
        acc.end_training()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _distributed_worker(Path(sys.argv[1]))

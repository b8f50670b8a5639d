"""AutoLRHandler inside real pytorch-ignite runs: tiny models on CPU, no mocks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("ignite")

from ignite.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import Checkpoint, DiskSaver
from ignite.metrics import Loss

from autolr import AutoLRWarning, ConfigurationError
from autolr.integrations.ignite import AutoLRHandler
from autolr.range_test import range_test_running
from autolr.report import Reporter
from tests import launch

ROOT = Path(__file__).resolve().parents[1]
LOSS = nn.CrossEntropyLoss()
DDP_TIMEOUT_S = 120.0  # the whole 2-process run; a healthy one takes ~10 s on 2 cores


def dataset(n: int = 160, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, x[:, :4].argmax(1))


def loader(generator: bool = False) -> DataLoader:
    """10 shuffled batches; the order comes from the global RNG, or from the loader's own generator."""
    return DataLoader(dataset(), batch_size=16, shuffle=True,
                      generator=torch.Generator().manual_seed(1) if generator else None)


def net() -> nn.Module:
    """LayerNorm and dropout: the RNG matters for the first real step."""
    return nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 4))


class Run:
    """A model, an AdamW optimizer and a trainer whose ``update`` is a plain Ignite process function, with a
    record of what the real iterations saw (the sweep's calls are recorded apart)."""

    def __init__(self, update: Callable[[Run], Callable[[Engine, Any], Any]] | None = None, seed: int = 0,
                 lr: float = 1e-3) -> None:
        torch.manual_seed(seed)
        self.model = net()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)
        self.lrs: list[list[float]] = []  # per real optimizer step, the LRs it ran at
        self.sweep_calls: list[Any] = []  # what the process function saw during the range test
        self.outputs: list[float] = []
        self.events = {"iteration_completed": 0, "get_batch_completed": 0, "started": 0}
        self.start: dict[str, Any] = {}
        self.optimizer.register_step_pre_hook(self._before_step)
        self.trainer = Engine((update or Run.plain_update)(self))
        self.trainer.add_event_handler(Events.STARTED, self._count, "started")
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, self._count, "iteration_completed")
        self.trainer.add_event_handler(Events.GET_BATCH_COMPLETED, self._count, "get_batch_completed")
        self.trainer.add_event_handler(Events.ITERATION_STARTED(once=1), self._first_iteration)

    @staticmethod
    def plain_update(run: Run) -> Callable[[Engine, Any], Any]:
        def update(engine: Engine, batch: Any) -> float:
            run.model.train()
            run.optimizer.zero_grad()
            loss = LOSS(run.model(batch[0]), batch[1])
            loss.backward()
            run.optimizer.step()
            if range_test_running():
                run.sweep_calls.append(engine.state.iteration)
            else:
                run.outputs.append(loss.item())
            return loss.item()

        return update

    def _before_step(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        if not range_test_running():
            self.lrs.append([float(g["lr"]) for g in optimizer.param_groups])

    def _count(self, engine: Engine, name: str) -> None:
        assert not range_test_running(), f"{name} fired during the range test"
        self.events[name] += 1

    def _first_iteration(self, engine: Engine) -> None:
        self.start = {
            "params": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "opt_state": len(self.optimizer.state), "rng": torch.get_rng_state(), "iteration": engine.state.iteration,
            "batch": [t.clone() for t in engine.state.batch], "lrs": [g["lr"] for g in self.optimizer.param_groups],
            "grads": [p.grad for p in self.model.parameters()],
        }


class Collect(Reporter):
    """Every observed training loss the tuner reports, by step."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def training_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if "autolr/train_loss" in metrics:
            self.losses[step] = metrics["autolr/train_loss"]


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# == the sweep runs the engine's step and leaves no trace ====================================================


@pytest.mark.parametrize("generator, second_sweep", [(False, False), (True, False), (True, True)],
                         ids=["global-rng-order", "loader-generator", "loader-generator-swept-twice"])
def test_restore_is_exact_and_the_run_is_the_one_without_the_handler(generator: bool, second_sweep: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With the suggestion rejected (min_confidence=1), a constant schedule and no decay, the handler must leave
    the run bit for bit as without it: same weights, optimizer, RNG, engine state and first batch at the first
    real iteration, no event fired during the sweep, same final weights. Also when a fine-tune's flat sweep is
    run a second time (forced here: this model's curve is clear)."""
    plain = Run()
    plain.trainer.run(loader(generator), max_epochs=2)
    if second_sweep:
        monkeypatch.setattr("autolr.suggest.needs_resweep", lambda lrs, losses: True)
    tuned = Run()
    handler = AutoLRHandler(tuned.model, tuned.optimizer, schedule="constant", weight_decay=None, min_confidence=1.0,
                            num_steps=30, progress=False, finetune=second_sweep).attach(tuned.trainer)
    tuned.trainer.run(loader(generator), max_epochs=2)
    assert handler.result.settings["swept_twice"] is second_sweep
    assert len(handler.result.curve) > 0 and len(tuned.sweep_calls) >= (60 if second_sweep else 30)
    assert tuned.sweep_calls[:3] == [1, 2, 3]  # with engine.state.iteration counting from 1, as in a run
    assert handler.plan.lrs == (1e-3,) and handler.plan.schedule_name == "constant"
    assert _equal(plain.start["params"], tuned.start["params"])
    assert plain.start["opt_state"] == tuned.start["opt_state"] == 0
    assert torch.equal(plain.start["rng"], tuned.start["rng"])
    assert all(torch.equal(a, b) for a, b in zip(plain.start["batch"], tuned.start["batch"]))
    assert tuned.start["iteration"] == 1 and tuned.start["grads"] == plain.start["grads"] == [None] * 6
    assert plain.events == tuned.events == {"iteration_completed": 20, "get_batch_completed": 20, "started": 1}
    assert tuned.trainer.state.iteration == 20 and tuned.trainer.state.epoch == 2
    assert plain.outputs == tuned.outputs
    assert _equal(_params(plain.model), _params(tuned.model))
    assert handler.tuner.step == 20 and handler.tuner.epoch == 2


def test_plan_is_applied_the_lr_follows_it_and_every_step_is_observed() -> None:
    run = Run()
    collect = Collect()
    handler = AutoLRHandler(run.model, run.optimizer, num_steps=40, progress=False, reporters=[collect])
    assert handler.attach(run.trainer) is handler
    run.trainer.run(loader(), max_epochs=2)
    plan = handler.plan
    assert plan.schedule_name == "warmup_cosine" and plan.total_steps == 20  # max_epochs * epoch_length
    assert plan.lrs[0] == pytest.approx(handler.result.suggestion.lr)
    assert len(run.optimizer.param_groups) == 2  # weight decay split: weights / biases and LayerNorm
    assert [g["weight_decay"] for g in run.optimizer.param_groups] == [pytest.approx(plan.weight_decay), 0.0]
    assert len(run.lrs) == 20
    for k, lrs in enumerate(run.lrs):
        assert lrs == [pytest.approx(base * plan.schedule(k), rel=1e-12) for base in plan.lrs]
    assert handler.tuner.step == 20 and handler.tuner.epoch == 2
    # observe() got engine.state.output of every iteration (reported when the run completed and flushed)
    assert [collect.losses[s] for s in range(1, 21)] == pytest.approx(run.outputs, rel=1e-6)


def test_create_supervised_trainer_accumulation_is_read_and_counted_in_optimizer_steps() -> None:
    """gradient_accumulation_steps=2 over 10 iterations an epoch: 5 optimizer steps an epoch. The sweep calls the
    process function twice per point (engine.state.iteration counts, as the step reads it), the schedule's length
    counts optimizer steps."""
    run = Run()
    calls: list[int] = []
    run.model.register_forward_hook(lambda *_: calls.append(1) if range_test_running() else None)
    trainer = create_supervised_trainer(run.model, run.optimizer, LOSS, gradient_accumulation_steps=2)
    handler = AutoLRHandler(run.model, run.optimizer, schedule="onecycle", weight_decay=None, num_steps=12,
                            progress=False).attach(trainer)
    trainer.run(loader(), max_epochs=2)
    curve = handler.result.curve
    assert handler.plan.total_steps == 10 and handler.tuner.step == 10 and len(run.lrs) == 10
    assert len(calls) == 2 * (len(curve) + curve.skipped_steps) and len(curve) > 0
    for k, lrs in enumerate(run.lrs):
        assert lrs == [pytest.approx(handler.plan.lrs[0] * handler.plan.schedule(k), rel=1e-12)]


def test_amp_scaler_and_clipping_inside_the_process_function_are_what_the_sweep_runs() -> None:
    """A process function with bf16 autocast, a GradScaler kept in engine.state.scaler (as
    create_supervised_trainer(scaler=True) keeps it) and gradient clipping: the sweep runs all three, and the
    scaler is restored with the rest."""
    seen: list[tuple[torch.dtype, bool]] = []

    def amp_update(run: Run) -> Callable[[Engine, Any], Any]:
        def update(engine: Engine, batch: Any) -> dict[str, torch.Tensor]:
            scaler = engine.state.scaler
            run.model.train()
            run.optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = run.model(batch[0])
            loss = LOSS(out.float(), batch[1])
            scaler.scale(loss).backward()
            scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), 0.5)
            scaler.step(run.optimizer)
            scaler.update()
            if range_test_running():
                seen.append((out.dtype, engine.state.scaler is scaler))
            return {"loss": loss.detach(), "dtype": str(out.dtype)}

        return update

    runs = []
    for tune in (False, True):
        run = Run(amp_update)
        run.trainer.state.scaler = torch.amp.GradScaler("cpu", growth_interval=3)  # the sweep would grow it
        scaler = run.trainer.state.scaler
        states: list[dict[str, Any]] = []
        run.trainer.add_event_handler(Events.ITERATION_STARTED(once=1), lambda _, s=scaler, out=states: out.append(
            s.state_dict()))
        handler = AutoLRHandler(run.model, run.optimizer, weight_decay=None, schedule="constant", min_confidence=1.0,
                                num_steps=20, progress=False).attach(run.trainer) if tune else None
        run.trainer.run(loader(), max_epochs=1)
        runs.append((run, handler, states[0]))
    (plain, _, plain_scaler), (tuned, handler, tuned_scaler) = runs
    assert len(seen) >= 20 and set(seen) == {(torch.bfloat16, True)}
    assert handler.tuner.scaler is tuned.trainer.state.scaler  # picked up from engine.state.scaler
    assert tuned_scaler == plain_scaler  # scale and growth tracker restored
    assert _equal(plain.start["params"], tuned.start["params"]) and plain.outputs == tuned.outputs


def test_own_accumulation_is_warned_about_until_given_and_custom_events_stay_silent() -> None:
    """A hand-written update that steps every 2nd iteration and fires a custom event: without
    attach(accumulation_steps=2) the handler says so; with it, the schedule counts optimizer steps. Handlers of the
    custom event are not called during the sweep."""

    def update(run: Run) -> Callable[[Engine, Any], Any]:
        def step(engine: Engine, batch: Any) -> torch.Tensor:
            loss = LOSS(run.model(batch[0]), batch[1])
            (loss / 2).backward()
            engine.fire_event("backward_done")
            if engine.state.iteration % 2 == 0:
                run.optimizer.step()
                run.optimizer.zero_grad()
            return loss.detach()

        return step

    for accumulation in (None, 2):
        run = Run(update)
        fired: list[bool] = []
        run.trainer.register_events("backward_done")
        run.trainer.add_event_handler("backward_done", lambda _, out=fired: out.append(range_test_running()))
        handler = AutoLRHandler(run.model, run.optimizer, schedule="linear", weight_decay=None, num_steps=16,
                                progress=False)
        handler.attach(run.trainer, accumulation_steps=accumulation)
        if accumulation is None:
            with pytest.warns(AutoLRWarning, match=r"every 2\.0 iterations, but accumulation_steps=1"):
                run.trainer.run(loader(), max_epochs=2)
            assert handler.plan.total_steps == 20  # iterations, not optimizer steps: what the warning is about
        else:
            run.trainer.run(loader(), max_epochs=2)
            assert handler.plan.total_steps == handler.tuner.step == len(run.lrs) == 10
            assert len(handler.result.curve) == 16 and handler.result.curve.skipped_steps == 0
        assert fired == [False] * 20  # the real iterations only


# == checkpoints ==============================================================================================


@pytest.mark.parametrize("order", [("autolr", "optimizer"), ("optimizer", "autolr")], ids=["autolr-first",
                                                                                           "optimizer-first"])
def test_checkpoint_resume_follows_the_uninterrupted_trajectory_in_either_order(tmp_path: Path,
                                                                                order: tuple[str, str]) -> None:
    def build() -> tuple[Run, AutoLRHandler]:
        run = Run()
        run.trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: torch.manual_seed(e.state.epoch))
        return run, AutoLRHandler(run.model, run.optimizer, num_steps=30, progress=False).attach(run.trainer)

    first, handler = build()
    objects = {"model": first.model, "optimizer": first.optimizer, "trainer": first.trainer, "autolr": handler}
    checkpoint = Checkpoint(objects, DiskSaver(str(tmp_path), require_empty=False))
    first.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), checkpoint)
    first.trainer.run(loader(), max_epochs=3)
    assert len(first.lrs) == 30 and handler.tuner.step == 30

    second, resumed = build()
    assert len(second.optimizer.param_groups) == 2  # split when the handler was built
    to_load = {name: {"autolr": resumed, "optimizer": second.optimizer}[name] for name in order}
    to_load.update(model=second.model, trainer=second.trainer)
    Checkpoint.load_objects(to_load=to_load, checkpoint=str(checkpoint.last_checkpoint))
    assert resumed.plan == handler.plan and resumed.tuner.step == 10
    second.trainer.run(loader(), max_epochs=3)
    assert second.sweep_calls == []  # no new range test
    assert second.lrs == first.lrs[10:]  # the same LR trajectory, bit for bit
    assert second.outputs == first.outputs[10:]
    assert _equal(_params(first.model), _params(second.model))
    assert resumed.tuner.step == 30 and resumed.tuner.scheduler.last_epoch == 30
    assert resumed.result.suggestion == handler.result.suggestion


def test_resume_from_a_checkpoint_without_autolr_state_leaves_the_run_alone(tmp_path: Path) -> None:
    first = Run()
    first.trainer.run(loader(), max_epochs=1)
    state = {"model": first.model.state_dict(), "trainer": first.trainer.state_dict()}
    second = Run()
    handler = AutoLRHandler(second.model, second.optimizer, weight_decay=None, num_steps=20,
                            progress=False).attach(second.trainer)
    Checkpoint.load_objects(to_load={"model": second.model, "trainer": second.trainer}, checkpoint=state)
    with pytest.warns(AutoLRWarning, match="no AutoLRHandler state was loaded"):
        second.trainer.run(loader(), max_epochs=2)
    assert handler.plan is None and second.sweep_calls == [] and len(second.lrs) == 10
    assert {lr for lrs in second.lrs for lr in lrs} == {1e-3}


# == epoch ends and the plateau ===============================================================================


def test_plateau_reads_the_evaluators_metric_at_every_epoch_end() -> None:
    run = Run()
    evaluator = create_supervised_evaluator(run.model, metrics={"loss": Loss(LOSS)})
    handler = AutoLRHandler(run.model, run.optimizer, schedule="plateau", weight_decay=None, num_steps=20,
                            progress=False).attach(run.trainer, evaluator)
    val_losses: list[float] = []

    @run.trainer.on(Events.EPOCH_COMPLETED)  # attached after the handler: its epoch end still sees this evaluation
    def validate(engine: Engine) -> None:
        evaluator.run(DataLoader(dataset(64, seed=1), batch_size=32))
        val_losses.append(evaluator.state.metrics["loss"])

    run.trainer.run(loader(), max_epochs=3)
    schedule = handler.tuner.scheduler.schedule
    assert handler.plan.step_granularity == "metric" and handler.tuner.epoch == 3 and len(val_losses) == 3
    assert schedule.best == pytest.approx(min(val_losses))


def test_plateau_without_the_metric_says_where_it_looked() -> None:
    run = Run()
    AutoLRHandler(run.model, run.optimizer, schedule="plateau", weight_decay=None, num_steps=20,
                  progress=False).attach(run.trainer)
    with pytest.raises(ConfigurationError, match=r"metric 'loss', which is not in the trainer's state\.metrics"):
        run.trainer.run(loader(), max_epochs=1)


# == bad input ================================================================================================


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"accumulation_steps": 2}, "attach\\(accumulation_steps"),
    ({"max_grad_norm": 1.0}, "clip inside the process function"),
    ({"loss_fn": LOSS}, "process function"),
    ({"total_steps": 10}, "attach\\(total_steps"),
    ({"num_step": 10}, "did you mean 'num_steps'"),
])
def test_arguments_the_engine_owns_or_unknown_ones_raise_at_construction(kwargs: dict[str, Any], match: str) -> None:
    run = Run()
    with pytest.raises(ConfigurationError, match=match):
        AutoLRHandler(run.model, run.optimizer, **kwargs)
    assert len(run.optimizer.param_groups) == 1  # nothing touched


def test_bad_attach_arguments_raise_before_the_run() -> None:
    run = Run()
    handler = AutoLRHandler(run.model, run.optimizer, weight_decay=None)
    with pytest.raises(ConfigurationError, match=r"ignite\.engine\.Engine"):
        handler.attach("trainer")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="accumulation_steps must be None or an integer >= 1"):
        handler.attach(run.trainer, accumulation_steps=0)
    with pytest.raises(ConfigurationError, match="evaluator is the trainer itself"):
        handler.attach(run.trainer, run.trainer)
    handler.attach(run.trainer)
    with pytest.raises(ConfigurationError, match="already attached"):
        handler.attach(run.trainer)


def test_an_output_that_is_no_loss_names_output_transform_and_restores_the_model() -> None:
    def update(run: Run) -> Callable[[Engine, Any], Any]:
        def step(engine: Engine, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
            run.optimizer.zero_grad()
            out = run.model(batch[0])
            loss = LOSS(out, batch[1])
            loss.backward()
            run.optimizer.step()
            return out.detach(), loss.detach()

        return step

    run = Run(update)
    before = _params(run.model)
    AutoLRHandler(run.model, run.optimizer, weight_decay=None, num_steps=20, progress=False).attach(run.trainer)
    with pytest.raises(ConfigurationError, match="output_transform"):
        run.trainer.run(loader(), max_epochs=1)
    assert _equal(before, _params(run.model))
    # the fix the message gives works
    run = Run(update)
    handler = AutoLRHandler(run.model, run.optimizer, weight_decay=None, num_steps=20, progress=False)
    handler.attach(run.trainer, output_transform=lambda output: output[1])
    run.trainer.run(loader(), max_epochs=1)
    assert handler.tuner.step == 10 and len(handler.result.curve) > 0


def test_a_one_shot_iterator_is_refused_instead_of_consumed() -> None:
    run = Run()
    AutoLRHandler(run.model, run.optimizer, weight_decay=None, num_steps=20, progress=False).attach(run.trainer)
    batches = iter(list(loader()))
    with pytest.raises(ConfigurationError, match="one-shot iterator"):
        run.trainer.run(batches, max_epochs=1, epoch_length=10)
    assert len(list(batches)) == 10  # nothing consumed


# == two processes: ignite.distributed on gloo ===============================================================


@pytest.mark.distributed
@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="needs torch.distributed + gloo")
def test_idist_two_gloo_processes_share_the_curve_and_the_plan(tmp_path: Path) -> None:
    records = launch.run_ranks([sys.executable, str(ROOT / "tests" / "ignite_ddp_job.py"), str(tmp_path)], tmp_path,
                               timeout=DDP_TIMEOUT_S, env={"PYTHONWARNINGS": "ignore"})
    r0, r1 = records
    assert r0["world_size"] == r1["world_size"] == 2
    assert len(r0["losses"]) > 0 and r0["losses"] == r1["losses"]  # one curve: the mean over the ranks
    n = len(r0["losses"])
    means = [(a + b) / 2 for a, b in zip(r0["local"][:n], r1["local"][:n])]
    assert r0["local"][:n] != r1["local"][:n] and r0["losses"] == pytest.approx(means, rel=1e-5)  # mean, not sum
    assert r0["plan"] == r1["plan"] and r0["lrs"] == r1["lrs"] and len(r0["lrs"]) == r0["plan"]["total_steps"]
    for record in records:
        assert record["restored"] == [True, True, True] and record["sweep_calls"] > 0  # weights, RNG, optimizer
    assert _equal(r0["params"], r1["params"])  # DDP kept the replicas identical
    assert r0["reported"] and not r1["reported"]  # only rank 0 reports

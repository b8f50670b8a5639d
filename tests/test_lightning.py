"""AutoLRCallback inside real Lightning fits: tiny models on CPU, no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("lightning")

import lightning.pytorch as pl

from autolr import ConfigurationError
from autolr.integrations.lightning import AutoLRCallback
from autolr.range_test import range_test_running

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning:lightning.*", "ignore::DeprecationWarning", "ignore:.*treespec",
    "ignore:You defined a `validation_step`",
)


def data(n: int = 160, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, x[:, :4].argmax(1))


def loader(batch_size: int = 16, n: int = 160) -> DataLoader:
    return DataLoader(data(n), batch_size=batch_size, shuffle=True)


class Lit(pl.LightningModule):
    """An MLP with LayerNorm and dropout (so the RNG matters) that logs in training_step and validation_step."""

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.0, scheduler: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 4))
        self.lr, self.weight_decay, self.scheduler = lr, weight_decay, scheduler
        self.sweep_calls: list[tuple[torch.dtype, float]] = []  # (forward dtype, rank-local loss) in the sweep
        self.sweep_clips: list[float | None] = []
        self.train_calls = 0
        self.val_losses: list[float] = []
        self.sweep_hooks: list[str] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x)
        loss = F.cross_entropy(out.float(), y)
        if range_test_running():
            self.sweep_calls.append((out.dtype, float(loss.detach())))
        else:
            self.train_calls += 1
        self.log("train_loss", loss)
        self.log_dict({"also": loss})
        return loss

    def on_before_batch_transfer(self, batch, dataloader_idx):
        if range_test_running():
            self.sweep_hooks.append("before")
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if range_test_running():
            self.sweep_hooks.append("after")
        return batch

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x).float(), y))

    def on_validation_epoch_end(self):
        self.val_losses.append(float(self.trainer.callback_metrics["val_loss"]))

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if range_test_running():
            self.sweep_clips.append(gradient_clip_val)
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.scheduler:
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 10)}
        return opt


class Recorder(pl.Callback):
    """What the first real step starts from, and the LR every optimizer step runs at."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []
        self.start: dict = {}

    def on_train_start(self, trainer, pl_module):
        opt = trainer.optimizers[0]
        self.start = {
            "params": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "opt_state": len(opt.state), "torch_rng": torch.get_rng_state(), "global_step": trainer.global_step,
            "scaler": scaler.state_dict() if (scaler := getattr(trainer.precision_plugin, "scaler", None)) else None,
        }

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if "first_batch" not in self.start:
            self.start["first_batch"] = [t.clone() for t in batch]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append([float(g["lr"]) for g in optimizer.param_groups])


class Memory(pl.loggers.Logger):
    """A logger that keeps what it is given: (step, metrics) per ``log_metrics`` call."""

    name, version = "memory", 0

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, dict]] = []

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def lr_rows(self) -> list[tuple[int, float]]:
        return [(step, m["autolr/lr/group0"]) for step, m in self.calls if "autolr/lr/group0" in m]


def trainer(callbacks=(), **kwargs) -> pl.Trainer:
    options = {"max_epochs": 2, "accelerator": "cpu", "logger": False, "enable_progress_bar": False,
               "enable_checkpointing": False, "enable_model_summary": False, "num_sanity_val_steps": 0}
    return pl.Trainer(callbacks=list(callbacks), **{**options, **kwargs})


def fit(callback=None, *, module=None, seed: int = 0, val: bool = False, ckpt_path=None, **kwargs):
    torch.manual_seed(seed)
    module = module or Lit()
    recorder = Recorder()
    t = trainer([c for c in (callback, recorder) if c is not None], **kwargs)
    t.fit(module, loader(), DataLoader(data(64, seed=1), batch_size=32) if val else None, ckpt_path=ckpt_path)
    return t, module, recorder


@pytest.mark.parametrize("second_sweep", [False, True], ids=["one-sweep", "swept-twice"])
def test_restore_is_exact_and_training_is_as_long_as_without_the_callback(second_sweep, monkeypatch):
    """With the suggestion rejected (min_confidence=1), a constant schedule and no decay, the callback must
    leave the fit bit for bit as without it: same weights, optimizer, RNG and first batch at the first real step,
    same number of steps, same final weights. Also when a fine-tune's flat sweep is run a second time (forced
    here: this module's curve is clear)."""
    plain, m0, r0 = fit()
    if second_sweep:
        monkeypatch.setattr("autolr.suggest.needs_resweep", lambda lrs, losses: True)
    keep = AutoLRCallback(schedule="constant", weight_decay=None, min_confidence=1.0, num_steps=30,
                          finetune=second_sweep)
    tuned, m1, r1 = fit(keep)
    assert keep.result.settings["swept_twice"] is second_sweep
    assert len(keep.result.curve) > 0 and len(m1.sweep_calls) >= (60 if second_sweep else 30)  # via training_step
    assert m1.sweep_hooks == ["before", "after"] * len(m1.sweep_calls)  # and the batch-transfer hooks
    assert keep.plan.lrs == (1e-3,)
    for key, value in r0.start["params"].items():
        assert torch.equal(value, r1.start["params"][key]), key
    assert r0.start["opt_state"] == r1.start["opt_state"] == 0
    assert torch.equal(r0.start["torch_rng"], r1.start["torch_rng"])
    assert all(torch.equal(a, b) for a, b in zip(r0.start["first_batch"], r1.start["first_batch"]))
    assert r1.start["global_step"] == 0
    assert plain.global_step == tuned.global_step == plain.estimated_stepping_batches == 20
    assert m0.train_calls == m1.train_calls == 20
    for key, value in m0.state_dict().items():
        assert torch.equal(value, m1.state_dict()[key]), key


def test_plan_is_applied_and_the_lr_follows_it_every_optimizer_step():
    callback = AutoLRCallback(schedule="auto", weight_decay="auto", num_steps=40)
    t, _, rec = fit(callback, val=True)
    plan = callback.plan
    assert plan.schedule_name == "warmup_cosine" and plan.total_steps == t.estimated_stepping_batches == 20
    assert plan.lrs[0] == pytest.approx(callback.result.suggestion.lr)
    opt = t.optimizers[0]
    assert len(opt.param_groups) == 2  # weight decay split: weights / biases and LayerNorm
    assert [g["weight_decay"] for g in opt.param_groups] == [pytest.approx(plan.weight_decay), 0.0]
    assert plan.weight_decay == pytest.approx(0.05)
    assert len(rec.lrs) == t.global_step == 20
    for k, lrs in enumerate(rec.lrs):
        assert lrs == [pytest.approx(base * plan.schedule(k), rel=1e-12) for base in plan.lrs]
    assert callback.tuner.step == 20 and callback.tuner.epoch == 2


def test_bf16_mixed_precision_is_used_in_the_sweep():
    callback = AutoLRCallback(num_steps=20)
    _, module, _ = fit(callback, precision="bf16-mixed", max_epochs=1)
    assert {dtype for dtype, _ in module.sweep_calls} == {torch.bfloat16}


def test_16_mixed_runs_with_lightnings_grad_scaler_and_restores_it():
    from lightning.pytorch.plugins import MixedPrecision

    plain = MixedPrecision("16-mixed", "cpu")  # a torch.amp.GradScaler on CPU
    _, _, r0 = fit(plugins=[plain], max_epochs=1)
    plugin = MixedPrecision("16-mixed", "cpu")
    plugin.scaler.update = _counting(plugin.scaler.update, counter := [])
    callback = AutoLRCallback(num_steps=20)
    t, module, rec = fit(callback, plugins=[plugin], max_epochs=1)
    assert {dtype for dtype, _ in module.sweep_calls} == {torch.float16}
    assert callback.tuner.scaler is plugin.scaler and len(counter) >= 20 + 10  # the sweep's steps + training's
    assert rec.start["scaler"] == r0.start["scaler"]  # scale and growth tracker restored
    assert t.global_step == len(rec.lrs) == 10


def _counting(fn, counter):
    def wrapped(*args, **kwargs):
        counter.append(1)
        return fn(*args, **kwargs)

    return wrapped


def test_accumulation_and_clipping_go_through_lightnings_step():
    """accumulate_grad_batches=3 over 10 batches: Lightning steps at batches 3, 6, 9 and on the last one, so 4
    optimizer steps an epoch; the schedule's length and the sweep follow that, and every sweep step is clipped
    by configure_gradient_clipping with the Trainer's gradient_clip_val."""
    callback = AutoLRCallback(schedule="onecycle", weight_decay=None, num_steps=12)
    options = {"accumulate_grad_batches": 3, "gradient_clip_val": 0.5}
    plain, _, _ = fit(**options)
    t, module, rec = fit(callback, **options)
    assert t.global_step == plain.global_step == t.estimated_stepping_batches == len(rec.lrs) == 8
    assert callback.plan.total_steps == 8
    assert len(module.sweep_calls) == 3 * len(module.sweep_clips) >= 3 * len(callback.result.curve)
    assert set(module.sweep_clips) == {0.5}
    # each curve point is the mean of its 3 micro-batches
    first = sum(loss for _, loss in module.sweep_calls[:3]) / 3
    assert callback.result.curve.losses[0] == pytest.approx(first, rel=1e-5)
    for k, lrs in enumerate(rec.lrs):
        assert lrs[0] == pytest.approx(callback.plan.lrs[0] * callback.plan.schedule(k), rel=1e-12)


class _LateRestore(pl.strategies.SingleDeviceStrategy):
    """Restores the checkpoint after ``on_fit_start``, as FSDP and DeepSpeed do."""

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        return True


@pytest.mark.parametrize(("saved", "late"), [("epoch=1", False), ("step=14", False), ("step=14", True)],
                         ids=["epoch-end", "mid-epoch", "restored-after-setup"])
def test_resume_from_ckpt_path_keeps_the_plan_and_the_lr_trajectory(tmp_path, saved, late):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(callback, ckpt_path=None):
        every = {"every_n_epochs": 1, "filename": "{epoch}"} if saved.startswith("epoch") else {
            "every_n_train_steps": 7, "filename": "{step}"}
        torch.manual_seed(0)
        module, recorder = Lit(), Recorder()
        strategy = {"strategy": _LateRestore(torch.device("cpu"))} if late else {}
        t = trainer([callback, recorder, ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, **every)],
                    max_epochs=4, enable_checkpointing=True, logger=Memory(), log_every_n_steps=1, **strategy)
        t.fit(module, loader(), ckpt_path=ckpt_path)
        return t, module, recorder

    first = AutoLRCallback(num_steps=30)
    t0, _, full = run(first)
    assert t0.global_step == 40
    done = 20 if saved == "epoch=1" else 14
    second = AutoLRCallback(num_steps=30)
    t1, resumed_module, resumed = run(second, ckpt_path=str(tmp_path / f"{saved}.ckpt"))
    assert resumed_module.sweep_calls == []  # no new range test
    assert second.plan == first.plan and second.result.suggestion == first.result.suggestion
    assert t1.global_step == 40 and len(resumed.lrs) == 40 - done
    assert resumed.lrs == full.lrs[done:]  # the same LR trajectory, bit for bit
    assert second.tuner.step == first.tuner.step == 40
    assert t1.logger.lr_rows() == t0.logger.lr_rows()[done:]  # and logged on the same steps
    assert [step for step, _ in t0.logger.lr_rows()] == list(range(40))


def test_resume_from_a_checkpoint_without_autolr_state_leaves_the_fit_alone(tmp_path):
    t, _, _ = fit(max_epochs=1)
    t.save_checkpoint(tmp_path / "plain.ckpt")
    callback = AutoLRCallback(num_steps=20)
    with pytest.warns(UserWarning, match="holds no AutoLRCallback state"):
        t2, module, rec = fit(callback, max_epochs=2, ckpt_path=str(tmp_path / "plain.ckpt"))
    assert callback.tuner is None and module.sweep_calls == [] and t2.global_step == 20
    assert {lr for lrs in rec.lrs for lr in lrs} == {1e-3}


def test_plateau_schedule_reads_the_monitored_metric_at_every_epoch_end():
    callback = AutoLRCallback(schedule="plateau", weight_decay=None, num_steps=20)
    _, module, _ = fit(callback, val=True, max_epochs=3)
    schedule = callback.tuner.scheduler.schedule
    assert callback.plan.step_granularity == "metric" and callback.tuner.epoch == 3
    assert schedule.best is not None and schedule.best == pytest.approx(min(module.val_losses))


def test_plateau_schedule_without_the_monitored_metric_says_what_to_log():
    with pytest.raises(ConfigurationError, match="monitor='val_loss'"):
        fit(AutoLRCallback(schedule="plateau", weight_decay=None, num_steps=20), max_epochs=1)


def test_a_scheduler_from_configure_optimizers_is_refused_before_anything_runs():
    module = Lit(scheduler=True)
    with pytest.raises(ConfigurationError, match="configure_optimizers returned a learning-rate scheduler"):
        fit(AutoLRCallback(), module=module)
    assert module.sweep_calls == [] and module.train_calls == 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"accumulation_steps": 2}, "accumulate_grad_batches"),
    ({"max_grad_norm": 1.0}, "gradient_clip_val"),
    ({"num_step": 10}, "unknown argument 'num_step'"),
])
def test_arguments_lightning_owns_or_unknown_ones_raise_at_construction(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        AutoLRCallback(**kwargs)


def test_manual_optimization_sweeps_through_the_modules_own_steps():
    class Manual(Lit):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            loss = super().training_step(batch, batch_idx)
            self.manual_backward(loss)
            opt.step()
            return loss

    callback = AutoLRCallback(schedule="constant", weight_decay=None, num_steps=20)
    t, module, rec = fit(callback, module=Manual(), max_epochs=1)
    assert len(module.sweep_calls) >= 20 and len(callback.result.curve) > 0
    assert t.global_step == len(rec.lrs) == 10
    assert all(lrs == [pytest.approx(callback.plan.lrs[0])] for lrs in rec.lrs)


# == W&B ==================================================================================================


def test_wandb_logger_run_gets_the_range_test_and_lrs_on_the_trainers_steps(wandb_dir, tmp_path):
    from lightning.pytorch.loggers import WandbLogger

    from tests.wandb_reader import find_run_dir, read_run

    logger = WandbLogger(project="lit", save_dir=str(tmp_path / "wb"), offline=True)
    callback = AutoLRCallback(num_steps=30)
    t, _, rec = fit(callback, logger=logger, log_every_n_steps=1)
    run = logger.experiment
    assert callback.tuner.reporters[0].run is run and not callback.tuner.reporters[0].owns_run
    run.log({"after_fit": 1.0})  # autolr did not finish the logger's run
    run.finish()

    data = read_run(find_run_dir(wandb_dir))
    assert data.summary["autolr/suggested_lr"] == pytest.approx(callback.result.suggestion.lr)
    assert data.config["autolr"]["decisions"]["schedule"]["value"] == callback.plan.schedule_name
    rows = [r for r in data.history if "train_loss" in r]
    assert len(rows) == t.global_step == 20
    assert all("trainer/global_step" in r for r in data.history)  # autolr committed no row of its own
    assert data.values("autolr/train_loss")  # the observed training losses
    for row in rows:  # each row the trainer commits carries the LR of the step it logs, on the trainer's axis
        step = row["trainer/global_step"]
        assert row["autolr/train_step"] == step
        assert row["autolr/lr/group0"] == pytest.approx(rec.lrs[step][0])
    assert data.metrics["autolr/lr/group0"]["step_metric"] == "autolr/train_step"
    assert not any("autolr/decision/lr" in r for r in data.history)  # no scalars forwarded twice to W&B


# == any other logger =====================================================================================


def _csv_rows(logger) -> list[dict[str, str]]:
    import csv

    with open(logger.experiment.metrics_file_path, newline="") as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def test_csv_logger_gets_the_suggestion_the_decisions_and_the_lr_on_the_rows_the_trainer_logs(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(tmp_path, name="csv")
    callback = AutoLRCallback(num_steps=30)
    t, _, rec = fit(callback, logger=logger, log_every_n_steps=3, val=True)
    rows = _csv_rows(logger)
    first = next(r for r in rows if "autolr/suggested_lr" in r)
    assert first["step"] == "0"
    assert float(first["autolr/suggested_lr"]) == pytest.approx(callback.result.suggestion.lr)
    assert float(first["autolr/confidence"]) == pytest.approx(callback.result.suggestion.confidence)
    assert float(first["autolr/range_test/points"]) == len(callback.result.curve)
    decided = next(r for r in rows if "autolr/decision/lr" in r)
    assert float(decided["autolr/decision/lr"]) == pytest.approx(callback.plan.peak_lr)
    assert float(decided["autolr/decision/weight_decay"]) == pytest.approx(callback.plan.weight_decay)

    lr_rows = [r for r in rows if "autolr/lr/group0" in r]
    train_steps = [int(r["step"]) for r in rows if "train_loss" in r]
    assert [int(r["step"]) for r in lr_rows] == train_steps == list(range(2, t.global_step, 3))  # the same rows
    for row in lr_rows:  # the LR every group's step ran at, on the step Lightning labels that step's row with
        step = int(row["step"])
        assert [float(row[f"autolr/lr/group{g}"]) for g in range(2)] == pytest.approx(rec.lrs[step], rel=1e-9)
    assert float(lr_rows[0]["autolr/weight_decay/group0"]) == pytest.approx(callback.plan.weight_decay)
    assert float(lr_rows[0]["autolr/weight_decay/group1"]) == 0.0
    assert all("autolr/weight_decay/group0" not in r for r in lr_rows[1:])  # it did not change
    assert not any("autolr/train_loss" in r for r in rows)  # the module logs its own loss


def test_any_logger_gets_the_scalars_at_the_trainers_steps_and_nothing_without_logging():
    memory = Memory()
    callback = AutoLRCallback(schedule="onecycle", weight_decay=None, num_steps=20)
    t, _, rec = fit(callback, logger=memory, log_every_n_steps=1, max_epochs=1)
    ours = [(step, m) for step, m in memory.calls if any(k.startswith("autolr/lr/") for k in m)]
    assert [step for step, _ in ours] == list(range(t.global_step)) == [
        step for step, m in memory.calls if "train_loss" in m]
    assert [m["autolr/lr/group0"] for _, m in ours] == pytest.approx([lrs[0] for lrs in rec.lrs], rel=1e-9)
    assert any("autolr/suggested_lr" in m for _, m in memory.calls)

    silent = Memory()  # log_every_n_steps=0: the trainer logs no training row, autolr neither
    fit(AutoLRCallback(num_steps=20), logger=silent, log_every_n_steps=0, max_epochs=1)
    assert not any(k.startswith("autolr/lr/") for _, m in silent.calls for k in m)


# == DDP ==================================================================================================


def _assert_ranks_agree(out: Path) -> None:
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["world_size"], r1["world_size"]) == (2, 2)
    assert r0["curve"] == r1["curve"] and len(r0["curve"]) > 0  # the same curve...
    assert r0["sweep_calls"] == r1["sweep_calls"] >= len(r0["curve"])  # ...and both stopped at the same step
    means = [(a + b) / 2 for a, b in zip(r0["local_losses"], r1["local_losses"])]
    assert r0["curve"] == pytest.approx(means[: len(r0["curve"])], rel=1e-5)  # the mean over the ranks
    assert r0["local_losses"] != r1["local_losses"]  # each rank swept its own shard
    assert r0["plan"] == r1["plan"] and r0["plan"]["lrs"][0] == pytest.approx(r0["suggested_lr"])
    assert r0["global_step"] == r1["global_step"] == r0["estimated"] == len(r0["lrs"]) == 16
    assert r0["lrs"] == r1["lrs"]
    assert r0["params_equal_at_start"] and r1["params_equal_at_start"]  # restored on every rank
    assert r0["reported"] and not r1["reported"]  # only rank 0 reports


@pytest.mark.distributed
def test_ddp_two_processes_share_the_curve_the_stop_and_the_plan(tmp_path):
    """DDPStrategy on 2 CPU processes (gloo), launched by forking this process (``strategy="ddp_fork"``: the
    same strategy as ``"ddp"``; only the launcher differs, and it does not import Lightning again per rank)."""
    from tests import lightning_ddp_job

    if "fork" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("no fork on this platform")
    lightning_ddp_job.main(tmp_path, "ddp_fork")
    _assert_ranks_agree(tmp_path)


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_launched_as_a_script_like_a_user_runs_it(tmp_path):
    """``strategy="ddp"`` as users run it: ``python script.py``; Lightning starts rank 1 by running the script
    again. Slow (every rank imports Lightning), guarded by a timeout so it never hangs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "lightning_ddp_job.py"), str(tmp_path), "ddp"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the DDP fit hung:\n{out.decode()[-3000:]}")
    assert proc.returncode == 0, out.decode()[-3000:]
    _assert_ranks_agree(tmp_path)


def test_no_warning_when_nothing_else_writes_the_lr():
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=Warning)
        warnings.filterwarnings("ignore", module="lightning.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        fit(AutoLRCallback(num_steps=20), max_epochs=1)


# == LightningCLI =========================================================================================


@pytest.mark.parametrize("how", ["arguments", "config"])
def test_lightning_cli_takes_the_callback_by_class_path_with_any_passthrough_argument(tmp_path, how):
    """``autolr.integrations.lightning.AutoLRCallback`` is a class path LightningCLI (jsonargparse) can build,
    from the command line or a config file, with AutoLR's and lr_find's arguments (``num_steps``...) by name."""
    pytest.importorskip("jsonargparse")
    from lightning.pytorch.cli import LightningCLI

    path = "autolr.integrations.lightning.AutoLRCallback"
    base = ["--trainer.max_epochs=1", "--trainer.logger=false", "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={tmp_path}"]
    if how == "arguments":
        args = [*base, f"--trainer.callbacks+={path}", "--trainer.callbacks.schedule=onecycle",
                "--trainer.callbacks.weight_decay=null", "--trainer.callbacks.num_steps=20",
                "--trainer.callbacks.end_lr=3.0"]
    else:
        config = tmp_path / "config.yaml"
        config.write_text(f"trainer:\n  callbacks:\n    - class_path: {path}\n      init_args:\n"
                          "        schedule: onecycle\n        weight_decay: null\n        num_steps: 20\n"
                          "        end_lr: 3.0\n")
        args = [*base, f"--config={config}"]
    cli = LightningCLI(Lit, run=False, args=args, save_config_callback=None, seed_everything_default=0)
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, AutoLRCallback)]
    cli.trainer.fit(cli.model, loader())
    assert callback.plan.schedule_name == "onecycle" and callback.plan.weight_decay == 0.0
    assert len(callback.result.curve) <= 20 and callback.result.curve.lrs[-1] <= 3.0 + 1e-9
    assert callback.result.settings["num_steps"] == 20
    assert cli.trainer.global_step == 10
    # the CLI passes every default explicitly (progress=None): no progress bar still means a quiet range test
    assert callback._kwargs["progress"] is None and callback.tuner.range_test_defaults["progress"] is False


def test_the_signature_names_every_passthrough_argument_and_unknown_ones_still_raise():
    import inspect

    params = inspect.signature(AutoLRCallback).parameters
    assert {"num_steps", "end_lr", "min_confidence", "guard", "schedule", "monitor"} <= set(params)
    assert params["check_every"].default == 16  # AutoLR's (the training-loss batches), not lr_find's
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert {"accumulation_steps", "loader", "val_loader"}.isdisjoint(params)  # what Lightning defines
    with pytest.raises(ConfigurationError, match="unknown argument"):
        AutoLRCallback(nope=1)


# == benchmarks/lightning_side_by_side.py =================================================================


def test_side_by_side_benchmark_measures_both_finders_on_one_module(monkeypatch):
    """The benchmark's pieces on one module, 2 epochs: each finder's suggestion, the files its search writes,
    and the resume check (the numbers are in README's table; the whole script takes minutes)."""
    import math

    bench = pytest.importorskip("benchmarks.lightning_side_by_side")
    monkeypatch.setattr(bench, "EPOCHS", 2)
    task = bench.TASKS["mlp_adamw"]
    train, val = task.data()
    lightning_run = bench.run_method("LearningRateFinder", task, 0, train, val)
    autolr_run = bench.run_method("AutoLRCallback()", task, 0, train, val)
    assert lightning_run["checkpoints_written"] == 1 and autolr_run["checkpoints_written"] == 0
    assert lightning_run["files_left"] == autolr_run["files_left"] == []
    assert lightning_run["trained_at"] == lightning_run["suggestion"]
    assert autolr_run["suggestion"] > 0 and math.isfinite(autolr_run["val_loss"])
    resume = bench.resume_check("AutoLRCallback()", task)
    assert resume["identical"] and resume["searched_again"] is False
    assert bench.regret(1.0, 0.5, 1.5) == pytest.approx(0.5) and bench.regret(math.inf, 0.5, 1.5) == 1.0

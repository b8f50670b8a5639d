"""PyTorch Lightning: :class:`AutoLRCallback`, the whole AutoLR cycle inside ``Trainer.fit``.

One line: ``L.Trainer(callbacks=[AutoLRCallback(schedule="auto", weight_decay="auto")]).fit(module, dm)``.
At fit start, once the optimizer exists, the callback splits its param groups for weight decay and runs the
range test through Lightning's own step: the module's ``training_step`` (``self.log`` muted during the sweep),
the precision plugin (``bf16-mixed``, ``16-mixed`` with its scaler), ``accumulate_grad_batches``,
``gradient_clip_val`` (``configure_gradient_clipping``), the batch-transfer hooks and the DDP-wrapped model.
Other callbacks are not called during the sweep, and Lightning's loop never sees it: ``trainer.global_step``
does not move. The weights, optimizer, scaler and RNGs are then restored in memory (no checkpoint file), the
plan is applied (LR per group, weight decay) and its schedule steps after every real optimizer step, over
``trainer.estimated_stepping_batches`` steps. After ``fit``, :attr:`AutoLRCallback.result` and
:attr:`AutoLRCallback.plan` hold what was found and decided.

Checkpoints carry the plan and the schedule's position (``state_dict``), so ``fit(ckpt_path=...)`` resumes
without a new range test, on the same LR trajectory. Under DDP every rank sweeps its own shard, the curve is the
mean over ranks, every rank stops at the same step and gets the same plan; only rank 0 logs. With a
``WandbLogger`` the range test, the decisions and the LRs go into the logger's run (never finished by autolr),
on rows that the trainer commits, where ``autolr/train_step`` equals ``trainer/global_step``. Every other logger
of the trainer (CSV, TensorBoard, MLflow...) gets the scalars through ``log_metrics`` at the trainer's steps: the
suggestion, the numeric decisions, and the LR (and weight decay) of each group on the rows the trainer logs.
From ``LightningCLI`` it is the class path ``autolr.integrations.lightning.AutoLRCallback``; every argument it
passes through has a name in its signature (``--trainer.callbacks.num_steps=50``).

Example:
    >>> import lightning as L                                                     # doctest: +SKIP
    >>> from autolr.integrations.lightning import AutoLRCallback
    >>> tune = AutoLRCallback(schedule="auto", weight_decay="auto")
    >>> trainer = L.Trainer(max_epochs=3, callbacks=[tune])                       # doctest: +SKIP
    >>> trainer.fit(module, datamodule)                                           # doctest: +SKIP
    >>> tune.result.suggestion.lr, tune.plan.schedule_name                        # doctest: +SKIP
    (0.0031, 'warmup_cosine')
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import typing
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from autolr import distributed as dist
from autolr.errors import AutoLRWarning, ConfigurationError, DataError
from autolr.range_test import lr_find as _core_lr_find
from autolr.report import Decision, Reporter
from autolr.tuner import KEYWORDS, AutoLR
from autolr.validation import check_keywords

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - the standalone package
    try:
        from pytorch_lightning import Callback  # type: ignore[no-redef]
    except ImportError as exc:
        raise ImportError(
            "autolr.integrations.lightning needs Lightning: pip install 'torch-autolr[lightning]'"
        ) from exc

__all__ = ["AutoLRCallback"]

# arguments of AutoLR / lr_find that Lightning already defines, and where they come from instead
_OWNED = {
    "model": "it tunes the Trainer's LightningModule",
    "optimizer": "it tunes the optimizer from configure_optimizers",
    "loader": "the sweep reads the Trainer's train dataloader",
    "loss_fn": "the sweep runs the module's training_step", "compute_loss": "the sweep runs the module's training_step",
    "train_step": "the sweep runs the module's training_step through Lightning's step",
    "backward": "Lightning's backward (LightningModule.backward) is used",
    "autocast": "the precision comes from Trainer(precision=...)",
    "autocast_dtype": "the precision comes from Trainer(precision=...)",
    "scaler": "the GradScaler comes from Trainer(precision='16-mixed')",
    "accumulation_steps": "accumulation comes from Trainer(accumulate_grad_batches=...)",
    "max_grad_norm": "clipping comes from Trainer(gradient_clip_val=...)",
    "auto_step": "autolr steps the schedule after every optimizer step",
    "device": "batches go where the Trainer's strategy puts them",
    "val_loader": "inside Lightning the sweep measures the training loss",
    "apply": "the callback always applies the plan",
}


_ALLOWED = KEYWORDS - set(_OWNED) - {"val_batches"}  # (val_loader is owned: no validation batches either)


class AutoLRCallback(Callback):
    """Range test, plan and schedule for a Lightning fit (see the module docstring).

    Args:
        schedule: as in :class:`~autolr.AutoLR` (``"auto"``, ``"onecycle"``, ``"warmup_cosine"``...).
        weight_decay: as in :class:`~autolr.AutoLR` (``"auto"``, ``"sweep"``, a float or ``None``).
        monitor: the logged metric given to :meth:`AutoLR.end_epoch` at every epoch end (the ``plateau``
            schedule reduces the LR from it).
        total_steps: the schedule's length; default ``trainer.estimated_stepping_batches`` (``max_epochs``
            with ``step_granularity="epoch"``).
        wandb: ``None`` (default): log into the run of a ``WandbLogger`` when the trainer has one. ``True``:
            also start a run of autolr's own when it has none. ``False``: no W&B (a ``WandbLogger`` gets nothing
            from autolr). A dict: arguments of :class:`autolr.integrations.wandb.WandbReporter`. The trainer's
            other loggers get the scalars whatever this is.
        **kwargs: any other argument of :class:`~autolr.AutoLR` or :func:`autolr.lr_find` (``num_steps``,
            ``end_lr``, ``min_confidence``, ``guard``, ``reporters``...). What Lightning already defines
            (precision, accumulation, clipping, the step) comes from the Trainer and the module.

    Attributes:
        tuner: the :class:`~autolr.AutoLR` of the current (or last) fit.
    """

    def __init__(
        self,
        *,
        schedule: str = "auto",
        weight_decay: float | str | None = "auto",
        monitor: str = "val_loss",
        total_steps: int | None = None,
        wandb: bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        check_keywords("AutoLRCallback", kwargs, allowed=_ALLOWED | {"monitor", "total_steps"}, owned=_OWNED)
        if not isinstance(monitor, str):
            raise ConfigurationError(f"monitor must be the name of a logged metric, got {monitor!r}")
        self.monitor, self.total_steps, self.wandb = monitor, total_steps, wandb
        self._kwargs = {"schedule": schedule, "weight_decay": weight_decay, **kwargs}
        self.tuner: AutoLR | None = None
        self._stash: dict[str, Any] | None = None
        self._fitting = False

    # -- what was found and decided ----------------------------------------------------------------------
    @property
    def result(self) -> Any:
        """The range test's :class:`~autolr.LRFindResult` (restored from the checkpoint when resuming)."""
        return self.tuner.result if self.tuner is not None else None

    @property
    def plan(self) -> Any:
        """The applied :class:`~autolr.plan.Plan`."""
        return self.tuner.plan if self.tuner is not None else None

    # -- fit events --------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.tuner = None
        if trainer.lr_scheduler_configs:
            names = [type(c.scheduler).__name__ for c in trainer.lr_scheduler_configs]
            raise ConfigurationError(
                f"configure_optimizers returned a learning-rate scheduler ({', '.join(names)}), and AutoLRCallback "
                "schedules the learning rate itself: the two would fight over every step. Return only the optimizer "
                "(the plan's schedule replaces it; pick it with AutoLRCallback(schedule=...)), or drop the callback"
            )
        if len(trainer.optimizers) != 1:
            raise ConfigurationError(
                f"AutoLRCallback tunes one optimizer; configure_optimizers returned {len(trainer.optimizers)}"
            )
        if trainer.fast_dev_run:
            _info("autolr: no range test under fast_dev_run; the learning rates stay as configured")
            return
        resuming = trainer.ckpt_path is not None
        after_setup = trainer.strategy.restore_checkpoint_after_setup
        if resuming and self._stash is None and not after_setup:
            _warn(f"the checkpoint {trainer.ckpt_path} holds no AutoLRCallback state (it was saved without the "
                  "callback); autolr leaves this fit alone: no range test, the groups and LRs stay as they are")
            return
        self.tuner = self._build(trainer, pl_module)
        self._fitting = True
        if self._stash is not None:  # resume: the plan and the schedule position, no new range test
            state, self._stash = self._stash, None
            self.tuner.load_state_dict(state)
        elif not after_setup:
            self._range_test(trainer, pl_module)
        # strategies that restore after setup (FSDP, DeepSpeed) call load_state_dict next; else on_train_start

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.tuner is not None and self.tuner.plan is None:
            self._range_test(trainer, pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        tuner = self.tuner
        if tuner is None or tuner.plan is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if torch.is_tensor(loss):
            scale = trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1
            loss = loss.detach() * scale  # Lightning hands back loss / accumulate_grad_batches
        tuner.observe_micro_batch(loss if torch.is_tensor(loss) else None)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        tuner = self.tuner
        if tuner is None or tuner.plan is None:
            return
        metric = trainer.callback_metrics.get(self.monitor)
        if metric is None and tuner.plan.step_granularity == "metric":
            raise ConfigurationError(
                f"the plateau schedule lowers the LR from the metric monitor={self.monitor!r}, which was not logged "
                f"this epoch (logged: {sorted(trainer.callback_metrics)}); log it with self.log({self.monitor!r}, "
                "...) in validation_step, or pass AutoLRCallback(monitor=...)"
            )
        tuner.end_epoch(val_loss=metric)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.tuner is not None:
            self.tuner.close()  # flushes; a logger's run is never finished by autolr

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit" and self.tuner is not None:
            self.tuner.detach()  # the optimizer holds no reference to the tuner any more
            self._fitting = False

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return self.tuner.state_dict() if self.tuner is not None and self.tuner.plan is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.tuner is not None and self._fitting and self.tuner.plan is None:  # restore after setup
            self.tuner.load_state_dict(copy.deepcopy(state_dict))
        else:  # the usual order: before strategy.setup builds the optimizer; applied in on_fit_start
            self._stash = copy.deepcopy(state_dict)

    # -- internals ---------------------------------------------------------------------------------------
    def _build(self, trainer: Any, pl_module: Any) -> AutoLR:
        kwargs = dict(self._kwargs)
        reporters = list(kwargs.pop("reporters", ()))
        wandb = self.wandb
        run = _wandb_run(trainer) if wandb is not False else None
        if run is not None:
            from autolr.integrations.wandb import WandbReporter

            options = {"lr_interval": 0.0, **(wandb if isinstance(wandb, dict) else {}), "run": run}
            reporters.append(_OnTrainerSteps(WandbReporter(**options), trainer))
            wandb = False
        loggers = _other_loggers(trainer)
        if loggers:
            reporters.append(_LoggerReporter(trainer, loggers))
        if kwargs.get("progress") is None and trainer.progress_bar_callback is None:
            kwargs["progress"] = False
        return AutoLR(pl_module, trainer.optimizers[0], scaler=getattr(trainer.precision_plugin, "scaler", None),
                      reporters=reporters, wandb=bool(wandb) if not isinstance(wandb, dict) else wandb, **kwargs)

    def _range_test(self, trainer: Any, pl_module: Any) -> None:
        assert self.tuner is not None
        if trainer.train_dataloader is None:
            trainer.fit_loop.setup_data()  # what trainer.estimated_stepping_batches does too
        loader = _train_batches(trainer)
        total = self.total_steps
        if total is None:
            if self.tuner.step_granularity == "epoch":
                total = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
            else:
                estimated = trainer.estimated_stepping_batches
                total = int(estimated) if math.isfinite(estimated) else None
        step = _LightningStep(trainer, pl_module)
        with _sweeping(trainer, pl_module):
            self.tuner.lr_find(loader, train_step=step, total_steps=total, accumulation_steps=step.accumulate)


def _named_signature() -> inspect.Signature | None:
    """``AutoLRCallback.__init__`` with each argument ``**kwargs`` passes through named (keyword-only, its default
    and type from :class:`~autolr.AutoLR` or :func:`autolr.lr_find`), so that ``inspect.signature``, ``help()`` and
    LightningCLI (jsonargparse) see them: ``--trainer.callbacks+=autolr.integrations.lightning.AutoLRCallback
    --trainer.callbacks.num_steps=50``. None (the plain ``**kwargs`` signature) if a type cannot be resolved."""
    try:
        own = inspect.signature(AutoLRCallback.__init__)
        hints = {**typing.get_type_hints(_core_lr_find), **typing.get_type_hints(AutoLR.__init__),
                 **typing.get_type_hints(AutoLRCallback.__init__)}
    except Exception:  # pragma: no cover - an annotation that does not evaluate on this Python
        return None
    params = [p.replace(annotation=hints.get(name, p.annotation)) for name, p in own.parameters.items()
              if p.kind is not p.VAR_KEYWORD]
    allowed, seen = _ALLOWED, set(own.parameters)
    for source in (AutoLR.__init__, _core_lr_find):  # AutoLR's first: its check_every, progress and reporters
        for name, p in inspect.signature(source).parameters.items():
            if name in allowed and name not in seen:
                seen.add(name)
                params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=p.default,
                                                annotation=hints.get(name, p.annotation)))
    return own.replace(parameters=params, return_annotation=None)


if (_signature := _named_signature()) is not None:
    AutoLRCallback.__init__.__signature__ = _signature  # type: ignore[attr-defined]


class _LightningStep:
    """One micro-batch of Lightning's automatic optimization, as its training loop runs it: precision input
    conversion, the batch-transfer hooks, ``strategy.training_step`` (precision context, DDP wrapper),
    ``strategy.backward`` (loss scaling, module ``backward`` hooks), and on the last micro-batch of an
    accumulation the module's ``optimizer_step`` (precision plugin: scaler, ``configure_gradient_clipping``).
    Returns the micro-batch's loss. With manual optimization ``training_step`` does its own steps."""

    def __init__(self, trainer: Any, pl_module: Any) -> None:
        self.trainer, self.module = trainer, pl_module
        self.accumulate = int(trainer.accumulate_grad_batches) if pl_module.automatic_optimization else 1
        params = inspect.signature(pl_module.training_step).parameters
        if "dataloader_iter" in params:
            raise ConfigurationError(
                "AutoLRCallback cannot drive a training_step(dataloader_iter): it needs one batch per call"
            )
        positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.takes_index = "batch_idx" in params or len(positional) >= 2 or any(
            p.kind == p.VAR_POSITIONAL for p in params.values())
        self.calls = 0

    def __call__(self, batch: Any) -> Any:
        trainer, module, strategy = self.trainer, self.module, self.trainer.strategy
        index, self.calls = self.calls, self.calls + 1
        batch = trainer.precision_plugin.convert_input(batch)
        before = getattr(module, "_on_before_batch_transfer", None)  # also runs a datamodule's hook
        batch = before(batch, dataloader_idx=0) if before is not None else module.on_before_batch_transfer(batch, 0)
        batch = strategy.batch_to_device(batch, dataloader_idx=0)
        args = (batch, index) if self.takes_index else (batch,)
        if not module.automatic_optimization:
            return strategy.training_step(*args)
        optimizer = trainer.optimizers[0]
        losses: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            out = strategy.training_step(*args)
            loss = out.get("loss") if isinstance(out, Mapping) else out
            if not torch.is_tensor(loss):
                raise DataError(
                    f"training_step returned {type(out).__name__} during autolr's range test; it must return the "
                    "loss (or a dict with 'loss') for every batch"
                )
            losses.append(loss.detach())
            strategy.backward(loss / self.accumulate if self.accumulate > 1 else loss, optimizer)
            return loss

        if self.calls % self.accumulate:  # not the last micro-batch: no DDP gradient sync, no step
            block = getattr(strategy, "block_backward_sync", None)
            with block() if block is not None else contextlib.nullcontext():
                closure()
        else:
            module.optimizer_step(trainer.current_epoch, index, module.optimizers(use_pl_optimizer=True), closure)
        if not losses:
            raise DataError("the module's optimizer_step never called the closure it was given: no loss to record")
        return losses[0]


@contextlib.contextmanager
def _sweeping(trainer: Any, pl_module: Any) -> Iterator[None]:
    """During the sweep ``self.log``/``self.log_dict`` do nothing (Lightning forbids them at fit start) and no
    other callback is called (the sweep is no training to them), as in Lightning's own LR finder."""
    saved = {name: pl_module.__dict__[name] for name in ("log", "log_dict") if name in pl_module.__dict__}
    callbacks = trainer.callbacks
    for name in ("log", "log_dict"):
        object.__setattr__(pl_module, name, _muted)
    trainer.callbacks = []
    try:
        yield
    finally:
        trainer.callbacks = callbacks
        for name in ("log", "log_dict"):
            if name in saved:
                object.__setattr__(pl_module, name, saved[name])
            else:
                pl_module.__dict__.pop(name, None)


def _muted(*_: Any, **__: Any) -> None:
    return None


def _train_batches(trainer: Any) -> Any:
    """The train loader Lightning set up (distributed sampler included); several loaders are combined as the
    fit loop combines them."""
    loaders = trainer.train_dataloader
    if isinstance(loaders, torch.utils.data.DataLoader):
        return loaders
    from lightning.pytorch.utilities import CombinedLoader

    mode = getattr(getattr(trainer.fit_loop, "_combined_loader", None), "_mode", "max_size_cycle")
    combined = CombinedLoader(loaders, mode=mode)
    return _Batches(combined)


class _Batches:
    """A ``CombinedLoader`` yields ``(batch, batch_idx, dataloader_idx)``; the sweep wants the batch."""

    def __init__(self, combined: Any) -> None:
        self.combined = combined

    def __iter__(self) -> Iterator[Any]:
        for batch, *_ in self.combined:
            yield batch


def _row_step(trainer: Any) -> int:
    """The step Lightning labels the rows it logs now with (``trainer/global_step`` on W&B, ``step`` in a CSV):
    the optimizer steps before the current one, as ``LearningRateMonitor`` reads it."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(getattr(loop, "_batches_that_stepped", trainer.global_step))


class _OnTrainerSteps(Reporter):
    """Passes everything to ``reporter``, with the training metrics on the trainer's step axis: autolr counts an
    optimizer step from 1 once it is taken, Lightning labels that step's row with the count before it, so on a row
    the trainer commits ``autolr/train_step`` equals ``trainer/global_step``. Attributes (``run``, ``owns_run``)
    are the reporter's."""

    def __init__(self, reporter: Reporter, trainer: Any) -> None:
        self.reporter, self.trainer, self._shift = reporter, trainer, -1

    def __getattr__(self, name: str) -> Any:
        if name == "reporter":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.reporter, name)

    def range_test_end(self, result: Any) -> None:
        self.reporter.range_test_end(result)

    def decisions(self, decisions: Sequence[Decision]) -> None:
        self.reporter.decisions(decisions)

    def training_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        if any(k.startswith("autolr/lr/") for k in metrics):  # sent from inside the optimizer step it belongs to
            self._shift = _row_step(self.trainer) - step
        self.reporter.training_metrics(step + self._shift, metrics)

    def close(self) -> None:
        self.reporter.close()


class _LoggerReporter(Reporter):
    """Scalars for the trainer's loggers other than W&B (CSV, TensorBoard, MLflow, ...), through
    ``logger.log_metrics(..., step=...)`` at the step the trainer logs its own rows at: the suggestion
    (``autolr/suggested_lr``, ``autolr/confidence``, ``autolr/range_test/points``) and the numeric decisions
    (``autolr/decision/lr``, ``autolr/decision/weight_decay``, a plateau's factor...) when taken, and on every row
    the trainer logs (every ``log_every_n_steps``) the LR each group's step ran at (``autolr/lr/group{i}``), with
    each group's weight decay (``autolr/weight_decay/group{i}``) on the first such row and when it changes. The
    observed losses are not repeated: the module logs its own."""

    def __init__(self, trainer: Any, loggers: Sequence[Any]) -> None:
        self.trainer, self.loggers = trainer, list(loggers)
        self._decay: dict[str, float] = {}

    def _log(self, metrics: dict[str, float], step: int | None = None) -> None:
        if metrics:
            step = _row_step(self.trainer) if step is None else step
            for lg in self.loggers:
                lg.log_metrics(metrics, step=step)

    def range_test_end(self, result: Any) -> None:
        suggestion = result.suggestion
        metrics = {"autolr/range_test/points": float(len(result.curve)), "autolr/confidence": suggestion.confidence}
        if suggestion.lr is not None:
            metrics["autolr/suggested_lr"] = float(suggestion.lr)
        self._log({k: float(v) for k, v in metrics.items()})

    def decisions(self, decisions: Sequence[Decision]) -> None:
        self._log({f"autolr/decision/{d.name}": float(d.value) for d in decisions
                   if isinstance(d.value, (int, float)) and not isinstance(d.value, bool)})

    def training_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        if not any(k.startswith("autolr/lr/") for k in metrics):  # observed losses: the module logs its own
            return
        row, every = _row_step(self.trainer), self.trainer.log_every_n_steps
        if not every or (row + 1) % every:  # Lightning logs a training row when (row + 1) % every == 0
            return
        out = {k: float(v) for k, v in metrics.items() if k.startswith("autolr/lr/")}
        decay = {k: float(v) for k, v in metrics.items() if k.startswith("autolr/weight_decay/")}
        if decay != self._decay:
            self._decay = decay
            out.update(decay)
        self._log(out, row)


def _other_loggers(trainer: Any) -> list[Any]:
    """The trainer's loggers that are not a ``WandbLogger`` (rank 0; W&B gets the full report instead)."""
    if not trainer.is_global_zero:
        return []
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return list(trainer.loggers)
    return [lg for lg in trainer.loggers if not isinstance(lg, WandbLogger)]


def _wandb_run(trainer: Any) -> Any:
    """The run of the trainer's ``WandbLogger`` (rank 0), or None."""
    if not trainer.is_global_zero:
        return None
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return None
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            return lg.experiment
    return None


def _info(message: str) -> None:
    if dist.is_rank_zero():
        logging.getLogger("autolr").info(message)


def _warn(message: str) -> None:
    if dist.is_rank_zero():
        warnings.warn(message, AutoLRWarning, stacklevel=3)

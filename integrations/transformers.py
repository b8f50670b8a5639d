"""Hugging Face ``Trainer``: :class:`AutoLRCallback`, a range test through the Trainer's own step, one line.

``Trainer(..., callbacks=[AutoLRCallback()])``, then ``trainer.train()`` as usual. At ``on_train_begin`` the
Trainer has built (and, when resuming, loaded) its optimizer and its scheduler. The callback then runs the range
test with the Trainer's own training step on its own train dataloader: ``training_step`` (your
``compute_loss`` override or ``compute_loss_func``, the accelerator's autocast and ``backward``, the loss scaling
for ``gradient_accumulation_steps`` and ``num_items_in_batch``), DDP's gradient sync only on the last
micro-batch, clipping at ``max_grad_norm`` and the wrapped optimizer's ``step()`` (fp16's scaler, skipped
steps). The Trainer's loop, its callbacks, ``state.global_step`` and its logs never see the sweep. The weights,
the optimizer state, the grads, the scaler, the RNGs and the dataloader's position are then put back exactly.

What the training then uses:

* ``schedule="hf"`` (default): the Trainer's own schedule (``lr_scheduler_type``, ``warmup_steps`` /
  ``warmup_ratio``, or the scheduler you passed in ``optimizers=``), its peak moved in place to the learning rate
  found (:func:`autolr.lr_scheduler.set_peak_lrs`). Every other ``TrainingArguments`` field keeps its meaning.
* ``schedule="auto"`` (or a name from :data:`autolr.plan.SCHEDULES` except ``"plateau"``): the plan's schedule
  (e.g. warmup + cosine over ``max_steps``, its own warmup) replaces the multipliers of the Trainer's
  ``LambdaLR``; ``lr_scheduler_type`` and ``warmup_*`` are then not used, and the log says so.

Fine-tuning is the common case here: the range test reads off the weights that the model starts trained
(:mod:`autolr.pretrained`); the flat curve usual on a trained model is swept again, 3x longer, and read like any
sweep (its descent if it shows one, else its stability edge, confidence 0.3), and under a schedule that warms up
and decays to 0 (``lr_scheduler_type`` linear, cosine, ...) the peak is twice that LR. ``min_confidence`` defaults
to ``0.1``: a suggestion under it (a fresh model's flat-curve guess, confidence 0.05) is not applied, the Trainer
keeps ``learning_rate``, and an :class:`~autolr.AutoLRWarning` says why. Weight decay is never changed: it is
``TrainingArguments.weight_decay`` on Hugging Face's own groups.

The found LR and the decisions are saved with every checkpoint (``trainer_state.json``, through
``ExportableState``); ``train(resume_from_checkpoint=...)`` runs no new range test, and the LR trajectory goes on
exactly where it was (the Trainer restores the rescaled scheduler itself). Under ``torchrun`` every rank takes
part in the sweep, the curve is the mean over ranks, and every rank gets the same LR; only the main process
logs. With ``report_to="wandb"`` the curve, the decisions and the LR of every param group go into the run Hugging
Face manages, on rows it commits: autolr never starts a run there, never finishes one, and never moves its step.

Example:
    >>> from transformers import Trainer, TrainingArguments                       # doctest: +SKIP
    >>> from autolr.integrations.transformers import AutoLRCallback
    >>> tune = AutoLRCallback()
    >>> trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[tune])  # doctest: +SKIP
    >>> trainer.train()                                                            # doctest: +SKIP
    >>> tune.plan.peak_lr, tune.result.suggestion.confidence                      # doctest: +SKIP
    (0.00042, 0.71)
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from autolr import distributed as dist
from autolr.batches import keep_generators
from autolr.errors import AutoLRWarning, ConfigurationError, StateError
from autolr.lr_scheduler import set_peak_lrs
from autolr.param_groups import get_lrs, set_group_value, unwrap_optimizer
from autolr.plan import SCHEDULES, Plan, make_plan
from autolr.range_test import lr_find
from autolr.report import Decision, Reporter, emit_summary, format_lr, format_summary, group_metrics, safe_report
from autolr.result import LRFindResult
from autolr.suggest import Suggestion
from autolr.validation import check_keywords
from autolr.weight_decay import named_params_info

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState
except ImportError as exc:  # pragma: no cover - transformers is an optional extra
    raise ImportError(
        "autolr.integrations.transformers needs transformers: pip install 'torch-autolr[transformers]'"
    ) from exc

__all__ = ["AutoLRCallback"]

logger = logging.getLogger("autolr")

_STATE_VERSION = 1
# lr_find arguments the Trainer already defines, and where the user sets them instead
_OWNED = {
    "model": "the sweep uses the Trainer's model", "optimizer": "the Trainer builds it (optim=, or optimizers=)",
    "loader": "the sweep reads the Trainer's train dataloader", "loss_fn": "the loss is Trainer.compute_loss",
    "compute_loss": "the loss is Trainer.compute_loss (override it, or pass compute_loss_func=)",
    "train_step": "the sweep runs Trainer.training_step", "backward": "the Trainer's accelerator does the backward",
    "autocast": "the precision comes from TrainingArguments(bf16=/fp16=)",
    "autocast_dtype": "the precision comes from TrainingArguments(bf16=/fp16=)",
    "scaler": "the scaler comes from TrainingArguments(fp16=True)",
    "accumulation_steps": "it comes from TrainingArguments.gradient_accumulation_steps",
    "max_grad_norm": "it comes from TrainingArguments.max_grad_norm", "device": "batches go to the Trainer's device",
    "apply": "the callback always applies its decision", "val_loader": "it is not supported inside the Trainer",
    "val_batches": "it is not supported inside the Trainer",
    "weight_decay": "it is TrainingArguments.weight_decay (the callback never changes it)",
}
_RANGE_TEST = frozenset(inspect.signature(lr_find).parameters) - set(_OWNED) - {"reporters"}
_ALLOWED = _RANGE_TEST | {"schedule", "min_confidence", "warmup_steps", "wandb", "reporters"}
_SCHEDULES = ("hf", *(s for s in SCHEDULES if s != "plateau"), "cosine")


class AutoLRCallback(TrainerCallback, ExportableState):
    """Range test through the Trainer's own step, then the found LR on the Trainer's schedule (module docstring).

    Args:
        schedule: ``"hf"`` (default): the Trainer's own schedule, its peak moved to the LR found. ``"auto"`` or a
            name from :data:`autolr.plan.SCHEDULES` (not ``"plateau"``): the plan's schedule over ``max_steps``
            replaces the multipliers of the Trainer's ``LambdaLR`` (``lr_scheduler_type`` and ``warmup_*`` are
            then unused).
        min_confidence: apply the suggestion only when its confidence is at least this (default ``0.1``: a
            fresh model's flat-curve guess is not applied, a fine-tune's edge reading is); otherwise
            ``learning_rate`` is kept, with a warning. ``0`` applies every suggestion.
        warmup_steps: the plan's warmup with ``schedule="auto"`` (default: its 5 % rule).
        wandb: ``None`` (default): with ``report_to="wandb"``, log into the run Hugging Face manages. ``True``:
            also start autolr's own run when the Trainer has none. ``False``: no W&B. A dict: arguments of
            :class:`autolr.integrations.wandb.WandbReporter` (``run`` is always Hugging Face's when it has one).
        reporters: more :class:`~autolr.report.Reporter` objects (main process only).
        **range_test: arguments of :func:`autolr.lr_find` the Trainer does not define (``num_steps``,
            ``start_lr``, ``end_lr``, ``method``, ``snapshot``, ``progress``...).

    Attributes:
        result: the range test's :class:`~autolr.LRFindResult` (restored from the checkpoint when resuming).
        plan: the :class:`~autolr.plan.Plan`: ``peak_lr`` and ``lrs`` are the peak of every param group;
            with ``schedule="hf"`` its ``schedule_name`` is ``"hf:<lr_scheduler_type>"`` and the Trainer's
            scheduler sets the LR.
    """

    def __init__(
        self,
        *,
        schedule: str = "hf",
        min_confidence: float = 0.1,
        warmup_steps: int | None = None,
        wandb: bool | dict[str, Any] | None = None,
        reporters: Sequence[Reporter] = (),
        **range_test: Any,
    ) -> None:
        check_keywords("AutoLRCallback", range_test, allowed=_ALLOWED, owned=_OWNED)
        if schedule not in _SCHEDULES:
            raise ConfigurationError(
                f"schedule must be one of {list(_SCHEDULES)}, got {schedule!r} ('hf' keeps the Trainer's own "
                "schedule; 'plateau' needs an epoch-end metric the Trainer's per-step scheduler does not take)"
            )
        if isinstance(min_confidence, bool) or not (
            isinstance(min_confidence, (int, float)) and 0 <= min_confidence <= 1
        ):
            raise ConfigurationError(f"min_confidence must be a number in [0, 1], got {min_confidence!r}")
        if warmup_steps is not None and schedule == "hf":
            raise ConfigurationError(
                "warmup_steps= is for the plan's schedule (schedule='auto'); with schedule='hf' the Trainer's "
                "TrainingArguments.warmup_steps (steps, or a ratio below 1) sets the warmup"
            )
        self.schedule, self.min_confidence, self.warmup_steps = schedule, float(min_confidence), warmup_steps
        self.wandb, self.reporters, self.range_test = wandb, list(reporters), dict(range_test)
        self.result: LRFindResult | None = None
        self.plan: Plan | None = None
        self.saved_state: dict[str, Any] | None = None  # set by Hugging Face when it rebuilds the callback
        self._trainer: Any = None
        self._reporters: list[Reporter] = []

    # -- Trainer events ----------------------------------------------------------------------------------
    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._trainer = _find_trainer(self)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        trainer = self._trainer = _find_trainer(self) or self._trainer
        if trainer is None:
            raise ConfigurationError(
                "AutoLRCallback could not find the Trainer it belongs to; pass it in Trainer(callbacks=[...]) or "
                "trainer.add_callback(...)"
            )
        if getattr(trainer, "is_deepspeed_enabled", False):
            self._warn(state, "DeepSpeed builds its own optimizer and scheduler, which autolr cannot drive yet; "
                              "training goes on with learning_rate as configured")
            return
        self._reporters = self._make_reporters(trainer, state) if state.is_world_process_zero else []
        if state.global_step > 0:  # resumed from a checkpoint: no new range test
            self._resume(trainer, state)
            return
        self.result = self.plan = None
        self._range_test(trainer, args, state, kwargs.get("train_dataloader"))

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        reporters = [r for r in self._reporters if type(r).training_metrics is not Reporter.training_metrics]
        if not reporters or self.plan is None or self._trainer is None:
            return
        optimizer = unwrap_optimizer(self._trainer.optimizer)
        metrics = group_metrics(get_lrs(optimizer), optimizer.param_groups)  # the LRs this step ran at
        for reporter in reporters:
            safe_report(reporter.training_metrics, state.global_step + 1, metrics)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for reporter in self._reporters:
            safe_report(reporter.close)  # flushes; a run Hugging Face manages is never finished by autolr
        self._reporters = []

    # -- checkpoints (ExportableState: saved in trainer_state.json) ------------------------------------
    def state(self) -> dict[str, Any]:
        args = {"schedule": self.schedule, "min_confidence": self.min_confidence,
                "warmup_steps": self.warmup_steps, **_jsonable_kwargs(self.range_test)}
        if self.wandb is None or isinstance(self.wandb, bool):
            args["wandb"] = self.wandb
        saved = None
        if self.plan is not None:
            saved = {"version": _STATE_VERSION, "schedule": self.schedule, "plan": self.plan.to_dict(),
                     "result": self.result.to_dict() if self.result is not None else None}
        return {"args": args, "attributes": {"saved_state": saved}}

    # -- internals ---------------------------------------------------------------------------------------
    def _range_test(self, trainer: Any, args: Any, state: Any, loader: Any) -> None:
        scheduler, optimizer = trainer.lr_scheduler, unwrap_optimizer(trainer.optimizer)
        takes_over = self.schedule != "hf"
        if takes_over and not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            raise ConfigurationError(
                f"AutoLRCallback(schedule={self.schedule!r}) runs the plan's schedule through the Trainer's LambdaLR, "
                f"but its scheduler is a {type(scheduler).__name__} (lr_scheduler_type={_scheduler_type(args)!r} or "
                "optimizers=); use AutoLRCallback(schedule='hf') to keep that scheduler and move its peak"
            )
        loader = loader if loader is not None else trainer.callback_handler.train_dataloader
        if loader is None:
            raise ConfigurationError("the Trainer has no train dataloader at on_train_begin; give it a train_dataset")
        peaks = _peaks(scheduler, optimizer)
        dry = Suggestion(None, "default", 0.0, "not measured yet")
        self._decide(trainer, args, state, optimizer, peaks, dry)  # a bad setting fails now, not after the sweep
        options = {"progress": False if args.disable_tqdm else None, **self.range_test}
        step = _TrainerStep(trainer)
        kept_lrs = get_lrs(optimizer)
        try:
            for group, peak in zip(optimizer.param_groups, peaks):
                set_group_value(group, "lr", peak)  # a warmup starts at 0; the sweep keeps the ratios of the peaks
            with _untouched(trainer, loader), warnings.catch_warnings():
                # the Trainer's scheduler is already attached: expected, its peak is moved afterwards
                warnings.filterwarnings("ignore", "a learning-rate scheduler is already attached", AutoLRWarning)
                result = lr_find(trainer.model_wrapped, optimizer, _StepBatches(trainer, loader), train_step=step,
                                 scaler=getattr(trainer.accelerator, "scaler", None), **options)
        except BaseException:
            for group, lr in zip(optimizer.param_groups, kept_lrs):
                set_group_value(group, "lr", lr)
            raise
        self.result = result
        self.plan = self._decide(trainer, args, state, optimizer, peaks, result.suggestion)
        self._apply(scheduler, self.plan)
        if state.is_world_process_zero:
            self._announce(args, peaks)
            for reporter in self._reporters:
                safe_report(reporter.range_test_end, result)
                safe_report(reporter.decisions, list(self.plan.decisions))

    def _decide(self, trainer: Any, args: Any, state: Any, optimizer: Any, peaks: list[float],
                suggestion: Suggestion) -> Plan:
        """The core's plan for these groups; with schedule='hf' its schedule decision says the Trainer's."""
        decays = [float(g.get("weight_decay", 0.0) or 0.0) for g in optimizer.param_groups]
        name = type(optimizer).__name__
        own = self.schedule == "hf"  # the Trainer's schedule: tell the core whether it warms up and decays to 0
        plan = make_plan(
            suggestion, param_group_lrs=peaks, optimizer_name=name, total_steps=int(state.max_steps),
            schedule="constant" if own else self.schedule, weight_decay=max(decays),
            warmup_steps=self.warmup_steps, named_params_info=named_params_info(trainer.model),
            min_confidence=self.min_confidence,
            decays=bool(trainer._created_lr_scheduler and _scheduler_type(args) in HF_DECAYING) if own else None,
        )
        wd = Decision("weight_decay", max(decays), (
            f"the Trainer's own: TrainingArguments.weight_decay={args.weight_decay:g} on its decayed group, 0 on "
            "biases and LayerNorm weights (Trainer.get_decay_parameter_names); autolr does not change it"),
            evidence={"group_weight_decays": decays, "optimizer": name})
        replaced = {"weight_decay": wd, "no_decay": None}
        if self.schedule == "hf":
            kind = _scheduler_type(args) if trainer._created_lr_scheduler else type(trainer.lr_scheduler).__name__
            warmup = args.get_warmup_steps(int(state.max_steps)) if trainer._created_lr_scheduler else None
            origin = (f"lr_scheduler_type={kind!r}, warmup {warmup} of {state.max_steps} steps"
                      if warmup is not None else "the scheduler passed in Trainer(optimizers=...)")
            replaced["schedule"] = Decision(
                "schedule", f"hf:{kind}", f"the Trainer's own schedule ({origin}), its peak moved to the lr decided",
                alternatives={"auto": "AutoLRCallback(schedule='auto'): the plan's schedule takes over"},
                evidence={"total_steps": int(state.max_steps), "warmup_steps": warmup, "old_peak": peaks[0]})
            plan = replace(plan, schedule_name=f"hf:{kind}")
        else:
            schedule = plan.decision("schedule")
            replaced["schedule"] = replace(schedule, reason=(
                f"{schedule.reason}; it replaces the Trainer's lr_scheduler_type={_scheduler_type(args)!r} and "
                f"warmup ({args.get_warmup_steps(int(state.max_steps))} steps) from TrainingArguments"))
        decisions = [replaced.get(d.name, d) for d in plan.decisions]
        return replace(plan, decisions=tuple(d for d in decisions if d is not None))

    def _apply(self, scheduler: Any, plan: Plan) -> None:
        if self.schedule != "hf":
            multiplier = _multiplier(plan.schedule)  # a plain function: LambdaLR saves none of it in scheduler.pt
            scheduler.lr_lambdas = [multiplier] * len(scheduler.lr_lambdas)
        set_peak_lrs(scheduler, plan.lrs)

    def _resume(self, trainer: Any, state: Any) -> None:
        saved = self.saved_state or _saved_state(state, type(self).__name__)
        if not saved or saved.get("plan") is None:
            self._warn(state, "the checkpoint holds no AutoLRCallback state (it was saved without the callback): no "
                              "range test on a resumed run; the learning rates stay as the checkpoint has them")
            return
        if saved.get("version") != _STATE_VERSION:
            raise StateError(f"unknown AutoLRCallback state version {saved.get('version')!r}")
        if saved.get("schedule") != self.schedule:
            raise StateError(
                f"the checkpoint was trained with AutoLRCallback(schedule={saved.get('schedule')!r}); resume it with "
                f"the same schedule, not {self.schedule!r}"
            )
        self.plan = Plan.from_dict(saved["plan"])
        self.result = LRFindResult.from_dict(saved["result"]) if saved.get("result") else None
        optimizer = unwrap_optimizer(trainer.optimizer)
        if len(self.plan.lrs) != len(optimizer.param_groups):
            raise StateError(
                f"the checkpoint's plan has {len(self.plan.lrs)} param groups, the Trainer's optimizer "
                f"{len(optimizer.param_groups)}; resume with the optimizer built the same way"
            )
        self._apply(trainer.lr_scheduler, self.plan)  # the restored scheduler already has this peak: a no-op then
        if state.is_world_process_zero:
            logger.info("autolr: resumed at step %d with the saved plan (peak lr %s), no new range test",
                        state.global_step, format_lr(self.plan.peak_lr))
            for reporter in self._reporters:
                safe_report(reporter.decisions, list(self.plan.decisions))

    def _announce(self, args: Any, peaks: list[float]) -> None:
        assert self.plan is not None and self.result is not None
        echo = (self.range_test.get("progress", None if not args.disable_tqdm else False)) is not False
        emit_summary("autolr plan\n" + format_summary(None, self.plan.decisions), echo=echo)
        suggestion = self.result.suggestion
        if suggestion.lr is None or suggestion.confidence < self.min_confidence:
            hint = (" Pass AutoLRCallback(min_confidence=0) to apply such a suggestion anyway."
                    if suggestion.lr is not None else "")
            self._warn(None, f"the Trainer keeps learning_rate={peaks[0]:.3g}: {self.plan.decision('lr').reason}. "
                             f"A flat or weak range-test curve is common when fine-tuning a pretrained model, and "
                             f"a guess read off it can damage the model.{hint}")
        if self.schedule != "hf":
            logger.warning("autolr: %s", self.plan.decision("schedule").reason)

    def _make_reporters(self, trainer: Any, state: Any) -> list[Reporter]:
        reporters = list(self.reporters)
        if self.wandb is False:
            return reporters
        managed, run = _hf_wandb_run(trainer)
        if run is None and (managed or not self.wandb):  # never start a run Hugging Face's callback would adopt
            return reporters
        from autolr.integrations.wandb import WandbReporter

        options = {"lr_interval": 0.0, **(self.wandb if isinstance(self.wandb, dict) else {})}
        if run is not None:
            options["run"] = run
        reporters.append(WandbReporter(**options))
        return reporters

    @staticmethod
    def _warn(state: Any, message: str) -> None:
        if (state.is_world_process_zero if state is not None else dist.is_rank_zero()):
            warnings.warn(f"autolr: {message}", AutoLRWarning, stacklevel=3)


class _TrainerStep:
    """One optimizer step as ``Trainer._run_epoch`` takes it, for a group of micro-batches: ``training_step``
    per micro-batch (no DDP gradient sync but on the last one), clipping at ``max_grad_norm``, the wrapped
    optimizer's ``step()``. Returns the step's loss as the Trainer logs it (the sum of the micro-batch losses,
    each already divided for accumulation)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.takes_items = "num_items_in_batch" in inspect.signature(trainer.training_step).parameters

    def __call__(self, group: tuple[list[Any], Any]) -> torch.Tensor:
        trainer, (batches, num_items) = self.trainer, group
        accelerator, model = trainer.accelerator, trainer.model_wrapped
        trainer.current_gradient_accumulation_steps = len(batches)
        sync_each = accelerator.gradient_state.plugin_kwargs.get("sync_each_batch", False)
        total: torch.Tensor | None = None
        for i, inputs in enumerate(batches):
            last = i == len(batches) - 1
            accelerator.gradient_state._set_sync_gradients(last)
            sync = contextlib.nullcontext() if last or sync_each else accelerator.no_sync(model=model)
            with sync:
                extra = (num_items,) if self.takes_items else ()
                loss = trainer.training_step(model, inputs, *extra).detach()
            total = loss if total is None else total + loss
        if trainer.args.max_grad_norm is not None and trainer.args.max_grad_norm > 0:
            clip = getattr(trainer, "_clip_grad_norm", None)
            if clip is not None:
                clip(model)
            else:  # pragma: no cover - transformers < 5
                accelerator.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)
        trainer.optimizer.step()
        assert total is not None
        return total


class _StepBatches:
    """The train dataloader as the Trainer consumes it: groups of ``gradient_accumulation_steps`` micro-batches
    (fewer at the end of an epoch), with their ``num_items_in_batch``."""

    def __init__(self, trainer: Any, loader: Any) -> None:
        self.trainer, self.loader = trainer, loader
        self.per_step = max(1, int(trainer.args.gradient_accumulation_steps))
        self.takes_device = "device" in inspect.signature(trainer.get_batch_samples).parameters

    def __iter__(self) -> Iterator[tuple[list[Any], Any]]:
        iterator = iter(self.loader)
        extra = (self.trainer.args.device,) if self.takes_device else ()
        while True:
            batches, num_items = self.trainer.get_batch_samples(iterator, self.per_step, *extra)
            if not batches:
                return
            yield batches, num_items


_UNSET = object()


@contextlib.contextmanager
def _untouched(trainer: Any, loader: Any) -> Iterator[None]:
    """Put back what the sweep moves outside the model and optimizer (those the range test restores itself):
    the accelerator's gradient state, the dataloader's epoch counters and generators, the Trainer's
    accumulation count."""
    gradient_state = trainer.accelerator.gradient_state.__dict__  # a shared singleton dict
    saved_gradient = {k: (list(v) if isinstance(v, list) else v) for k, v in gradient_state.items()}
    owners = [loader, getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)]
    owners += [getattr(owners[1], "sampler", None), getattr(owners[1], "batch_sampler", None)]
    owners += [getattr(owners[4], "sampler", None)]
    # a counter the loader has not set yet (never iterated) is removed again: a sweep that ends on an epoch's last
    # batch must not leave end_of_dataloader=True behind
    counters = [(o, k, vars(o).get(k, _UNSET)) for o in owners if o is not None
                for k in ("iteration", "epoch", "end_of_dataloader", "remainder")]
    had_accumulation = "current_gradient_accumulation_steps" in vars(trainer)
    accumulation = getattr(trainer, "current_gradient_accumulation_steps", None)
    try:
        with keep_generators(loader, getattr(loader, "base_dataloader", None)):
            yield
    finally:
        gradient_state.update(saved_gradient)
        for owner, key, value in counters:
            if value is not _UNSET:
                setattr(owner, key, value)
            elif key in vars(owner):
                delattr(owner, key)
        if had_accumulation:
            trainer.current_gradient_accumulation_steps = accumulation
        else:
            vars(trainer).pop("current_gradient_accumulation_steps", None)


def _peaks(scheduler: Any, optimizer: torch.optim.Optimizer) -> list[float]:
    """The peak LR of every group: the scheduler's base LRs, else the groups' ``initial_lr`` / ``lr``."""
    bases = getattr(scheduler, "base_lrs", None)
    if bases is not None and len(bases) == len(optimizer.param_groups):
        return [float(b) for b in bases]
    return [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]


def _multiplier(schedule: Any) -> Any:
    def multiplier(step: int) -> float:
        return float(schedule(step))

    return multiplier


#: ``lr_scheduler_type`` values whose schedule warms up and decays to (near) 0: a fine-tune's peak there is raised
#: as under autolr's own warmup + decay schedules (:data:`autolr.plan.FINETUNE_DECAY_PEAK`). A scheduler passed in
#: ``optimizers=`` is not read: its peak is the suggestion.
HF_DECAYING = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
)


def _scheduler_type(args: Any) -> str:
    value = args.lr_scheduler_type
    return str(getattr(value, "value", value))


def _saved_state(state: Any, name: str) -> dict[str, Any] | None:
    """This callback's state from a resumed ``trainer_state.json`` (Hugging Face loads it into ``state``)."""
    stored = (getattr(state, "stateful_callbacks", None) or {}).get(name)
    if isinstance(stored, list):
        stored = stored[0] if stored else None
    if not isinstance(stored, Mapping):
        return None
    saved = (stored.get("attributes") or {}).get("saved_state")
    return copy.deepcopy(saved) if isinstance(saved, Mapping) else None


def _find_trainer(callback: Any) -> Any:
    """The ``Trainer`` whose callback handler holds ``callback``: found on the call stack of the event (a
    ``TrainerCallback`` is never handed the Trainer itself)."""
    from transformers import Trainer

    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, Trainer):
                handler = getattr(owner, "callback_handler", None)
                if handler is not None and any(cb is callback for cb in handler.callbacks):
                    return owner
            frame = frame.f_back
    finally:
        del frame
    return None


def _hf_wandb_run(trainer: Any) -> tuple[bool, Any]:
    """Whether the Trainer logs to W&B (``report_to="wandb"``), and the run its ``WandbCallback`` set up."""
    try:
        from transformers.integrations import WandbCallback
    except ImportError:  # pragma: no cover
        return False, None
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, WandbCallback):
            started = getattr(callback, "_initialized", False)
            return True, getattr(getattr(callback, "_wandb", None), "run", None) if started else None
    return False, None


def _jsonable_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is None or (
        isinstance(v, (bool, int, float, str)) and not (isinstance(v, float) and not math.isfinite(v)))}

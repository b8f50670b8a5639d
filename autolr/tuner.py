"""AutoLR: the callback that turns a range test into a training plan and carries it out for the whole run.

Add it to the loop you already have. Building it splits the param groups for weight decay (biases, norm
layers, a model's own ``no_weight_decay()`` list and groups you set to 0 get none), so the range test measures
the weight decay training will use and a fresh optimizer already has the group structure of a checkpoint.
``lr_find`` runs the range test (state restored exactly), makes a :class:`~autolr.plan.Plan` (LR per group,
schedule, weight decay) and applies it: the LRs are set (per-group multipliers such as ``lr_scale`` kept) and a
scheduler is attached that steps itself after every real optimizer step through
``Optimizer.register_step_post_hook`` (a step a GradScaler skips does not advance it). Per-epoch and metric
schedules step on :meth:`end_epoch`. With ``auto_step=False`` your framework steps :attr:`AutoLR.scheduler`
instead; the step count, metrics, guard and :meth:`AutoLR.observe` work the same, and the LR trajectory is the
same. When anything else writes the LR of a group the plan owns, autolr warns once.

Example:
    >>> import torch, autolr
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    >>> data = [(torch.randn(32, 8), torch.randint(0, 2, (32,))) for _ in range(8)]
    >>> tuner = autolr.AutoLR(model, opt, schedule="onecycle", weight_decay=None, progress=False)
    >>> plan = tuner.lr_find(data, torch.nn.CrossEntropyLoss(), total_steps=40)
    >>> for x, y in data:                      # your loop, unchanged
    ...     opt.zero_grad(); loss = torch.nn.functional.cross_entropy(model(x), y); loss.backward(); opt.step()
    ...     tuner.observe(loss)
    >>> tuner.step
    8
"""

from __future__ import annotations

import inspect
import logging
import math
import warnings
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import torch

from . import distributed as dist
from .errors import AutoLRWarning, ConfigurationError, StateError
from .guard import DivergenceGuard
from .lr_scheduler import ScheduleLR
from .monitor import LossStream
from .param_groups import effective_lrs, set_group_value, unwrap_optimizer, validate_param_groups
from .plan import KNOWN_OPTIMIZERS, SCHEDULES, Plan, make_plan, resolve_weight_decay, supports_weight_decay
from .range_test import ComputeLoss, LossFn, TrainStep, lr_find, range_test_running
from .report import Decision, Reporter, emit_summary, format_summary, group_metrics, safe_report
from .result import LRFindResult
from .schedule import Plateau, schedule_from_dict
from .suggest import Suggestion
from .validation import as_loss_value, did_you_mean, plain_number, validate_reporters
from .weight_decay import named_params_info, split_param_groups, sweep_weight_decay

__all__ = ["AutoLR"]

logger = logging.getLogger("autolr")

# lr_find's arguments that AutoLR passes through (the model, optimizer, loader and step come from AutoLR itself)
_RANGE_TEST_ARGS = frozenset(inspect.signature(lr_find).parameters) - {
    "model", "optimizer", "loader", "loss_fn", "compute_loss", "train_step", "scaler", "apply", "reporters"}
_LR_FIND_ONLY = frozenset({"total_steps", "epochs", "steps_per_epoch", "loss_fn", "compute_loss", "train_step"})

#: the AutoLR whose hooks step each optimizer's schedule (weak both ways: neither is kept alive by this)
_DRIVERS: weakref.WeakKeyDictionary[Any, weakref.ref[AutoLR]] = weakref.WeakKeyDictionary()

# observed losses without a single optimizer step before the "plan unused" warning (more than any accumulation)
_IDLE_OBSERVES = 100

_STATE_VERSION = 2  # 2: the plan's lrs are per group after the weight-decay split (1: per original group)


class _TunerScheduler(ScheduleLR):
    """The plan's scheduler. While the tuner steps it (``manual`` False), a manual ``step()`` is warned about
    and ignored, so the schedule is never advanced twice."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.manual = True  # let through the initial step torch makes in __init__
        self._warned = False
        super().__init__(*args, **kwargs)
        self.manual = False

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        if self.manual:
            super().step(epoch)
        elif not self._warned:
            self._warned = True
            warnings.warn(
                "this scheduler is stepped by autolr.AutoLR automatically (after every optimizer step, or at "
                "tuner.end_epoch()); your scheduler.step() call was ignored so the schedule is not advanced "
                "twice. Remove the call, or create AutoLR(..., auto_step=False) to step it yourself.",
                AutoLRWarning,
                stacklevel=2,
            )

    def _advance(self) -> None:
        ScheduleLR.step(self)


class AutoLR:
    """Auto-tuning callback: range test -> plan -> applied LRs, weight decay and a self-stepping schedule.

    Args:
        model: the model being trained.
        optimizer: its optimizer; its param groups are split for weight decay here, before any step (groups
            you made are never merged; a group whose ``weight_decay`` you set to 0 while others have some keeps
            0). Framework wrappers holding it as ``.optimizer`` (Accelerate, Lightning) are unwrapped.
        schedule: ``"auto"`` or one of :data:`autolr.plan.SCHEDULES` (``onecycle``, ``warmup_cosine``,
            ``linear``, ``constant``, ``step``, ``plateau``).
        weight_decay: ``"auto"`` (a documented rule per optimizer), ``"sweep"`` (Smith's method: short range
            tests at a few values, keep the one that reaches the lowest loss; costs ``len(weight_decay_grid)``
            range tests), a float, or ``None`` for no decay.
        weight_decay_grid: the values tried by ``weight_decay="sweep"``.
        exclude_embeddings: no weight decay on embedding weights (biases and norm layers never get any).
        step_granularity: ``"step"`` (the schedule advances every optimizer step; ``total_steps`` counts
            steps) or ``"epoch"`` (advances at :meth:`end_epoch`; ``total_steps`` counts epochs).
        warmup_steps: override the warmup rule of warmup schedules.
        scaler: the ``GradScaler`` used in training (saved and restored by the range test).
        guard: restore the last good state and lower the LR when the observed loss diverges.
        guard_every: optimizer steps between the guard's CPU snapshots.
        guard_lr_factor: LR multiplier applied at each guard intervention.
        guard_max_retries: interventions before giving up with :class:`~autolr.errors.DivergenceError`.
        guard_divergence_factor: the smoothed observed loss above this many times its best is a divergence.
        min_confidence: apply the suggested LR only when its confidence is at least this; below it the current
            LRs are kept and the plan says why. ``0.1`` skips the flat-curve guesses (confidence 0.05), which
            suit a network on a plateau but not fine-tuning an already trained model; ``0.2`` also skips weak
            suggestions. Default 0: every suggestion is applied (and a low confidence is logged as a warning).
        check_every: observed losses are read back to the host in batches of this size.
        auto_step: step the scheduler automatically after every optimizer step (and at :meth:`end_epoch`).
            ``False`` hands :attr:`scheduler` to you or your framework to step like any torch scheduler, once
            per optimizer step (the step count, metrics, guard and :meth:`observe` still work the same).
        reporters: :class:`~autolr.report.Reporter` objects (W&B, local report, ...).
        wandb: ``True`` or a dict of :class:`autolr.integrations.wandb.WandbReporter` arguments. Needs the
            ``wandb`` extra (``pip install "torch-autolr[wandb]"``); without it, one warning and no W&B logging.
        progress: the range test's progress bar: ``None`` (default) only when stderr is a terminal or in a
            Jupyter notebook (no carriage-return junk in log files); ``True`` always; ``False`` never, and the
            range-test summary and the plan are not echoed to stderr either (they still go to the logger).
        **range_test: defaults for :func:`autolr.lr_find` (``num_steps``, ``end_lr``, ``snapshot``...).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        schedule: str = "auto",
        weight_decay: float | str | None = "auto",
        weight_decay_grid: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1),
        exclude_embeddings: bool = True,
        step_granularity: str = "step",
        warmup_steps: int | None = None,
        scaler: Any = None,
        guard: bool = False,
        guard_every: int = 100,
        guard_lr_factor: float = 0.5,
        guard_max_retries: int = 3,
        guard_divergence_factor: float = 4.0,
        min_confidence: float = 0.0,
        check_every: int = 16,
        auto_step: bool = True,
        reporters: Sequence[Reporter] = (),
        wandb: bool | dict[str, Any] = False,
        progress: bool | None = None,
        **range_test: Any,
    ) -> None:
        optimizer = unwrap_optimizer(optimizer)
        if not isinstance(model, torch.nn.Module):
            raise ConfigurationError(
                f"model must be a torch.nn.Module, got {type(model).__name__}; the arguments are (model, optimizer)"
            )
        validate_param_groups(optimizer)
        (weight_decay, warmup_steps, guard_every, guard_lr_factor, guard_max_retries, guard_divergence_factor,
         min_confidence, check_every) = (plain_number(v) for v in (
            weight_decay, warmup_steps, guard_every, guard_lr_factor, guard_max_retries, guard_divergence_factor,
            min_confidence, check_every))
        weight_decay_grid = plain_number(list(weight_decay_grid)) if isinstance(weight_decay_grid, Iterable) else (
            weight_decay_grid)
        range_test = {k: plain_number(v) for k, v in range_test.items()}
        unknown = sorted(set(range_test) - _RANGE_TEST_ARGS)
        if unknown:
            hints = [
                f"{k!r} (pass it to tuner.lr_find)" if k in _LR_FIND_ONLY
                else f"{k!r}{did_you_mean(k, KEYWORDS)}" for k in unknown
            ]
            raise ConfigurationError(
                f"AutoLR got unknown argument(s) {', '.join(hints)}; besides its own arguments it takes those of "
                f"autolr.lr_find: {', '.join(sorted(_RANGE_TEST_ARGS))}"
            )
        names = sorted(SCHEDULES)
        if schedule not in SCHEDULES and schedule != "cosine":
            raise ConfigurationError(f"schedule must be one of {names}, got {schedule!r}")
        if step_granularity not in ("step", "epoch"):
            raise ConfigurationError(f"step_granularity must be 'step' or 'epoch', got {step_granularity!r}")
        if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0) and weight_decay not in (
            "auto", "sweep", None
        ):
            raise ConfigurationError(
                f"weight_decay must be 'auto', 'sweep', None or a float >= 0, got {weight_decay!r}"
            )
        self._optimizer_name = self._effective_optimizer_name(optimizer)
        info = KNOWN_OPTIMIZERS.get(self._optimizer_name.lower())
        wants_decay = weight_decay == "sweep" or (isinstance(weight_decay, (int, float)) and weight_decay > 0)
        if wants_decay and info is not None and info.decay != "decoupled" and info.family != "sgd":
            raise ConfigurationError(
                f"{type(optimizer).__name__} applies weight decay as an L2 term scaled by its adaptive step, not "
                f"decoupled, so weight_decay={weight_decay!r} would not do what the value says. Use "
                "torch.optim.AdamW (or Adam(..., decoupled_weight_decay=True)), or weight_decay=None."
            )
        for name, value, low in (("guard_every", guard_every, 1), ("guard_max_retries", guard_max_retries, 0),
                                 ("check_every", check_every, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0 < guard_lr_factor < 1:
            raise ConfigurationError(f"guard_lr_factor must be in (0, 1), got {guard_lr_factor!r}; e.g. 0.5")
        if not guard_divergence_factor > 1:
            raise ConfigurationError(f"guard_divergence_factor must be > 1, got {guard_divergence_factor!r}")
        if not (isinstance(min_confidence, (int, float)) and 0 <= min_confidence <= 1):
            raise ConfigurationError(f"min_confidence must be a number in [0, 1], got {min_confidence!r}; e.g. 0.1")
        if weight_decay == "sweep" and (not weight_decay_grid or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                for w in weight_decay_grid)):
            raise ConfigurationError(
                f"weight_decay_grid must be a non-empty list of numbers >= 0 for weight_decay='sweep', got "
                f"{weight_decay_grid!r}; e.g. (0.0, 1e-4, 1e-3, 1e-2, 1e-1)"
            )
        if warmup_steps is not None and (isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int)
                                         or warmup_steps < 0):
            raise ConfigurationError(
                f"warmup_steps must be None (5% of the run) or an integer >= 0, got {warmup_steps!r}"
            )
        if not isinstance(wandb, (bool, dict)):
            raise ConfigurationError(
                f"wandb must be True, False or a dict of WandbReporter arguments (e.g. {{'project': 'my-project'}}), "
                f"got {wandb!r}"
            )
        if progress is not None and not isinstance(progress, bool):
            raise ConfigurationError(
                f"progress must be None (a bar only on a terminal), True or False, got {progress!r}"
            )
        reporters = validate_reporters(reporters)
        if wants_decay and not supports_weight_decay(self._optimizer_name):
            raise ConfigurationError(
                f"{type(optimizer).__name__} has no weight_decay argument; use weight_decay=None (or an optimizer "
                "with weight decay, e.g. AdamW)"
            )
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.schedule_name, self.weight_decay = schedule, weight_decay
        self.weight_decay_grid = tuple(float(w) for w in weight_decay_grid)
        self.exclude_embeddings, self.step_granularity = exclude_embeddings, step_granularity
        self.warmup_steps = warmup_steps
        self.auto_step = auto_step
        self.min_confidence = float(min_confidence)
        self.guard, self.guard_every, self.guard_lr_factor = guard, guard_every, guard_lr_factor
        self.guard_max_retries, self.guard_divergence_factor = guard_max_retries, guard_divergence_factor
        self.range_test_defaults = {"progress": progress, **range_test}
        self.reporters: list[Reporter] = list(reporters)
        if wandb:
            from autolr.integrations.wandb import WandbReporter  # optional, imported only when asked for

            self.reporters.append(WandbReporter(**(wandb if isinstance(wandb, dict) else {})))
        self.result: LRFindResult | None = None
        self.plan: Plan | None = None
        self.scheduler: _TunerScheduler | None = None
        self.decisions: list[Decision] = []
        self.step = 0
        self.epoch = 0
        self._handles: list[Any] = []
        self._hooked = False
        self._override_warned = False
        # the weight-decay split happens now, before any step: the range test measures with it, and a fresh
        # AutoLR on a fresh optimizer has the group structure of a checkpoint, whatever is loaded first
        if weight_decay == "sweep":
            split_value = max((w for w in self.weight_decay_grid if w > 0), default=0.0)
        else:
            split_value = resolve_weight_decay(weight_decay, self._optimizer_name)
        self._group_origin: list[int] = split_param_groups(
            optimizer, model, split_value, exclude_embeddings=exclude_embeddings
        )
        self._decay_groups = [i for i, g in enumerate(optimizer.param_groups) if _positive(g.get("weight_decay"))]
        self._watcher = LossStream(check_every)
        self._observed = 0
        self._micro: list[torch.Tensor] = []  # micro-batch losses of the optimizer step under way
        self._micro_step = 0  # self.step when the last micro-batch loss came in
        self._idle_warned = False
        self._guard = DivergenceGuard(every=guard_every, lr_factor=guard_lr_factor, max_retries=guard_max_retries,
                                      divergence_factor=guard_divergence_factor)

    # -- building and applying the plan ------------------------------------------------------------------
    @staticmethod
    def _effective_optimizer_name(optimizer: torch.optim.Optimizer) -> str:
        name = type(optimizer).__name__
        if name == "Adam" and optimizer.defaults.get("decoupled_weight_decay"):
            return "AdamW"
        return name

    def _make_plan(self, suggestion: Suggestion, total_steps: int | None, weight_decay: Any) -> Plan:
        return make_plan(
            suggestion, param_group_lrs=effective_lrs(self.optimizer), optimizer_name=self._optimizer_name,
            total_steps=total_steps, schedule=self.schedule_name, weight_decay=weight_decay,
            warmup_steps=self.warmup_steps, step_granularity=self.step_granularity,
            exclude_embeddings=self.exclude_embeddings, named_params_info=named_params_info(self.model),
            min_confidence=self.min_confidence,
        )

    def lr_find(
        self,
        loader: Iterable[Any],
        loss_fn: LossFn | None = None,
        *,
        compute_loss: ComputeLoss | None = None,
        train_step: TrainStep | None = None,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        **range_test: Any,
    ) -> Plan:
        """Run the range test, make the plan, apply it. Returns the :class:`~autolr.plan.Plan`.

        Give the run length as ``total_steps`` (optimizer steps; epochs with ``step_granularity="epoch"``)
        or as ``epochs`` (× ``steps_per_epoch``, default ``len(loader)``). Not needed for ``plateau``.
        The step is given as in :func:`autolr.lr_find`: ``loss_fn``, ``compute_loss``, or ``train_step`` (a
        step your framework owns).
        """
        total_steps, epochs, steps_per_epoch = (plain_number(v) for v in (total_steps, epochs, steps_per_epoch))
        range_test = {k: plain_number(v) for k, v in range_test.items()}
        if self.plan is not None:
            raise StateError(
                "this AutoLR already has a plan (applied by lr_find, or restored by load_state_dict when resuming); "
                "a resumed run needs no new range test. Create a new AutoLR to tune again"
            )
        for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"{name} must be None or an integer >= 1, got {value!r}")
        if total_steps is None and epochs is not None:
            if self.step_granularity == "epoch":
                total_steps = epochs
            else:
                per_epoch = steps_per_epoch if steps_per_epoch is not None else _length(loader)
                if per_epoch is None:
                    raise ConfigurationError(
                        "the loader has no len(); pass steps_per_epoch= (optimizer steps per epoch) or total_steps="
                    )
                accumulation = int(range_test.get("accumulation_steps", 1))
                total_steps = epochs * max(1, per_epoch // accumulation)
        dry = Suggestion(None, "default", 0.0, "not measured yet")
        self._make_plan(dry, total_steps, 0.0 if self.weight_decay == "sweep" else self.weight_decay)  # validate
        kwargs = {**self.range_test_defaults, **range_test, "loss_fn": loss_fn, "compute_loss": compute_loss,
                  "train_step": train_step, "scaler": self.scaler}
        weight_decay: Any = self.weight_decay
        sweep_decision = None
        if self.weight_decay == "sweep":
            result, weight_decay, sweep_decision = sweep_weight_decay(
                self.model, self.optimizer, loader, self.weight_decay_grid, kwargs, groups=self._decay_groups
            )
        else:
            with warnings.catch_warnings():
                if self._take_over():  # its scheduler set 'initial_lr'; this AutoLR replaces it, nothing to warn of
                    warnings.filterwarnings("ignore", "a learning-rate scheduler is already attached", AutoLRWarning)
                result = lr_find(self.model, self.optimizer, loader, **kwargs)
        plan = self._make_plan(result.suggestion, total_steps, weight_decay)
        if sweep_decision is not None:
            plan = _replace_decision(plan, sweep_decision)
        self.result = result
        self.apply_plan(plan)
        if dist.is_rank_zero():  # only rank 0 reports (as lr_find and the decisions do)
            for reporter in self.reporters:
                safe_report(reporter.range_test_end, result)
        self._report(list(plan.decisions))
        if dist.is_rank_zero():
            echo = kwargs.get("progress") is not False
            emit_summary("autolr plan\n" + format_summary(None, plan.decisions), echo=echo)
        return plan

    def apply_plan(self, plan: Plan) -> None:
        """Set the plan's LRs and weight decay on the (already split) groups and attach its scheduler.

        Calling it again with the same plan (a checkpoint loaded twice) replaces the scheduler; nothing is
        split or hooked twice.
        """
        groups = self.optimizer.param_groups
        if len(plan.lrs) != len(groups):
            raise StateError(
                f"the plan has {len(plan.lrs)} param groups but the optimizer has {len(groups)}; build the "
                "optimizer and AutoLR the same way as in the run the plan was made in"
            )
        for i in self._decay_groups:
            set_group_value(groups[i], "weight_decay", plan.weight_decay)
        bases = [lr * self._guard.lr_scale for lr in plan.lrs]
        schedule = schedule_from_dict(plan.schedule.to_dict())  # type: ignore[attr-defined]  # fresh state
        self.scheduler = _TunerScheduler(self.optimizer, schedule, base_lrs=bases)
        self.scheduler.manual = not self.auto_step  # with auto_step=False the user or the framework steps it
        self.plan = plan
        if not self._hooked:  # counts steps in both modes (and steps the scheduler in auto mode)
            self._take_over()
            self._handles.append(self.optimizer.register_step_post_hook(self._on_optimizer_step))
            self._hooked = True
            _DRIVERS[self.optimizer] = weakref.ref(self)

    def _take_over(self) -> bool:
        """Detach another AutoLR still driving this optimizer (with a warning); True if there was one."""
        previous = _DRIVERS.get(self.optimizer)
        other = previous() if previous is not None else None
        if other is None or other is self or not other._hooked:
            return False
        other.detach()
        warnings.warn(
            "another AutoLR was driving this optimizer's schedule (made earlier on the same optimizer, e.g. by "
            "re-running a notebook cell); it has been detached so that only this one steps the LR",
            AutoLRWarning,
            stacklevel=4,
        )
        return True

    # -- during training ------------------------------------------------------------------------------
    def _on_optimizer_step(self, *_: Any) -> None:
        if range_test_running():  # a range test's steps are not training steps (and are undone)
            return
        self.step += 1
        scheduler = self.scheduler
        if scheduler is None or self.plan is None:
            return
        used = scheduler.get_last_lr()  # the LRs this step ran at
        if not self._override_warned:
            self._check_override(used)
        if self.auto_step and self.plan.step_granularity == "step":
            scheduler._advance()
        if self._metric_reporters:
            metrics = group_metrics(used, self.optimizer.param_groups)
            for reporter in self._metric_reporters:
                safe_report(reporter.training_metrics, self.step, metrics)

    def _check_override(self, planned: Sequence[float]) -> None:
        """Warn once when a group's LR is not what the plan's scheduler last wrote (float LRs: no host sync)."""
        for i, (group, lr) in enumerate(zip(self.optimizer.param_groups, planned)):
            value = group.get("lr")
            if not isinstance(value, (int, float)) or math.isclose(value, lr, rel_tol=1e-6, abs_tol=1e-15):
                continue
            self._override_warned = True
            warnings.warn(
                f"the learning rate of param group {i} was changed by something other than autolr's plan: the step "
                f"ran at {value:.4g}, the plan set {lr:.4g}. Another scheduler (one from configure_optimizers, the "
                "Hugging Face Trainer, timm's create_scheduler, or your own) or code writing group['lr'] overrides "
                "the plan. Either let autolr own the schedule (remove the other scheduler), hand tuner.scheduler to "
                "your framework as its scheduler with AutoLR(..., auto_step=False), or build your scheduler from "
                f"tuner.plan.peak_lr ({self.plan.peak_lr:.4g}) and call tuner.detach().",
                AutoLRWarning,
                stacklevel=3,
            )
            return

    def observe(self, loss: torch.Tensor | float) -> None:
        """Feed the training loss of the step just taken (monitoring, logging and the divergence guard).

        Never syncs with the GPU per call: losses are read back in batches of ``check_every``, one batch late.
        Under ``torch.distributed`` with the guard on, the loss is averaged over ranks (one small all-reduce),
        so every rank detects a divergence at the same step and intervenes identically. Call it on every rank.
        """
        loss = as_loss_value(loss, "tuner.observe(loss): loss")
        self._observed += 1
        if self._observed == _IDLE_OBSERVES:
            self._warn_if_idle(f"observe() was called {_IDLE_OBSERVES} times")
        if self.guard and dist.is_distributed():  # every rank must see the same values to decide the same way
            loss = dist.all_reduce_mean(loss.detach().float())
        ready = self._watcher.add(loss, self.step)
        if ready:
            self._check(ready)
        if self.guard and self._guard.due(self.step):
            self._check(self._watcher.flush(self.step))
            self._guard.take(self.model, self.optimizer, self.scaler, self.scheduler, self.step)

    def observe_micro_batch(self, loss: torch.Tensor | float | None) -> None:
        """Feed the loss of every micro-batch (each forward/backward), for loops that accumulate gradients over
        several: their mean is given to :meth:`observe` once, right after the optimizer step they add up to.

        Call it after each micro-batch's backward (and the optimizer step when there is one). ``None`` counts the
        micro-batch without a loss (e.g. a manual-optimization step that returned none). No host sync.
        """
        if loss is not None:
            self._micro.append(as_loss_value(loss, "tuner.observe_micro_batch(loss): loss").detach().float())
        if self.step != self._micro_step and self._micro:  # an optimizer step happened since the last call
            values, self._micro = self._micro, []
            self.observe(values[0] if len(values) == 1 else torch.stack(values).mean())
        self._micro_step = self.step

    @property
    def _metric_reporters(self) -> list[Reporter]:
        if not dist.is_rank_zero():
            return []
        return [r for r in self.reporters if type(r).training_metrics is not Reporter.training_metrics]

    def _check(self, values: list[tuple[int, float]]) -> None:
        for reporter in self._metric_reporters:
            for step, value in values:
                safe_report(reporter.training_metrics, step, {"autolr/train_loss": value})
        if not self.guard:
            return
        for step, value in values:
            if self._guard.diverged(value):
                self._intervene(step, value)
                return

    def _intervene(self, step: int, value: float) -> None:
        decision = self._guard.intervene(step=step, value=value, scheduler=self.scheduler)
        self.step = self._guard.step
        # the restored state, with the new LR, is the new last good state
        self._guard.take(self.model, self.optimizer, self.scaler, self.scheduler, self.step)
        self._watcher = LossStream(self._watcher.size)
        logger.warning("autolr guard: %s", decision.reason)
        self._report([decision])

    def end_epoch(self, val_loss: float | torch.Tensor | None = None) -> None:
        """Call once at the end of every epoch; steps per-epoch schedules and feeds plateau schedules."""
        if val_loss is not None:
            val_loss = float(as_loss_value(val_loss, "tuner.end_epoch(val_loss): val_loss"))
        self.epoch += 1
        if self.scheduler is None or self.plan is None:
            return
        if not self.auto_step:  # the framework steps the scheduler; a plateau still needs the metric
            if self.plan.step_granularity == "metric" and val_loss is not None:
                schedule = self.scheduler.schedule
                assert isinstance(schedule, Plateau)
                schedule.observe(float(val_loss))
            return
        if self.plan.step_granularity == "metric":
            if val_loss is None:
                raise ConfigurationError(
                    "the plateau schedule reduces the LR from a metric: call tuner.end_epoch(val_loss=...)"
                )
            value = float(val_loss)
            schedule = self.scheduler.schedule
            assert isinstance(schedule, Plateau)
            if schedule.observe(value):
                self._report([Decision(
                    "plateau", schedule(0), f"validation loss {value:.4g} did not improve for "
                    f"{schedule.patience} epochs; LR multiplied by {schedule.factor:g}", step=self.step)])
            self.scheduler._advance()
        elif self.plan.step_granularity == "epoch":
            self.scheduler._advance()

    def _report(self, decisions: list[Decision]) -> None:
        self.decisions.extend(decisions)
        if dist.is_rank_zero():
            for reporter in self.reporters:
                safe_report(reporter.decisions, decisions)

    def summary(self) -> str:
        """The range test and the plan at a glance."""
        return format_summary(self.result, self.decisions)

    def close(self) -> None:
        """Flush logging and close reporters (the schedule stays attached until :meth:`detach`)."""
        if self._observed:
            self._warn_if_idle(f"training went on ({self._observed} observed losses)")
        self._check(self._watcher.flush(self.step))
        for reporter in self.reporters:
            safe_report(reporter.close)

    def _warn_if_idle(self, what: str) -> None:
        """Training is running but the optimizer the plan drives has never stepped: someone else's optimizer
        trains the model (a framework that builds its own, e.g. the Hugging Face Trainer), so the plan is unused."""
        if self.plan is None or self.step > 0 or self._idle_warned or not self._hooked:
            return
        self._idle_warned = True
        warnings.warn(
            f"{what}, but the optimizer this AutoLR drives has not taken a single step: the model is being "
            "trained by another optimizer (a framework that builds its own, such as the Hugging Face Trainer "
            "given model= only), so the plan is not used. Hand autolr that framework's optimizer, or use its "
            "adapter: autolr.integrations.transformers.AutoLRCallback, autolr.integrations.lightning.AutoLRCallback",
            AutoLRWarning,
            stacklevel=3,
        )

    def detach(self) -> None:
        """Remove every hook. The optimizer keeps its current LRs and groups and holds no reference to the tuner."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._hooked = False
        if self.scheduler is not None:
            self.scheduler.manual = True  # a manual step() works normally again
        self._guard.close()

    # -- checkpointing ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready state: plan, scheduler position, counters, guard state, range-test result."""
        return {
            "version": _STATE_VERSION,
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "group_origin": list(self._group_origin),
            "step": self.step,
            "epoch": self.epoch,
            "retries": self._guard.retries,
            "lr_scale": self._guard.lr_scale,
            "result": self.result.to_dict() if self.result is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: re-apply the saved plan (LRs, scheduler position, counters) without a new range test.

        Call it on a fresh ``AutoLR`` built like the original one (same model, optimizer and settings), in any
        order with ``optimizer.load_state_dict(...)``: the group split already happened when the ``AutoLR`` was
        built. Loading the same state twice (Accelerate's ``load_state`` does) gives the same result as once.
        """
        if not isinstance(state, dict):
            raise StateError(f"state must be the dict AutoLR.state_dict() returned, got {type(state).__name__}")
        version = state.get("version")
        if version not in (1, _STATE_VERSION):
            raise StateError(f"unknown AutoLR state version {version!r}; expected {_STATE_VERSION}")
        saved_origin = [int(i) for i in state["group_origin"]]
        if state.get("plan") is not None and saved_origin != self._group_origin:
            raise StateError(
                f"the checkpoint's param groups come from the original groups {saved_origin}, this AutoLR's from "
                f"{self._group_origin}: build the optimizer and AutoLR (weight_decay, exclude_embeddings) the same "
                "way as in the original run"
            )
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self._micro, self._micro_step = [], self.step  # micro-batches count from the resumed step
        self._guard.retries, self._guard.lr_scale = int(state["retries"]), float(state["lr_scale"])
        if state.get("result") is not None:
            self.result = LRFindResult.from_dict(state["result"])
        if state.get("plan") is None:
            return
        plan = Plan.from_dict(state["plan"])
        if version == 1:  # lrs were per original group
            plan = replace(plan, lrs=tuple(plan.lrs[i] for i in saved_origin))
        self.apply_plan(plan)
        assert self.scheduler is not None
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.write_lrs()
        self.decisions = list(plan.decisions)


#: every keyword argument ``AutoLR(...)`` takes: its own and the :func:`autolr.lr_find` ones it passes through
#: (adapters check the arguments they forward against it)
KEYWORDS: frozenset[str] = (
    frozenset(inspect.signature(AutoLR.__init__).parameters) - {"self", "model", "optimizer", "range_test"}
) | _RANGE_TEST_ARGS


def _positive(value: Any) -> bool:
    return (float(value.item()) if torch.is_tensor(value) else float(value or 0.0)) > 0


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _replace_decision(plan: Plan, decision: Decision) -> Plan:
    return replace(plan, decisions=tuple(decision if d.name == decision.name else d for d in plan.decisions))

"""PyTorch Ignite: :class:`AutoLRHandler`, the whole AutoLR cycle inside ``trainer.run``.

One line after building the trainer: ``AutoLRHandler(model, optimizer).attach(trainer, evaluator)``. At
``Events.STARTED`` the handler runs the range test through the engine's own process function (your ``update``, or
``create_supervised_trainer``'s: its AMP, scaler, gradient accumulation, clipping) on the engine's data, with
``engine.state.iteration`` counting from 1 as in a run (accumulation reads it). No event of the engine fires
during the sweep (no handler, logger or checkpoint sees it), the engine's own data iterator is not touched, and
``engine.state`` is put back as it was. The weights, optimizer, scaler, RNGs and the loader's generator are then
restored exactly, the plan is applied (LR per group, weight decay) and its schedule steps itself after every real
optimizer step, over ``max_epochs * epoch_length`` iterations (``max_iters``), divided by the accumulation.
At every ``ITERATION_COMPLETED`` the handler observes ``output_transform(engine.state.output)`` (one value per
optimizer step); at every ``EPOCH_COMPLETED`` it ends the epoch, with the evaluator's metric when one is given
(the ``plateau`` schedule reduces the LR from it).

The handler follows Ignite's handler protocol (``__call__(engine)``, ``state_dict`` / ``load_state_dict``), so
``Checkpoint(to_save={..., "autolr": handler})`` saves the plan and the schedule's position, and
``Checkpoint.load_objects`` restores them in any dict order (the weight-decay split happens when the handler is
built, so the optimizer has the checkpoint's groups whichever is loaded first). A handler that holds a plan when
the engine starts runs no new range test. Under ``ignite.distributed`` (``idist.Parallel``, DDP) every rank sweeps
its own shard, each step's loss is averaged over the ranks, all ranks stop at the same step and get the same
plan; only rank 0 reports.

Example:
    >>> from ignite.engine import create_supervised_trainer                       # doctest: +SKIP
    >>> from autolr.integrations.ignite import AutoLRHandler
    >>> trainer = create_supervised_trainer(model, optimizer, loss_fn)            # doctest: +SKIP
    >>> tune = AutoLRHandler(model, optimizer, schedule="auto").attach(trainer)   # doctest: +SKIP
    >>> trainer.run(train_loader, max_epochs=5)                                   # doctest: +SKIP
    >>> tune.result.suggestion.lr, tune.plan.schedule_name                        # doctest: +SKIP
    (0.0031, 'warmup_cosine')
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from autolr import distributed as dist
from autolr.errors import AutoLRWarning, ConfigurationError
from autolr.tuner import KEYWORDS, AutoLR
from autolr.validation import check_keywords

try:
    from ignite.base import Serializable
    from ignite.engine import Engine, Events
except ImportError as exc:  # pragma: no cover - pytorch-ignite is an optional extra
    raise ImportError("autolr.integrations.ignite needs pytorch-ignite: pip install 'torch-autolr[ignite]'") from exc

__all__ = ["AutoLRHandler"]

logger = logging.getLogger("autolr")

# arguments of AutoLR / lr_find that the engine already defines, and where they come from instead
_OWNED = {
    "loader": "the sweep reads the engine's data (engine.run(data)); another one goes in attach(loader=...)",
    "loss_fn": "the sweep runs the engine's process function",
    "compute_loss": "the sweep runs the engine's process function",
    "train_step": "the sweep runs the engine's process function",
    "backward": "the process function does the backward pass", "autocast": "the process function sets the precision",
    "autocast_dtype": "the process function sets the precision",
    "max_grad_norm": "clip inside the process function, as in training",
    "accumulation_steps": "pass it to attach(accumulation_steps=...) (read from create_supervised_trainer by default)",
    "total_steps": "pass it to attach(total_steps=...) (default: the engine's run length)",
    "epochs": "the engine's max_epochs gives the run length", "steps_per_epoch": "the engine's epoch_length is used",
    "auto_step": "autolr steps the schedule after every optimizer step",
    "device": "the process function moves the batches", "val_loader": "the sweep measures the training loss",
    "val_batches": "the sweep measures the training loss", "apply": "the handler always applies the plan",
}
_PLAN_NEEDS_NO_LENGTH = ("auto", "plateau", "constant")


_ALLOWED = KEYWORDS - set(_OWNED)


def _identity(output: Any) -> Any:
    return output


class AutoLRHandler(Serializable):
    """Range test, plan and schedule for an Ignite trainer (see the module docstring).

    Args:
        model: the model the process function trains (DDP-wrapped under ``idist`` is fine).
        optimizer: its optimizer; its param groups are split for weight decay now, before any step.
        schedule: as in :class:`~autolr.AutoLR` (``"auto"``, ``"onecycle"``, ``"warmup_cosine"``, ``"plateau"``...).
        weight_decay: as in :class:`~autolr.AutoLR` (``"auto"``, ``"sweep"``, a float or ``None``).
        **kwargs: any other argument of :class:`~autolr.AutoLR` or :func:`autolr.lr_find` (``num_steps``,
            ``end_lr``, ``min_confidence``, ``guard``, ``scaler``, ``reporters``, ``wandb``...). What the engine
            already defines (the step, precision, accumulation, clipping, the data, the run length) comes from it.
            ``scaler`` defaults to ``engine.state.scaler`` (``create_supervised_trainer(scaler=True)``).

    Attributes:
        tuner: the :class:`~autolr.AutoLR` the handler drives.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        schedule: str = "auto",
        weight_decay: float | str | None = "auto",
        **kwargs: Any,
    ) -> None:
        check_keywords("AutoLRHandler", kwargs, allowed=_ALLOWED, owned=_OWNED)
        self.tuner = AutoLR(model, optimizer, schedule=schedule, weight_decay=weight_decay, **kwargs)
        self._engine: Engine | None = None
        self._evaluator: Engine | None = None
        self._metric = "loss"
        self._transform: Callable[[Any], Any] = _identity
        self._accumulation: int | None = None
        self._total_steps: int | None = None
        self._loader: Any = None
        self._evaluation: dict[str, Any] | None = None  # the evaluator's metrics since the last epoch end

    # -- what was found and decided ----------------------------------------------------------------------
    @property
    def result(self) -> Any:
        """The range test's :class:`~autolr.LRFindResult` (restored from the checkpoint when resuming)."""
        return self.tuner.result

    @property
    def plan(self) -> Any:
        """The applied :class:`~autolr.plan.Plan` (``None`` before the engine starts)."""
        return self.tuner.plan

    # -- wiring --------------------------------------------------------------------------------------------
    def attach(
        self,
        engine: Engine,
        evaluator: Engine | None = None,
        *,
        metric: str = "loss",
        output_transform: Callable[[Any], Any] = _identity,
        accumulation_steps: int | None = None,
        total_steps: int | None = None,
        loader: Any = None,
    ) -> AutoLRHandler:
        """Attach to the trainer (and read the plateau metric from ``evaluator``). Returns the handler.

        Args:
            engine: the trainer ``Engine`` whose process function does one training iteration.
            evaluator: an evaluation ``Engine``; its ``state.metrics[metric]`` after each of its runs is the
                validation value given to :meth:`~autolr.AutoLR.end_epoch` at the trainer's next epoch end. Without
                it, the trainer's own ``state.metrics[metric]`` is used (e.g. a ``RunningAverage``) when present.
            metric: the metric's name; lower must be better (a loss).
            output_transform: turns ``engine.state.output`` into the loss (a tensor, a number or a mapping with
                ``"loss"``); used for the sweep's points and for :meth:`~autolr.AutoLR.observe`.
            accumulation_steps: iterations per optimizer step when the process function accumulates gradients;
                default: ``create_supervised_trainer``'s ``gradient_accumulation_steps``, else 1.
            total_steps: the schedule's length in optimizer steps (epochs with ``step_granularity="epoch"``);
                default: the engine's run length (``max_epochs * epoch_length`` or ``max_iters``) divided by the
                accumulation.
            loader: the batches the sweep draws from; default: the data the engine runs on (needed when that is
                a one-shot iterator or ``None``).
        """
        if not isinstance(engine, Engine):
            raise ConfigurationError(f"engine must be an ignite.engine.Engine, got {type(engine).__name__}")
        if evaluator is not None and not isinstance(evaluator, Engine):
            raise ConfigurationError(f"evaluator must be an ignite Engine or None, got {type(evaluator).__name__}")
        if evaluator is engine:
            raise ConfigurationError("evaluator is the trainer itself; pass the evaluation Engine, or evaluator=None")
        if not isinstance(metric, str):
            raise ConfigurationError(f"metric must be the name of a metric (a str), got {metric!r}")
        if not callable(output_transform):
            raise ConfigurationError(f"output_transform must be callable, got {type(output_transform).__name__}")
        for name, value in (("accumulation_steps", accumulation_steps), ("total_steps", total_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"{name} must be None or an integer >= 1, got {value!r}")
        if self._engine is not None:
            raise ConfigurationError("this AutoLRHandler is already attached to an engine; create one per trainer")
        self._engine, self._evaluator, self._metric = engine, evaluator, metric
        self._transform, self._accumulation = output_transform, accumulation_steps
        self._total_steps, self._loader = total_steps, loader
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)
        if evaluator is not None:
            evaluator.add_event_handler(Events.COMPLETED, self._evaluated)
        return self

    def detach(self) -> None:
        """Remove the handler from its engines and the tuner's hooks from the optimizer (LRs stay as they are)."""
        for engine, handlers in ((self._engine, ((Events.STARTED, self._started), (Events.ITERATION_COMPLETED, self),
                                                 (Events.EPOCH_COMPLETED, self._epoch_completed),
                                                 (Events.COMPLETED, self._completed))),
                                 (self._evaluator, ((Events.COMPLETED, self._evaluated),))):
            if engine is None:
                continue
            for event, handler in handlers:
                if engine.has_event_handler(handler, event):
                    engine.remove_event_handler(handler, event)
        self._engine = self._evaluator = None
        self.tuner.detach()

    # -- events ----------------------------------------------------------------------------------------------
    def _started(self, engine: Engine) -> None:
        tuner = self.tuner
        self._evaluation = None
        # end the epoch after every EPOCH_COMPLETED handler attached before the run (an evaluation run there)
        if engine.has_event_handler(self._epoch_completed, Events.EPOCH_COMPLETED):
            engine.remove_event_handler(self._epoch_completed, Events.EPOCH_COMPLETED)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if tuner.scaler is None:
            tuner.scaler = getattr(engine.state, "scaler", None)  # create_supervised_trainer(scaler=True)
        if tuner.plan is not None:  # loaded from a checkpoint (or planned in an earlier run): no new range test
            if dist.is_rank_zero():
                logger.info("autolr: the engine starts at iteration %d with the saved plan (optimizer step %d); "
                            "no new range test", engine.state.iteration, tuner.step)
            return
        if engine.state.iteration > 0:
            _warn(f"the engine resumes at iteration {engine.state.iteration} but no AutoLRHandler state was loaded "
                  "(the checkpoint was saved without it, or it is missing from Checkpoint.load_objects(to_load=...)); "
                  "autolr leaves this run alone: no range test, the LRs stay as they are")
            return
        data = self._loader if self._loader is not None else engine.state.dataloader
        if data is None:
            raise ConfigurationError(
                "the engine runs without data (engine.run(data=None, epoch_length=...)), so there is nothing to sweep "
                "over; give the sweep its batches with AutoLRHandler(...).attach(engine, loader=...)"
            )
        if self._loader is None and isinstance(data, Iterator):
            raise ConfigurationError(
                f"the engine runs on a one-shot iterator ({type(data).__name__}): the range test would consume the "
                "batches training needs. Run the engine on a DataLoader or a list, or give the sweep its own batches "
                "with attach(loader=...)"
            )
        accumulation = self._accumulation or _supervised_accumulation(engine) or 1
        total = self._total_steps if self._total_steps is not None else self._run_length(engine, accumulation)
        if total is None and tuner.schedule_name not in _PLAN_NEEDS_NO_LENGTH:
            raise ConfigurationError(
                f"schedule={tuner.schedule_name!r} needs the run's length, and the engine does not know it (its data "
                "has no len() and engine.run got no epoch_length); pass engine.run(..., epoch_length=...) or "
                "attach(total_steps=...)"
            )
        step = _EngineStep(engine, self._transform, tuner.optimizer)
        with _engine_untouched(engine), step.counting():
            tuner.lr_find(data, train_step=step, total_steps=total, accumulation_steps=accumulation)
        step.check(accumulation)

    def __call__(self, engine: Engine) -> None:
        """``ITERATION_COMPLETED``: observe the loss, once per optimizer step (the mean of its iterations)."""
        tuner = self.tuner
        if tuner.plan is None:
            return
        tuner.observe_micro_batch(_as_loss(self._transform(engine.state.output)))

    def _evaluated(self, evaluator: Engine) -> None:
        self._evaluation = dict(evaluator.state.metrics)

    def _epoch_completed(self, engine: Engine) -> None:
        tuner = self.tuner
        if tuner.plan is None:
            return
        if self._evaluator is not None:
            metrics, self._evaluation = self._evaluation, None
            where = "the evaluator's state.metrics"
        else:
            metrics, where = dict(engine.state.metrics), "the trainer's state.metrics"
        value = metrics.get(self._metric) if metrics is not None else None
        if tuner.plan.step_granularity == "metric" and value is None:
            if metrics is None:  # the evaluator did not run this epoch: the plateau waits for its next run
                return
            hint = ("attach the metric to the evaluator (e.g. Loss(loss_fn).attach(evaluator, 'loss')) or pass "
                    "attach(metric=...)") if self._evaluator is not None else (
                    "pass attach(engine, evaluator) with an evaluator that computes it, or attach(metric=...)")
            raise ConfigurationError(
                f"the plateau schedule lowers the LR from the metric {self._metric!r}, which is not in {where} "
                f"(it has {sorted(metrics)}); {hint}"
            )
        tuner.end_epoch(val_loss=value)

    def _completed(self, engine: Engine) -> None:
        self.tuner.close()  # flushes the observed losses and the reporters; the schedule stays attached

    # -- checkpoints (ignite.handlers.Checkpoint) ---------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The tuner's plain state (plan, schedule position, counters, range-test result)."""
        return self.tuner.state_dict()

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Resume: the saved plan and schedule position, in any order with the optimizer's state; idempotent."""
        super().load_state_dict(state_dict)
        self.tuner.load_state_dict(dict(state_dict))

    # -- internals ------------------------------------------------------------------------------------------
    def _run_length(self, engine: Engine, accumulation: int) -> int | None:
        state = engine.state
        if self.tuner.step_granularity == "epoch":
            if state.max_epochs is not None:
                return int(state.max_epochs)
            if state.max_iters is not None and state.epoch_length:
                return math.ceil(state.max_iters / state.epoch_length)
            return None
        if state.max_iters is not None:
            iterations = int(state.max_iters)
        elif state.max_epochs is not None and state.epoch_length:
            iterations = int(state.max_epochs) * int(state.epoch_length)
        else:
            return None
        return max(1, iterations // accumulation)


class _EngineStep:
    """One iteration of the engine's process function, as ``Engine.run`` makes it (``state.iteration`` counts
    from 1, ``state.batch`` is the batch, ``state.output`` the result); returns the transformed output."""

    def __init__(self, engine: Engine, transform: Callable[[Any], Any], optimizer: torch.optim.Optimizer) -> None:
        self.engine, self.transform, self.optimizer = engine, transform, optimizer
        self.process = engine._process_function
        self.calls = self.steps = 0

    def __call__(self, batch: Any) -> Any:
        state = self.engine.state
        self.calls += 1
        state.iteration = self.calls  # gradient accumulation steps on iteration % k == 0
        state.epoch = 1 + (self.calls - 1) // state.epoch_length if state.epoch_length else 1
        state.batch, state.output = batch, None
        state.output = self.process(self.engine, batch)
        return _as_loss(self.transform(state.output))

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count the optimizer's real steps during the sweep (its post-hook; removed on the way out)."""

        def count(*_: Any) -> None:
            self.steps += 1

        handle = self.optimizer.register_step_post_hook(count)
        try:
            yield
        finally:
            handle.remove()

    def check(self, accumulation: int) -> None:
        """Warn when the process function steps the optimizer less often than ``accumulation`` says."""
        if self.calls >= 4 * accumulation and (self.steps == 0 or self.calls / self.steps >= 1.5 * accumulation):
            every = f"every {self.calls / self.steps:.1f}" if self.steps else "never in"
            _warn(f"during the range test the process function stepped the optimizer {every} iterations, but "
                  f"accumulation_steps={accumulation}: the curve and the schedule's length count optimizer steps. "
                  "If it accumulates gradients, pass attach(accumulation_steps=...)")


@contextlib.contextmanager
def _engine_untouched(engine: Engine) -> Iterator[None]:
    """No event fires while the sweep runs the process function (also custom events it fires itself), and the
    engine's state and flags are put back afterwards (the data iterator of the run is never touched)."""
    saved_state = dict(vars(engine.state))
    flags = {name: getattr(engine, name) for name in (
        "should_terminate", "should_terminate_single_epoch", "should_interrupt", "last_event_name")
        if hasattr(engine, name)}
    own = vars(engine).get("_fire_event")
    engine._fire_event = _muted  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own is not None:
            engine._fire_event = own  # type: ignore[method-assign]
        else:
            del engine._fire_event
        vars(engine.state).clear()
        vars(engine.state).update(saved_state)
        for name, value in flags.items():
            setattr(engine, name, value)


def _muted(*_: Any, **__: Any) -> None:
    return None


def _supervised_accumulation(engine: Engine) -> int | None:
    """``gradient_accumulation_steps`` of a process function made by ``create_supervised_trainer``."""
    try:
        value = inspect.getclosurevars(engine._process_function).nonlocals.get("gradient_accumulation_steps")
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _as_loss(value: Any) -> Any:
    """The loss in ``value`` (a tensor, a number, or a mapping with ``"loss"``); a clear error otherwise."""
    loss = value.get("loss") if isinstance(value, Mapping) else value
    if (torch.is_tensor(loss) and loss.numel() == 1) or (isinstance(loss, numbers.Real) and not isinstance(
            loss, bool)):
        return loss if torch.is_tensor(loss) else torch.tensor(float(loss))
    shape = f" of shape {tuple(loss.shape)}" if torch.is_tensor(loss) else ""
    raise ConfigurationError(
        f"the trainer's output (engine.state.output after output_transform) must be the loss: a scalar tensor, a "
        f"number or a mapping with 'loss'; got {type(value).__name__}{shape}. Pass "
        "attach(engine, output_transform=lambda output: ...) that picks the loss out of it"
    )


def _warn(message: str) -> None:
    if dist.is_rank_zero():
        warnings.warn(f"autolr: {message}", AutoLRWarning, stacklevel=3)

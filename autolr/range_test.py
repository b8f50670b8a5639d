"""The learning-rate range test: sweep the LR over a few optimizer steps, record the loss, restore state.

:func:`lr_find` is the one-call entry point. It validates everything first (so bad input never touches
the model), takes a :class:`~autolr.snapshot.Snapshot`, runs the sweep, restores the snapshot in a
``finally`` block (after success, an exception in your code, NaN, or Ctrl-C), analyses the curve with
:func:`~autolr.suggest.suggest`, and returns an :class:`~autolr.result.LRFindResult`.

The sweep is GPU-friendly: per-step losses are written into a tensor on the model's device and read back
to the host only every ``check_every`` steps, from a copy issued one check earlier, so the host never waits
for the GPU in the hot loop. The divergence check therefore acts a few steps late; the curve is cut at the
exact step where the loss diverged.

Example:
    >>> import torch, autolr
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(4, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> data = [(torch.randn(16, 4), torch.randn(16, 1)) for _ in range(10)]
    >>> result = autolr.lr_find(model, opt, data, loss_fn=torch.nn.MSELoss(), num_steps=30, progress=False)
    >>> len(result.curve) > 0 and opt.param_groups[0]["lr"] == 0.1   # state restored
    True
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch

from . import distributed as dist
from . import suggest as _suggest
from .batches import check_data, cycle, keep_generators, model_device, move_to_device
from .curve import DEFAULT_SMOOTHING, Curve
from .errors import ConfigurationError, DataError
from .monitor import DivergenceRule, LossBuffer
from .param_groups import effective_lrs, set_group_value, unwrap_optimizer, validate_param_groups
from .pretrained import StartState
from .pretrained import detect as detect_start
from .report import Reporter, emit_summary, format_lr, format_summary, safe_report, show_progress
from .result import LRFindResult, check_fallback
from .snapshot import Snapshot, reshard_fsdp
from .suggest import Suggestion
from .validation import (
    check_loss,
    check_step_loss,
    plain_number,
    resolve_resweep_steps,
    validate_context,
    validate_range_test,
    validate_step,
)

__all__ = ["lr_find", "range_test_running", "sweep_lrs"]

logger = logging.getLogger("autolr")

LossFn = Callable[[Any, Any], torch.Tensor]
ComputeLoss = Callable[[Any], torch.Tensor]
TrainStep = Callable[[Any], Any]

_running = [0]  # range tests in progress in this process (AutoLR's hooks ignore the steps they take)


def range_test_running() -> bool:
    """True while a range test is sweeping in this process (its optimizer steps are not training steps)."""
    return _running[0] > 0


def sweep_lrs(start_lr: float, end_lr: float, num_steps: int, mode: str = "exponential") -> list[float]:
    """The learning rates of a sweep, one per step, from ``start_lr`` to ``end_lr`` inclusive.

    Example:
        >>> [f"{x:g}" for x in sweep_lrs(1e-3, 1e-1, 3)]
        ['0.001', '0.01', '0.1']
    """
    if mode == "exponential":
        ratio = end_lr / start_lr
        return [start_lr * ratio ** (k / (num_steps - 1)) for k in range(num_steps)]
    return [start_lr + (end_lr - start_lr) * k / (num_steps - 1) for k in range(num_steps)]


def lr_find(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    *,
    loss_fn: LossFn | None = None,
    compute_loss: ComputeLoss | None = None,
    train_step: TrainStep | None = None,
    start_lr: float | Sequence[float] = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: Literal["exponential", "linear"] = "exponential",
    accumulation_steps: int = 1,
    max_grad_norm: float | None = None,
    scaler: Any = None,
    autocast_dtype: torch.dtype | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    backward: Callable[[torch.Tensor], Any] | None = None,
    val_loader: Iterable[Any] | None = None,
    val_batches: int = 4,
    divergence_factor: float = 4.0,
    smoothing: float = DEFAULT_SMOOTHING,
    check_every: int = 4,
    snapshot: Literal["cpu", "disk"] = "cpu",
    method: str = "default",
    finetune: bool | None = None,
    resweep_steps: int | None = None,
    apply: bool = False,
    keyboard_interrupt: Literal["raise", "stop"] = "raise",
    progress: bool | None = None,
    reporters: Sequence[Reporter] = (),
    device: torch.device | str | None = None,
) -> LRFindResult:
    """Run a learning-rate range test on your model, optimizer and data; restore everything afterwards.

    The LR of param group 0 goes from ``start_lr`` to ``end_lr`` over ``num_steps`` optimizer steps
    (exponentially by default); every other group is scaled by the same factor, so the ratios between
    groups are kept. The test stops early when the smoothed loss exceeds ``divergence_factor`` times its
    best value, or a loss is NaN/inf. Afterwards the model, optimizer, scaler and RNGs are restored bit for
    bit; with ``apply=True`` the suggested LR is then set on every group (ratios kept).

    Under ``torch.distributed`` (DDP, FSDP; launched with ``torchrun``) call it on every rank with the same
    arguments, each rank with its own shard of the data. Every step's loss is averaged over the ranks, so all
    ranks record the same curve, stop at the same step and get the same suggestion (computed on rank 0 and
    broadcast); each rank restores its own state (FSDP: its own shards); only rank 0 logs, shows the progress
    bar and calls the reporters. The LR found is for the global batch (per-rank batch x world size).

    Three ways to give the training step. With ``loss_fn`` or ``compute_loss`` autolr runs the step
    (forward under ``autocast``/``autocast_dtype``, ``backward``, clipping, ``scaler``, ``optimizer.step()``).
    With ``train_step`` the step belongs to your loop or framework: ``train_step(batch)`` does forward,
    backward and the optimizer step exactly as in training (its precision, accumulation, clipping, hooks) and
    returns the loss; autolr sets the LR before it, zeroes the gradients at the start of every optimizer step,
    reads the loss lazily and counts only real optimizer steps (a step that a GradScaler skips is no point on
    the curve). Batches reach ``train_step`` as the loader yields them: your step moves them, as in training.

    Args:
        model: the model to train (may be wrapped in DDP or sharded with FSDP).
        optimizer: its optimizer; every param group needs a positive ``lr``. Framework wrappers that hold the
            real optimizer as ``.optimizer`` (Accelerate, Lightning) are unwrapped.
        loader: a DataLoader or any iterable of batches; cycled when shorter than the test.
        loss_fn: for ``(inputs, targets)`` batches: ``loss = loss_fn(model(inputs), targets)``.
        compute_loss: for anything else: ``loss = compute_loss(batch)`` (a scalar tensor with a graph).
            With ``train_step`` and ``val_loader``, ``loss_fn``/``compute_loss`` evaluate the held-out batches.
        train_step: a whole training step someone else owns: ``train_step(batch)`` does forward, backward and
            ``optimizer.step()`` and returns the loss (a tensor, a number, or a mapping with a ``"loss"``).
            With ``accumulation_steps=n`` it is called up to ``n`` times per optimizer step.
        start_lr: first LR of group 0, or one value per group.
        end_lr: last LR of group 0.
        num_steps: optimizer steps in the sweep (each is ``accumulation_steps`` micro-batches).
        mode: ``"exponential"`` (default) or ``"linear"`` spacing of the LRs.
        accumulation_steps: micro-batches per optimizer step; the point is their mean loss.
        max_grad_norm: clip the gradient norm to this value before each step.
        scaler: a ``torch.amp.GradScaler``; steps it skips (inf/NaN gradients) are not recorded.
        autocast_dtype: run forward passes under ``torch.autocast`` with this dtype (e.g. torch.bfloat16).
        autocast: a factory of the context the forward pass runs in, instead of ``autocast_dtype`` (e.g.
            ``accelerator.autocast`` or ``trainer.precision_plugin.forward_context``).
        backward: called as ``backward(loss)`` with each micro-batch's loss as is, instead of autolr's
            ``(loss / accumulation_steps).backward()`` (e.g. ``accelerator.backward``). It owns the loss scaling:
            the division for gradient accumulation and, when a ``scaler`` is used, ``scaler.scale``.
            ``accelerator.backward`` does both (it divides by its ``gradient_accumulation_steps``: pass the same
            value as ``accumulation_steps``).
        val_loader: measure the loss on ``val_batches`` fixed batches from this loader after every step
            (less noisy, costs extra forward passes) instead of the training loss.
        val_batches: number of held-out batches used in validation mode.
        divergence_factor: stop when the smoothed loss exceeds this many times its best value.
        smoothing: EMA decay of the smoothed curve (display and divergence check).
        check_every: read losses back to the host every this many steps (higher = fewer syncs on GPU).
        snapshot: ``"cpu"`` (memory, no extra GPU memory) or ``"disk"`` (private temp dir).
        method: suggestion strategy, see :data:`autolr.suggest.STRATEGIES`.
        finetune: whether the model starts trained (a fine-tune), which the default rule reads differently (see
            :mod:`autolr.suggest`). ``None`` (default) reads it off the weights before the test
            (:func:`autolr.pretrained.detect`: moved BatchNorm statistics, learned norm scales, or weights beyond
            PyTorch's default init); ``True``/``False`` says so. The result's ``settings`` records which.
        resweep_steps: a fine-tune whose sweep shows no clear descent (the usual shape: a trained model has
            little left to gain in a short sweep, and the noise hides it) is swept once more, from the same restored
            state, with this many steps (default ``None``: ``3 * num_steps``), and the longer sweep is read like any
            sweep: its descent if it shows one, else its stability edge (:func:`autolr.suggest.reread_edge`; the
            result's curve is that sweep). ``0``: never.
            Fresh models and clear curves are swept once.
        apply: set the suggested LR on the optimizer after the restore.
        keyboard_interrupt: ``"raise"`` (restore, then re-raise Ctrl-C) or ``"stop"`` (end the sweep there
            and analyse what was measured).
        progress: the tqdm progress bar (rank 0 only): ``None`` (default) draws it only when stderr is a terminal
            or in a Jupyter notebook, so log files and CI output get no carriage-return junk; ``True`` always;
            ``False`` never, and the summary is not echoed to stderr either (it still goes to the logger).
        reporters: :class:`~autolr.report.Reporter` objects told about the result.
        device: where batches are moved; default: the device of the model's parameters.

    Returns:
        An :class:`~autolr.result.LRFindResult` with the curve and the suggestion.

    Raises:
        ConfigurationError: a bad argument (before anything is touched).
        DataError: empty loader, or a loss that is not a scalar tensor with a graph (state restored).

    Example:
        >>> import torch, autolr
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        >>> data = [(torch.randn(32, 8), torch.randint(0, 2, (32,))) for _ in range(8)]
        >>> res = autolr.lr_find(model, opt, data, loss_fn=torch.nn.CrossEntropyLoss(), progress=False)
        >>> res.curve.stop_reason in ("completed", "diverged", "non_finite")
        True
    """
    optimizer = unwrap_optimizer(optimizer)
    if not isinstance(model, torch.nn.Module):
        raise ConfigurationError(
            f"model must be a torch.nn.Module, got {type(model).__name__}; the arguments are (model, optimizer, loader)"
        )
    (start_lr, end_lr, num_steps, accumulation_steps, max_grad_norm, val_batches, divergence_factor, smoothing,
     check_every) = (plain_number(v) for v in (start_lr, end_lr, num_steps, accumulation_steps, max_grad_norm,
                                               val_batches, divergence_factor, smoothing, check_every))
    validate_param_groups(optimizer)
    validate_step(train_step, loss_fn, compute_loss, val_loader, backward, autocast, autocast_dtype, max_grad_norm)
    validate_context(device=device, scaler=scaler, autocast_dtype=autocast_dtype, val_loader=val_loader,
                     apply=apply, progress=progress, reporters=reporters)
    if finetune is not None and not isinstance(finetune, bool):
        raise ConfigurationError(f"finetune must be None (read it off the weights), True or False, got {finetune!r}")
    reshard_fsdp(model)  # FSDP2 left unsharded (e.g. by an eval pass) holds full tensors, not the optimizer's
    starts = validate_range_test(
        model, optimizer, loader, loss_fn if train_step is None else None,
        compute_loss if train_step is None else (compute_loss or train_step), start_lr, end_lr, num_steps, mode,
        accumulation_steps, max_grad_norm, divergence_factor, smoothing, snapshot, method,
        keyboard_interrupt, val_batches, check_every, train_step_given=train_step is not None,
    )
    resweep_steps = resolve_resweep_steps(resweep_steps, num_steps, _suggest.RESWEEP_FACTOR)
    initial_lrs = tuple(effective_lrs(optimizer))
    # rank 0's reading for every rank (under FSDP each rank sees only its shards): it decides a second sweep
    start = dist.decide_on_rank_zero(lambda: detect_start(model)) if finetune is None else StartState(
        finetune, "given", f"finetune={finetune} given")
    target = torch.device(device) if device is not None else model_device(model)
    settings = {
        "start_lr": starts[0], "end_lr": float(end_lr), "num_steps": num_steps, "mode": mode,
        "accumulation_steps": accumulation_steps, "max_grad_norm": max_grad_norm,
        "divergence_factor": divergence_factor, "smoothing": smoothing, "method": method,
        "loss_kind": "validation" if val_loader is not None else "train",
        "world_size": dist.get_world_size(), "optimizer": type(optimizer).__name__,
        "amp": str(autocast_dtype) if autocast_dtype is not None else ("custom" if autocast is not None else None),
        "scaler": scaler is not None, "step": "train_step" if train_step is not None else "autolr",
        "finetune": start.trained, "finetune_sign": start.reason,
        "resweep_steps": resweep_steps if start.trained else 0, "swept_twice": False,
    }

    def sweep(steps: int) -> Curve:
        return _sweep(
            model, optimizer, loader, loss_fn=loss_fn, compute_loss=compute_loss, train_step=train_step,
            starts=starts, end_lr=end_lr, num_steps=steps, mode=mode, accumulation_steps=accumulation_steps,
            max_grad_norm=max_grad_norm, scaler=scaler, autocast_dtype=autocast_dtype, autocast=autocast,
            backward=backward,
            val_loader=val_loader, val_batches=val_batches, divergence_factor=divergence_factor,
            smoothing=smoothing, check_every=check_every, keyboard_interrupt=keyboard_interrupt,
            progress=progress, device=target,
        )

    first: Curve | None = None
    with keep_generators(loader, val_loader), Snapshot.take(model, optimizer, scaler=scaler, storage=snapshot) as snap:
        curve = sweep(num_steps)
        if dist.decide_on_rank_zero(lambda: start.trained and resweep_steps > 0 and curve.stop_reason != "interrupted"
                                    and _suggest.needs_resweep(curve.lrs, curve.losses)):
            if dist.is_rank_zero():
                logger.info("autolr: a fine-tune's %d-step sweep showed no clear descent; sweeping again with %d "
                            "steps from the same state", num_steps, resweep_steps)
            snap.restore()
            first, curve = curve, sweep(resweep_steps)
            settings["swept_twice"] = True

    def decide() -> Suggestion:
        read = first if first is not None else curve
        s = _suggest.suggest(read.lrs, read.losses, method=method, finetune=start.trained, finetune_reason=start.reason)
        if first is None:
            return s
        return _suggest.reread_edge(curve.lrs, curve.losses, s, first_steps=num_steps, steps=resweep_steps,
                                    method=method, finetune_reason=start.reason)

    suggestion: Suggestion = dist.decide_on_rank_zero(decide)
    result = LRFindResult(curve, suggestion, initial_lrs=initial_lrs, settings=settings, first_curve=first)
    if apply:
        result.apply(optimizer)
    if dist.is_rank_zero():
        emit_summary(format_summary(result), echo=progress is not False)
        if suggestion.lr is None:
            logger.warning("autolr: no learning rate suggested: %s", suggestion.reason)
        elif suggestion.confidence <= _suggest.WEAK_CONFIDENCE:
            logger.warning(
                "autolr: low-confidence suggestion %.3g (confidence %.2f): %s",
                suggestion.lr, suggestion.confidence, suggestion.reason,
            )
        for reporter in reporters:
            safe_report(reporter.range_test_end, result)
    return result


def lr_find_for_search(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable[Any], *,
    fallback: tuple[float, float] | None = None, **lr_find_kwargs: Any,
) -> LRFindResult:
    """The one range test a hyperparameter search runs up front (the search adapters' ``narrow_lr_range``):
    refuses ``apply=`` (the optimizer is left as it was) and a bad ``fallback`` before any step, and draws no
    progress bar unless asked. Read the range with :meth:`LRFindResult.search_range`."""
    if lr_find_kwargs.pop("apply", False):
        raise ValueError("narrow_lr_range leaves the optimizer as it was; drop apply=")
    check_fallback(fallback)
    lr_find_kwargs.setdefault("progress", False)
    return lr_find(model, optimizer, loader, **lr_find_kwargs)


def lr_find_for_trial(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable[Any], *,
    min_confidence: float = 0.0, **lr_find_kwargs: Any,
) -> tuple[LRFindResult, str | None]:
    """The range test a hyperparameter search runs in each trial (the search adapters' ``suggest_lr``): refuses a
    ``min_confidence`` outside [0, 1] and ``apply=`` before any step (the adapter applies the LR only when the trial
    goes on), and draws no progress bar unless asked. Returns the result and why the trial should end (no
    suggestion, or a confidence under ``min_confidence``), or None when it goes on."""
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
    if lr_find_kwargs.pop("apply", False):
        raise ValueError("suggest_lr applies the LR itself (only when the trial goes on); drop apply=")
    lr_find_kwargs.setdefault("progress", False)
    result = lr_find(model, optimizer, loader, **lr_find_kwargs)
    s = result.suggestion
    if s.lr is None:
        return result, f"autolr found no learning rate: {s.reason}"
    if s.confidence < min_confidence:
        return result, (f"autolr's suggestion {format_lr(s.lr)} has confidence {s.confidence:.2f} < min_confidence "
                        f"{min_confidence:g}: {s.reason}")
    return result, None


def _sweep(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    *,
    loss_fn: LossFn | None,
    compute_loss: ComputeLoss | None,
    train_step: TrainStep | None,
    starts: list[float],
    end_lr: float,
    num_steps: int,
    mode: str,
    accumulation_steps: int,
    max_grad_norm: float | None,
    scaler: Any,
    autocast_dtype: torch.dtype | None,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] | None,
    backward: Callable[[torch.Tensor], Any] | None,
    val_loader: Iterable[Any] | None,
    val_batches: int,
    divergence_factor: float,
    smoothing: float,
    check_every: int,
    keyboard_interrupt: str,
    progress: bool | None,
    device: torch.device | None,
) -> Curve:
    """Run the sweep (inside a snapshot) and return the measured curve."""
    ratios = [s / starts[0] for s in starts]
    lrs = sweep_lrs(starts[0], end_lr, num_steps, mode)
    loss_device = device if device is not None else torch.device("cpu")
    monitor = LossBuffer(num_steps, loss_device, DivergenceRule(smoothing, divergence_factor))
    losses = monitor.losses
    non_blocking = loss_device.type == "cuda"
    params = [p for g in optimizer.param_groups for p in g["params"]]
    no_sync = getattr(model, "no_sync", None)
    if not isinstance(model, torch.nn.parallel.DistributedDataParallel) or no_sync is None:
        no_sync = contextlib.nullcontext
    if autocast is None:
        autocast = (
            (lambda: torch.autocast(loss_device.type, dtype=autocast_dtype))
            if autocast_dtype is not None else contextlib.nullcontext
        )

    def batch_loss(batch: Any) -> torch.Tensor:
        batch = move_to_device(batch, device, non_blocking)
        with autocast():
            if compute_loss is not None:
                return compute_loss(batch)
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise DataError(
                    f"loss_fn expects (inputs, targets) batches, got {type(batch).__name__}"
                    + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                    + "; pass compute_loss=lambda batch: ... that returns the loss for your batch format"
                )
            assert loss_fn is not None
            return loss_fn(model(batch[0]), batch[1])

    held_out = [move_to_device(b, device) for _, b in zip(range(val_batches), val_loader)] if val_loader else []
    if not model.training:  # the user called model.eval(); a range test trains (restored afterwards)
        model.train()
    modes = [(m, m.training) for m in model.modules()]  # submodules the user froze in eval mode stay so

    def validation_loss() -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            total = sum(batch_loss(b).detach().float() for b in held_out)
        for m, training in modes:
            m.training = training
        return total / len(held_out)

    stepped = [False]

    def on_step(*_: Any) -> None:
        stepped[0] = True

    checked_loss = [False]

    def own_step() -> torch.Tensor | None:
        """autolr's step: micro-batches, backward, clipping, scaler, optimizer step. The mean loss, or None if
        the scaler skipped the step."""
        optimizer.zero_grad(set_to_none=True)
        total: torch.Tensor | None = None  # summed on the device; one kernel per step without accumulation
        for micro in range(accumulation_steps):
            # DDP: gradients are all-reduced once, on the last micro-batch of the step
            with no_sync() if micro < accumulation_steps - 1 else contextlib.nullcontext():
                loss = batch_loss(next(data))
                if not checked_loss[0]:
                    check_loss(loss)
                    checked_loss[0] = True
                value = loss.detach().float()  # no kernel when the loss is already float32
                total = value if total is None else total + value
                if backward is not None:  # it scales the loss itself, as in training (accelerator.backward)
                    backward(loss)
                else:
                    scaled = loss if accumulation_steps == 1 else loss / accumulation_steps
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
        if max_grad_norm is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        stepped[0] = False
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if not stepped[0]:
            return None
        assert total is not None
        return total if accumulation_steps == 1 else total / accumulation_steps

    def delegated_step() -> torch.Tensor | None:
        """The caller's step, called until the optimizer steps (at most ``accumulation_steps`` times). The mean
        loss of the calls, or None when no optimizer step happened (a skipped AMP step)."""
        assert train_step is not None
        optimizer.zero_grad(set_to_none=True)
        total: torch.Tensor | None = None
        for calls in range(1, accumulation_steps + 1):
            stepped[0] = False
            value = check_step_loss(train_step(next(data)), loss_device, first=not checked_loss[0])
            checked_loss[0] = True
            total = value if total is None else total + value
            if stepped[0]:
                return total if calls == 1 else total / calls
        return None

    step = own_step if train_step is None else delegated_step
    data = check_data(cycle(loader), val_missing=val_loader is not None and not held_out, device=loss_device)
    handle = optimizer.register_step_post_hook(on_step)
    bar = _progress_bar(num_steps, dist.is_rank_zero() and show_progress(progress))
    count = skipped = 0
    max_skips = max(20, num_steps)
    stop_reason = "completed"
    started = time.perf_counter()
    _running[0] += 1
    try:
        while count < num_steps:
            for group, ratio in zip(optimizer.param_groups, ratios):
                set_group_value(group, "lr", lrs[count] * ratio)
            point = step()
            if point is None:  # the scaler skipped this step: not a point on the curve
                skipped += 1
                if skipped > max_skips:
                    logger.warning(
                        "autolr: %d optimizer steps were skipped (a GradScaler found inf/NaN gradients, or "
                        "train_step did not step the optimizer); stopping the sweep", skipped,
                    )
                    break
                continue
            if held_out:
                point = validation_loss()
            losses[count] = dist.all_reduce_mean(point)
            count += 1
            bar.update(1)
            if count % check_every == 0:
                monitor.check(count)
                if math.isfinite(monitor.rule.smoothed):
                    bar.set_postfix(lr=f"{lrs[count - 1]:.2e}", loss=f"{monitor.rule.smoothed:.4g}", refresh=False)
                if monitor.stop_at is not None:
                    break
    except KeyboardInterrupt:
        if keyboard_interrupt == "raise":
            raise
        stop_reason = "interrupted"
        logger.warning("autolr: range test interrupted after %d steps; analysing what was measured", count)
    finally:
        _running[0] -= 1
        handle.remove()
        bar.close()
    monitor.flush(count)
    end = count
    if monitor.stop_at is not None:
        end, stop_reason = monitor.stop_at + 1, monitor.reason
        if count > end:
            logger.debug("autolr: divergence seen %d steps late; curve cut at step %d", count - end, end)
    values = monitor.host[:end].tolist()
    return Curve(
        lrs=lrs[:end], losses=values, smoothing=smoothing, stop_reason=stop_reason, num_steps=num_steps,
        skipped_steps=skipped, wall_time=time.perf_counter() - started, group_ratios=tuple(ratios),
        mode=mode, loss_kind="validation" if held_out else "train",
    )


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="autolr range test", unit="step", leave=False)

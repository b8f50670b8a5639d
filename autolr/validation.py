"""Argument checks for the range test: everything is validated before anything is touched."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
import numbers
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import torch

from . import distributed as dist
from . import suggest as _suggest
from .errors import AutoLRWarning, ConfigurationError, DataError
from .param_groups import effective_lrs, validate_param_groups

__all__ = ["as_loss_value", "check_keywords", "check_loss", "check_step_loss", "did_you_mean", "plain_number",
           "resolve_resweep_steps", "validate_context", "validate_range_test", "validate_reporters", "validate_step"]


def plain_number(value: Any) -> Any:
    """A numpy (or other ``numbers``) scalar as a Python ``int``/``float``; lists and tuples element-wise;
    anything else (bools, strings, None, tensors) unchanged.

    Example:
        >>> import numpy as np
        >>> plain_number(np.int64(3)), plain_number(np.float32(0.5)), plain_number((np.float64(1e-3), 2))
        (3, 0.5, (0.001, 2))
        >>> plain_number(True), plain_number("auto")
        (True, 'auto')
    """
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(plain_number(v) for v in value)
    if isinstance(value, bool) or type(value) in (int, float) or not isinstance(value, numbers.Real):
        if hasattr(value, "ndim") and getattr(value, "ndim", None) == 1 and not torch.is_tensor(value):
            return [plain_number(v) for v in value.tolist()]  # a 1-D numpy array of per-group values
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to a mistyped ``name``, or ``""``.

    Example:
        >>> did_you_mean("num_step", ["num_steps", "end_lr"]), did_you_mean("zzz", ["end_lr"])
        (" (did you mean 'num_steps'?)", '')
    """
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keywords(who: str, given: Iterable[str], *, allowed: Collection[str], owned: Mapping[str, str]) -> None:
    """Refuse a keyword argument an adapter takes from its framework (``owned`` says where it comes from) or one
    it does not know (with a did-you-mean), before anything is touched.

    Example:
        >>> check_keywords("Handler", ["num_steps"], allowed={"num_steps"}, owned={"loss_fn": "the engine has it"})
        >>> check_keywords("Handler", ["loss_fn"], allowed={"num_steps"}, owned={"loss_fn": "the engine has it"})
        Traceback (most recent call last):
        ...
        autolr.errors.ConfigurationError: Handler got loss_fn=, but the engine has it; drop loss_fn=
    """
    for name in given:
        if name in owned:
            raise ConfigurationError(f"{who} got {name}=, but {owned[name]}; drop {name}=")
        if name not in allowed:
            raise ConfigurationError(
                f"{who} got an unknown argument {name!r}{did_you_mean(name, allowed)}; it takes "
                + ", ".join(sorted(allowed))
            )


def _check_number(name: str, value: Any, *, minimum: float | None = None, integer: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
        raise ConfigurationError(f"{name} must be {kind}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value!r}")


def resolve_resweep_steps(value: Any, num_steps: int, factor: int) -> int:
    """``lr_find``'s ``resweep_steps``: ``None`` is ``factor * num_steps``; else 0 (never sweep twice) or an int of at
    least ``num_steps`` (numpy ints included)."""
    steps = factor * num_steps if value is None else plain_number(value)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and (steps == 0 or steps >= num_steps)):
        raise ConfigurationError(
            f"resweep_steps must be None ({factor} x num_steps), 0 (never sweep twice) or an int >= "
            f"num_steps={num_steps!r}, got {steps!r}"
        )
    return steps


def validate_range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Any,
    loss_fn: Any,
    compute_loss: Any,
    start_lr: float | Sequence[float],
    end_lr: float,
    num_steps: int,
    mode: str,
    accumulation_steps: int,
    max_grad_norm: float | None,
    divergence_factor: float,
    smoothing: float,
    snapshot: str,
    method: str,
    keyboard_interrupt: str,
    val_batches: int,
    check_every: int,
    *,
    train_step_given: bool = False,
) -> list[float]:
    """Check every argument; return the start LR of every param group. Touches nothing."""
    if not isinstance(model, torch.nn.Module):
        raise ConfigurationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    validate_param_groups(optimizer)
    if (loss_fn is None) == (compute_loss is None):
        raise ConfigurationError(
            "pass exactly one of loss_fn= (called as loss_fn(model(inputs), targets) on (inputs, targets) "
            "batches), compute_loss= (called as compute_loss(batch), returns the scalar loss) or train_step= "
            "(your own whole step: forward, backward, optimizer.step(), returns the loss); got "
            + ("neither" if loss_fn is None else "both")
        )
    for name, fn in (("loss_fn", loss_fn), ("compute_loss", compute_loss)):
        if fn is not None and not callable(fn):
            raise ConfigurationError(f"{name} must be callable, got {type(fn).__name__}")
    if loader is None or not hasattr(loader, "__iter__"):
        hint = ""
        if hasattr(loader, "__getitem__") and hasattr(loader, "__len__"):
            hint = "; that looks like a Dataset: wrap it, e.g. DataLoader(dataset, batch_size=64, shuffle=True)"
        raise ConfigurationError(
            f"loader must be an iterable of batches (e.g. a DataLoader), got {type(loader).__name__}{hint}"
        )
    with contextlib.suppress(TypeError):
        # Under torch.distributed one rank's loader may be empty while the others' are not: raising here, on
        # that rank alone, would leave the others waiting; the sweep checks every rank's data collectively.
        if len(loader) == 0 and not dist.is_distributed():
            raise DataError("the loader is empty (len 0); pass a loader with at least one batch")
    if mode not in ("exponential", "linear"):
        raise ConfigurationError(f"mode must be 'exponential' or 'linear', got {mode!r}")
    _check_number("num_steps", num_steps, minimum=2, integer=True)
    _check_number("end_lr", end_lr)
    starts = list(start_lr) if isinstance(start_lr, (list, tuple)) else [start_lr]
    for s in starts:
        _check_number("start_lr", s)
    if not all(s > 0 for s in starts) or end_lr <= 0:
        raise ConfigurationError(
            f"learning rates must be > 0, got start_lr={start_lr!r}, end_lr={end_lr!r}; e.g. start_lr=1e-7, end_lr=10"
        )
    if starts[0] >= end_lr:
        raise ConfigurationError(
            f"start_lr ({starts[0]!r}) must be below end_lr ({end_lr!r}); the sweep goes up, e.g. 1e-7 -> 10"
        )
    groups = optimizer.param_groups
    if len(starts) == 1:
        current = effective_lrs(optimizer)
        starts = [starts[0] * lr / current[0] for lr in current]
    elif len(starts) != len(groups):
        raise ConfigurationError(
            f"start_lr has {len(starts)} values but the optimizer has {len(groups)} param groups; "
            "pass one start_lr per group, or one float (then the groups keep their current ratios)"
        )
    _check_number("accumulation_steps", accumulation_steps, minimum=1, integer=True)
    _check_number("check_every", check_every, minimum=1, integer=True)
    _check_number("val_batches", val_batches, minimum=1, integer=True)
    if max_grad_norm is not None:
        _check_number("max_grad_norm", max_grad_norm)
        if max_grad_norm <= 0:
            raise ConfigurationError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
    _check_number("divergence_factor", divergence_factor)
    if divergence_factor <= 1:
        raise ConfigurationError(
            f"divergence_factor must be > 1 (stop when the smoothed loss exceeds factor x its best), "
            f"got {divergence_factor!r}; the usual value is 4"
        )
    _check_number("smoothing", smoothing)
    if not 0 <= smoothing < 1:
        raise ConfigurationError(f"smoothing (EMA decay) must be in [0, 1), got {smoothing!r}; e.g. 0.9")
    if snapshot not in ("cpu", "disk"):
        raise ConfigurationError(f"snapshot must be 'cpu' (memory) or 'disk' (temp dir), got {snapshot!r}")
    if method not in _suggest.STRATEGIES:
        raise ConfigurationError(f"method must be one of {sorted(_suggest.STRATEGIES)}, got {method!r}")
    if keyboard_interrupt not in ("raise", "stop"):
        raise ConfigurationError(f"keyboard_interrupt must be 'raise' or 'stop', got {keyboard_interrupt!r}")
    all_params = list(model.parameters())
    model_params = {id(p) for p in all_params if p.requires_grad}
    opt_params = {id(p) for g in groups for p in g["params"]}
    if not all_params:
        raise ConfigurationError(
            f"the model ({type(model).__name__}) has no parameters, so a range test would train nothing; pass the "
            "model the optimizer trains: lr_find(model, optimizer, loader, ...)"
        )
    if not model_params:
        raise ConfigurationError(
            f"no parameter of the model requires grad (all {len(all_params)} have requires_grad=False), so no "
            "optimizer step can change it; unfreeze the parameters you will train (p.requires_grad_(True)) "
            "before the range test"
        )
    if not model_params & opt_params:
        raise ConfigurationError(
            "the optimizer holds none of the model's trainable parameters; build it from this model, "
            "e.g. torch.optim.AdamW(model.parameters())"
        )
    if not train_step_given:  # a train_step calls optimizer.step(closure) itself if it must
        _check_closure_free(optimizer)
    if any("initial_lr" in g for g in groups):
        warnings.warn(
            "a learning-rate scheduler is already attached to this optimizer (param groups have 'initial_lr'). "
            "autolr restores the optimizer afterwards, but that scheduler was built from the old learning rate "
            "and will overwrite the one you apply. Run lr_find before creating the scheduler, or use "
            "autolr.AutoLR, which builds the scheduler from the result.",
            AutoLRWarning,
            stacklevel=3,
        )
    return [float(s) for s in starts]


def _check_closure_free(optimizer: torch.optim.Optimizer) -> None:
    """Refuse optimizers whose ``step`` needs a closure (LBFGS) when autolr runs the step itself."""
    try:
        closure = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):  # no signature to read: assume an ordinary step
        return
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise ConfigurationError(
            f"{type(optimizer).__name__}.step() needs a closure: it re-evaluates the loss several times per step (a "
            "line search), so one forward/backward per learning rate cannot drive it, and its lr scales a search "
            "rather than setting the step size (LBFGS is usually run at lr=1 with line_search_fn='strong_wolfe'). "
            "To sweep it anyway, pass train_step= that builds the closure and calls optimizer.step(closure) itself"
        )


def check_loss(loss: Any) -> None:
    if not torch.is_tensor(loss):
        raise DataError(
            f"the loss must be a torch.Tensor, got {type(loss).__name__}; return the loss tensor itself, "
            "not loss.item()"
        )
    if loss.numel() != 1:
        raise DataError(
            f"the loss must be a scalar tensor, got shape {tuple(loss.shape)}; reduce it (e.g. loss.mean()) "
            "or use a loss with reduction='mean'"
        )
    if not loss.requires_grad:
        raise DataError(
            "the loss has no gradient graph (requires_grad=False); compute it from the model's output "
            "without torch.no_grad() or .detach()"
        )


def validate_step(
    train_step: Any,
    loss_fn: Any,
    compute_loss: Any,
    val_loader: Any,
    backward: Any,
    autocast: Any,
    autocast_dtype: Any,
    max_grad_norm: Any,
) -> None:
    """Check how the training step is given: autolr's own (``loss_fn``/``compute_loss`` with ``backward``,
    ``autocast``...) or the caller's (``train_step``). Touches nothing."""
    for name, fn in (("train_step", train_step), ("backward", backward), ("autocast", autocast)):
        if fn is not None and not callable(fn):
            raise ConfigurationError(f"{name} must be callable, got {type(fn).__name__}")
    for name, fn in (("loss_fn", loss_fn), ("compute_loss", compute_loss), ("train_step", train_step)):
        if isinstance(fn, type):
            raise ConfigurationError(
                f"{name} is the class {fn.__name__}, not a function or an instance: pass {name}={fn.__name__}() "
                "(calling the class would build a new object from your model's outputs, not a loss)"
            )
    if autocast is not None and autocast_dtype is not None:
        raise ConfigurationError(
            "pass autocast= (a context factory, e.g. accelerator.autocast) or autocast_dtype= (e.g. torch.bfloat16), "
            "not both"
        )
    if train_step is None:
        return
    owned = {"backward": backward, "autocast": autocast, "autocast_dtype": autocast_dtype,
             "max_grad_norm": max_grad_norm}
    given = [name for name, value in owned.items() if value is not None]
    if given:
        raise ConfigurationError(
            f"train_step= runs your whole step, so {', '.join(given)} cannot apply to it: do the backward, "
            "precision and clipping inside train_step as in training (or drop train_step and pass "
            "loss_fn=/compute_loss= with these arguments)"
        )
    has_loss = loss_fn is not None or compute_loss is not None
    if has_loss and val_loader is None:
        raise ConfigurationError(
            "with train_step= the step computes its own loss; loss_fn=/compute_loss= are used only with val_loader= "
            "(to evaluate the held-out batches): drop them, or pass val_loader="
        )
    if val_loader is not None and not has_loss:
        raise ConfigurationError(
            "validation mode with train_step= needs loss_fn= or compute_loss= to evaluate the held-out batches "
            "(train_step would train on them)"
        )


def check_step_loss(out: Any, device: torch.device, *, first: bool) -> torch.Tensor:
    """What a ``train_step`` returned, as a detached float32 scalar tensor on ``device`` (no host sync)."""
    if isinstance(out, Mapping) and "loss" in out:
        out = out["loss"]
    if torch.is_tensor(out):
        if first and out.numel() != 1:
            raise DataError(
                f"train_step must return the step's loss as a scalar, got a tensor of shape {tuple(out.shape)}; "
                "return loss (reduced, e.g. loss.mean())"
            )
        value = out.detach().reshape(()).float()
        return value if value.device == device else value.to(device, non_blocking=True)
    if isinstance(out, numbers.Real) and not isinstance(out, bool):
        return torch.full((), float(out), dtype=torch.float32, device=device)
    raise DataError(
        f"train_step must return the loss of the step (a tensor, a number or a mapping with a 'loss' key), got "
        f"{type(out).__name__}; end your step with `return loss`"
    )


def validate_reporters(reporters: Any) -> list[Any]:
    """``reporters`` as a list, each a :class:`~autolr.report.Reporter` (or an object with its four methods)."""
    from .report import Reporter

    if isinstance(reporters, (str, bytes)) or not isinstance(reporters, (list, tuple)):
        if isinstance(reporters, Reporter):
            raise ConfigurationError("reporters must be a list of Reporter objects; wrap it: reporters=[reporter]")
        raise ConfigurationError(f"reporters must be a list of Reporter objects, got {type(reporters).__name__}")
    methods = ("range_test_end", "decisions", "training_metrics", "close")
    for i, reporter in enumerate(reporters):
        if not isinstance(reporter, Reporter) and not all(callable(getattr(reporter, m, None)) for m in methods):
            raise ConfigurationError(
                f"reporters[{i}] is a {type(reporter).__name__}, not a Reporter; subclass autolr.Reporter (e.g. "
                "autolr.integrations.wandb.WandbReporter) or give it the methods " + ", ".join(methods)
            )
    return list(reporters)


def validate_context(
    *, device: Any, scaler: Any, autocast_dtype: Any, val_loader: Any, apply: Any, progress: Any, reporters: Any
) -> None:
    """Check the arguments around the step (device, precision, scaler, validation loader, flags). Touches
    nothing."""
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigurationError(
                f"device must be a torch.device or a device string such as 'cuda', 'cuda:1' or 'cpu', got {device!r}"
            ) from exc
    if scaler is not None and not all(callable(getattr(scaler, m, None)) for m in ("scale", "step", "update")):
        raise ConfigurationError(
            f"scaler must be a torch.amp.GradScaler (or an object with scale/step/update), got "
            f"{type(scaler).__name__}; e.g. scaler=torch.amp.GradScaler('cuda')"
        )
    if autocast_dtype is not None and not isinstance(autocast_dtype, torch.dtype):
        raise ConfigurationError(
            f"autocast_dtype must be a torch.dtype such as torch.bfloat16 or torch.float16, got {autocast_dtype!r}"
        )
    if val_loader is not None and not hasattr(val_loader, "__iter__"):
        raise ConfigurationError(
            f"val_loader must be an iterable of batches (e.g. a DataLoader) or None, got {type(val_loader).__name__}"
        )
    if not isinstance(apply, bool):
        raise ConfigurationError(f"apply must be True or False, got {apply!r}")
    if progress is not None and not isinstance(progress, bool):
        raise ConfigurationError(f"progress must be None (a bar only on a terminal), True or False, got {progress!r}")
    validate_reporters(reporters)


def as_loss_value(loss: Any, what: str = "loss") -> torch.Tensor:
    """An observed loss (a scalar tensor, a Python or numpy number, or a mapping with a ``"loss"``) as a tensor;
    a :class:`ConfigurationError` naming the problem otherwise. No host sync."""
    if isinstance(loss, Mapping) and "loss" in loss:
        loss = loss["loss"]
    if torch.is_tensor(loss):
        if loss.numel() != 1:
            raise ConfigurationError(
                f"{what} must be a scalar, got a tensor of shape {tuple(loss.shape)}; pass the reduced loss "
                "(e.g. loss.mean())"
            )
        return loss
    if isinstance(loss, numbers.Real) and not isinstance(loss, bool):
        return torch.tensor(float(loss))
    raise ConfigurationError(
        f"{what} must be a number or a scalar tensor (or a mapping with a 'loss'), got {type(loss).__name__}"
    )

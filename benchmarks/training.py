"""Training runs of the benchmark: one task, one seed, one learning rate, one protocol -> held-out loss.

Protocols:
    ``constant``: the learning rate stays at the candidate for the whole budget.
    ``onecycle``: :class:`torch.optim.lr_scheduler.OneCycleLR` with ``max_lr`` = the candidate and torch's
        defaults (30% warm-up, cosine annealing, ``div_factor=25``, ``final_div_factor=1e4``); momentum (or
        Adam's beta1) is cycled except for plain SGD, which has no momentum to cycle.

LR-free baselines (``prodigy``, ``schedulefree``) are trained with their authors' recommended settings; see
:func:`train_lr_free`.

Also here: :func:`local_range_test`, the benchmark's own exponential LR sweep, used only when
``autolr.lr_find`` is not importable.

Every function seeds torch itself and runs on one thread, so a run is a pure function of its arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .tasks import Batch, Task, TaskInstance

__all__ = [
    "LR_FREE",
    "PROTOCOLS",
    "autolr_range_test",
    "have_autolr_lr_find",
    "local_range_test",
    "train",
    "train_lr_free",
    "untrained_loss",
]

PROTOCOLS = ("constant", "onecycle")
LR_FREE = ("prodigy", "schedulefree")


def _finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def untrained_loss(task: Task, seed: int) -> float:
    """Held-out loss of the freshly initialised model for ``seed``."""
    torch.set_num_threads(1)
    inst = task.make(seed, num_batches=0)
    return inst.eval_fn(inst.model)


def _steps(inst: TaskInstance, optimizer: torch.optim.Optimizer, scheduler: object | None) -> bool:
    """Run every batch once; return False (and stop) as soon as the training loss is not finite."""
    model = inst.model
    for x, y in inst.batches:
        optimizer.zero_grad(set_to_none=True)
        loss = inst.loss_fn(model(x), y)
        if not torch.isfinite(loss):
            return False
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return True


def train(task: Task, seed: int, lr: float, protocol: str) -> float:
    """Train ``task`` for its budget at ``lr`` under ``protocol``; return the held-out loss (``inf`` when
    training produced a non-finite loss)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    torch.set_num_threads(1)
    inst = task.make(seed)
    optimizer = inst.optimizer_factory(inst.model.parameters(), lr)
    scheduler = None
    if protocol == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=task.steps, cycle_momentum=task.optimizer != "sgd"
        )
    if not _steps(inst, optimizer, scheduler):
        return math.inf
    return _finite_or_inf(inst.eval_fn(inst.model))


def _recompute_batchnorm(model: nn.Module, batches: Sequence[Batch], count: int = 20) -> None:
    """Re-estimate BatchNorm running statistics at the current weights (Schedule-Free's evaluation weights
    differ from the weights the statistics were gathered at)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for x, _ in batches[-count:]:
            model(x)


def train_lr_free(task: Task, seed: int, method: str, protocol: str) -> float:
    """Train with a learning-rate-free optimizer, as its authors recommend; return the held-out loss.

    - ``prodigy`` (``prodigyopt.Prodigy``): ``lr=1.0``, the task's weight decay (decoupled). Under
      ``constant`` no schedule; under ``onecycle`` the same OneCycleLR (max 1.0) as the other methods, with
      ``safeguard_warmup=True`` as the README asks for schedules with warm-up.
    - ``schedulefree``: ``AdamWScheduleFree`` (package default ``lr=0.0025``) for Adam-family tasks,
      ``SGDScheduleFree`` (momentum 0.9, ``lr = 10 x`` the textbook SGD LR, the low end of the README's
      10-50x) for SGD tasks; warm-up over 5% of the budget; no schedule under either protocol (it has none
      by design, so both protocols score the same run); evaluated at the averaged weights
      (``optimizer.eval()``), BatchNorm statistics re-estimated there.
    """
    torch.set_num_threads(1)
    inst = task.make(seed)
    params = list(inst.model.parameters())
    scheduler = None
    if method == "prodigy":
        from prodigyopt import Prodigy

        optimizer: torch.optim.Optimizer = Prodigy(
            params, lr=1.0, weight_decay=task.weight_decay, safeguard_warmup=protocol == "onecycle"
        )
        if protocol == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=task.steps)
        ok = _steps(inst, optimizer, scheduler)
    elif method == "schedulefree":
        import schedulefree

        warmup = max(1, task.steps // 20)
        if task.optimizer in ("adam", "adamw"):
            optimizer = schedulefree.AdamWScheduleFree(
                params, weight_decay=task.weight_decay, warmup_steps=warmup
            )
        else:
            optimizer = schedulefree.SGDScheduleFree(
                params, lr=10 * task.textbook_lr, weight_decay=task.weight_decay, warmup_steps=warmup
            )
        optimizer.train()
        ok = _steps(inst, optimizer, None)
        optimizer.eval()
        if ok:
            _recompute_batchnorm(inst.model, inst.batches)
    else:
        raise ValueError(f"method must be one of {LR_FREE}, got {method!r}")
    if not ok:
        return math.inf
    return _finite_or_inf(inst.eval_fn(inst.model))


def local_range_test(
    task: Task,
    seed: int,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    divergence_factor: float = 4.0,
    beta: float = 0.98,
) -> dict[str, object]:
    """The benchmark's stand-in range test (used only while ``autolr.lr_find`` is missing).

    Exponential sweep from ``start_lr`` to ``end_lr`` over ``num_steps`` steps on the seed's training stream;
    records the raw loss of every step; stops after a non-finite loss or when the bias-corrected EMA
    (``beta``) of the loss exceeds ``divergence_factor`` times its best value.

    Returns:
        ``{"lrs", "losses", "stop_reason"}`` with plain lists.
    """
    torch.set_num_threads(1)
    inst = task.make(seed, num_batches=num_steps)
    optimizer = inst.optimizer_factory(inst.model.parameters(), start_lr)
    lrs, losses = [], []
    avg, best, stop = 0.0, math.inf, "completed"
    for i, (x, y) in enumerate(inst.batches):
        lr = start_lr * (end_lr / start_lr) ** (i / max(1, num_steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = inst.loss_fn(inst.model(x), y)
        value = float(loss.detach())
        lrs.append(lr)
        losses.append(value)
        if not math.isfinite(value):
            stop = "non_finite"
            break
        loss.backward()
        optimizer.step()
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        best = min(best, smooth)
        if smooth > divergence_factor * best:
            stop = "diverged"
            break
    return {
        "lrs": lrs,
        "losses": [v if math.isfinite(v) else float(np.nan) for v in losses],
        "stop_reason": stop,
    }


def have_autolr_lr_find() -> bool:
    """Whether ``autolr.lr_find`` can be imported (it is being written alongside this benchmark)."""
    try:
        import autolr

        return callable(getattr(autolr, "lr_find", None))
    except Exception:
        return False


def autolr_range_test(
    task: Task,
    seed: int,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    val_batches: int = 0,
    num_batches: int | None = None,
) -> dict[str, object]:
    """Run ``autolr.lr_find`` with its defaults on the seed's model and training stream.

    The optimizer starts at the task's textbook LR (``lr_find`` sweeps from ``start_lr`` regardless). With
    ``val_batches``, the sweep runs in validation mode: after every step it reads the loss of that many fixed
    batches from another seed's stream (``seed + 100``), so the curve carries no batch-to-batch noise.
    ``num_batches`` (default ``num_steps``) batches of the stream are given: a fine-tune whose sweep shows no
    clear descent is swept again, longer (``lr_find``'s ``resweep_steps``: 3x), from the first of them.

    Returns:
        ``{"lrs", "losses", "stop_reason", "suggestion": {"lr", "confidence", "method", "reason", "evidence",
        "finetune"}}``. The curve is the first sweep's, the one every other rule reads (as its own 100-step
        sweep would be); when autolr swept twice, ``"resweep"`` holds the longer curve its suggestion comes from.
    """
    import warnings

    import autolr

    torch.set_num_threads(1)
    inst = task.make(seed, num_batches=num_batches or num_steps)
    optimizer = inst.optimizer_factory(inst.model.parameters(), task.textbook_lr)
    validation: dict[str, object] = {}
    if val_batches:
        validation = {"val_loader": task.make(seed + 100, num_batches=val_batches).batches, "val_batches": val_batches}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = autolr.lr_find(inst.model, optimizer, inst.batches, loss_fn=inst.loss_fn, start_lr=start_lr,
                                end_lr=end_lr, num_steps=num_steps, progress=False, **validation)
    s, first = result.suggestion, result.first_curve
    lr = None if s.lr is None or not math.isfinite(float(s.lr)) or s.lr <= 0 else float(s.lr)
    return {
        **_curve(result.curve if first is None else first),
        "suggestion": {
            "lr": lr,
            "confidence": float(s.confidence),
            "method": s.method,
            "reason": s.reason,
            "evidence": {k: float(v) for k, v in dict(s.evidence).items()},
            "finetune": bool(s.finetune),
        },
        **({"resweep": _curve(result.curve)} if first is not None else {}),
    }


def _curve(curve: object) -> dict[str, object]:
    return {
        "lrs": [float(v) for v in curve.lrs],  # type: ignore[attr-defined]
        "losses": [float(v) if math.isfinite(v) else float(np.nan) for v in curve.losses],  # type: ignore[attr-defined]
        "stop_reason": str(curve.stop_reason),  # type: ignore[attr-defined]
    }


def run_job(job: tuple) -> tuple[tuple, object]:
    """Execute one benchmark job (picklable; used by the worker pool). Returns ``(job, result)``.

    Jobs:
        ``("untrained", task, seed)`` -> float
        ``("train", task, protocol, lr_key, seed)`` -> float (``lr = float(lr_key)``)
        ``("free", task, method, protocol, seed)`` -> float
        ``("range", task, seed, impl, num_steps)`` -> dict (``impl`` is ``"autolr"`` or ``"local"``)
    """
    from .tasks import get_task

    kind, task = job[0], get_task(job[1])
    if kind == "untrained":
        return job, untrained_loss(task, job[2])
    if kind == "train":
        return job, train(task, job[4], float(job[3]), job[2])
    if kind == "free":
        return job, train_lr_free(task, job[4], job[2], job[3])
    if kind == "range":
        fn = autolr_range_test if job[3] == "autolr" else local_range_test
        return job, fn(task, job[2], num_steps=job[4])
    raise ValueError(f"unknown job kind {kind!r}")

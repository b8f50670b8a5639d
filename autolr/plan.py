"""Suggestion + user intent -> :class:`Plan`: lr per param group, schedule, weight decay, each with a reason.

Pure: takes numbers and names, returns data; touches no model or optimizer. The rules, each in one place:

* **lr.** Group 0 gets the suggestion; every other group keeps its ratio to group 0. With no suggestion
  (``lr=None``) the current lrs are kept. For one-cycle the peak is raised towards the curve's minimum,
  because one-cycle passes its peak briefly after a warm ramp: ``peak = sqrt(lr * upper)`` with
  ``upper = min_loss_lr`` (or ``divergence_lr / 4`` without one), capped at ``divergence_lr / 4``.
  For a **fine-tune** (``suggestion.finetune``) under a schedule that warms up and decays to 0 (warmup_cosine,
  linear; or ``decays=True`` for a framework's own), the peak is ``FINETUNE_DECAY_PEAK`` (2) x the suggestion,
  capped the same way: a fine-tune's suggestion is its best constant LR, and such a schedule trains at about
  half its peak on average (on the fine-tuning benchmark the best peak under warm-up + linear decay sits 1-5x
  above the best constant LR).
* **schedule="auto".** No ``total_steps``: ``"plateau"`` (nothing to lay a fixed schedule over, so react to
  the validation metric). SGD family: ``"onecycle"`` (Smith's policy, designed for SGD with momentum).
  Otherwise: ``"warmup_cosine"`` (adaptive optimizers' early moment estimates are noisy, so they warm up;
  cosine decays smoothly to 0). Warmup is ``ceil(total_steps / 20)`` steps (5%), below ``total_steps``; step
  ``t`` of a ``w``-step warmup runs at ``(t + 1) / (w + 1)`` of the peak, so the first step is never at LR 0.
* **weight_decay="auto"** comes from :data:`KNOWN_OPTIMIZERS`: 0.05 for decoupled adaptive optimizers
  (AdamW: the vision-transformer/ConvNeXt value, between BERT's 0.01 and GPT's 0.1); 5e-4 for the SGD
  family (the CIFAR ResNet value; ImageNet recipes use 1e-4); 0 for Adam-style L2 (the adaptive denominator
  weakens L2 unevenly, so switch to AdamW) and for unknown optimizers.

Example:
    >>> from autolr.suggest import Suggestion
    >>> s = Suggestion(1e-3, "valley", 0.8, "steep descent", evidence={"min_loss_lr": 1e-2})
    >>> plan = make_plan(s, param_group_lrs=[1.0, 0.1], total_steps=1000, optimizer_name="SGD")
    >>> plan.schedule_name, [round(lr, 6) for lr in plan.lrs], plan.weight_decay
    ('onecycle', [0.003162, 0.000316], 0.0005)
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from .errors import ConfigurationError
from .report import Decision, format_lr
from .schedule import (
    Constant,
    Join,
    LinearDecay,
    LinearWarmup,
    OneCycle,
    Plateau,
    Schedule,
    StepDecay,
    schedule_from_dict,
    warmup_cosine,
)
from .suggest import Suggestion

__all__ = [
    "DECAYING",
    "DIVERGENCE_MARGIN",
    "FINETUNE_DECAY_PEAK",
    "KNOWN_OPTIMIZERS",
    "SCHEDULES",
    "OptimizerInfo",
    "Plan",
    "make_plan",
    "resolve_weight_decay",
    "split_no_decay",
    "supports_weight_decay",
]

#: Schedule names :func:`make_plan` accepts, with what each does ("cosine" is read as "warmup_cosine").
SCHEDULES: dict[str, str] = {
    "auto": "choose from the optimizer and whether total_steps is known",
    "constant": "the same lr at every step",
    "warmup_cosine": "linear warmup (step t of w at (t + 1) / (w + 1) of the peak: the first step already learns), "
    "then cosine decay to 0 at total_steps",
    "linear": "linear warmup (as warmup_cosine), then linear decay to 0 at total_steps",
    "onecycle": f"one-cycle: from peak/{OneCycle.div_factor:g} up to the peak over {OneCycle.pct_start:.0%} of "
    f"the steps, then cosine down to peak/{OneCycle.div_factor * OneCycle.final_div_factor:g}",
    "step": f"x{StepDecay.gamma:g} every total_steps // 3 steps",
    "plateau": f"x{Plateau.factor:g} once the metric given at epoch end has not improved for more than "
    f"{Plateau.patience} epochs",
}
_NEEDS_TOTAL = ("warmup_cosine", "linear", "onecycle", "step")
DIVERGENCE_MARGIN = 4.0  # the one-cycle peak stays at or below divergence_lr / DIVERGENCE_MARGIN
#: Schedules that warm up, then decay to 0: a fine-tune's peak there is FINETUNE_DECAY_PEAK x the suggestion.
DECAYING = ("warmup_cosine", "linear")
FINETUNE_DECAY_PEAK = 2.0


class OptimizerInfo(NamedTuple):
    """How autolr treats an optimizer: ``family`` ("sgd", "adaptive", "other"), ``decay`` ("decoupled":
    shrinks weights directly, "l2": added to the gradient, "none": no weight_decay argument)."""

    family: str
    decay: str
    auto_weight_decay: float


#: Lower-case optimizer class name -> how autolr treats it. Unknown names: no auto decay, warmup_cosine.
KNOWN_OPTIMIZERS: dict[str, OptimizerInfo] = {
    **{n: OptimizerInfo("sgd", "l2", 5e-4) for n in ("sgd", "asgd")},
    "sgdw": OptimizerInfo("sgd", "decoupled", 5e-4),
    **{n: OptimizerInfo("adaptive", "decoupled", 0.05) for n in ("adamw", "adafactor")},
    **{n: OptimizerInfo("adaptive", "l2", 0.0)
       for n in ("adam", "nadam", "radam", "adamax", "adagrad", "adadelta", "rmsprop")},
    **{n: OptimizerInfo("other", "none", 0.0) for n in ("rprop", "lbfgs", "sparseadam")},
}
_UNKNOWN = OptimizerInfo("other", "unknown", 0.0)
_NORM = re.compile(r"(Norm|Normalization|LRN)\d*d?$")
_EMBEDDING = re.compile(r"Embedding(Bag)?$")


def _info(optimizer_name: str) -> OptimizerInfo:
    return KNOWN_OPTIMIZERS.get(optimizer_name.rsplit(".", 1)[-1].lower(), _UNKNOWN)


def supports_weight_decay(optimizer_name: str) -> bool:
    """False for the known optimizers without a ``weight_decay`` argument (Rprop, LBFGS, SparseAdam).

    Example:
        >>> supports_weight_decay("AdamW"), supports_weight_decay("torch.optim.LBFGS")
        (True, False)
    """
    return _info(optimizer_name).decay != "none"


def resolve_weight_decay(value: float | str | None, optimizer_name: str) -> float:
    """The weight decay a plan will use for ``value`` (``"auto"``, a float, or None) with this optimizer.

    Example:
        >>> resolve_weight_decay("auto", "AdamW"), resolve_weight_decay(None, "SGD"), resolve_weight_decay(0.1, "SGD")
        (0.05, 0.0, 0.1)
    """
    return _weight_decay(value, _info(optimizer_name), optimizer_name)[0]


def split_no_decay(
    named_params_info: Sequence[tuple[str, str, int]],
    *,
    exclude_embeddings: bool = True,
    no_decay_names: Collection[str] = (),
    no_decay_keywords: Collection[str] = (),
) -> tuple[list[str], list[str]]:
    """Split parameter names into (decay, no_decay), keeping input order.

    Args:
        named_params_info: ``(name, module_type_name, ndim)`` per parameter, e.g. ``("fc.bias", "Linear", 1)``.
        exclude_embeddings: also keep ``*Embedding``/``EmbeddingBag`` weights out of decay.
        no_decay_names: names the model itself excludes (its ``no_weight_decay()``, e.g. ``pos_embed``).
        no_decay_keywords: substrings the model excludes (its ``no_weight_decay_keywords()``).

    Returns:
        No decay for biases, parameters of normalization layers (type name ending in ``Norm``/``Norm2d``…,
        ``Normalization`` or ``LRN``), any parameter with ``ndim <= 1``, embeddings if excluded, and the
        model's own exclusions.

    Example:
        >>> split_no_decay([("fc.weight", "Linear", 2), ("fc.bias", "Linear", 1), ("ln.weight", "LayerNorm", 1)])
        (['fc.weight'], ['fc.bias', 'ln.weight'])
    """
    decay: list[str] = []
    no_decay: list[str] = []
    for item in named_params_info:
        if len(item) != 3:
            raise ConfigurationError(f"named_params_info items must be (name, module_type_name, ndim), got {item!r}")
        name, module_type, ndim = item
        skip = (int(ndim) <= 1 or name == "bias" or name.endswith(".bias") or bool(_NORM.search(module_type))
                or (exclude_embeddings and bool(_EMBEDDING.search(module_type)))
                or name in no_decay_names or any(k in name for k in no_decay_keywords))
        (no_decay if skip else decay).append(name)
    return decay, no_decay


@dataclass(frozen=True)
class Plan:
    """What to apply: base lrs per group (the schedule multiplies them; its maximum is 1), weight decay, why.

    ``step_granularity`` says when the schedule advances: ``"step"`` (every optimizer step), ``"epoch"``
    (at epoch end; ``total_steps`` counts epochs) or ``"metric"`` (:class:`~autolr.schedule.Plateau`, at
    epoch end from a metric). ``decisions`` holds one :class:`~autolr.report.Decision` each for ``lr``,
    ``schedule``, ``weight_decay`` and ``no_decay``.
    """

    lrs: tuple[float, ...]
    peak_lr: float
    schedule: Schedule
    schedule_name: str
    total_steps: int | None
    step_granularity: str
    weight_decay: float
    decoupled_weight_decay: bool
    exclude_embeddings: bool
    decisions: tuple[Decision, ...]

    def decision(self, name: str) -> Decision:
        """The decision called ``name`` (``KeyError`` if there is none)."""
        for d in self.decisions:
            if d.name == name:
                return d
        raise KeyError(f"no decision {name!r}; have {[d.name for d in self.decisions]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` rebuilds the plan, schedule included (Plateau state excluded)."""
        return {"lrs": list(self.lrs), "peak_lr": self.peak_lr, "schedule": self.schedule.to_dict(),  # type: ignore[attr-defined]
                "schedule_name": self.schedule_name, "total_steps": self.total_steps,
                "step_granularity": self.step_granularity, "weight_decay": self.weight_decay,
                "decoupled_weight_decay": self.decoupled_weight_decay,
                "exclude_embeddings": self.exclude_embeddings,
                "decisions": [d.to_dict() for d in self.decisions]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`."""
        fields = {k: data[k] for k in ("peak_lr", "schedule_name", "total_steps", "step_granularity",
                                       "weight_decay", "decoupled_weight_decay", "exclude_embeddings")}
        return cls(lrs=tuple(float(x) for x in data["lrs"]), schedule=schedule_from_dict(data["schedule"]),
                   decisions=tuple(Decision.from_dict(d) for d in data.get("decisions", ())), **fields)


def _finetune_decay_peak(suggestion: Suggestion) -> tuple[float, str]:
    """A fine-tune's peak under a warmup + decay schedule, and the rule in words with its numbers."""
    lr = float(suggestion.lr)  # type: ignore[arg-type]
    peak = FINETUNE_DECAY_PEAK * lr
    text = (f"fine-tune under warmup + decay: peak {format_lr(peak)} = {FINETUNE_DECAY_PEAK:g} x the suggestion "
            f"{format_lr(lr)} (the best constant lr; the schedule trains at about half its peak on average)")
    divergence = suggestion.evidence_lr("divergence_lr")
    if divergence is not None and divergence / DIVERGENCE_MARGIN < peak:
        cap = divergence / DIVERGENCE_MARGIN
        return max(cap, lr), f"{text}, capped at divergence_lr {format_lr(divergence)} / {DIVERGENCE_MARGIN:g}"
    return peak, text


def _one_cycle_peak(suggestion: Suggestion) -> tuple[float, str]:
    """The one-cycle peak for group 0, and the rule in words with its numbers."""
    lr = float(suggestion.lr)  # type: ignore[arg-type]
    minimum, divergence = suggestion.evidence_lr("min_loss_lr"), suggestion.evidence_lr("divergence_lr")
    cap = divergence / DIVERGENCE_MARGIN if divergence else math.inf
    cap_text = f"divergence_lr {format_lr(divergence)} / {DIVERGENCE_MARGIN:g} = {format_lr(cap)}"
    if minimum is not None:
        upper, upper_text = minimum, f"min_loss_lr {format_lr(minimum)}"
    elif divergence is not None:
        upper, upper_text = cap, cap_text
    else:
        return lr, "one-cycle peak = the suggestion: the curve shows no loss minimum and no divergence point"
    if upper > lr:
        peak = math.sqrt(lr * upper)
        text = f"one-cycle peak {format_lr(peak)} = sqrt(suggestion {format_lr(lr)} x {upper_text})"
    else:
        peak, text = lr, f"one-cycle peak = the suggestion {format_lr(lr)} ({upper_text} is not above it)"
    if divergence is None:
        return peak, text
    if peak > cap:
        return cap, f"{text}, capped at {cap_text}"
    return peak, f"{text}, within the cap {cap_text}"


def _choose_schedule(name: str, info: OptimizerInfo, total_steps: int | None, optimizer: str) -> tuple[str, str]:
    if name == "cosine":
        name = "warmup_cosine"
    if name != "auto":
        return name, f"requested: {SCHEDULES[name]}"
    if total_steps is None:
        return "plateau", "auto: total_steps is unknown, so no fixed schedule fits; reduce on a metric plateau"
    if info.family == "sgd":
        return "onecycle", f"auto: {optimizer} is SGD-family, and one-cycle was designed for SGD with momentum"
    return "warmup_cosine", (f"auto: {optimizer} is not SGD-family; adaptive optimizers warm up while their "
                             "moment estimates settle, then cosine decays smoothly to 0")


def _build(name: str, total: int | None, warmup: int) -> Schedule:
    if name == "constant":
        return Constant()
    if name == "plateau":
        return Plateau()
    assert total is not None  # validated in make_plan
    if name == "warmup_cosine":
        return warmup_cosine(total, warmup, start_factor=1.0 / (warmup + 1))
    if name == "linear":
        ramp = LinearWarmup(warmup, start_factor=1.0 / (warmup + 1)) if warmup else None
        return Join((ramp, LinearDecay(total - warmup)), (warmup,)) if ramp else LinearDecay(total)
    return OneCycle(total) if name == "onecycle" else StepDecay(max(1, total // 3))


def _weight_decay(value: float | str | None, info: OptimizerInfo, optimizer: str) -> tuple[float, str]:
    if value == "auto":
        if info.decay == "decoupled":
            why = "the usual decoupled value for AdamW-style training (BERT 0.01 .. GPT 0.1)"
        elif info.family == "sgd":
            why = "the classic SGD value for CIFAR-scale ResNets (ImageNet recipes use 1e-4)"
        elif info.decay == "l2":
            why = (f"{optimizer} adds L2 to the gradient, where the adaptive step weakens it unevenly; AdamW "
                   "is the decoupled variant: use it (e.g. weight_decay=0.05) to get weight decay")
        elif info.decay == "none":
            why = f"{optimizer} has no weight_decay argument"
        else:
            why = f"no rule for {optimizer}; pass weight_decay=<float> to set one"
        return info.auto_weight_decay, f"auto: {info.auto_weight_decay:g} for {optimizer}: {why}"
    if not value:
        return 0.0, "no weight decay (weight_decay=None or 0)"
    how = {"decoupled": "decoupled (it shrinks the weights directly)", "l2": "as L2 (added to the gradient)"}
    text = f"{float(value):g} as given; {optimizer} applies it {how.get(info.decay, 'in its own way')}"
    if info.decay == "l2" and info.family == "adaptive":
        text += "; AdamW is the decoupled variant, which regularises all weights evenly"
    return float(value), text


def _validate(suggestion: Any, lrs: Sequence[float], optimizer_name: Any, total_steps: Any, schedule: Any,
              weight_decay: Any, warmup_steps: Any, step_granularity: Any) -> None:
    def bad(name: str, value: Any, need: str, fix: str = "") -> ConfigurationError:
        return ConfigurationError(f"{name} must be {need}, got {value!r}. {fix}".rstrip())

    if not isinstance(suggestion, Suggestion):
        raise bad("suggestion", suggestion, "an autolr Suggestion", "Pass result.suggestion from lr_find.")
    if suggestion.lr is not None and not (math.isfinite(suggestion.lr) and suggestion.lr > 0):
        raise bad("suggestion.lr", suggestion.lr, "None or a finite float > 0")
    if not lrs or not all(math.isfinite(float(x)) and float(x) > 0 for x in lrs):
        raise bad("param_group_lrs", lrs, "one finite lr > 0 per param group", "Pass the optimizer's current lrs.")
    if not isinstance(optimizer_name, str) or not optimizer_name:
        raise bad("optimizer_name", optimizer_name, "a class name such as 'AdamW'", "Pass type(optimizer).__name__.")
    if not isinstance(schedule, str) or (schedule not in SCHEDULES and schedule != "cosine"):
        raise bad("schedule", schedule, f"one of {sorted(SCHEDULES)} (or 'cosine' for 'warmup_cosine')")
    is_int = isinstance(total_steps, int) and not isinstance(total_steps, bool)
    if total_steps is not None and not (is_int and total_steps >= 1):
        raise bad("total_steps", total_steps, "None or an int >= 1", "Use epochs * len(train_loader).")
    if total_steps is None and schedule in (*_NEEDS_TOTAL, "cosine"):
        raise bad("total_steps", None, f"an int >= 1 for schedule={schedule!r}",
                  "Pass epochs * len(train_loader), or use schedule='plateau' or 'constant'.")
    ok_wd = weight_decay in ("auto", None) or (isinstance(weight_decay, (int, float)) and not isinstance(
        weight_decay, bool) and math.isfinite(weight_decay) and weight_decay >= 0)
    if not ok_wd:
        raise bad("weight_decay", weight_decay, "'auto', None or a float >= 0", "Use 0.05 for AdamW, 5e-4 for SGD.")
    if weight_decay not in ("auto", None) and weight_decay > 0 and not supports_weight_decay(optimizer_name):
        raise bad("weight_decay", weight_decay, f"None or 0 for {optimizer_name}, which has no weight decay",
                  "Use an optimizer with a weight_decay argument (e.g. AdamW) or weight_decay=None.")
    if warmup_steps is not None and not (isinstance(warmup_steps, int) and 0 <= warmup_steps < (total_steps or 1)):
        raise bad("warmup_steps", warmup_steps, f"None or an int in [0, total_steps={total_steps})")
    if step_granularity not in ("step", "epoch"):
        raise bad("step_granularity", step_granularity, "'step' or 'epoch'", "'epoch' if total_steps counts epochs.")


def make_plan(
    suggestion: Suggestion,
    *,
    param_group_lrs: Sequence[float],
    optimizer_name: str,
    total_steps: int | None = None,
    schedule: str = "auto",
    weight_decay: float | str | None = "auto",
    warmup_steps: int | None = None,
    step_granularity: str = "step",
    exclude_embeddings: bool = True,
    named_params_info: Sequence[tuple[str, str, int]] | None = None,
    min_confidence: float = 0.0,
    decays: bool | None = None,
) -> Plan:
    """Turn a suggestion and the user's intent into a :class:`Plan` (rules in the module docstring).

    Args:
        suggestion: from :func:`autolr.suggest`; its ``lr`` is for param group 0.
        param_group_lrs: the groups' current lrs; their ratios to group 0 are kept.
        optimizer_name: the optimizer's class name (``type(optimizer).__name__``).
        total_steps: scheduler steps in the whole run (epochs if ``step_granularity="epoch"``); None if unknown.
        schedule: a name from :data:`SCHEDULES` (``"cosine"`` means ``"warmup_cosine"``).
        weight_decay: ``"auto"``, a float >= 0 used as given, or None/0 for none.
        warmup_steps: override the warmup rule (``ceil(total_steps / 20)``) for warmup_cosine/linear.
        step_granularity: ``"step"`` or ``"epoch"``; plateau always advances on a ``"metric"``.
        exclude_embeddings: keep embedding weights out of weight decay (see :func:`split_no_decay`).
        named_params_info: optional ``(name, module_type_name, ndim)`` list; only counted, as evidence.
        min_confidence: a suggestion whose confidence is below this is not applied: the current lrs are kept
            and the lr decision says why (``0.1`` skips flat-curve guesses, ``0.2`` also weak suggestions).
        decays: whether the lr is trained under a schedule that warms up and decays to 0, which raises a
            fine-tune's peak (module docstring). ``None`` (default): read it from the schedule chosen. An adapter
            that keeps a framework's own schedule (and plans with ``schedule="constant"``) says so here.

    Raises:
        ConfigurationError: for any invalid argument, before anything is computed.
    """
    _validate(suggestion, param_group_lrs, optimizer_name, total_steps, schedule, weight_decay, warmup_steps,
              step_granularity)
    if decays is not None and not isinstance(decays, bool):
        raise ConfigurationError(f"decays must be None (read it from the schedule), True or False, got {decays!r}")
    if not (isinstance(min_confidence, (int, float)) and 0 <= min_confidence <= 1):
        raise ConfigurationError(f"min_confidence must be a number in [0, 1], got {min_confidence!r}; e.g. 0.1")
    if suggestion.lr is not None and suggestion.confidence < min_confidence:
        suggestion = replace(suggestion, lr=None, reason=(
            f"the suggestion {suggestion.lr:.3g} has confidence {suggestion.confidence:.2f}, under "
            f"min_confidence {min_confidence:g}: {suggestion.reason}"
        ))
    info, current = _info(optimizer_name), [float(x) for x in param_group_lrs]
    name, schedule_reason = _choose_schedule(schedule, info, total_steps, optimizer_name)
    warmup = 0
    if name in ("warmup_cosine", "linear") and total_steps is not None:
        warmup = warmup_steps if warmup_steps is not None else min(-(-total_steps // 20), total_steps - 1)
        schedule_reason += f"; warmup {warmup} of {total_steps} steps"
    if suggestion.lr is None:
        peak, lrs = current[0], current
        lr_reason = f"no lr suggested ({suggestion.reason}); kept the current lrs {[format_lr(x) for x in current]}"
    else:
        peak = suggestion.lr
        lr_reason = f"{suggestion.method} (confidence {suggestion.confidence:.2f}): {suggestion.reason}"
        if name == "onecycle":
            peak, peak_reason = _one_cycle_peak(suggestion)
            lr_reason = f"{peak_reason}; suggestion by {lr_reason}"
        elif suggestion.finetune and (name in DECAYING if decays is None else decays):
            peak, peak_reason = _finetune_decay_peak(suggestion)
            lr_reason = f"{peak_reason}; suggestion by {lr_reason}"
        lrs = [peak * x / current[0] for x in current]
        if len(lrs) > 1:
            lr_reason += f"; group ratios to group 0 kept: {[round(x / current[0], 6) for x in current]}"
    wd, wd_reason = _weight_decay(weight_decay, info, optimizer_name)
    rules = ["bias", "normalization", "ndim<=1", *(["embedding"] if exclude_embeddings else [])] if wd else []
    split_evidence: dict[str, Any] = {}
    if named_params_info is not None:
        decay, no_decay = split_no_decay(named_params_info, exclude_embeddings=exclude_embeddings)
        split_evidence = {"decay_params": len(decay), "no_decay_params": len(no_decay)}
    decisions = (
        Decision(
            "lr", peak, lr_reason,
            alternatives={"suggestion": suggestion.lr, "current": current[0], **dict(suggestion.alternatives)},
            evidence={**dict(suggestion.evidence), "confidence": suggestion.confidence},
        ),
        Decision(
            "schedule", name, schedule_reason,
            alternatives={k: v for k, v in SCHEDULES.items() if k not in ("auto", name)},
            evidence={"total_steps": total_steps, "warmup_steps": warmup, "optimizer_family": info.family},
        ),
        Decision(
            "weight_decay", wd, wd_reason,
            alternatives={"none": 0.0, "auto": info.auto_weight_decay},
            evidence={"optimizer": optimizer_name, "decay": info.decay},
        ),
        Decision(
            "no_decay", rules, "no decay for " + ", ".join(rules) if rules else "no weight decay to split",
            evidence=split_evidence,
        ),
    )
    return Plan(
        lrs=tuple(lrs), peak_lr=peak, schedule=_build(name, total_steps, warmup), schedule_name=name,
        total_steps=total_steps, step_granularity="metric" if name == "plateau" else step_granularity,
        weight_decay=wd, decoupled_weight_decay=info.decay == "decoupled",
        exclude_embeddings=exclude_embeddings, decisions=decisions,
    )

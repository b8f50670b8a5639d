"""Does the model start trained? Read off its trainable weights before the range test, so the analysis knows a
fine-tune from a fresh start.

A range test cannot tell the two apart from the curve alone (a pretrained body under a new head starts at the same
chance-level loss as a fresh network), yet the best LR differs by a decade or more: a fine-tune that trains at the
LR where the sweep's loss falls fastest wrecks the pretrained features. The weights tell, because PyTorch's layers
start from known states. Only modules with trainable parameters count (a frozen body cannot be damaged). Three
signs, the first that applies decides:

1. **BatchNorm running statistics** that have moved (``num_batches_tracked > 0``, or a running mean/var off 0/1):
   the layer has seen data in training mode.
2. **Norm-layer scales and shifts** (BatchNorm, LayerNorm, GroupNorm, RMSNorm...) that are not constant:
   every initialisation sets them to one value (1 and 0, or 0 for a zero-initialised residual branch); training
   makes them differ. When a model has affine norm layers, they decide (even when their values are all at init,
   which says "fresh" whatever other layers were given as a custom init).
3. Without norm layers: **weights beyond PyTorch's default initialisation bound**. ``Linear`` and ``Conv`` start
   inside ``+-1/sqrt(fan_in)``, recurrent layers (``RNN``, ``GRU``, ``LSTM``) inside ``+-1/sqrt(hidden_size)``;
   the model counts as trained when at least half of these weight tensors have an entry beyond 1.01 times the
   bound. A fresh model given a wider custom initialisation (Xavier, Kaiming normal) and no norm layers also
   passes this test: pass ``finetune=False`` to :func:`autolr.lr_find` for such a model (the reason says which
   sign was read).

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    >>> detect(net).trained
    False
    >>> with torch.no_grad():
    ...     _ = net[1].weight.add_(torch.linspace(-0.1, 0.1, 8))
    >>> detect(net).trained, detect(net).sign
    (True, 'norm_affine')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["StartState", "detect"]

#: A weight entry counts as beyond the default initialisation when it exceeds the bound by this factor.
BOUND_TOLERANCE = 1.01


@dataclass(frozen=True)
class StartState:
    """What :func:`detect` read.

    Attributes:
        trained: the model's trainable weights start trained (a fine-tune), as far as the weights tell.
        sign: which sign decided: ``"batchnorm_stats"``, ``"norm_affine"``, ``"init_bound"`` or ``"none"``.
        reason: the sign in words, with the module that showed it.
    """

    trained: bool
    sign: str
    reason: str


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters(recurse=False))


def _is_norm(module: nn.Module) -> bool:
    """Any class with "Norm" in its name (wider than plan's weight-decay rule, which needs the name to end in
    it: timm's ``BatchNormAct2d`` is a norm layer whose constant scales say "fresh")."""
    return "Norm" in type(module).__name__


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter (an FSDP2 DTensor holds a shard), detached."""
    to_local = getattr(t, "to_local", None)
    return (to_local() if callable(to_local) else t).detach()


def _constant(t: torch.Tensor | None) -> bool:
    if t is None:
        return True
    t = _local(t)
    if t.numel() == 0:
        return True
    return bool((t == t.reshape(-1)[0]).all())


def _largest(t: torch.Tensor) -> float:
    """The largest magnitude in ``t`` (0 when empty), without a full-size temporary (``aminmax``, not ``abs``)."""
    if t.numel() == 0:
        return 0.0
    low, high = torch.aminmax(t)
    return max(-float(low), float(high))


def _bound(module: nn.Module) -> list[tuple[torch.Tensor, float]]:
    """(weight, default init bound) pairs for layers whose PyTorch default init is uniform within a bound."""
    if isinstance(module, nn.RNNBase):
        b = 1.0 / math.sqrt(module.hidden_size)
        return [(p, b) for name, p in module.named_parameters(recurse=False) if name.startswith("weight")]
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and module.weight.dim() >= 2:
        w = module.weight  # torch's fan_in: dim 1 times the kernel size (transposed convs included)
        fan_in = w.shape[1] * math.prod(w.shape[2:])  # from the shape: indexing a DTensor would dispatch
        return [(w, 1.0 / math.sqrt(fan_in))] if fan_in > 0 else []
    return []


def detect(model: nn.Module) -> StartState:
    """Read whether ``model``'s trainable layers start trained (see the module docstring for the three signs).

    Args:
        model: the model (wrappers such as DDP are read through: their ``modules()`` include the inner model).

    Returns:
        A :class:`StartState`; ``trained=False`` with sign ``"none"`` when nothing readable was found, or when the
        weights cannot be read (e.g. on the meta device, or a dtype without ``abs``): the reading never stops a
        range test.
    """
    try:
        return _detect(model)
    except Exception as exc:  # a reading, never a reason to fail the range test
        return StartState(False, "none", f"could not read the weights ({type(exc).__name__}: {exc}): read as a "
                          "fresh model; pass finetune=True if it is trained")


def _detect(model: nn.Module) -> StartState:
    norms: list[tuple[str, nn.Module]] = []
    bounded: list[tuple[str, torch.Tensor, float]] = []
    with torch.no_grad():
        for name, m in model.named_modules():
            if not _trainable(m):
                continue
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                tracked, mean, var = m.num_batches_tracked, m.running_mean, m.running_var
                moved = (tracked is not None and int(_local(tracked).sum()) > 0) or (
                    mean is not None and bool((_local(mean) != 0).any())
                ) or (var is not None and bool((_local(var) != 1).any()))
                if moved:
                    return StartState(True, "batchnorm_stats", f"BatchNorm {name or 'model'!r} has running statistics "
                                      "from training: the model starts trained")
            if _is_norm(m) and getattr(m, "weight", None) is not None:
                norms.append((name, m))
            bounded += [(name, w, b) for w, b in _bound(m)]
        for name, m in norms:
            if not (_constant(m.weight) and _constant(getattr(m, "bias", None))):
                return StartState(True, "norm_affine", f"{type(m).__name__} {name or 'model'!r} has learned scales: "
                                  "the model starts trained")
        if norms:
            return StartState(False, "norm_affine", f"every norm layer's scale and shift is at its initial constant "
                              f"({len(norms)} layers): a fresh model")
        if not bounded:
            return StartState(False, "none", "no layer whose initial state is known: read as a fresh model")
        beyond = [name for name, w, b in bounded if _largest(_local(w)) > BOUND_TOLERANCE * b]
    if 2 * len(beyond) >= len(bounded):
        return StartState(True, "init_bound", f"{len(beyond)} of {len(bounded)} weight tensors beyond PyTorch's "
                          f"default init bound (e.g. {beyond[0] or 'model'!r}): the model starts trained; a fresh "
                          "model with a wider custom init reads the same: pass finetune=False")
    return StartState(False, "init_bound", f"{len(bounded) - len(beyond)} of {len(bounded)} weight tensors lie within "
                      "PyTorch's default initialisation bound: a fresh model")

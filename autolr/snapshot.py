"""Exact save and restore of training state, in place, in CPU memory (default) or on disk.

A :class:`Snapshot` copies everything a few training steps can change: parameters, gradients, buffers
(persistent or not, e.g. BatchNorm running statistics), ``requires_grad`` flags, the train/eval flag of
every submodule, optimizer state and param-group hyperparameters, a ``GradScaler``'s state, extra
``state_dict`` objects, and the RNGs (python ``random``, numpy, torch CPU and every initialised CUDA
device). :meth:`Snapshot.restore` copies the values back *into the same tensors* (``copy_``), so the
optimizer's references, ``torch.compile`` guards and tensor learning rates stay valid, and the result is
bit-for-bit the state that was saved.

Copies go to CPU memory (pinned when the model is on CUDA), so a snapshot costs no GPU memory. With
``storage="disk"`` they go to a private temporary directory (mode 0700), one file per parameter so host
memory stays low, loaded back with ``weights_only=True`` and removed on :meth:`close` (and on exit of the
``with`` block, even after an error).

Under ``torch.distributed`` every rank snapshots and restores its own state, without any collective. A DDP
wrapper is seen through (its parameters and buffers are the wrapped model's). With FSDP only this rank's
shards are copied, never the full model: FSDP2 (``fully_shard``) parameters, gradients and optimizer state
are DTensors, saved as their local shard and copied back into it (modules left unsharded are resharded
first); FSDP1 parameters are flat local shards already.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> before = model.weight.detach().clone()
    >>> with Snapshot.take(model, opt):
    ...     model(torch.randn(4, 2)).sum().backward(); opt.step()
    >>> torch.equal(model.weight, before)
    True
"""

from __future__ import annotations

import copy
import logging
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import numpy as np
import torch

from .errors import ConfigurationError, StateError

__all__ = ["RNGState", "Snapshot", "reshard_fsdp"]

logger = logging.getLogger("autolr")

Storage = Literal["cpu", "disk"]


def _local(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (FSDP2), or the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


# How to rebuild a tensor from its saved local copy: the device, and for a DTensor its sharding
# (device mesh, placements, global shape, global stride), else None.
_Layout = tuple[torch.device, Any]


def _layout(t: torch.Tensor) -> _Layout:
    if hasattr(t, "to_local"):
        return t.to_local().device, (t.device_mesh, t.placements, t.shape, t.stride())  # type: ignore[attr-defined]
    return t.device, None


def _rebuild(local: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """A new tensor (a DTensor with the saved sharding, if it was one) holding a copy of ``local``."""
    device, spec = layout
    out = local.to(device, copy=True)
    if spec is None:
        return out
    from torch.distributed.tensor import DTensor

    mesh, placements, shape, stride = spec
    return DTensor.from_local(out, mesh, placements, run_check=False, shape=shape, stride=stride)


def _fits(live: torch.Tensor, saved: torch.Tensor, layout: _Layout) -> bool:
    """True when ``saved`` (a local copy of a tensor with ``layout``) can be copied into ``live`` in place."""
    local = _local(live)
    is_dtensor = hasattr(live, "to_local")
    return is_dtensor == (layout[1] is not None) and local.shape == saved.shape and local.dtype == saved.dtype


def reshard_fsdp(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Put every FSDP2 (``fully_shard``) module in ``model`` in its sharded state; return those modules.

    Between training steps FSDP2 modules are sharded: the registered parameters are this rank's DTensor
    shards, the ones the optimizer holds. ``fully_shard(..., reshard_after_forward=False)`` leaves the full,
    unsharded parameters registered after a forward pass without backward (an evaluation, say), and frees their
    storage at the next reshard. Resharding first means a snapshot holds only this rank's shards and restores
    into tensors that stay alive. No-op (and no import) when FSDP was never imported.
    """
    fsdp = sys.modules.get("torch.distributed.fsdp")
    fsdp_module = getattr(fsdp, "FSDPModule", None)
    if fsdp_module is None:
        return []
    modules = [m for m in model.modules() if isinstance(m, fsdp_module)]
    for module in modules:
        module.reshard()  # type: ignore[operator]
    return modules


@dataclass
class RNGState:
    """The state of every random number generator autolr knows about."""

    python: Any
    numpy: Any
    torch_cpu: torch.Tensor
    cuda: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def capture(cls) -> RNGState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        return cls(random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch_cpu)
        if self.cuda:
            torch.cuda.set_rng_state_all(self.cuda)


class _Store:
    """Holds CPU copies of tensor dicts in memory (pinned for CUDA sources) or in files."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.directory: str | None = tempfile.mkdtemp(prefix="autolr-snapshot-") if storage == "disk" else None
        if self.directory is not None:
            os.chmod(self.directory, 0o700)
        self._memory: dict[str, dict[str, torch.Tensor]] = {}
        self.uses_cuda = False
        self.nbytes = 0

    def _to_cpu(self, t: torch.Tensor) -> torch.Tensor:
        t = _local(t.detach())
        self.nbytes += t.numel() * t.element_size()
        if t.device.type == "cuda":
            self.uses_cuda = True
            pinned = self.storage == "cpu"
            # Same strides as the source (e.g. channels_last): a copy between CPU and GPU whose layouts differ
            # is staged through a contiguous temporary on the GPU, on the way out and again on restore.
            out = torch.empty_like(t, device="cpu", pin_memory=pinned)
            return out.copy_(t, non_blocking=pinned)
        return t.to("cpu", copy=True)

    def put(self, key: str, tensors: Mapping[str, torch.Tensor]) -> None:
        cpu = {k: self._to_cpu(v) for k, v in tensors.items()}
        if self.directory is None:
            self._memory[key] = cpu
        else:
            torch.save(cpu, os.path.join(self.directory, f"{key}.pt"))

    def get(self, key: str) -> dict[str, torch.Tensor]:
        if self.directory is None:
            return self._memory[key]
        return torch.load(os.path.join(self.directory, f"{key}.pt"), map_location="cpu", weights_only=True)

    def sync(self) -> None:
        if self.uses_cuda:
            torch.cuda.synchronize()

    def close(self) -> None:
        self._memory.clear()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def _copy_into(dst: torch.Tensor, src: torch.Tensor) -> None:
    _local(dst).copy_(src, non_blocking=src.is_pinned())


def _unique_params(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> list[torch.nn.Parameter]:
    seen: dict[int, torch.nn.Parameter] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    if optimizer is not None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                seen.setdefault(id(p), p)
    return list(seen.values())


class Snapshot:
    """A restorable copy of model, optimizer, scaler, extra objects and RNG state. See the module docstring.

    Build one with :meth:`take`; use it as a context manager (restore + close on exit, also on error or
    Ctrl-C) or call :meth:`restore` / :meth:`close` yourself.
    """

    def __init__(self) -> None:  # use Snapshot.take
        self._store: _Store | None = None
        self._params: list[torch.nn.Parameter] = []
        self._param_meta: list[tuple[bool, bool]] = []  # (requires_grad, had_grad)
        self._opt_state_meta: dict[int, dict[str, Any]] = {}
        self._layouts: dict[tuple[int, str], _Layout] = {}  # (param index, "grad" or state key)
        self._buffers: list[tuple[torch.nn.Module, str, torch.Tensor]] = []
        self._modes: list[tuple[torch.nn.Module, bool]] = []
        self._groups: list[dict[str, Any]] = []
        self._optimizer: torch.optim.Optimizer | None = None
        self._scaler: Any = None
        self._scaler_state: dict[str, Any] | None = None
        self._extra: dict[str, tuple[Any, Any]] = {}
        self._rng: RNGState | None = None
        self._fsdp: list[torch.nn.Module] = []

    @classmethod
    def take(
        cls,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        scaler: Any = None,
        extra: Mapping[str, Any] | None = None,
        rng: bool = True,
        storage: Storage = "cpu",
    ) -> Snapshot:
        """Copy the current state.

        Args:
            model: the module (a DDP/FSDP wrapper is fine: its parameters and buffers are the model's).
            optimizer: its state and param-group hyperparameters are saved too.
            scaler: a ``torch.amp.GradScaler`` (or anything with ``state_dict``/``load_state_dict``).
            extra: more objects with ``state_dict``/``load_state_dict`` (e.g. an EMA model), by name.
            rng: also save python, numpy, torch and CUDA RNG states.
            storage: ``"cpu"`` (memory; pinned for CUDA tensors) or ``"disk"`` (private temp dir).

        Raises:
            ConfigurationError: unknown ``storage``.
        """
        if storage not in ("cpu", "disk"):
            raise ConfigurationError(f"snapshot must be 'cpu' or 'disk', got {storage!r}")
        self = cls()
        self._store = store = _Store(storage)
        try:
            self._fsdp = reshard_fsdp(model)
            self._params = _unique_params(model, optimizer)
            state = optimizer.state if optimizer is not None else {}
            for i, p in enumerate(self._params):
                tensors = {"data": p}
                if p.grad is not None:
                    tensors["grad"] = p.grad
                    self._layouts[(i, "grad")] = _layout(p.grad)
                meta: dict[str, Any] = {}
                for k, v in state.get(p, {}).items():
                    if torch.is_tensor(v):
                        tensors[f"state.{k}"] = v
                        self._layouts[(i, k)] = _layout(v)
                    else:
                        meta[k] = copy.deepcopy(v)
                if p in state:
                    self._opt_state_meta[i] = meta
                self._param_meta.append((p.requires_grad, p.grad is not None))
                store.put(f"p{i}", tensors)
            buffers: dict[str, torch.Tensor] = {}
            for module in model.modules():
                self._modes.append((module, module.training))
                for name, buf in module.named_buffers(recurse=False):
                    buffers[str(len(self._buffers))] = buf
                    self._buffers.append((module, name, buf))
            store.put("buffers", buffers)
            if optimizer is not None:
                self._optimizer = optimizer
                for group in optimizer.param_groups:
                    self._groups.append(
                        {k: (v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v))
                         for k, v in group.items() if k != "params"}
                    )
            if scaler is not None:
                self._scaler, self._scaler_state = scaler, copy.deepcopy(scaler.state_dict())
            for name, obj in (extra or {}).items():
                self._extra[name] = (obj, copy.deepcopy(obj.state_dict()))
            self._rng = RNGState.capture() if rng else None
            store.sync()
        except BaseException:
            store.close()
            raise
        logger.debug("snapshot taken: %.1f MB to %s", store.nbytes / 2**20, storage)
        return self

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data held by the snapshot."""
        return self._store.nbytes if self._store is not None else 0

    @torch.no_grad()
    def restore(self) -> None:
        """Put every saved value back in place. Can be called several times before :meth:`close`."""
        store = self._store
        if store is None:
            raise StateError("this snapshot was closed; take a new one")
        for module in self._fsdp:  # e.g. after an error inside a forward pass
            module.reshard()  # type: ignore[operator]
        state = self._optimizer.state if self._optimizer is not None else None
        for i, p in enumerate(self._params):
            saved = store.get(f"p{i}")
            requires_grad, had_grad = self._param_meta[i]
            _copy_into(p, saved["data"])
            p.requires_grad_(requires_grad)
            if not had_grad:
                p.grad = None
            elif p.grad is not None and _fits(p.grad, saved["grad"], self._layouts[(i, "grad")]):
                _copy_into(p.grad, saved["grad"])
            else:
                p.grad = _rebuild(saved["grad"], self._layouts[(i, "grad")])
            if state is not None:
                self._restore_param_state(state, i, p, saved)
        saved_buffers = store.get("buffers")
        for j, (module, name, buf) in enumerate(self._buffers):
            _copy_into(buf, saved_buffers[str(j)])
            if module._buffers.get(name) is not buf:  # the buffer was replaced by a new tensor
                module._buffers[name] = buf
        for module, training in self._modes:
            module.training = training
        if self._optimizer is not None:
            for group, saved_group in zip(self._optimizer.param_groups, self._groups):
                for k in [k for k in group if k != "params" and k not in saved_group]:
                    del group[k]
                for k, v in saved_group.items():
                    if torch.is_tensor(v) and torch.is_tensor(group.get(k)):
                        group[k].copy_(v)
                    else:
                        group[k] = v.clone() if torch.is_tensor(v) else copy.deepcopy(v)
        if self._scaler is not None and self._scaler_state is not None:
            self._scaler.load_state_dict(copy.deepcopy(self._scaler_state))
        for obj, sd in self._extra.values():
            obj.load_state_dict(copy.deepcopy(sd))
        if self._rng is not None:
            self._rng.restore()
        store.sync()

    def _restore_param_state(self, state: Any, i: int, p: torch.Tensor, saved: dict[str, torch.Tensor]) -> None:
        if i not in self._opt_state_meta:
            state.pop(p, None)  # lazily created during the test (e.g. Adam's first step)
            return
        live = state[p]
        wanted = {k[len("state."):] for k in saved if k.startswith("state.")} | set(self._opt_state_meta[i])
        for k in [k for k in live if k not in wanted]:
            del live[k]
        for k, v in saved.items():
            if not k.startswith("state."):
                continue
            k = k[len("state."):]
            cur = live.get(k)
            if torch.is_tensor(cur) and _fits(cur, v, self._layouts[(i, k)]):
                _copy_into(cur, v)
            else:
                live[k] = _rebuild(v, self._layouts[(i, k)])
        for k, v in self._opt_state_meta[i].items():
            live[k] = copy.deepcopy(v)

    def close(self) -> None:
        """Free the copies (and remove the temp directory). Idempotent."""
        if self._store is not None:
            self._store.close()
            self._store = None
        self._params, self._buffers, self._modes, self._fsdp = [], [], [], []
        self._optimizer = self._scaler = None
        self._extra = {}

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.restore()
        finally:
            self.close()

    def __del__(self) -> None:  # last resort for temp files
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()


"""Exceptions and warnings raised by autolr.

All errors derive from :class:`AutoLRError`, so ``except autolr.AutoLRError`` catches everything the
library raises on purpose::

    AutoLRError
    ├── ConfigurationError (also a ValueError)  bad argument; raised before anything is touched
    ├── DataError          (also a ValueError)  empty loader, a batch or loss of the wrong shape
    ├── StateError         (also a RuntimeError) snapshot/restore or optimizer bookkeeping went wrong
    └── DivergenceError    (also a RuntimeError) training diverged and the guard ran out of retries

Warnings use :class:`AutoLRWarning` (a ``UserWarning``), so they can be filtered as a group::

    import warnings, autolr
    warnings.filterwarnings("ignore", category=autolr.AutoLRWarning)
"""

from __future__ import annotations

__all__ = [
    "AutoLRError",
    "AutoLRWarning",
    "ConfigurationError",
    "DataError",
    "DivergenceError",
    "StateError",
]


class AutoLRError(Exception):
    """Base class of every error autolr raises on purpose."""


class ConfigurationError(AutoLRError, ValueError):
    """An argument has a value autolr cannot use. The message names the argument, the value and the fix."""


class DataError(AutoLRError, ValueError):
    """The data or the loss is unusable (empty loader, loss that is not a scalar, loss without a graph)."""


class StateError(AutoLRError, RuntimeError):
    """Saving or restoring training state failed, or an optimizer is in a state autolr cannot handle."""


class DivergenceError(AutoLRError, RuntimeError):
    """Training kept diverging after the divergence guard used up its retries."""


class AutoLRWarning(UserWarning):
    """A situation that autolr handles but the user should know about."""

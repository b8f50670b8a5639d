"""autolr: learning-rate range test, robust suggestion, exact restore, self-stepping schedules."""

from __future__ import annotations

from .curve import Curve
from .errors import AutoLRError, AutoLRWarning, ConfigurationError, DataError, DivergenceError, StateError
from .range_test import lr_find
from .report import Decision, Reporter
from .result import LRFindResult
from .snapshot import Snapshot
from .suggest import Suggestion
from .tuner import AutoLR

__version__ = "0.1.0"

__all__ = [
    "AutoLR",
    "AutoLRError",
    "AutoLRWarning",
    "ConfigurationError",
    "Curve",
    "DataError",
    "Decision",
    "DivergenceError",
    "LRFindResult",
    "Reporter",
    "Snapshot",
    "StateError",
    "Suggestion",
    "__version__",
    "lr_find",
]

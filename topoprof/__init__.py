"""topoprof: layer-by-layer profiling of PyTorch training.

Importing topoprof has no side effects and does not import torch; the profiler does, when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .run import Run, load

if TYPE_CHECKING:
    from .capture.session import Profiler, profile

__all__ = ["__version__", "profile", "Profiler", "load", "Run"]


def __getattr__(name: str) -> Any:
    # Capture needs torch; analysing a saved run must not.
    if name in ("profile", "Profiler"):
        from .capture import session

        return getattr(session, name)
    raise AttributeError(f"module 'topoprof' has no attribute {name!r}")

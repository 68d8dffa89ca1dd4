"""topoprof: layer-by-layer profiling of PyTorch training.

Importing topoprof has no side effects and does not import torch; the profiler does, when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .run import Run, load

if TYPE_CHECKING:
    from .analysis import Analysis, AnalysisOptions, analyze
    from .analysis.compare import Comparison, compare
    from .capture.session import Profiler, profile
    from .report.html import write_report

__all__ = [
    "__version__", "profile", "Profiler", "load", "Run", "analyze", "Analysis", "AnalysisOptions",
    "compare", "Comparison", "write_report",
]


def __getattr__(name: str) -> Any:
    # Capture needs torch; analysing a saved run must not.
    if name in ("profile", "Profiler"):
        from .capture import session

        return getattr(session, name)
    if name in ("analyze", "Analysis", "AnalysisOptions"):  # loaded on first use: keep import cheap
        from . import analysis

        return getattr(analysis, name)
    if name in ("compare", "Comparison"):
        from .analysis import compare as _compare  # the module; analysis/__init__ does not export it

        return getattr(_compare, name)
    if name == "write_report":
        from .report.html import write_report

        return write_report
    raise AttributeError(f"module 'topoprof' has no attribute {name!r}")

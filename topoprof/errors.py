"""Typed exceptions.

Every error a user can cause (a bad path, a corrupt or foreign file, an unsupported format
version, an empty run, a wrong argument) is a :class:`TopoprofError`. The CLI prints its
message as one line and exits with code 2; anything else is an internal error (exit 1).
"""

from __future__ import annotations

__all__ = [
    "TopoprofError",
    "RunNotFoundError",
    "RunFormatError",
    "TraceFormatError",
    "EmptyRunError",
    "ProfilerUsageError",
    "UnknownTargetError",
    "TopologyFormatError",
    "AnalysisInputError",
]


class TopoprofError(Exception):
    """Base class of the errors a user can cause; the message is one line."""


class RunNotFoundError(TopoprofError, FileNotFoundError):
    """The run directory (or its manifest) does not exist."""


class RunFormatError(TopoprofError, ValueError):
    """A run file is corrupt, truncated, foreign or of an unsupported format version."""


class TraceFormatError(TopoprofError, ValueError):
    """A Kineto trace file is corrupt, truncated or not a trace."""


class EmptyRunError(TopoprofError, ValueError):
    """A run holds no profiled step, so there is nothing to analyse."""


class ProfilerUsageError(TopoprofError, ValueError):
    """The profiler was called with bad arguments or in a bad state."""


class UnknownTargetError(TopoprofError, KeyError):
    """A hardware target name is not in the catalogue."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it one readable line
        return str(self.args[0]) if self.args else ""


class TopologyFormatError(TopoprofError, ValueError):
    """An ``nvidia-smi topo -m`` file could not be parsed."""


class AnalysisInputError(TopoprofError, ValueError):
    """Bad input to the analysis: a GPU set not in the target, an unknown rule id."""

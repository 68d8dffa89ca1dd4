"""Capture: runs inside the training process (hooks, NVTX ranges, timers, graph capture)."""

from .session import Profiler, profile

__all__ = ["Profiler", "profile"]

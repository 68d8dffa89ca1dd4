"""Clocks for the timing hooks.

On CPU a timestamp is ``time.perf_counter_ns()``. On CUDA a timestamp is a CUDA event recorded on
the current stream, so the hooks never synchronise; events are read once at the end of a step
(DESIGN.md section 6). Both clocks turn a step's timestamps into microseconds since the step's
first timestamp in :meth:`Clock.resolve`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

__all__ = ["Clock", "HostClock", "CudaEventClock"]


class Clock:
    """Interface: ``now()`` on the hot path, ``resolve()`` once per step."""

    name = "abstract"
    #: The function the hooks call to take a timestamp (bound once, no attribute lookups).
    now: Callable[[], Any]

    def resolve(self, origin: Any, stamps: Sequence[Any]) -> list[float]:
        """Microseconds from ``origin`` to each of ``stamps`` (which may hold ``None``)."""
        raise NotImplementedError

    def recycle(self) -> None:
        """Called after ``resolve``: the step's timestamps are no longer needed."""


class HostClock(Clock):
    """``time.perf_counter_ns`` in integer nanoseconds: about 50 ns per call."""

    name = "perf_counter_ns"

    def __init__(self) -> None:
        self.now = time.perf_counter_ns

    def resolve(self, origin: int, stamps: Sequence[int | None]) -> list[float]:
        return [(s - origin) / 1000.0 if s is not None else None for s in stamps]  # type: ignore[misc]


class CudaEventClock(Clock):
    """CUDA events recorded on the current stream; resolved after one synchronisation a step.

    Events come from a pool that grows to the number of timestamps of the largest step and is
    reused, so steady-state steps allocate nothing.
    """

    name = "cuda_event"

    def __init__(self, device: Any = None) -> None:
        import torch

        self._torch = torch
        self._device = device
        self._pool: list[Any] = []
        self._used: list[Any] = []
        pool, used = self._pool, self._used
        event_cls = torch.cuda.Event

        def now() -> Any:
            ev = pool.pop() if pool else event_cls(enable_timing=True)
            ev.record()
            used.append(ev)
            return ev

        self.now = now

    def resolve(self, origin: Any, stamps: Sequence[Any]) -> list[float]:
        if self._used:
            self._used[-1].synchronize()
        return [origin.elapsed_time(s) * 1000.0 if s is not None else None for s in stamps]

    def recycle(self) -> None:
        self._pool.extend(self._used)
        self._used.clear()

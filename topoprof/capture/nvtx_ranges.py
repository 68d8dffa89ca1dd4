"""NVTX ranges in domain ``topoprof`` through the ``nvtx`` package.

The ``nvtx`` package works on machines without a GPU or tool: calls are cheap no-ops then
(about 70 ns for a push with pre-built attributes). ``torch.cuda.nvtx`` is not used because it
raises on CPU builds. Attributes (message, colour, payload) are built once per name and reused.

The session closes whatever is still open when a step is abandoned (an exception or
KeyboardInterrupt inside ``forward``), so ranges are always balanced.
"""

from __future__ import annotations

from typing import Any

import nvtx

__all__ = ["DOMAIN", "PHASE_COLORS", "NvtxRanges"]

DOMAIN = "topoprof"

#: ARGB colours by phase, so Nsight Systems shows the step's phases at a glance.
PHASE_COLORS = {
    "step": 0xFF76B900,  # NVIDIA green
    "data": 0xFF9E9E9E,
    "forward": 0xFF1F77B4,
    "backward": 0xFFFF7F0E,
    "optimizer": 0xFF9467BD,
    "other": 0xFFBDBDBD,
}


class NvtxRanges:
    """Push/pop NVTX ranges in one domain with pre-built attributes.

    Steps and module calls are push/pop ranges (they nest on one thread); phases are
    start/end ranges because on CUDA the backward phase begins and ends on autograd's device
    threads, and start/end ranges may cross threads.

    ``push``/``pop`` are the package's own bound methods (no wrapper on the hot path); the
    session knows from its own records which ranges are open and closes them with
    :meth:`pop_n` when a step is abandoned.
    """

    def __init__(self, domain: str = DOMAIN) -> None:
        self._domain = nvtx.get_domain(domain)
        self.push = self._domain.push_range
        self.pop = self._domain.pop_range
        self.start = self._domain.start_range
        self.end = self._domain.end_range
        self._attr_cache: dict[tuple[str, int], Any] = {}

    def attributes(self, message: str, color: int, payload: int | None = None) -> Any:
        """Event attributes for a range (``None`` when no NVTX tool is attached).

        Attributes without a payload are cached: module ranges reuse them every step.
        """
        if payload is not None:
            return self._domain.get_event_attributes(message=message, color=color, payload=payload)
        key = (message, color)
        try:
            return self._attr_cache[key]
        except KeyError:
            attrs = self._attr_cache[key] = self._domain.get_event_attributes(message=message, color=color)
            return attrs

    def pop_n(self, n: int) -> None:
        """Close ``n`` ranges of the calling thread."""
        for _ in range(n):
            self.pop()

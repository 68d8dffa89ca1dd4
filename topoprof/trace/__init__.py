"""Kineto trace reader and attribution of ops and kernels to topoprof's layer ranges.

Pure: numpy and orjson only, no torch. Typical use::

    from topoprof.trace import summarize_trace
    summary = summarize_trace("runs/r/worker0.123.pt.trace.json.gz")
    summary.layers["layer1.0.conv1"].device_fwd_us
    summary.node_attributes()          # device_fwd_us / device_bwd_us / kernels per layer

Modules: :mod:`.reader` (streaming JSON to columns), :mod:`.intervals` (vectorised interval
queries), :mod:`.attribution` (events to layers, phases and steps), :mod:`.summary` (the
dataclasses).
"""

from __future__ import annotations

from .attribution import BWD, FWD, PHASES, Attribution, attribute
from .reader import SparseColumn, TraceEvents, load_trace
from .summary import (
    OTHER_PHASE,
    LayerTraceStats,
    OpStats,
    OpTotals,
    PhaseTraceStats,
    StepTraceStats,
    TraceSummary,
    summarize,
    summarize_trace,
)

__all__ = [
    "BWD",
    "FWD",
    "OTHER_PHASE",
    "PHASES",
    "Attribution",
    "LayerTraceStats",
    "OpStats",
    "OpTotals",
    "PhaseTraceStats",
    "SparseColumn",
    "StepTraceStats",
    "TraceEvents",
    "TraceSummary",
    "attribute",
    "load_trace",
    "summarize",
    "summarize_trace",
]

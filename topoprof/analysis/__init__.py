"""Analysis: pure functions over a loaded run (no torch, no I/O, no printing).

:func:`analyze` (in :mod:`.analyzer`) is the entry point; the modules are usable on their own:
:mod:`.breakdown` (phases, layers), :mod:`.roofline` (per-layer roofline), :mod:`.projection`
(DGX projection), :mod:`.critical_path`, :mod:`.rules` (the rule catalogue), :mod:`.findings`,
:mod:`.options`, :mod:`.device` (inputs of the gpu rules).
"""

from __future__ import annotations

from .analyzer import Analysis, analyze
from .breakdown import LayerStat, PhaseStat, StepBreakdown, layer_stats, step_breakdown, top_layers
from .critical_path import CriticalPath, critical_path
from .device import DeviceActivity, DeviceStep
from .findings import Evidence, Finding, Recommendation, Saving
from .options import AnalysisOptions
from .projection import Projection
from .roofline import LayerRoofline

__all__ = [
    "Analysis",
    "AnalysisOptions",
    "CriticalPath",
    "DeviceActivity",
    "DeviceStep",
    "Evidence",
    "Finding",
    "LayerRoofline",
    "LayerStat",
    "PhaseStat",
    "Projection",
    "Recommendation",
    "Saving",
    "StepBreakdown",
    "analyze",
    "critical_path",
    "layer_stats",
    "step_breakdown",
    "top_layers",
]

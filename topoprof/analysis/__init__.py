"""Analysis: pure functions over a loaded run (no torch, no I/O, no printing)."""

from .breakdown import LayerStat, PhaseStat, StepBreakdown, layer_stats, step_breakdown, top_layers

__all__ = ["LayerStat", "PhaseStat", "StepBreakdown", "layer_stats", "step_breakdown", "top_layers"]

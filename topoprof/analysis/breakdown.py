"""The step breakdown by phase and the layers that take the most time.

Pure functions over one rank's records (:class:`topoprof.run.RankData`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import EmptyRunError
from ..run import PHASES, RankData, median

__all__ = ["PhaseStat", "StepBreakdown", "LayerStat", "step_breakdown", "layer_stats", "top_layers"]


@dataclass(frozen=True)
class PhaseStat:
    """One phase of the step: median time (us) over the profiled steps and share of the step."""

    phase: str
    median_us: float
    min_us: float
    max_us: float
    share: float


@dataclass(frozen=True)
class StepBreakdown:
    """Median step time, its phases and the throughput.

    ``samples_per_s`` is ``None`` when the batch size is unknown.
    """

    steps: int
    step_us: float
    step_min_us: float
    step_max_us: float
    phases: tuple[PhaseStat, ...]
    steps_per_s: float
    samples_per_s: float | None
    forward_passes_per_step: float


@dataclass(frozen=True)
class LayerStat:
    """One module's median times (us), its share of the median step, FLOPs and parameters.

    ``self_us`` is self forward + self backward; ``achieved_flop_per_s`` is the module's forward
    plus backward FLOPs of one step divided by its inclusive forward + backward time (NaN when
    it has no measured time).
    """

    name: str
    kind: str
    leaf: bool
    calls: int
    fwd_us: float
    bwd_us: float
    self_fwd_us: float
    self_bwd_us: float
    self_us: float
    share: float
    flops: int
    params: int
    achieved_flop_per_s: float


def step_breakdown(rank: RankData, batch_size: int | None = None) -> StepBreakdown:
    """Median step time and the median of each phase over the profiled steps.

    Raises:
        EmptyRunError: the rank has no profiled step.
    """
    steps = rank.steps
    if not steps:
        raise EmptyRunError(f"rank {rank.rank} has no profiled step")
    durations = [s.duration_us for s in steps]
    step_us = median(durations)
    phases = []
    for p in PHASES:
        values = [s.phases_us.get(p, 0.0) for s in steps]
        med = median(values)
        phases.append(PhaseStat(p, med, min(values), max(values), med / step_us if step_us > 0 else 0.0))
    steps_per_s = 1e6 / step_us if step_us > 0 else math.inf
    passes = median([s.forward_passes for s in steps])
    samples = steps_per_s * batch_size * max(passes, 1.0) if batch_size else None
    return StepBreakdown(
        steps=len(steps),
        step_us=step_us,
        step_min_us=min(durations),
        step_max_us=max(durations),
        phases=tuple(phases),
        steps_per_s=steps_per_s,
        samples_per_s=samples,
        forward_passes_per_step=passes,
    )


def layer_stats(rank: RankData) -> list[LayerStat]:
    """Every module's :class:`LayerStat`, in the rank's module order."""
    step_us = median([s.duration_us for s in rank.steps]) if rank.steps else math.nan
    passes = max(median([s.forward_passes for s in rank.steps]), 1.0) if rank.steps else 1.0
    out = []
    for m in rank.modules:
        fwd = median(m.fwd_us) if m.fwd_us else 0.0
        bwd = median(m.bwd_us) if m.bwd_us else 0.0
        sf = median(m.self_fwd_us) if m.self_fwd_us else 0.0
        sb = median(m.self_bwd_us) if m.self_bwd_us else 0.0
        flops = (m.flops_fwd + m.flops_bwd) * passes
        total_s = (fwd + bwd) / 1e6
        out.append(
            LayerStat(
                name=m.name,
                kind=m.kind,
                leaf=m.leaf,
                calls=int(round(median(m.calls_per_step))) if m.calls_per_step else 0,
                fwd_us=fwd,
                bwd_us=bwd,
                self_fwd_us=sf,
                self_bwd_us=sb,
                self_us=sf + sb,
                share=(sf + sb) / step_us if step_us and step_us > 0 else 0.0,
                flops=int(flops),
                params=m.params,
                achieved_flop_per_s=flops / total_s if total_s > 0 else math.nan,
            )
        )
    return out


def top_layers(rank: RankData, n: int = 10) -> list[LayerStat]:
    """The ``n`` modules with the largest self time (forward + backward), largest first.

    Self time counts a container's own functional work (a residual add, attention matmuls)
    without its children, so the list never counts the same microsecond twice.
    """
    stats = [s for s in layer_stats(rank) if s.self_us > 0]
    stats.sort(key=lambda s: s.self_us, reverse=True)
    return stats[:n]

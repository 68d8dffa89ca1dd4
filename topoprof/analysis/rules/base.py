"""The rule registry and what every rule reads.

A rule is a small pure function ``(ctx: RuleContext) -> list[Finding]``. The context holds the
run, the target and the options (DESIGN.md section 8's ``(run, target, options)``) plus what
:func:`topoprof.analyze` derives from them once for every rule: the step breakdown, per-layer
stats, costs and roofline, and the projection. Rules never do I/O and never change the context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import networkx as nx

from ...hardware import GPU, System
from ...run import RankData, Run
from ..breakdown import LayerStat, PhaseStat, StepBreakdown
from ..device import DeviceActivity
from ..findings import Finding
from ..options import AnalysisOptions
from ..projection import Projection
from ..roofline import LayerCost, LayerRoofline

__all__ = [
    "percent",
    "WHERE",
    "TENSOR_CORE_MIN_SM",
    "RuleContext",
    "Rule",
    "RuleSpec",
    "REGISTRY",
    "rule",
    "severity_for",
    "has_tensor_cores",
    "phase_stat",
    "OUTSIDE_MODEL",
]

#: Where a rule works: ``cpu`` (from any profile), ``gpu`` (needs device data), ``proj`` (from
#: the projection onto the target). rules.md's ``where`` column.
WHERE: tuple[str, ...] = ("cpu", "gpu", "proj")

TENSOR_CORE_MIN_SM = 70
"""Tensor cores from Volta (sm_70) on (hardware.md §1.1: P100 has none)."""

OUTSIDE_MODEL = "<outside model>"
"""Capture's name for code outside the model's forward (loss, optimizer, logging)."""


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may read (computed once by :func:`topoprof.analyze`).

    Attributes:
        run: the run.
        rank: the rank analysed (the lowest rank present).
        target: the hardware target.
        options: thresholds and model parameters.
        breakdown: the measured step breakdown.
        layers: measured per-layer stats.
        costs: per-layer costs (target-independent).
        roofline: per-layer roofline on the target.
        projection: the step, scaling and memory projection on the target.
        launch_overhead_us: launch cost used.
        batch_size: samples per forward pass, if known.
        topology: a parsed ``nvidia-smi topo -m`` graph, if given.
        device: device facts for the ``gpu`` rules, if given.
    """

    run: Run
    rank: RankData
    target: System
    options: AnalysisOptions
    breakdown: StepBreakdown
    layers: tuple[LayerStat, ...]
    costs: tuple[LayerCost, ...]
    roofline: tuple[LayerRoofline, ...]
    projection: Projection
    launch_overhead_us: float
    batch_size: int | None = None
    topology: nx.Graph | None = field(default=None, compare=False)
    device: DeviceActivity | None = None

    @property
    def gpu(self) -> GPU:
        """The target's GPU."""
        return self.target.gpu

    @property
    def measured_step_us(self) -> float:
        """Median measured step."""
        return self.breakdown.step_us

    @property
    def projected_step_us(self) -> float:
        """Projected one-GPU step on the target."""
        return self.projection.single.step_us


Rule = Callable[[RuleContext], "list[Finding]"]


@dataclass(frozen=True)
class RuleSpec:
    """A registered rule: its stable id, function, where it works and where it comes from."""

    id: str
    func: Rule
    where: tuple[str, ...]
    origin: str


#: Every rule, by id, in rules.md order (filled by the rule modules on import).
REGISTRY: dict[str, RuleSpec] = {}


def rule(rule_id: str, where: tuple[str, ...], origin: str) -> Callable[[Rule], Rule]:
    """Register a rule function under ``rule_id`` (a decorator)."""
    bad = [w for w in where if w not in WHERE]
    if bad:
        raise ValueError(f"{rule_id}: unknown where {bad}")

    def register(func: Rule) -> Rule:
        if rule_id in REGISTRY:
            raise ValueError(f"rule {rule_id!r} registered twice")
        REGISTRY[rule_id] = RuleSpec(rule_id, func, where, origin)
        return func

    return register


def percent(frac: float) -> str:
    """A fraction as a percentage for titles: ``0.456`` -> ``"46 %"``, ``0.003`` -> ``"under 1 %"``."""
    if 0 < frac < 0.005:
        return "under 1 %"
    return f"{frac * 100:.0f} %"


def severity_for(saving_frac: float | None, options: AnalysisOptions, default: str = "low") -> str:
    """``high``/``medium``/``low`` by the saving (the options' cut-offs); ``default`` without
    an estimate."""
    if saving_frac is None:
        return default
    if saving_frac >= options.severity_high_saving_frac:
        return "high"
    if saving_frac >= options.severity_medium_saving_frac:
        return "medium"
    return "low"


def has_tensor_cores(gpu: GPU) -> bool:
    """Whether the GPU has tensor cores (Volta and later)."""
    try:
        sm = int(gpu.compute_capability.split("_")[-1])
    except ValueError:
        return gpu.has_dtype("tf32")
    return sm >= TENSOR_CORE_MIN_SM


def phase_stat(breakdown: StepBreakdown, phase: str) -> PhaseStat:
    """The breakdown's :class:`PhaseStat` of ``phase``."""
    for p in breakdown.phases:
        if p.phase == phase:
            return p
    return PhaseStat(phase, 0.0, 0.0, 0.0, 0.0)

"""``topoprof.analyze``: a run and a hardware target in, an :class:`Analysis` out.

Pure: no I/O beyond loading what it is given a path to, no printing, no torch.

>>> analysis = topoprof.analyze(run, target="dgx-a100")      # doctest: +SKIP
>>> [f.id for f in analysis.findings]                        # doctest: +SKIP
['input-bound', 'fp32-matmul', 'hot-layers']
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import networkx as nx

from ..errors import AnalysisInputError
from ..hardware import SYSTEMS, System, get_target, gpu_nodes, read_topology
from ..run import Run, build_graph, load
from .breakdown import LayerStat, StepBreakdown, layer_stats, step_breakdown
from .critical_path import CriticalPath, critical_path, node_self_us
from .device import DeviceActivity, device_activity_from_rank
from .findings import Finding
from .options import AnalysisOptions
from .projection import Projection, project
from .roofline import LayerRoofline, layer_costs, layer_roofline
from .rules import REGISTRY, RuleContext, rules_without_graph, run_rules

__all__ = ["Analysis", "analyze"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class SystemProjection:
    """The projection of the analysed run onto one DGX system."""

    target: str
    display: str
    gpu: str
    gpus_per_node: int
    interconnect: str
    projection: Projection


@dataclass(frozen=True)
class Analysis:
    """Everything :func:`analyze` computed, as plain data.

    Attributes:
        run_name / run_path: the run.
        rank: the rank analysed (the lowest present); ``ranks`` all ranks of the run.
        target / target_display: the hardware target.
        options: the thresholds and model parameters used.
        batch_size: samples per forward pass (``None`` when unknown).
        breakdown: the measured step by phase.
        layers: measured per-layer stats, in module order.
        roofline: per-layer roofline on the target (layers with work of their own).
        critical_path: the heaviest input-to-output chain of layers by measured self time.
        projection: the step on 1..N GPUs and nodes of the target, by precision, and memory.
        system_projections: the same projection on every DGX system of the catalogue, in
            catalogue order (a bare-GPU target first), for side-by-side tables; the job's GPU
            set (``gpus``) applies to the analysed target only.
        findings: the rules' findings, ranked by estimated saving.
        notes: what could not be analysed and why.
        run: the analysed run (not part of equality or the JSON).
    """

    run_name: str
    run_path: str | None
    rank: int
    ranks: tuple[int, ...]
    target: str
    target_display: str
    options: AnalysisOptions
    batch_size: int | None
    breakdown: StepBreakdown
    layers: tuple[LayerStat, ...]
    roofline: tuple[LayerRoofline, ...]
    critical_path: CriticalPath
    projection: Projection
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()
    system_projections: tuple[SystemProjection, ...] = ()
    run: Run | None = field(default=None, repr=False, compare=False)

    def _repr_html_(self) -> str:
        """The HTML report when a Jupyter notebook shows the analysis (the report's renderer)."""
        from ..report.html import notebook_html

        return notebook_html(self)

    @property
    def target_projection(self) -> SystemProjection:
        """The entry of :attr:`system_projections` for the analysed target."""
        return next(sp for sp in self.system_projections if sp.target == self.target)

    @property
    def finding_ids(self) -> tuple[str, ...]:
        """Ids of the findings, in rank order."""
        return tuple(f.id for f in self.findings)

    def finding(self, rule_id: str) -> Finding | None:
        """The finding of rule ``rule_id``, or None when it did not fire."""
        return next((f for f in self.findings if f.id == rule_id), None)


def _batch_size(run: Run, options: AnalysisOptions) -> int | None:
    if options.batch_size is not None:
        return int(options.batch_size)
    value = run.manifest.tags.get("batch_size")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _topology(topology: nx.Graph | PathLike | None, system: System) -> nx.Graph | None:
    if topology is None or isinstance(topology, nx.Graph):
        return topology
    return read_topology(topology, model=system.link_model)


def _check_gpus(options: AnalysisOptions, system: System, topology: nx.Graph | None) -> None:
    if options.gpus is None:
        return
    available = gpu_nodes(topology) if topology is not None else list(range(system.gpu_count))
    unknown = [g for g in options.gpus if g not in available]
    if unknown or not options.gpus:
        where = "the topology" if topology is not None else system.name
        raise AnalysisInputError(f"GPUs {list(options.gpus)} are not all in {where} (it has GPUs {available})")


def _notes(ctx: RuleContext) -> tuple[str, ...]:
    notes = []
    skipped = rules_without_graph(ctx)
    if skipped:
        notes.append("the run captured no layer graph (capture_graph=False): no FLOPs or shapes, so the "
                     f"projection counts launches and host time only and {', '.join(skipped)} were not checked")
    gpu_only = [r.id for r in REGISTRY.values() if r.where == ("gpu",)]
    if ctx.device is None or not ctx.device.steps:
        notes.append(f"no device data (trace mode on a GPU): {', '.join(gpu_only)} and the GPU forms of "
                     "host-sync, launch-bound and memory-at-limit were not checked")
    else:
        notes.extend(ctx.device.notes)
    if len(ctx.run.ranks) > 1:
        notes.append(f"layers, projection and per-rank rules use rank {ctx.rank.rank}; straggler-rank compares "
                     f"all {len(ctx.run.ranks)} ranks")
    if not any(s.comm_us is not None for s in ctx.rank.steps):
        notes.append("no measured DDP communication in the run: comm-exposed is projected only")
    if ctx.run.missing_ranks:
        notes.append(f"ranks {ctx.run.missing_ranks} of the job wrote no data")
    if ctx.rank.modules and not ctx.costs:
        notes.append("the run has no per-layer FLOPs or op counts (profiled with capture_graph=False?): the "
                     "projection holds the host phases and the optimizer only, and the roofline rules cannot fire")
    if ctx.batch_size is None:
        notes.append("batch size unknown (tag the run with batch_size): no throughput, no batch that fits")
    return tuple(notes)


def analyze(
    run: Run | PathLike,
    target: str | System = "dgx-a100",
    options: AnalysisOptions | None = None,
    topology: nx.Graph | PathLike | None = None,
    *,
    device: DeviceActivity | None = None,
) -> Analysis:
    """Analyse a run for a hardware target: breakdown, layers, roofline, critical path,
    projection and ranked findings.

    Args:
        run: a :class:`~topoprof.run.Run` or the path of a run directory.
        target: a target name from the catalogue (``topoprof targets``) or a
            :class:`~topoprof.hardware.System`.
        options: thresholds and model parameters (:class:`AnalysisOptions`); defaults if None.
        topology: the node's ``nvidia-smi topo -m`` (a parsed graph or a file path): the
            all-reduce then runs over it, and its GPUs are the job's set unless
            ``options.gpus`` names one.
        device: device facts for the ``gpu`` rules (:class:`DeviceActivity`); by default what the
            run holds (trace-mode steps on CUDA, the DDP backend).

    Returns:
        The :class:`Analysis`.

    Raises:
        RunNotFoundError / RunFormatError / EmptyRunError: a bad run path or an empty run.
        UnknownTargetError: an unknown target.
        TopologyFormatError: a topology file that cannot be read.
        AnalysisInputError: a GPU set not in the target or topology, an unknown rule id.
    """
    if not isinstance(run, Run):
        run = load(Path(run))
    options = options or AnalysisOptions()
    unknown = [r for r in (*(options.rules or ()), *options.disabled_rules) if r not in REGISTRY]
    if unknown:
        raise AnalysisInputError(f"unknown rule id(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    system = get_target(target)
    graph = _topology(topology, system)
    _check_gpus(options, system, graph)
    rank = run.rank(min(run.ranks))
    if device is None:
        device = device_activity_from_rank(rank)
    batch = _batch_size(run, options)
    breakdown = step_breakdown(rank, batch)
    layers = tuple(layer_stats(rank))
    costs = layer_costs(rank)
    launch = options.launch_overhead_us if options.launch_overhead_us is not None else system.gpu.launch_overhead_us
    roof = layer_roofline(costs, system.gpu, rank.settings, launch)
    path = critical_path(node_self_us(build_graph(rank)))
    projection = project(rank, system, options, costs, roof, launch, batch_size=batch, topology=graph)
    ctx = RuleContext(run=run, rank=rank, target=system, options=options, breakdown=breakdown, layers=layers,
                      costs=costs, roofline=roof, projection=projection, launch_overhead_us=launch,
                      batch_size=batch, topology=graph, device=device)
    findings = run_rules(ctx)
    systems = []
    names = list(SYSTEMS) if system.name in SYSTEMS else [system.name, *SYSTEMS]
    for name in names:  # catalogue order; a bare-GPU target first
        other = get_target(name)
        if other.name == system.name:
            other_proj = projection
        else:
            other_launch = (options.launch_overhead_us if options.launch_overhead_us is not None
                            else other.gpu.launch_overhead_us)
            other_roof = layer_roofline(costs, other.gpu, rank.settings, other_launch)
            other_proj = project(rank, other, options.with_(gpus=None), costs, other_roof, other_launch,
                                 batch_size=batch)
        systems.append(SystemProjection(other.name, other.display_name, other.gpu.display_name, other.gpu_count,
                                        other.interconnect, other_proj))
    return Analysis(
        run_name=run.manifest.name, run_path=str(run.path) if run.path is not None else None, rank=rank.rank,
        ranks=tuple(run.ranks), target=system.name, target_display=system.display_name, options=options,
        batch_size=batch, breakdown=breakdown, layers=layers, roofline=roof, critical_path=path,
        projection=projection, findings=findings, notes=_notes(ctx), system_projections=tuple(systems), run=run,
    )

"""Projection of a profiled training step onto a DGX target.

The model (DESIGN.md section 8; every figure below carries ``bound`` and ``assumptions``):

* **One GPU.** Forward and backward: the sum of the layers' roofline times
  (:mod:`topoprof.analysis.roofline`) at the precision the run used. Optimizer: its memory
  traffic over the achievable HBM bandwidth plus one launch per kernel
  (:func:`optimizer_projection`). The host phases ``data`` and ``other`` were measured on the
  profiled machine's CPU and are carried over unchanged.
* **N GPUs of one node, data-parallel (DDP).** Each GPU keeps the profiled batch (weak scaling).
  Gradients (``param_bytes``, in the parameters' dtype) are all-reduced in DDP buckets (the first
  ``ddp_first_bucket_bytes``, then ``ddp_bucket_cap_bytes``), filled in reverse parameter
  order; a bucket is ready when the backward pass has produced its last gradient (backward runs
  the layers in reverse, at their projected times) and the buckets all-reduce one after the
  other on their own stream. What runs past the end of the backward pass is exposed: at least
  the last bucket. All-reduce times come from :func:`topoprof.hardware.estimate_allreduce`
  (rings over the NVLink topology, NVLS where the system has it), or from a measured
  ``nvidia-smi topo -m`` graph when one is given.
* **Several nodes.** All GPUs of each node, the all-reduce over the NICs
  (:func:`topoprof.hardware.estimate_allreduce` with ``nodes``).
* **Memory.** Parameters, gradients (same dtype), optimizer state (fp32, by optimizer kind:
  SGD momentum 4 B/param, Adam/AdamW 8 B/param), fp32 master weights for half-precision
  parameters (mixed precision: 16 B/param in all with Adam), and activations (the leaf modules'
  outputs of one forward pass, ``act_bytes``), against the GPU's memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import networkx as nx

from ..hardware import (
    CommEstimate,
    System,
    best_gpu_subset,
    estimate_allreduce,
    gpu_nodes,
    ring_allreduce,
)
from ..run import PHASES, RankData, median
from .options import DEFAULT_DDP_BUCKET_CAP_BYTES, MIB, AnalysisOptions
from .roofline import (
    LayerCost,
    LayerRoofline,
    forward_passes,
    layer_roofline,
    peak_key,
    supported_precisions,
)

__all__ = [
    "HOST_PHASES",
    "OPTIMIZER_STATES_PER_PARAM",
    "OPTIMIZER_OPS_PER_TENSOR",
    "OPTIMIZER_STATE_BYTES",
    "MULTI_TENSOR_MAX_TENSORS_PER_LAUNCH",
    "MULTI_TENSOR_MAX_ELEMENTS_PER_LAUNCH",
    "PhaseProjection",
    "OptimizerProjection",
    "Bucket",
    "StepProjection",
    "PrecisionProjection",
    "MemoryProjection",
    "Projection",
    "gradient_bytes",
    "optimizer_projection",
    "memory_footprint",
    "bucket_cap_bytes",
    "ddp_buckets",
    "allreduce_estimate",
    "step_projection",
    "single_gpu_step",
    "project",
]

#: Phases measured on the profiled machine's CPU and carried over to the target unchanged.
HOST_PHASES: tuple[str, ...] = ("data", "other")

#: fp32 state values kept per parameter, by optimizer class (torch.optim): SGD's momentum
#: buffer (4 B/param; assumed on, the run does not record ``momentum``), Adam's two moments
#: (8 B/param). Unknown optimizers are assumed Adam-like.
OPTIMIZER_STATES_PER_PARAM: Mapping[str, int] = MappingProxyType({
    "SGD": 1, "Adam": 2, "AdamW": 2, "Adamax": 2, "NAdam": 2, "RAdam": 2, "Adadelta": 2, "Rprop": 2,
    "ASGD": 2, "SparseAdam": 2, "Adagrad": 1, "RMSprop": 1, "LBFGS": 2,
})
_DEFAULT_STATES_PER_PARAM = 2
OPTIMIZER_STATE_BYTES = 4
"""Optimizer state is fp32 (4 B per value), also with mixed precision."""
MASTER_WEIGHT_BYTES = 4
"""fp32 master copy per half-precision parameter (mixed precision)."""

#: Elementwise ops per parameter tensor of one update (torch.optim single-tensor code, default
#: arguments: SGD momentum ``buf.mul_().add_()`` + ``param.add_()``; Adam ``lerp_``, ``mul_``,
#: ``addcmul_``, ``sqrt``, ``div``, ``add_``, ``addcdiv_``; AdamW adds the decoupled decay).
OPTIMIZER_OPS_PER_TENSOR: Mapping[str, int] = MappingProxyType({"SGD": 3, "Adam": 7, "AdamW": 8})
_DEFAULT_OPS_PER_TENSOR = 8

MULTI_TENSOR_MAX_TENSORS_PER_LAUNCH = 36
"""Tensors one ``foreach``/fused multi-tensor-apply launch takes at depth 4 (params, grads and
two moments): ``depth_to_max_tensors`` in ATen's ``MultiTensorApply.cuh`` (recalled from the
PyTorch source, not in hardware.md)."""
MULTI_TENSOR_MAX_ELEMENTS_PER_LAUNCH = 320 * 65536
"""Elements per multi-tensor launch: 320 blocks x 65536-element chunks (same source)."""

_PARAM_PASSES_PER_UPDATE = 3  # read the parameter and its gradient, write the parameter
_STATE_PASSES_PER_UPDATE = 2  # read and write each state value
_US_PER_S = 1e6
_FP32_BYTES = 4

_HOST_NOTE = "measured on the profiled machine's CPU, carried over unchanged"


@dataclass(frozen=True)
class PhaseProjection:
    """One phase of the step on one GPU of the target.

    Attributes:
        phase: one of :data:`topoprof.run.PHASES`.
        measured_us: median on the profiled machine.
        projected_us: on the target.
        bound: ``"host"`` (carried over), ``"compute"``, ``"memory"`` or ``"launch"``.
        assumptions: how it was projected.
    """

    phase: str
    measured_us: float
    projected_us: float
    bound: str
    assumptions: tuple[str, ...]


@dataclass(frozen=True)
class OptimizerProjection:
    """The optimizer step on the target.

    Attributes:
        kinds: optimizer classes.
        params / tensors: parameters and parameter tensors updated.
        implementation: ``"fused"``, ``"foreach"`` or ``"for-loop"`` as it would run on the
            target (``foreach=None`` is PyTorch's foreach default on CUDA).
        bytes: memory traffic of one update.
        kernels: launches of one update as implemented.
        time_us: projected, as implemented.
        fused_time_us: projected with ``fused=True``.
        bound: ``"memory"`` or ``"launch"``.
        assumptions: the model, in words.
    """

    kinds: tuple[str, ...]
    params: int
    tensors: int
    implementation: str
    bytes: float
    kernels: float
    time_us: float
    fused_time_us: float
    bound: str
    assumptions: tuple[str, ...]


@dataclass(frozen=True)
class Bucket:
    """One DDP gradient bucket: its bytes and when backward has filled it (us after the start
    of one backward pass)."""

    bytes: float
    ready_us: float


@dataclass(frozen=True)
class StepProjection:
    """The training step on ``gpus`` GPUs x ``nodes`` nodes of the target, data-parallel.

    Attributes:
        label: ``"1 GPU"``, ``"8 GPUs"``, ``"2 nodes x 8 GPUs"``, ``"GPUs 0,5"``.
        gpus: GPUs per node.
        nodes: nodes.
        gpu_set: the GPU indices used in each node.
        step_us: projected step time.
        host_us: the host phases (carried over).
        forward_us / backward_us / optimizer_us: device phases on one GPU.
        allreduce_us: all-reduce time of the step's buckets if run back to back (latency
            included; 0 on one GPU).
        allreduce_bandwidth_us: the bandwidth term alone (``2(n-1)/n · S / busbw`` summed).
        exposed_comm_us: communication not hidden behind backward.
        busbw_bytes_per_s: the all-reduce bus bandwidth used (0 on one GPU).
        comm_bound: what bounds the all-reduce (``"nvlink"``, ``"nvls"``, ``"pcie"``,
            ``"inter-socket"``, ``"network"``, or ``"none"``).
        buckets: DDP buckets per backward pass.
        samples_per_s: throughput of all GPUs (None without a batch size).
        efficiency_frac: one-GPU step over this step (per-GPU throughput kept).
        bound: the largest part of the step: ``"host"``, ``"compute"``, ``"memory"``,
            ``"launch"`` or ``"communication"``.
        assumptions: the model, in words.
    """

    label: str
    gpus: int
    nodes: int
    gpu_set: tuple[int, ...]
    step_us: float
    host_us: float
    forward_us: float
    backward_us: float
    optimizer_us: float
    allreduce_us: float
    allreduce_bandwidth_us: float
    exposed_comm_us: float
    busbw_bytes_per_s: float
    comm_bound: str
    buckets: int
    samples_per_s: float | None
    efficiency_frac: float
    bound: str
    assumptions: tuple[str, ...]

    @property
    def ranks(self) -> int:
        """All GPUs: ``gpus x nodes``."""
        return self.gpus * self.nodes

    @property
    def exposed_comm_frac(self) -> float:
        """Exposed communication over the step."""
        return self.exposed_comm_us / self.step_us if self.step_us > 0 else 0.0


@dataclass(frozen=True)
class PrecisionProjection:
    """The one-GPU step with every FLOP-counted layer at one precision.

    Attributes:
        precision: ``"fp32"``, ``"tf32"``, ``"bf16-fp16"`` or ``"fp8"``.
        peak_key: the catalogue rate used for GEMMs (``"bf16"``; ``"fp16"`` on V100).
        step_us: projected step.
        device_us: forward + backward + optimizer on the GPU.
        bound: largest part of the step.
        assumptions: the model, in words.
    """

    precision: str
    peak_key: str
    step_us: float
    device_us: float
    bound: str
    assumptions: tuple[str, ...]


@dataclass(frozen=True)
class MemoryProjection:
    """Memory of one GPU during training, against the target GPU's capacity.

    Attributes:
        params: parameters.
        params_bytes / grads_bytes / optimizer_bytes / master_weights_bytes /
            activations_bytes: the parts.
        static_bytes: everything but activations.
        peak_bytes: ``static_bytes + activations_bytes``.
        capacity_bytes: the GPU's memory (marketed).
        used_frac: ``peak_bytes / capacity_bytes``.
        bytes_per_param: static bytes per parameter.
        batch_size: the profiled batch size, if known.
        fits_batch_size: the largest batch whose peak stays under ``memory_at_limit_frac`` of
            the capacity (activations scale with the batch), None when unknown.
        bound: the largest part (``"activations"``, ``"optimizer state"``, ``"parameters"``,
            ``"gradients"``, ``"master weights"``).
        assumptions: the model, in words.
    """

    params: int
    params_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    master_weights_bytes: float
    activations_bytes: float
    static_bytes: float
    peak_bytes: float
    capacity_bytes: float
    used_frac: float
    bytes_per_param: float
    batch_size: int | None
    fits_batch_size: int | None
    bound: str
    assumptions: tuple[str, ...]


@dataclass(frozen=True)
class Projection:
    """The run projected onto one target.

    Attributes:
        target / target_display / gpu: the target and its GPU.
        gpus_per_node: the node's GPU count.
        launch_overhead_us: launch cost used.
        phases: the one-GPU step by phase.
        optimizer: the optimizer model.
        single: the one-GPU step.
        scaling: 1, 2, 4, 8 ... GPUs of one node, then 2+ nodes.
        chosen: the job's GPU set (``AnalysisOptions.gpus`` or the topology's GPUs), if given.
        chosen_best: the best-connected set of the same size (for ``nvlink-placement``).
        by_precision: the one-GPU step at each precision the GPU has.
        memory: the memory footprint.
        gradient_bytes: bytes all-reduced per backward pass.
        bucket_list: the DDP buckets of one backward pass.
        backward_passes: backward passes per step (each all-reduces).
        batch_size: samples per forward pass, if known.
        assumptions: model-wide assumptions, in words.
    """

    target: str
    target_display: str
    gpu: str
    gpus_per_node: int
    launch_overhead_us: float
    phases: tuple[PhaseProjection, ...]
    optimizer: OptimizerProjection
    single: StepProjection
    scaling: tuple[StepProjection, ...]
    chosen: StepProjection | None
    chosen_best: StepProjection | None
    by_precision: tuple[PrecisionProjection, ...]
    memory: MemoryProjection
    gradient_bytes: float
    bucket_list: tuple[Bucket, ...]
    backward_passes: float
    batch_size: int | None
    assumptions: tuple[str, ...]

    def at(self, gpus: int, nodes: int = 1) -> StepProjection | None:
        """The scaling entry for ``gpus`` per node on ``nodes`` nodes, or None."""
        for s in self.scaling:
            if s.gpus == gpus and s.nodes == nodes:
                return s
        return None

    @property
    def full_node(self) -> StepProjection:
        """The projection on the most GPUs of one node (all of them, or all of a given topology)."""
        return max((s for s in self.scaling if s.nodes == 1), key=lambda s: s.gpus, default=self.single)


# --- building blocks ---------------------------------------------------------------------------


def _root(rank: RankData) -> Any:
    roots = [m for m in rank.modules if m.parent is None]
    return roots[0] if roots else None


def gradient_bytes(rank: RankData) -> tuple[int, float]:
    """Parameters and their gradient bytes (the parameters' dtype), from the root module."""
    root = _root(rank)
    if root is not None:
        return root.params, float(root.param_bytes)
    leaves = [m for m in rank.modules if m.leaf]
    return sum(m.params for m in leaves), float(sum(m.param_bytes for m in leaves))


def _phase_median(rank: RankData, phase: str) -> float:
    return median([s.phases_us.get(phase, 0.0) for s in rank.steps]) if rank.steps else 0.0


def _implementation(opt: Mapping[str, Any]) -> str:
    if opt.get("fused"):
        return "fused"
    if opt.get("foreach") is False:
        return "for-loop"
    return "foreach"  # foreach=True, or None: PyTorch's default for CUDA tensors


def optimizer_projection(rank: RankData, system: System, launch_overhead_us: float) -> OptimizerProjection:
    """The optimizer step on the target (see the module doc).

    Traffic per parameter: read the parameter and its gradient, write the parameter (3 x its
    dtype size), read and write each fp32 state value (``2 x 4 B x states``). Launches: for-loop,
    ops x tensors; foreach, ops x multi-tensor launches; fused, one op's multi-tensor launches.
    """
    gpu = system.gpu
    bw = gpu.achievable_hbm_bandwidth_bytes_per_s
    params, pbytes = gradient_bytes(rank)
    elem = pbytes / params if params else _FP32_BYTES
    total_bytes = kernels = fused_kernels = 0.0
    n_params = n_tensors = 0
    kinds: list[str] = []
    impls: list[str] = []
    for opt in rank.optimizers:
        kind = str(opt.get("kind", "?"))
        p = int(opt.get("params") or 0)
        t = int(opt.get("param_tensors") or 0)
        states = OPTIMIZER_STATES_PER_PARAM.get(kind, _DEFAULT_STATES_PER_PARAM)
        ops = OPTIMIZER_OPS_PER_TENSOR.get(kind, _DEFAULT_OPS_PER_TENSOR)
        impl = _implementation(opt)
        launches = max(math.ceil(t / MULTI_TENSOR_MAX_TENSORS_PER_LAUNCH),
                       math.ceil(p / MULTI_TENSOR_MAX_ELEMENTS_PER_LAUNCH), 1 if t else 0)
        total_bytes += p * (_PARAM_PASSES_PER_UPDATE * elem + _STATE_PASSES_PER_UPDATE * OPTIMIZER_STATE_BYTES * states)
        kernels += {"fused": launches, "foreach": ops * launches, "for-loop": ops * t}[impl]
        fused_kernels += launches
        n_params += p
        n_tensors += t
        kinds.append(kind)
        impls.append(impl)
    passes = median([s.optimizer_steps for s in rank.steps]) if rank.steps else 1.0
    passes = passes if passes > 0 else (1.0 if rank.optimizers else 0.0)
    mem_us = total_bytes / bw * _US_PER_S * passes
    launch_us = kernels * launch_overhead_us * passes
    fused_us = mem_us + fused_kernels * launch_overhead_us * passes
    notes = [
        "traffic: read parameter and gradient, write parameter, read and write each fp32 state "
        "value; over the achievable HBM bandwidth",
        f"launches: for-loop = ops x tensors, foreach = ops x ceil(tensors / "
        f"{MULTI_TENSOR_MAX_TENSORS_PER_LAUNCH}), fused = ceil(tensors / {MULTI_TENSOR_MAX_TENSORS_PER_LAUNCH})"
        f" multi-tensor launches; {launch_overhead_us:g} us each",
    ]
    if any(o.get("foreach") is None and not o.get("fused") for o in rank.optimizers):
        notes.append("foreach=None runs the foreach implementation on CUDA (PyTorch's default)")
    if not rank.optimizers:
        notes.append("no optimizer was recorded: no optimizer time")
    impl = "fused" if impls and all(i == "fused" for i in impls) else (
        "for-loop" if "for-loop" in impls else ("foreach" if impls else "none"))
    return OptimizerProjection(
        kinds=tuple(kinds), params=n_params, tensors=n_tensors, implementation=impl, bytes=total_bytes,
        kernels=kernels, time_us=mem_us + launch_us, fused_time_us=fused_us,
        bound="launch" if launch_us > mem_us else "memory", assumptions=tuple(notes),
    )


def memory_footprint(
    rank: RankData,
    system: System,
    options: AnalysisOptions,
    batch_size: int | None = None,
    *,
    batch_scale: float = 1.0,
) -> MemoryProjection:
    """Memory of one GPU during training (see the module doc)."""
    gpu = system.gpu
    params, pbytes = gradient_bytes(rank)
    elem = pbytes / params if params else _FP32_BYTES
    notes: list[str] = ["gradients in the parameters' dtype (every parameter assumed trainable)"]
    opt_bytes = 0.0
    for opt in rank.optimizers:
        kind = str(opt.get("kind", "?"))
        states = OPTIMIZER_STATES_PER_PARAM.get(kind, _DEFAULT_STATES_PER_PARAM)
        if kind not in OPTIMIZER_STATES_PER_PARAM:
            notes.append(f"optimizer {kind}: assumed {states} fp32 states per parameter, like Adam")
        opt_bytes += int(opt.get("params") or 0) * states * OPTIMIZER_STATE_BYTES
    if not rank.optimizers:
        notes.append("no optimizer recorded: no optimizer state")
    elif any(o.get("kind") == "SGD" for o in rank.optimizers):
        notes.append("SGD assumed with momentum (4 B/param; the run does not record momentum)")
    master = 0.0
    if elem < _FP32_BYTES and options.master_weights_for_half_params and rank.optimizers:
        master = params * MASTER_WEIGHT_BYTES
        notes.append("half-precision parameters keep fp32 master weights (mixed precision)")
    acts = float(sum(m.act_bytes for m in rank.modules if m.leaf)) * batch_scale
    notes.append("activations: outputs of every leaf module in one forward pass (act_bytes), kept "
                 "for backward; allocator slack, workspaces and the CUDA context not counted")
    static = pbytes + pbytes + opt_bytes + master
    peak = static + acts
    cap = float(gpu.hbm_bytes)
    parts = {"parameters": pbytes, "gradients": pbytes, "optimizer state": opt_bytes,
             "master weights": master, "activations": acts}
    bound = max(parts, key=lambda k: parts[k])
    fits: int | None = None
    batch = int(round(batch_size * batch_scale)) if batch_size else None
    if batch and acts > 0:
        per_sample = acts / batch
        free = cap * options.memory_at_limit_frac - static
        fits = max(int(free // per_sample), 0)
    return MemoryProjection(
        params=params, params_bytes=pbytes, grads_bytes=pbytes, optimizer_bytes=opt_bytes,
        master_weights_bytes=master, activations_bytes=acts, static_bytes=static, peak_bytes=peak,
        capacity_bytes=cap, used_frac=peak / cap if cap else math.inf,
        bytes_per_param=static / params if params else 0.0, batch_size=batch, fits_batch_size=fits,
        bound=bound, assumptions=tuple(notes),
    )


def bucket_cap_bytes(rank: RankData, options: AnalysisOptions) -> int:
    """The DDP bucket cap: the options', else the run's DDP wrapper's, else PyTorch's 25 MiB."""
    if options.ddp_bucket_cap_bytes is not None:
        return int(options.ddp_bucket_cap_bytes)
    recorded = rank.ddp.get("bucket_cap_bytes") if rank.ddp else None
    return int(recorded) if recorded else DEFAULT_DDP_BUCKET_CAP_BYTES


def ddp_buckets(rank: RankData, rooflines: Iterable[LayerRoofline], options: AnalysisOptions) -> tuple[Bucket, ...]:
    """DDP's gradient buckets of one backward pass, in the order they fill (see the module doc).

    Parameters are taken per module (own parameters) in reverse module order, the order DDP
    assigns buckets in; a bucket closes once it reaches its cap (the first one
    ``ddp_first_bucket_bytes``, the others :func:`bucket_cap_bytes`).
    """
    passes = max(median([s.backward_passes for s in rank.steps]) if rank.steps else 1.0, 1.0)
    bwd = {r.name: r.bwd_us / passes for r in rooflines}
    kids: dict[str, tuple[int, int]] = {}
    for m in rank.modules:
        if m.parent is not None:
            n, b = kids.get(m.parent, (0, 0))
            kids[m.parent] = (n + m.params, b + m.param_bytes)
    buckets: list[Bucket] = []
    t = 0.0
    cur = 0.0
    cap = float(options.ddp_first_bucket_bytes)
    later_cap = float(bucket_cap_bytes(rank, options))
    for m in reversed(rank.modules):
        t += bwd.get(m.name, 0.0)
        own = max(m.param_bytes - kids.get(m.name, (0, 0))[1], 0)
        if own <= 0:
            continue
        cur += own
        if cur >= cap:
            buckets.append(Bucket(cur, t))
            cur = 0.0
            cap = later_cap
    if cur > 0:
        buckets.append(Bucket(cur, t))
    return tuple(buckets)


def allreduce_estimate(
    system: System,
    size_bytes: float,
    gpus: int | tuple[int, ...],
    nodes: int = 1,
    topology: nx.Graph | None = None,
) -> CommEstimate:
    """One all-reduce of ``size_bytes``: over ``topology`` (a parsed ``nvidia-smi topo -m``)
    within one node when given, else over the target's catalogue topology."""
    if topology is not None and nodes == 1:
        chosen = best_gpu_subset(topology, gpus) if isinstance(gpus, int) else gpus
        return ring_allreduce(topology, size_bytes, chosen)
    return estimate_allreduce(system, size_bytes, gpus=gpus, nodes=nodes)


def _layer_parts(rooflines: Iterable[LayerRoofline], pick: Callable[[LayerRoofline], Any] | None = None
                 ) -> dict[str, float]:
    parts = {"compute": 0.0, "memory": 0.0, "launch": 0.0}
    for r in rooflines:
        p = pick(r) if pick else r
        body = max(p.compute_us, p.memory_us)
        parts["compute" if p.compute_us >= p.memory_us else "memory"] += body
        parts["launch"] += p.launch_us
    return parts


def _largest(parts: Mapping[str, float]) -> str:
    return max(parts, key=lambda k: parts[k])


def single_gpu_step(
    rank: RankData,
    costs: Iterable[LayerCost],
    system: System,
    options: AnalysisOptions,
    launch_overhead_us: float,
    *,
    batch_scale: float = 1.0,
) -> tuple[float, str]:
    """The one-GPU step at ``batch_scale`` x the profiled batch, and its bound.

    The data phase is assumed to scale with the batch (per-sample loading), ``other`` not; the
    optimizer does not change with the batch.
    """
    rooflines = layer_roofline(costs, system.gpu, rank.settings, launch_overhead_us, batch_scale=batch_scale)
    opt = optimizer_projection(rank, system, launch_overhead_us)
    host = _phase_median(rank, "data") * batch_scale + _phase_median(rank, "other")
    parts = _layer_parts(rooflines)
    parts["memory" if opt.bound == "memory" else "launch"] += opt.time_us
    parts["host"] = host
    return host + sum(r.time_us for r in rooflines) + opt.time_us, _largest(parts)


def step_projection(
    label: str,
    gpus: int | tuple[int, ...],
    nodes: int,
    *,
    system: System,
    host_us: float,
    forward_us: float,
    backward_us: float,
    optimizer_us: float,
    device_parts: Mapping[str, float],
    buckets: tuple[Bucket, ...],
    backward_passes: float,
    samples_per_pass: float | None,
    single_step_us: float | None,
    topology: nx.Graph | None = None,
    allreduce_passes: float | None = None,
) -> StepProjection:
    """The step on ``gpus`` (a count, or a GPU set) x ``nodes``: compute as on one GPU plus the
    exposed part of the bucketed gradient all-reduce (see the module doc)."""
    n_gpus = gpus if isinstance(gpus, int) else len(gpus)
    ranks = n_gpus * nodes
    notes: list[str] = [f"host phases (data, other): {_HOST_NOTE}"]
    gpu_set: tuple[int, ...]
    if isinstance(gpus, tuple):
        gpu_set = gpus
    elif topology is not None and nodes == 1:
        gpu_set = best_gpu_subset(topology, gpus)
    elif n_gpus < system.gpu_count:
        gpu_set = best_gpu_subset(system.interconnect_graph(), n_gpus)
    else:
        gpu_set = tuple(range(system.gpu_count))
    ar_us = ar_bw_us = exposed = busbw = 0.0
    comm_bound = "none"
    if ranks > 1 and buckets:
        cache: dict[float, CommEstimate] = {}
        bwd_pass = backward_us / backward_passes if backward_passes else backward_us
        end = 0.0
        for b in buckets:
            est = cache.get(b.bytes)
            if est is None:
                est = allreduce_estimate(system, b.bytes, gpu_set, nodes, topology)
                cache[b.bytes] = est
            start = max(b.ready_us, end)
            end = start + est.time_us
            ar_us += est.time_us
            ar_bw_us += est.bandwidth_time_us
            busbw, comm_bound = est.busbw_bytes_per_s, est.bound
        # Gradient accumulation under DDP's no_sync() all-reduces only the last micro-batch.
        reducing = backward_passes if allreduce_passes is None else allreduce_passes
        exposed = max(end - bwd_pass, 0.0) * reducing
        ar_us *= reducing
        ar_bw_us *= reducing
        first = next(iter(cache.values()))
        notes.extend(first.assumptions)
        notes.append(f"{len(buckets)} DDP buckets per backward pass, all-reduced in order as backward "
                     f"fills them; the part after backward ends is exposed")
        if topology is not None and nodes == 1:
            notes.append("all-reduce over the given nvidia-smi topology (ring model; NVLS not modelled)")
    step = host_us + forward_us + backward_us + optimizer_us + exposed
    parts = dict(device_parts)
    parts["host"] = host_us
    parts["communication"] = exposed
    throughput = samples_per_pass * ranks * 1e6 / step if samples_per_pass and step > 0 else None
    eff = (single_step_us / step) if single_step_us and step > 0 else 1.0
    return StepProjection(
        label=label, gpus=n_gpus, nodes=nodes, gpu_set=gpu_set, step_us=step, host_us=host_us,
        forward_us=forward_us, backward_us=backward_us, optimizer_us=optimizer_us, allreduce_us=ar_us,
        allreduce_bandwidth_us=ar_bw_us, exposed_comm_us=exposed, busbw_bytes_per_s=busbw,
        comm_bound=comm_bound, buckets=len(buckets) if ranks > 1 else 0, samples_per_s=throughput,
        efficiency_frac=min(eff, 1.0), bound=_largest(parts), assumptions=tuple(notes),
    )


def _gpu_counts(system: System, options: AnalysisOptions, topology: nx.Graph | None) -> list[int]:
    available = len(gpu_nodes(topology)) if topology is not None else system.gpu_count
    counts = sorted({n for n in options.project_gpu_counts if 1 <= n <= available} | {1})
    if available not in counts and available > max(counts):
        counts.append(available)
    return counts


def _set_label(gpus: tuple[int, ...]) -> str:
    return "GPUs " + ",".join(str(g) for g in gpus)


def _gpu_label(gpus: int, nodes: int = 1) -> str:
    per = f"{gpus} GPU" + ("s" if gpus != 1 else "")
    return per if nodes == 1 else f"{nodes} nodes x {per}"


def project(
    rank: RankData,
    system: System,
    options: AnalysisOptions,
    costs: tuple[LayerCost, ...],
    rooflines: tuple[LayerRoofline, ...],
    launch_overhead_us: float,
    *,
    batch_size: int | None = None,
    topology: nx.Graph | None = None,
) -> Projection:
    """Project one rank's step onto ``system`` (see the module doc)."""
    gpu = system.gpu
    opt = optimizer_projection(rank, system, launch_overhead_us)
    fwd = sum(r.fwd_us for r in rooflines)
    bwd = sum(r.bwd_us for r in rooflines)
    host = sum(_phase_median(rank, p) for p in HOST_PHASES)
    fwd_parts = _layer_parts(rooflines, lambda r: _Part(r.fwd_us, r))
    phases = []
    for p in PHASES:
        measured = _phase_median(rank, p)
        if p in HOST_PHASES:
            phases.append(PhaseProjection(p, measured, measured, "host", (_HOST_NOTE,)))
        elif p == "forward":
            phases.append(PhaseProjection(p, measured, fwd, _largest(fwd_parts),
                                          ("sum of the layers' forward roofline times",)))
        elif p == "backward":
            bwd_parts = _layer_parts(rooflines, lambda r: _Part(r.bwd_us, r))
            phases.append(PhaseProjection(p, measured, bwd, _largest(bwd_parts),
                                          ("sum of the layers' backward roofline times",)))
        else:
            phases.append(PhaseProjection(p, measured, opt.time_us, opt.bound if opt.kinds else "memory",
                                          opt.assumptions))
    device_parts = _layer_parts(rooflines)
    device_parts["memory" if opt.bound == "memory" else "launch"] += opt.time_us
    passes = forward_passes(rank)
    bwd_passes = max(median([s.backward_passes for s in rank.steps]) if rank.steps else 1.0, 1.0)
    buckets = ddp_buckets(rank, rooflines, options)
    _, grad = gradient_bytes(rank)
    samples = batch_size * passes if batch_size else None
    # Under DDP the run measured how many gradients were all-reduced per step: with no_sync()
    # accumulation that is fewer passes than backward passes.
    reduce_passes = bwd_passes
    measured = [s.comm_bytes for s in rank.steps if s.comm_us is not None]
    if measured and grad > 0:
        reduce_passes = min(max(round(median(measured) / grad), 1), bwd_passes)
    common: dict[str, Any] = dict(system=system, host_us=host, forward_us=fwd, backward_us=bwd,
                                  optimizer_us=opt.time_us, device_parts=device_parts, buckets=buckets,
                                  backward_passes=bwd_passes, samples_per_pass=samples,
                                  allreduce_passes=reduce_passes)
    single = step_projection("1 GPU", 1, 1, single_step_us=None, **common)
    scaling = [single]
    for n in _gpu_counts(system, options, topology):
        if n > 1:
            scaling.append(step_projection(_gpu_label(n), n, 1, single_step_us=single.step_us,
                                           topology=topology, **common))
    if system.nic_count > 0 and system.gpu_count > 1:
        for k in options.project_nodes:
            if k > 1:
                scaling.append(step_projection(_gpu_label(system.gpu_count, k), system.gpu_count, k,
                                               single_step_us=single.step_us, **common))
    chosen_set: tuple[int, ...] | None = options.gpus
    if chosen_set is None and topology is not None:
        chosen_set = tuple(gpu_nodes(topology))
    chosen = chosen_best = None
    if chosen_set:
        chosen = step_projection(_set_label(chosen_set), chosen_set, 1, single_step_us=single.step_us,
                                 topology=topology, **common)
        graph = topology if topology is not None else system.interconnect_graph()
        best = best_gpu_subset(graph, len(chosen_set))
        chosen_best = step_projection(_set_label(best), best, 1, single_step_us=single.step_us,
                                      topology=topology, **common)
    by_prec = []
    for p in supported_precisions(gpu):
        dev = sum(r.by_precision[p].time_us for r in rooflines) + opt.time_us
        parts = _layer_parts(rooflines, lambda r, p=p: r.by_precision[p])
        parts["memory" if opt.bound == "memory" else "launch"] += opt.time_us
        parts["host"] = host
        key, note = peak_key(gpu, p, "bfloat16")
        notes = ["every FLOP-counted layer at this precision; bytes scaled to its element size",
                 f"host phases: {_HOST_NOTE}"] + ([note] if note else [])
        by_prec.append(PrecisionProjection(p, key, host + dev, dev, _largest(parts), tuple(notes)))
    memory = memory_footprint(rank, system, options, batch_size)
    assumptions = (
        f"layers: roofline max(FLOP / ({gpu.display_name} peak x achievable fraction), bytes / "
        f"(HBM bandwidth x {gpu.achievable_hbm_frac:.2f})) + {launch_overhead_us:g} us per kernel",
        "bytes and kernels per layer are estimated from act_bytes, param_bytes, input shapes and "
        "op counts (topoprof.analysis.roofline)",
        f"host phases (data, other): {_HOST_NOTE}",
        "data-parallel: each GPU keeps the profiled batch; gradients all-reduced in DDP buckets "
        f"({options.ddp_first_bucket_bytes / MIB:g} MiB first, then {bucket_cap_bytes(rank, options) / MIB:g} MiB), "
        "overlapped with backward",
    )
    return Projection(
        target=system.name, target_display=system.display_name, gpu=gpu.name, gpus_per_node=system.gpu_count,
        launch_overhead_us=launch_overhead_us, phases=tuple(phases), optimizer=opt, single=single,
        scaling=tuple(scaling), chosen=chosen, chosen_best=chosen_best, by_precision=tuple(by_prec), memory=memory,
        gradient_bytes=grad, bucket_list=buckets, backward_passes=bwd_passes, batch_size=batch_size,
        assumptions=assumptions,
    )


@dataclass(frozen=True)
class _Part:
    """A layer's forward or backward share of its roofline terms (split in proportion)."""

    time: float
    layer: LayerRoofline

    @property
    def _scale(self) -> float:
        return self.time / self.layer.time_us if self.layer.time_us > 0 else 0.0

    @property
    def compute_us(self) -> float:
        return self.layer.compute_us * self._scale

    @property
    def memory_us(self) -> float:
        return self.layer.memory_us * self._scale

    @property
    def launch_us(self) -> float:
        return self.layer.launch_us * self._scale

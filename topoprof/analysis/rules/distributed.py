"""Distributed and DGX rules: ``dataparallel``, ``ddp-backend``, ``comm-exposed``,
``straggler-rank``, ``nvlink-placement``, ``scaling`` (reference/rules.md)."""

from __future__ import annotations

from ...hardware import missing_nvlinks, ring_plan
from ...run import PHASES, RankData, median
from ..findings import Evidence, Finding, Recommendation, Saving
from ..projection import StepProjection
from .base import RuleContext, percent, rule, severity_for

__all__ = [
    "DATAPARALLEL_KINDS",
    "DDP_KINDS",
    "BACKEND_TAGS",
    "LOCAL_PHASES",
    "dataparallel",
    "ddp_backend",
    "comm_exposed",
    "straggler_rank",
    "nvlink_placement",
    "scaling",
]

#: Module classes of ``torch.nn.DataParallel``.
DATAPARALLEL_KINDS: frozenset[str] = frozenset({"DataParallel"})
#: Module classes of ``torch.nn.parallel.DistributedDataParallel``.
DDP_KINDS: frozenset[str] = frozenset({"DistributedDataParallel"})
#: Run tags that may name the process-group backend.
BACKEND_TAGS: tuple[str, ...] = ("backend", "distributed_backend", "dist_backend")
_NCCL = "nccl"
_GB = 1e9
_MS = 1e3



@rule("dataparallel", ("cpu",), "TB")
def dataparallel(ctx: RuleContext) -> list[Finding]:
    """The model is wrapped in ``torch.nn.DataParallel``."""
    wrappers = [m for m in ctx.rank.modules if m.kind in DATAPARALLEL_KINDS]
    if not wrappers:
        return []
    return [Finding(
        id="dataparallel",
        severity="medium",
        title="The model uses torch.nn.DataParallel (single process, one thread per GPU)",
        evidence=tuple(Evidence("DataParallel module", m.name or "(root)", "") for m in wrappers),
        recommendation=Recommendation(
            "Use DistributedDataParallel with one process per GPU, launched by torchrun: no GIL contention, "
            "no per-step model replication, gradients all-reduced while backward runs.",
            "# torchrun --nproc_per_node=8 train.py\n"
            "torch.distributed.init_process_group(\"nccl\")\n"
            "model = torch.nn.parallel.DistributedDataParallel(model.cuda(local_rank), device_ids=[local_rank])",
        ),
        saving=Saving(None, "not estimated (rules.md gives none; PyTorch documents DDP as significantly faster)"),
        layers=tuple(m.name for m in wrappers),
    )]


def _backend(ctx: RuleContext) -> str | None:
    if ctx.device is not None and ctx.device.distributed_backend:
        return ctx.device.distributed_backend
    if ctx.rank.ddp.get("backend"):
        return str(ctx.rank.ddp["backend"])
    for tag in BACKEND_TAGS:
        value = ctx.run.manifest.tags.get(tag)
        if isinstance(value, str):
            return value
    return None


@rule("ddp-backend", ("gpu",), "TB")
def ddp_backend(ctx: RuleContext) -> list[Finding]:
    """DistributedDataParallel on CUDA with a backend other than NCCL (the run's DDP facts, or
    device data)."""
    ddp = [m for m in ctx.rank.modules if m.kind in DDP_KINDS]
    on_cuda = ctx.rank.device == "cuda" or (ctx.device is not None and ctx.device.device == "cuda")
    backend = _backend(ctx)
    if not (ddp or ctx.rank.ddp) or not on_cuda or backend is None or backend.lower() == _NCCL:
        return []
    return [Finding(
        id="ddp-backend",
        severity="high",
        title=f"DistributedDataParallel on CUDA uses the {backend} backend, not NCCL",
        evidence=(Evidence("backend", backend, ""), Evidence("device", "cuda", "")),
        recommendation=Recommendation("Use NCCL for GPU collectives (NVLink, NVSwitch and InfiniBand aware).",
                                      "torch.distributed.init_process_group(backend=\"nccl\")"),
        saving=Saving(None, "not estimated (rules.md gives none)"),
        layers=tuple(m.name for m in ddp),
    )]


def _dp_target(ctx: RuleContext) -> StepProjection | None:
    if ctx.projection.chosen is not None and ctx.projection.chosen.gpus > 1:
        return ctx.projection.chosen
    full = ctx.projection.full_node
    return full if full.ranks > 1 else None


def _measured_comm(ctx: RuleContext) -> list[Finding]:
    steps = [s for s in ctx.rank.steps if s.comm_us is not None]
    if not steps:
        return []
    step = median([s.duration_us for s in steps])
    exposed = median([s.comm_exposed_us or 0.0 for s in steps])
    comm = median([s.comm_us or 0.0 for s in steps])
    share = exposed / step if step > 0 else 0.0
    if share <= ctx.options.comm_exposed_min_frac:
        return []
    overlap = 1.0 - exposed / comm if comm > 0 else 0.0
    backend = _backend(ctx) or "?"
    evidence = [Evidence("gradient bytes per step", median([float(s.comm_bytes) for s in steps]), "bytes"),
                Evidence("DDP buckets per step", median([float(s.comm_buckets) for s in steps]), "count"),
                Evidence("all-reduce in flight per step", comm, "us"),
                Evidence("exposed all-reduce per step", exposed, "us"),
                Evidence("overlap with backward", overlap, "frac"),
                Evidence("measured step", step, "us"),
                Evidence("backend", backend, "")]
    cap = ctx.rank.ddp.get("bucket_cap_bytes")
    if cap:
        evidence.append(Evidence("bucket cap", cap, "bytes"))
    return [Finding(
        id="comm-exposed",
        severity=severity_for(share, ctx.options),
        title=f"Measured gradient all-reduce leaves {percent(share)} of the step exposed (DDP, {backend})",
        evidence=tuple(evidence),
        recommendation=_COMM_RECOMMENDATION,
        saving=Saving(share, "the measured all-reduce time not overlapped by backward (DDP comm hook timing), over "
                             "the measured step"),
    )]


_COMM_RECOMMENDATION = Recommendation(
    "Hide or shrink the all-reduce: compress gradients to bf16/fp16 with a DDP comm hook, tune "
    "bucket_cap_mb, accumulate gradients over micro-batches under no_sync(), or raise the batch size "
    "so backward is long enough to cover it.",
    "from torch.distributed.algorithms.ddp_comm_hooks import default_hooks\n"
    "ddp_model.register_comm_hook(None, default_hooks.bf16_compress_hook)",
)


@rule("comm-exposed", ("cpu", "proj", "gpu"), "TB (10 %), HTA overlap")
def comm_exposed(ctx: RuleContext) -> list[Finding]:
    """Gradient all-reduce not hidden behind backward above ``comm_exposed_min_frac`` of the
    step: measured under DDP (the run's per-step communication timing) when the run has it,
    else projected for data-parallel training on the target's GPUs."""
    measured = _measured_comm(ctx)
    if measured:
        return measured
    sp = _dp_target(ctx)
    if sp is None or sp.exposed_comm_frac <= ctx.options.comm_exposed_min_frac:
        return []
    overlap = 1.0 - sp.exposed_comm_us / sp.allreduce_us if sp.allreduce_us > 0 else 0.0
    proj = ctx.projection
    return [Finding(
        id="comm-exposed",
        severity=severity_for(sp.exposed_comm_frac, ctx.options),
        title=(f"Gradient all-reduce on {sp.label} of {ctx.target.name} leaves {percent(sp.exposed_comm_frac)} of the "
               f"step exposed ({sp.comm_bound}-bound)"),
        evidence=(Evidence("gradient bytes", proj.gradient_bytes, "bytes"),
                  Evidence("DDP buckets per backward", sp.buckets, "count"),
                  Evidence("all-reduce per step", sp.allreduce_us, "us"),
                  Evidence("exposed all-reduce per step", sp.exposed_comm_us, "us"),
                  Evidence("overlap with backward", overlap, "frac"),
                  Evidence("bus bandwidth", sp.busbw_bytes_per_s, "bytes/s"),
                  Evidence("projected step", sp.step_us, "us"),
                  Evidence("GPUs", ",".join(str(g) for g in sp.gpu_set), "")),
        recommendation=_COMM_RECOMMENDATION,
        saving=Saving(sp.exposed_comm_frac,
                      f"the projected exposed all-reduce on {sp.label} over the projected step (DDP buckets overlapped "
                      "with the projected backward; all-reduce from the topology model)"),
    )]


def _phase_median(rank: RankData, phase: str) -> float:
    return median([s.phases_us.get(phase, 0.0) for s in rank.steps]) if rank.steps else 0.0


#: Phases with no collective under DDP: a rank's excess there is its own. Forward (DDP's buffer
#: broadcast), backward (gradient all-reduce) and other hold the waits for the slowest rank, so in
#: a synchronous job every rank's step comes out the same length.
LOCAL_PHASES: tuple[str, ...] = ("data", "optimizer")


@rule("straggler-rank", ("cpu",), "HTA straggler, SMD LoadBalancing")
def straggler_rank(ctx: RuleContext) -> list[Finding]:
    """A rank's median step exceeds the median over ranks by ``straggler_min_excess_frac``; or,
    where synchronisation evens the steps out, a rank's local phase (:data:`LOCAL_PHASES`) exceeds
    that phase's median over ranks by that fraction of the step."""
    ranks = {r: d for r, d in ctx.run.ranks.items() if d.steps}
    if len(ranks) < 2:
        return []
    medians = {r: median([s.duration_us for s in d.steps]) for r, d in ranks.items()}
    overall = median(list(medians.values()))
    frac = ctx.options.straggler_min_excess_frac
    phase = {p: {r: _phase_median(d, p) for r, d in ranks.items()} for p in PHASES}

    def others(values: dict[int, float], r: int) -> float:
        """The median over the other ranks (with two ranks: the other one)."""
        return median([v for q, v in values.items() if q != r])

    # Unsynchronised form: whole steps. Synchronised form: local phases.
    excess = {r: medians[r] - others(medians, r) for r in ranks}
    slow = [r for r in ranks if medians[r] > others(medians, r) * (1.0 + frac)]
    form = "step"
    if not slow:
        excess = {r: max(phase[p][r] - others(phase[p], r) for p in LOCAL_PHASES) for r in ranks}
        slow = [r for r in ranks if excess[r] > frac * overall]
        form = "local phase"
    if not slow:
        return []
    worst = max(slow, key=lambda r: excess[r])
    candidates = LOCAL_PHASES if form == "local phase" else PHASES
    slow_phase = max(candidates, key=lambda p: phase[p][worst] - others(phase[p], worst))
    evidence = [Evidence(f"rank {r} median step", m, "us") for r, m in sorted(medians.items())]
    evidence.append(Evidence("median over ranks", overall, "us"))
    evidence += [Evidence(f"rank {r} {slow_phase}", phase[slow_phase][r], "us") for r in sorted(ranks)]
    slow_excess = phase[slow_phase][worst] - others(phase[slow_phase], worst)
    evidence += [Evidence(f"rank {worst} slow phase", slow_phase, ""),
                 Evidence(f"rank {worst} {slow_phase} excess", slow_excess, "us"),
                 Evidence("slow ranks", ",".join(str(r) for r in sorted(slow)), "")]
    gap = excess[worst] / medians[worst] if medians[worst] > 0 else 0.0
    if form == "step":
        what = (f"median step {excess[worst] / others(medians, worst) * 100:.0f} % above the other ranks', "
                f"mostly in {slow_phase}")
        how = ("the gap between the slowest rank's median step and the other ranks' median, over the slowest "
               "rank's step (measured): the others wait that long")
    else:
        what = (f"its {slow_phase} phase takes {excess[worst] / overall * 100:.0f} % of the step more than on the "
                "other ranks (they wait for it at the collectives)")
        how = (f"the rank's excess {slow_phase} time over the other ranks' median, over its median step (measured): "
               "the time every other rank waits for it")
    return [Finding(
        id="straggler-rank",
        severity=severity_for(gap, ctx.options),
        title=f"Rank {worst} is a straggler: {what}",
        evidence=tuple(evidence),
        recommendation=Recommendation(
            f"Inspect rank {worst}: its data shard (sizes, sequence lengths), its data loader and host (CPU load, "
            "NUMA), thermal throttling of its GPU. Every rank waits for it at the gradient all-reduce.",
            "",
        ),
        saving=Saving(gap, how),
    )]


def _set_text(gpus: tuple[int, ...]) -> str:
    return ",".join(str(g) for g in gpus)


@rule("nvlink-placement", ("proj",), "topoprof (topology graph)")
def nvlink_placement(ctx: RuleContext) -> list[Finding]:
    """The job's GPU set, smaller than a node without NVSwitch, lacks NVLinks a better set has."""
    proj = ctx.projection
    chosen, best = proj.chosen, proj.chosen_best
    if chosen is None or best is None or chosen.gpus < 2:
        return []
    graph = ctx.topology if ctx.topology is not None else ctx.target.interconnect_graph()
    node_gpus = sum(1 for _, d in graph.nodes(data=True) if d.get("kind") == "gpu")
    if graph.graph.get("nvswitch") or chosen.gpus >= node_gpus:
        return []
    missing = missing_nvlinks(graph, chosen.gpu_set)
    chosen_plan = ring_plan(graph, chosen.gpu_set)
    best_plan = ring_plan(graph, best.gpu_set)
    chosen_bw = chosen_plan.effective_busbw_bytes_per_s
    best_bw = best_plan.effective_busbw_bytes_per_s
    if not missing or best_bw <= chosen_bw * (1.0 + ctx.options.nvlink_placement_min_gain_frac):
        return []
    frac = (chosen.step_us - best.step_us) / chosen.step_us if chosen.step_us > 0 else 0.0
    return [Finding(
        id="nvlink-placement",
        severity=severity_for(frac, ctx.options, "medium"),
        title=(f"GPUs {_set_text(chosen.gpu_set)} are not all NVLink-connected: their ring runs over "
               f"{chosen_plan.bound} at {chosen_bw / _GB:.0f} GB/s; GPUs {_set_text(best.gpu_set)} give "
               f"{best_bw / _GB:.0f} GB/s"),
        evidence=(Evidence("GPU set", _set_text(chosen.gpu_set), ""),
                  Evidence("pairs without NVLink", "; ".join(f"{a}-{b}" for a, b in missing), ""),
                  Evidence("ring bus bandwidth", chosen_bw, "bytes/s"),
                  Evidence("best set", _set_text(best.gpu_set), ""),
                  Evidence("best set ring bus bandwidth", best_bw, "bytes/s"),
                  Evidence("projected all-reduce per step", chosen.allreduce_us, "us"),
                  Evidence("projected all-reduce per step, best set", best.allreduce_us, "us"),
                  Evidence("projected step", chosen.step_us, "us"),
                  Evidence("projected step, best set", best.step_us, "us")),
        recommendation=Recommendation(
            f"Run on an NVLink-connected set, e.g. GPUs {_set_text(best.gpu_set)} (on a DGX-1 a fully connected "
            "quad 0-3 or 4-7, or a pair joined by 2 NVLinks).",
            f"CUDA_VISIBLE_DEVICES={_set_text(best.gpu_set)} torchrun --nproc_per_node={chosen.gpus} train.py",
        ),
        saving=Saving(frac, "projected step on the chosen GPUs minus the projected step on the best set of the same "
                            "size (same compute, all-reduce over each set's rings), over the chosen set's step"),
    )]


@rule("scaling", ("proj",), "topoprof")
def scaling(ctx: RuleContext) -> list[Finding]:
    """Projected data-parallel efficiency on the target's GPUs below ``scaling_min_efficiency_frac``."""
    full = ctx.projection.full_node
    if full.ranks < 2 or full.efficiency_frac >= ctx.options.scaling_min_efficiency_frac:
        return []
    evidence = []
    for sp in ctx.projection.scaling:
        evidence += [Evidence(f"{sp.label} step", sp.step_us, "us"),
                     Evidence(f"{sp.label} efficiency", sp.efficiency_frac, "frac"),
                     Evidence(f"{sp.label} bound", sp.bound, "")]
        if sp.samples_per_s is not None:
            evidence.append(Evidence(f"{sp.label} throughput", sp.samples_per_s, "samples/s"))
    fixes = {
        "communication": "the gradient all-reduce: compress gradients (bf16 hook), tune buckets, accumulate "
                         "under no_sync(), or a larger batch per GPU",
        "host": "the host phases: more data-loader workers per GPU, less Python work per step",
    }
    fix = fixes.get(full.bound, f"the {full.bound}-bound layers (see the other findings)")
    return [Finding(
        id="scaling",
        severity="medium",
        title=(f"Projected data-parallel efficiency on {full.label} of {ctx.target.name} is "
               f"{percent(full.efficiency_frac)} ({full.bound}-bound)"),
        evidence=tuple(evidence),
        recommendation=Recommendation(f"Fix what bounds the multi-GPU step: {fix}.", ""),
        saving=Saving(None, "not a saving of the one-GPU step (rules.md gives none): see the efficiency"),
    )]

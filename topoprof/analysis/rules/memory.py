"""Memory rules: ``memory-at-limit``, ``model-exceeds-gpu``, ``memory-underused``
(reference/rules.md). They read :attr:`Projection.memory` (and a measured peak from device data
when there is one)."""

from __future__ import annotations

import math

from ..findings import Evidence, Finding, Recommendation, Saving
from ..projection import MemoryProjection, single_gpu_step
from .base import RuleContext, percent, rule, severity_for

__all__ = ["memory_at_limit", "model_exceeds_gpu", "memory_underused", "memory_evidence"]

_GB = 1e9


def memory_evidence(mem: MemoryProjection) -> list[Evidence]:
    """The footprint by kind, as evidence."""
    ev = [Evidence("parameters", mem.params_bytes, "bytes"),
          Evidence("gradients", mem.grads_bytes, "bytes"),
          Evidence("optimizer state", mem.optimizer_bytes, "bytes")]
    if mem.master_weights_bytes:
        ev.append(Evidence("master weights", mem.master_weights_bytes, "bytes"))
    ev += [Evidence("activations", mem.activations_bytes, "bytes"),
           Evidence("projected peak", mem.peak_bytes, "bytes"),
           Evidence("GPU memory", mem.capacity_bytes, "bytes"),
           Evidence("projected peak share of GPU memory", mem.used_frac, "frac")]
    return ev


def _measured_peak(ctx: RuleContext) -> float | None:
    if ctx.device is None:
        return None
    peaks = [s.peak_memory_bytes for s in ctx.device.steps if s.peak_memory_bytes is not None]
    return float(max(peaks)) if peaks else None


@rule("memory-at-limit", ("cpu", "proj", "gpu"), "TB (90 %)")
def memory_at_limit(ctx: RuleContext) -> list[Finding]:
    """Projected (or measured) peak memory above ``memory_at_limit_frac`` of the GPU's."""
    mem = ctx.projection.memory
    if mem.static_bytes > mem.capacity_bytes:
        return []  # model-exceeds-gpu says it: the model alone does not fit
    measured = _measured_peak(ctx)
    used = max(mem.used_frac, (measured / mem.capacity_bytes) if measured and mem.capacity_bytes else 0.0)
    if used <= ctx.options.memory_at_limit_frac:
        return []
    evidence = memory_evidence(mem)
    if measured is not None:
        evidence.append(Evidence("measured peak", measured, "bytes"))
    over = used > 1.0
    return [Finding(
        id="memory-at-limit",
        severity="high" if over else "medium",
        title=(f"Training needs {used * 100:.0f} % of the {ctx.gpu.display_name}'s memory"
               + (": it does not fit" if over else "")),
        evidence=tuple(evidence),
        recommendation=Recommendation(
            "Cut activation memory: activation checkpointing, mixed precision (half-size activations), a "
            "smaller micro-batch with gradient accumulation; shard parameters and optimizer state with FSDP.",
            "from torch.utils.checkpoint import checkpoint\n"
            "x = checkpoint(block, x, use_reentrant=False)   # recompute in backward",
        ),
        saving=Saving(None, "not a speed-up: memory headroom (rules.md gives no saving)"),
    )]


@rule("model-exceeds-gpu", ("cpu", "proj"), "topoprof")
def model_exceeds_gpu(ctx: RuleContext) -> list[Finding]:
    """Parameters + gradients + optimizer state (+ master weights) exceed the GPU's memory."""
    mem = ctx.projection.memory
    if mem.static_bytes <= mem.capacity_bytes:
        return []
    evidence = memory_evidence(mem)
    evidence.insert(0, Evidence("static (params + grads + optimizer)", mem.static_bytes, "bytes"))
    evidence.insert(1, Evidence("static bytes per parameter", mem.bytes_per_param, "bytes"))
    room = mem.capacity_bytes * ctx.options.memory_at_limit_frac - mem.activations_bytes
    if room > 0:
        n = max(math.ceil(mem.static_bytes / room), 2)
        nodes = math.ceil(n / ctx.target.gpu_count) if ctx.target.gpu_count else n
        evidence.append(Evidence("fewest GPUs with full sharding (FSDP / ZeRO-3)", n, "count"))
        evidence.append(Evidence(f"{ctx.target.name} nodes needed", nodes, "count"))
        fix = f"shard across at least {n} GPUs"
    else:
        fix = "activations alone exceed the GPU: checkpoint activations first, then shard"
    return [Finding(
        id="model-exceeds-gpu",
        severity="high",
        title=(f"The model's parameters, gradients and optimizer state ({mem.static_bytes / _GB:.1f} GB) exceed "
               f"one {ctx.gpu.display_name} ({mem.capacity_bytes / _GB:.0f} GB)"),
        evidence=tuple(evidence),
        recommendation=Recommendation(
            f"Shard parameters, gradients and optimizer state across the node's GPUs with FSDP (ZeRO-3): {fix}.",
            "from torch.distributed.fsdp import fully_shard\n"
            "for block in model.blocks:\n    fully_shard(block)\nfully_shard(model)",
        ),
        saving=Saving(None, "not a speed-up: without sharding the job does not fit on the target"),
    )]


@rule("memory-underused", ("cpu", "proj"), "DLP GPU memory underutilised, SMD BatchSize")
def memory_underused(ctx: RuleContext) -> list[Finding]:
    """Projected peak below ``memory_underused_frac`` of the GPU's memory."""
    mem = ctx.projection.memory
    if mem.capacity_bytes <= 0 or mem.used_frac >= ctx.options.memory_underused_frac:
        return []
    evidence = memory_evidence(mem)
    batch, fits = mem.batch_size, mem.fits_batch_size
    saving = Saving(None, "not estimated: the batch size is unknown (tag the run with batch_size)")
    if batch:
        evidence.append(Evidence("batch size", batch, "samples"))
    if batch and fits:
        evidence.append(Evidence("batch size that fits", fits, "samples"))
    multiple = min(fits // batch, ctx.options.memory_underused_max_batch_multiple) if batch and fits else 0
    if multiple >= 2 and batch:
        now, _ = single_gpu_step(ctx.rank, ctx.costs, ctx.target, ctx.options, ctx.launch_overhead_us)
        big, _ = single_gpu_step(ctx.rank, ctx.costs, ctx.target, ctx.options, ctx.launch_overhead_us,
                                 batch_scale=float(multiple))
        per_sample_gain = 1.0 - (big / multiple) / now if now > 0 else 0.0
        evidence.append(Evidence(f"projected step at batch {batch * multiple}", big, "us"))
        saving = Saving(max(per_sample_gain, 0.0),
                        f"projected time per sample at batch {batch * multiple} ({multiple}x; the estimate stops at "
                        f"{ctx.options.memory_underused_max_batch_multiple}x) vs {batch} on one {ctx.gpu.display_name} "
                        "(FLOPs and activation bytes scale with the batch, launches and parameter traffic do "
                        "not; the data phase scales, 'other' does not)")
    target_batch = f" (up to about {fits} fits)" if batch and fits and fits > batch else ""
    new_batch = str(batch * multiple) if multiple >= 2 and batch else "batch_size * 2"
    return [Finding(
        id="memory-underused",
        severity=severity_for(saving.frac, ctx.options, "low"),
        title=f"Training would use {percent(mem.used_frac)} of the {ctx.gpu.display_name}'s memory",
        evidence=tuple(evidence),
        recommendation=Recommendation(
            f"Raise the batch size{target_batch} to amortise launches and parameter traffic; scale the learning "
            "rate with it (linear scaling or warm-up).",
            f"loader = DataLoader(dataset, batch_size={new_batch}, ...)\n"
            f"lr = base_lr * {max(multiple, 2)}   # linear scaling; warm up",
        ),
        saving=saving,
    )]

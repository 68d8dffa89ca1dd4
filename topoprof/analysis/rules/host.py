"""Input pipeline and host rules: ``input-bound``, ``host-sync``, ``step-variance``,
``launch-bound``, ``gpu-idle``, ``pageable-memcpy`` (reference/rules.md)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

from ...run import median
from ..findings import Evidence, Finding, Recommendation, Saving
from .base import OUTSIDE_MODEL, RuleContext, percent, phase_stat, rule, severity_for

__all__ = [
    "LOADER_TAGS",
    "ROBUST_SIGMA_PER_MAD",
    "OPTIMIZER_STEP_ITEMS_PER_TENSOR",
    "input_bound",
    "host_sync",
    "step_variance",
    "launch_bound",
    "gpu_idle",
    "pageable_memcpy",
    "effective_host_syncs",
]

#: Run tags that describe the data loader, reported when present.
LOADER_TAGS: tuple[str, ...] = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")

ROBUST_SIGMA_PER_MAD = 1.4826
"""Median absolute deviation -> standard deviation of a normal distribution (consistency
constant); the robust sigma keeps one slow step from hiding itself by inflating the sigma."""

#: ``.item()`` calls that Adam and AdamW make per parameter tensor to read their step counter,
#: by implementation (torch.optim: single-tensor ``_get_value(step_t)`` once, foreach twice for
#: the two bias corrections, fused none). The counter is a CPU tensor, so these are not device
#: syncs, but capture counts every ``item``; :func:`effective_host_syncs` discounts them.
OPTIMIZER_STEP_ITEMS_PER_TENSOR: Mapping[str, int] = {"for-loop": 1, "foreach": 2, "fused": 0}
_STEP_COUNTER_OPTIMIZERS = frozenset({"Adam", "AdamW"})
_ITEM_OP = "item"



# --- input-bound ---------------------------------------------------------------------------------


@rule("input-bound", ("cpu",), "TB (5 %), DLP, SMD")
def input_bound(ctx: RuleContext) -> list[Finding]:
    """The loop waits for data longer than ``input_bound_min_frac`` of the step."""
    data = phase_stat(ctx.breakdown, "data")
    share = data.share
    if share <= ctx.options.input_bound_min_frac:
        return []
    evidence = [
        Evidence("data phase", data.median_us, "us"),
        Evidence("data share of step", share, "frac"),
        Evidence("measured step", ctx.measured_step_us, "us"),
        Evidence("data share of projected step", data.median_us / ctx.projected_step_us
                 if ctx.projected_step_us > 0 else math.nan, "frac"),
    ]
    for tag in LOADER_TAGS:
        if tag in ctx.run.manifest.tags:
            evidence.append(Evidence(f"loader {tag}", ctx.run.manifest.tags[tag], ""))
    return [Finding(
        id="input-bound",
        severity=severity_for(share, ctx.options),
        title=f"The training loop waits for data {percent(share)} of the step",
        evidence=tuple(evidence),
        recommendation=Recommendation(
            "Load and augment batches in worker processes ahead of the step: num_workers > 0, "
            "pin_memory=True, persistent_workers=True and a prefetch_factor; move augmentation to "
            "the GPU (DALI) when the CPU cannot keep up. On the faster target GPU the data phase is "
            "an even larger share of the step.",
            "loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=8,\n"
            "                                     pin_memory=True, persistent_workers=True, prefetch_factor=4)",
        ),
        saving=Saving(share, "the measured data phase: time the loop waited for the next batch, not "
                             "overlapped with compute, over the measured step"),
    )]


# --- host-sync -----------------------------------------------------------------------------------


def _optimizer_item_calls(ctx: RuleContext) -> int:
    """``.item()`` calls Adam/AdamW make themselves per step on the profiled device."""
    total = 0
    for opt in ctx.rank.optimizers:
        if opt.get("kind") not in _STEP_COUNTER_OPTIMIZERS:
            continue
        if opt.get("fused") or opt.get("capturable"):
            impl = "fused"
        elif opt.get("foreach") or (opt.get("foreach") is None and ctx.rank.device == "cuda"):
            impl = "foreach"
        else:
            impl = "for-loop"
        total += OPTIMIZER_STEP_ITEMS_PER_TENSOR[impl] * int(opt.get("param_tensors") or 0)
    return total


def _site(sync: Mapping[str, Any]) -> str:
    where = sync["where"]
    return f"{sync['op']} outside the model" if where == OUTSIDE_MODEL else f"{sync['op']} in {where}"


def effective_host_syncs(ctx: RuleContext) -> list[dict[str, Any]]:
    """The run's host syncs per step (capture step) without the optimizer's own.

    Runs that record the phase of each sync drop those made inside ``optimizer.step()``
    (Adam/AdamW reading their CPU step counters: not device syncs). Older runs get the
    estimate of :data:`OPTIMIZER_STEP_ITEMS_PER_TENSOR` discounted instead.
    """
    if any("phase" in s for s in ctx.rank.host_syncs):
        return [
            {"op": s.get("op", "?"), "where": s.get("where", "?"), "count": int(s.get("count", 0))}
            for s in ctx.rank.host_syncs
            if s.get("phase") != "optimizer" and int(s.get("count", 0)) > 0
        ]
    discount = _optimizer_item_calls(ctx)
    out = []
    for s in ctx.rank.host_syncs:
        count = int(s.get("count", 0))
        if discount and s.get("op") == _ITEM_OP and s.get("where") == OUTSIDE_MODEL:
            taken = min(count, discount)
            count -= taken
            discount -= taken
        if count > 0:
            out.append({"op": s.get("op", "?"), "where": s.get("where", "?"), "count": count})
    return out


@rule("host-sync", ("cpu", "gpu"), "NSYS cuda_api_sync, PTG")
def host_sync(ctx: RuleContext) -> list[Finding]:
    """Device-to-host synchronisations inside the step (capture's count, or a trace's
    synchronising CUDA calls)."""
    syncs = effective_host_syncs(ctx)
    per_step = float(sum(s["count"] for s in syncs))
    api: dict[str, float] = {}
    sync_idle: list[float] = []
    dev_steps = ctx.device.steps if ctx.device is not None else ()
    for s in dev_steps:
        for name in s.sync_calls:
            api.setdefault(name, 0.0)
        if s.sync_idle_us is not None:
            sync_idle.append(s.sync_idle_us)
    for name in api:
        api[name] = median([s.sync_calls.get(name, 0) for s in dev_steps])
    api_per_step = sum(api.values())
    threshold = ctx.options.host_sync_min_per_step
    if per_step < threshold and api_per_step < threshold:
        return []
    evidence = [Evidence("host syncs per step (capture)", per_step, "count")]
    evidence += [Evidence(_site(s), s["count"], "count") for s in syncs]
    evidence += [Evidence(f"{name} per step (trace)", n, "count") for name, n in sorted(api.items())]
    layers = tuple(sorted({s["where"] for s in syncs if s["where"] != OUTSIDE_MODEL}))
    if sync_idle and dev_steps:
        idle = median(sync_idle)
        step = median([s.duration_us for s in dev_steps])
        evidence.append(Evidence("device idle after syncs", idle, "us"))
        saving = Saving(idle / step if step > 0 else None,
                        "the measured device idle time after the synchronising calls, over the measured step")
    else:
        count = max(per_step, api_per_step)
        lost = count * ctx.launch_overhead_us
        evidence.append(Evidence("projected idle per step (lower bound)", lost, "us"))
        saving = Saving(lost / ctx.projected_step_us if ctx.projected_step_us > 0 else None,
                        f"lower bound: each sync drains the GPU's queue, which then idles for at least one "
                        f"kernel launch ({ctx.launch_overhead_us:g} us) until the host queues work again; "
                        f"syncs per step x launch cost over the projected step on {ctx.target.name}")
    where = ", ".join(_site(s) for s in syncs[:3]) or ", ".join(sorted(api))
    return [Finding(
        id="host-sync",
        severity=severity_for(saving.frac, ctx.options, "medium"),
        title=f"{max(per_step, api_per_step):g} device-to-host synchronisations per step ({where})",
        evidence=tuple(evidence),
        recommendation=Recommendation(
            "Keep metrics on the device and read them every N steps; avoid .item(), .cpu(), .tolist(), "
            "print() and Python conditions on CUDA tensors inside the step; copy with non_blocking=True.",
            "running_loss += loss.detach()          # stays on the GPU\n"
            "if step % log_every == 0:\n"
            "    print(running_loss.item() / log_every)   # one sync every log_every steps\n"
            "    running_loss.zero_()",
        ),
        saving=saving,
        layers=layers,
    )]


# --- step-variance -------------------------------------------------------------------------------


@rule("step-variance", ("cpu",), "SMD StepOutlier (3 sigma), DLP")
def step_variance(ctx: RuleContext) -> list[Finding]:
    """Step times vary (coefficient of variation) or some steps are outliers."""
    steps = ctx.rank.steps
    opts = ctx.options
    if len(steps) < opts.step_variance_min_steps:
        return []
    d = [s.duration_us for s in steps]
    mean = statistics.fmean(d)
    cv = statistics.pstdev(d) / mean if mean > 0 else 0.0
    med = median(d)
    robust_sigma = ROBUST_SIGMA_PER_MAD * median([abs(x - med) for x in d])
    cut = max(opts.step_outlier_sigmas * robust_sigma, opts.step_outlier_min_excess_frac * med)
    outliers = [s for s in steps if s.duration_us - med > cut]
    if cv <= opts.step_variance_max_cv_frac and not outliers:
        return []
    excess = sum(max(x - med, 0.0) for x in d)
    frac = excess / sum(d) if sum(d) > 0 else 0.0
    evidence = [
        Evidence("coefficient of variation", cv, "frac"),
        Evidence("median step", med, "us"),
        Evidence("mean step", mean, "us"),
        Evidence("slowest step", max(d), "us"),
        Evidence("outlier steps", len(outliers), "count"),
    ]
    evidence += [Evidence(f"step {s.index}", s.duration_us, "us") for s in outliers]
    what = f"{len(outliers)} outlier step(s)" if outliers else f"coefficient of variation {percent(cv)}"
    return [Finding(
        id="step-variance",
        severity=severity_for(frac, ctx.options),
        title=f"Step time varies: {what}",
        evidence=tuple(evidence),
        recommendation=Recommendation(
            "Find what the slow steps do: garbage collection, checkpointing, logging, evaluation or "
            "recompilation (dynamic shapes under torch.compile). Profile them in trace mode.",
            "import gc\ngc.freeze()          # fewer full collections during training\n"
            "torch._dynamo.config.automatic_dynamic_shapes = True   # if recompiling",
        ),
        saving=Saving(frac, "the time steps spent beyond the median step, over the total measured time"),
    )]


# --- launch-bound --------------------------------------------------------------------------------


@rule("launch-bound", ("cpu", "proj", "gpu"), "HTA short kernels / kernel wait, PTG")
def launch_bound(ctx: RuleContext) -> list[Finding]:
    """Kernels (projected from the layers' op counts, or measured) shorter than their launch
    take a large share of the step."""
    launch = ctx.launch_overhead_us
    short_layers = []
    short_kernels = kernels = 0.0
    weighted: list[tuple[float, float]] = []  # (device us per kernel, kernels)
    for r in ctx.roofline:
        if r.kernels <= 0:
            continue
        per_kernel = max(r.compute_us, r.memory_us) / r.kernels
        weighted.append((per_kernel, r.kernels))
        kernels += r.kernels
        if per_kernel < launch:
            short_layers.append(r)
            short_kernels += r.kernels
    step = ctx.projected_step_us
    share = sum(r.time_us for r in short_layers) / step if step > 0 else 0.0
    launch_saving = sum(r.launch_us for r in short_layers)
    median_kernel = _weighted_median(weighted)
    measured = _measured_launch(ctx)
    fires_proj = share > ctx.options.launch_bound_min_frac
    if not fires_proj and measured is None:
        return []
    evidence = [
        Evidence("projected kernels per step", kernels, "count"),
        Evidence("projected kernels shorter than a launch", short_kernels, "count"),
        Evidence("projected median kernel", median_kernel, "us"),
        Evidence("launch cost", launch, "us"),
        Evidence("projected step share in short kernels", share, "frac"),
    ]
    saving = Saving(launch_saving / step if step > 0 else None,
                    "launch cost x kernels of the layers whose kernels are shorter than a launch, over "
                    f"the projected step on {ctx.target.name} (CUDA Graphs remove the per-kernel launch)")
    if measured is not None:
        m_kernels, m_median, m_share = measured
        evidence += [Evidence("measured kernels per step", m_kernels, "count"),
                     Evidence("measured median kernel", m_median, "us"),
                     Evidence("measured launch share of step", m_share, "frac")]
        if not fires_proj:
            saving = Saving(m_share, "measured kernels x launch cost over the measured step")
    top = sorted(short_layers, key=lambda r: r.time_us, reverse=True)
    return [Finding(
        id="launch-bound",
        severity=severity_for(saving.frac, ctx.options),
        title=f"Launch-bound: {percent(share)} of the projected step is in kernels shorter than their launch",
        evidence=tuple(evidence),
        recommendation=Recommendation(
            "Launch fewer, larger kernels: capture the step in CUDA Graphs (torch.compile mode="
            "\"reduce-overhead\"), fuse ops with torch.compile, use fused layers, or raise the batch size.",
            "model = torch.compile(model, mode=\"reduce-overhead\")   # CUDA Graphs + fusion",
        ),
        saving=saving,
        layers=tuple(r.name for r in top),
    )]


def _weighted_median(pairs: list[tuple[float, float]]) -> float:
    if not pairs:
        return math.nan
    pairs = sorted(pairs)
    half = sum(w for _, w in pairs) / 2
    acc = 0.0
    for v, w in pairs:
        acc += w
        if acc >= half:
            return v
    return pairs[-1][0]


def _measured_launch(ctx: RuleContext) -> tuple[float, float, float] | None:
    """(kernels, median kernel us, launch share) from device data when it shows launch-bound."""
    if ctx.device is None:
        return None
    steps = [s for s in ctx.device.steps if s.kernels and s.median_kernel_us is not None]
    if not steps:
        return None
    kernels = median([float(s.kernels or 0) for s in steps])
    med_kernel = median([float(s.median_kernel_us or 0.0) for s in steps])
    dur = median([s.duration_us for s in steps])
    share = kernels * ctx.launch_overhead_us / dur if dur > 0 else 0.0
    if med_kernel < ctx.launch_overhead_us and share > ctx.options.launch_bound_min_frac:
        return kernels, med_kernel, min(share, 1.0)
    return None


# --- gpu-idle ------------------------------------------------------------------------------------


@rule("gpu-idle", ("gpu",), "TB (50 %), NSYS gpu_time_util, HTA")
def gpu_idle(ctx: RuleContext) -> list[Finding]:
    """The device is busy less than ``gpu_idle_max_busy_frac`` of the step (device data)."""
    if ctx.device is None or not ctx.device.steps:
        return []
    steps = ctx.device.steps
    busy = median([s.busy_us / s.duration_us for s in steps if s.duration_us > 0])
    if math.isnan(busy) or busy >= ctx.options.gpu_idle_max_busy_frac:
        return []
    idle = 1.0 - busy
    evidence = [Evidence("device busy share", busy, "frac"),
                Evidence("device idle per step", median([s.idle_us for s in steps]), "us")]
    split = {"host wait": [s.idle_host_wait_us for s in steps],
             "kernel wait": [s.idle_kernel_wait_us for s in steps]}
    largest = None
    for name, values in split.items():
        known = [v for v in values if v is not None]
        if known:
            evidence.append(Evidence(f"idle: {name}", median(known), "us"))
            if largest is None or median(known) > largest[1]:
                largest = (name, median(known))
    advice = {"host wait": "the host is the bottleneck: see input-bound, host-sync and launch-bound",
              "kernel wait": "launch gaps between dependent kernels: CUDA Graphs or torch.compile"}
    cause = advice[largest[0]] if largest else "find the largest idle cause in trace mode"
    return [Finding(
        id="gpu-idle",
        severity=severity_for(idle, ctx.options),
        title=f"The GPU is idle {percent(idle)} of the step",
        evidence=tuple(evidence),
        recommendation=Recommendation(f"Follow the largest idle cause: {cause}.", ""),
        saving=Saving(idle, "upper bound: all measured device idle time, over the measured step"),
    )]


# --- pageable-memcpy -----------------------------------------------------------------------------


@rule("pageable-memcpy", ("gpu",), "NSYS cuda_memcpy_async")
def pageable_memcpy(ctx: RuleContext) -> list[Finding]:
    """Host-to-device copies from pageable memory (device data)."""
    if ctx.device is None or not ctx.device.steps:
        return []
    steps = ctx.device.steps
    copies = median([float(s.pageable_h2d_copies) for s in steps])
    if copies < ctx.options.pageable_memcpy_min_per_step:
        return []
    nbytes = median([float(s.pageable_h2d_bytes) for s in steps])
    us = median([s.pageable_h2d_us for s in steps])
    step = median([s.duration_us for s in steps])
    frac = us / step if step > 0 else None
    return [Finding(
        id="pageable-memcpy",
        severity=severity_for(frac, ctx.options),
        title=f"{copies:g} host-to-device copies per step from pageable memory",
        evidence=(Evidence("pageable copies per step", copies, "count"),
                  Evidence("pageable bytes per step", nbytes, "bytes"),
                  Evidence("pageable copy time per step", us, "us")),
        recommendation=Recommendation(
            "Copy from pinned memory, asynchronously: pin_memory=True in the DataLoader and "
            ".to(device, non_blocking=True).",
            "loader = DataLoader(dataset, batch_size=b, num_workers=8, pin_memory=True)\n"
            "x = x.to(\"cuda\", non_blocking=True)",
        ),
        saving=Saving(frac, "the measured copy time, which pinned asynchronous copies overlap with compute, "
                            "over the measured step"),
    )]

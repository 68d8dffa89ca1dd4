"""Compute rules: ``hot-layers``, ``fp32-matmul``, ``tensor-core-alignment``,
``memory-bound-layers``, ``channels-last``, ``cudnn-benchmark``, ``optimizer-unfused``,
``compile-candidate`` (reference/rules.md)."""

from __future__ import annotations

from collections.abc import Mapping

from ..breakdown import top_layers
from ..findings import Evidence, Finding, Recommendation, Saving
from ..roofline import LayerRoofline, fused_time_us, roofline_point
from .base import RuleContext, has_tensor_cores, percent, phase_stat, rule, severity_for

__all__ = [
    "MAX_LAYER_EVIDENCE",
    "COMPILED_ROOT_KINDS",
    "hot_layers",
    "fp32_matmul",
    "tensor_core_alignment",
    "memory_bound_layers",
    "channels_last",
    "cudnn_benchmark",
    "optimizer_unfused",
    "compile_candidate",
    "alignment_multiple",
    "misaligned_dims",
]

MAX_LAYER_EVIDENCE = 10
"""Layers listed in a finding's evidence at most (all of them are in ``layers``)."""

#: Root module classes of a model already compiled with ``torch.compile``.
COMPILED_ROOT_KINDS: frozenset[str] = frozenset({"OptimizedModule"})

_FP32_PRECISIONS = ("fp32", "tf32")
_TC_PRECISIONS = ("tf32", "bf16-fp16", "fp8")
_CONV2D_KINDS = frozenset({"Conv2d", "LazyConv2d", "ConvTranspose2d"})
_NCHW = "contiguous"



def _share(us: float, step_us: float) -> float:
    return us / step_us if step_us > 0 else 0.0


# --- hot-layers ----------------------------------------------------------------------------------


@rule("hot-layers", ("cpu",), "topoprof")
def hot_layers(ctx: RuleContext) -> list[Finding]:
    """The layers whose self time together makes ``hot_layers_step_frac`` of the step."""
    ranked = top_layers(ctx.rank, n=len(ctx.rank.modules))
    if not ranked:
        return []
    bound = {r.name: r.bound for r in ctx.roofline}
    chosen = []
    acc = 0.0
    for s in ranked:
        chosen.append(s)
        acc += s.share
        if acc >= ctx.options.hot_layers_step_frac:
            break
    evidence = []
    for s in chosen[:MAX_LAYER_EVIDENCE]:
        label = s.name or "(root)"
        evidence += [
            Evidence(f"{label} self time", s.self_us, "us"),
            Evidence(f"{label} share of step", s.share, "frac"),
            Evidence(f"{label} FLOPs", s.flops, "FLOP"),
            Evidence(f"{label} achieved", s.achieved_flop_per_s, "FLOP/s"),
            Evidence(f"{label} bound on {ctx.target.name}", bound.get(s.name, "none"), ""),
        ]
    return [Finding(
        id="hot-layers",
        severity="info",
        title=f"{len(chosen)} layer(s) take {percent(acc)} of the step",
        evidence=tuple(evidence),
        recommendation=Recommendation(
            "Optimise these layers first, each for its bound: compute-bound ones with reduced precision "
            "and aligned shapes, memory-bound ones with fusion, launch-bound ones with CUDA Graphs.", ""),
        saving=Saving(None, "informational: ranks the layers by measured self time"),
        layers=tuple(s.name for s in chosen),
    )]


# --- fp32-matmul ---------------------------------------------------------------------------------


@rule("fp32-matmul", ("cpu", "proj"), "TB no-tensor-cores, DLP AMP")
def fp32_matmul(ctx: RuleContext) -> list[Finding]:
    """Most matmul/conv FLOPs run in float32 on a target with tensor cores."""
    gpu = ctx.gpu
    if not has_tensor_cores(gpu):
        return []
    by: dict[str, float] = {}
    for r in ctx.roofline:
        if r.flop > 0:
            by[r.precision] = by.get(r.precision, 0.0) + r.flop
    total = sum(by.values())
    if total <= 0:
        return []
    fp32 = sum(by.get(p, 0.0) for p in _FP32_PRECISIONS) / total
    if fp32 <= ctx.options.fp32_matmul_min_flop_frac:
        return []
    proj = {p.precision: p for p in ctx.projection.by_precision}
    half = proj.get("bf16-fp16")
    now = ctx.projected_step_us
    evidence = [Evidence(f"{p} share of FLOPs", f / total, "frac") for p, f in sorted(by.items())]
    evidence.append(Evidence("projected step as run", now, "us"))
    fp16_only = not gpu.has_dtype("bf16")
    if half is not None:
        evidence.append(Evidence(f"projected step in {half.peak_key}", half.step_us, "us"))
    saving = Saving((now - half.step_us) / now if half is not None and now > 0 else None,
                    f"projected step as run minus projected step with every matmul/conv in "
                    f"{half.peak_key if half else '16-bit'} on {ctx.target.name}, over the projected step")
    if fp16_only:
        rec = Recommendation(
            f"Use mixed precision: {gpu.display_name} has FP16 tensor cores (no BF16, no TF32): "
            "torch.autocast with float16 and a GradScaler.",
            "scaler = torch.amp.GradScaler(\"cuda\")\n"
            "with torch.autocast(\"cuda\", dtype=torch.float16):\n"
            "    loss = loss_fn(model(x), y)\n"
            "scaler.scale(loss).backward()\nscaler.step(optimizer)\nscaler.update()",
        )
    else:
        rec = Recommendation(
            "Run matmuls and convolutions in bfloat16 with torch.autocast; at least allow TF32 for "
            "float32 matmuls.",
            "torch.set_float32_matmul_precision(\"high\")   # TF32 at least\n"
            "with torch.autocast(\"cuda\", dtype=torch.bfloat16):\n"
            "    loss = loss_fn(model(x), y)",
        )
    return [Finding(
        id="fp32-matmul",
        severity=severity_for(saving.frac, ctx.options),
        title=(f"{percent(fp32)} of matmul/conv FLOPs run in float32 on a tensor-core GPU"
               + (f" ({percent(by.get('tf32', 0.0) / total)} of all as TF32)" if by.get("tf32") else "")),
        evidence=tuple(evidence),
        recommendation=rec,
        saving=saving,
        layers=tuple(r.name for r in ctx.roofline if r.flop > 0 and r.precision in _FP32_PRECISIONS),
    )]


# --- tensor-core-alignment -----------------------------------------------------------------------


def alignment_multiple(precision: str, ctx: RuleContext) -> int:
    """The element multiple GEMM dimensions should have at ``precision`` (hardware.md §6.3)."""
    opts = ctx.options
    return {"tf32": opts.alignment_tf32_elements, "fp8": opts.alignment_fp8_elements}.get(
        precision, opts.alignment_16bit_elements)


def _tc_precision(r: LayerRoofline, ctx: RuleContext) -> str:
    """The tensor-core precision the layer runs at, or would with the cheapest change (TF32)."""
    if r.precision in _TC_PRECISIONS:
        return r.precision
    return "tf32" if ctx.gpu.has_dtype("tf32") else "bf16-fp16"


def misaligned_dims(r: LayerRoofline, multiple: int, exempt_in_channels: int) -> dict[str, int]:
    """The layer's GEMM/conv dimensions that are not multiples of ``multiple``, by name."""
    c = r.cost
    if c is None or not c.in_shapes or not c.out_shapes:
        return {}
    dims: dict[str, int] = {}
    x, y = c.in_shapes[0], c.out_shapes[0]
    if c.op_class == "conv":
        if len(x) >= 3 and x[1] > exempt_in_channels:
            dims["in_channels"] = x[1]
        if len(y) >= 3:
            dims["out_channels"] = y[1]
    else:
        if x:
            dims["in_features"] = x[-1]
        if y:
            dims["out_features"] = y[-1]
    return {k: v for k, v in dims.items() if v % multiple}


def _padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@rule("tensor-core-alignment", ("cpu", "proj"), "NVIDIA DL performance guide, PyProf, DLP")
def tensor_core_alignment(ctx: RuleContext) -> list[Finding]:
    """GEMM/conv dimensions that are not multiples of the tensor-core alignment."""
    if not has_tensor_cores(ctx.gpu):
        return []
    found: list[tuple[LayerRoofline, dict[str, int], int]] = []
    for r in ctx.roofline:
        if r.flop <= 0 or r.cost is None or r.cost.op_class not in ("conv", "matmul"):
            continue
        multiple = alignment_multiple(_tc_precision(r, ctx), ctx)
        bad = misaligned_dims(r, multiple, ctx.options.alignment_exempt_max_in_channels)
        if bad:
            found.append((r, bad, multiple))
    if not found:
        return []
    evidence = []
    saved = 0.0
    for r, bad, multiple in found:
        ratio = 1.0
        for name, n in bad.items():
            if len(evidence) < 2 * MAX_LAYER_EVIDENCE:
                evidence.append(Evidence(f"{r.name} {name}", n, "elements"))
                evidence.append(Evidence(f"{r.name} {name} padded to a multiple of {multiple}",
                                         _padded(n, multiple), "elements"))
            ratio *= _padded(n, multiple) / n
        if r.precision in _TC_PRECISIONS and r.cost is not None:
            slow = roofline_point(r.cost, ctx.gpu, r.precision, ctx.launch_overhead_us,
                                  peak_override="fp32", as_run=True)
            fast = roofline_point(r.cost, ctx.gpu, r.precision, ctx.launch_overhead_us,
                                  flop_scale=ratio, as_run=True)
            saved += max(slow.time_us - fast.time_us, 0.0)
    step = ctx.projected_step_us
    saving = Saving(
        saved / step if step > 0 else None,
        "upper bound: the misaligned GEMMs at the FP32 (non-tensor-core) rate, as cuBLAS < 11 and "
        "cuDNN < 7.6.3 ran them (hardware.md §6.3), minus the padded GEMMs at the tensor-core rate, over "
        f"the projected step on {ctx.target.name}; newer libraries use tensor cores at reduced "
        "efficiency, so the real gain is smaller. Layers still in FP32 without TF32 gain once "
        "fp32-matmul is fixed (counted 0 here)",
    )
    first, bad, multiple = found[0]
    name, n = next(iter(bad.items()))
    return [Finding(
        id="tensor-core-alignment",
        severity=severity_for(saving.frac, ctx.options),
        title=f"{len(found)} GEMM/conv layer(s) have dimensions that are not tensor-core multiples "
              f"(e.g. {first.name} {name} = {n})",
        evidence=tuple(evidence),
        recommendation=Recommendation(
            "Pad feature, channel and vocabulary sizes to multiples of 8 (fp16/bf16; 4 for TF32, 16 for "
            "FP8; 64 is best on A100), e.g. a vocabulary of 50257 to 50304.",
            f"nn.Linear(in_features, {_padded(n, multiple)})   # was {n}",
        ),
        saving=saving,
        layers=tuple(r.name for r, _, _ in found),
    )]


# --- memory-bound-layers -------------------------------------------------------------------------


@rule("memory-bound-layers", ("cpu", "proj"), "roofline (Williams et al. 2009)")
def memory_bound_layers(ctx: RuleContext) -> list[Finding]:
    """Layers below the target's ridge point take a large share of the projected step."""
    mem = [r for r in ctx.roofline if r.bound == "memory"]
    step = ctx.projected_step_us
    share = _share(sum(r.time_us for r in mem), step)
    if share <= ctx.options.memory_bound_min_frac:
        return []
    mem.sort(key=lambda r: r.time_us, reverse=True)
    evidence = [Evidence("memory-bound share of projected step", share, "frac")]
    for r in mem[:MAX_LAYER_EVIDENCE]:
        evidence += [Evidence(f"{r.name} intensity", r.intensity_flop_per_byte, "FLOP/byte"),
                     Evidence(f"{r.name} ridge point", r.ridge_flop_per_byte, "FLOP/byte"),
                     Evidence(f"{r.name} projected time", r.time_us, "us")]
    saved = sum(r.time_us - fused_time_us(r, ctx.gpu) for r in mem)
    return [Finding(
        id="memory-bound-layers",
        severity=severity_for(_share(saved, step), ctx.options),
        title=f"Memory-bound layers take {percent(share)} of the projected step on {ctx.target.name}",
        evidence=tuple(evidence),
        recommendation=Recommendation(
            "Cut memory traffic: fuse elementwise and normalisation layers into their neighbours "
            "(torch.compile), use fused normalisation and optimizer kernels, channels_last for "
            "convolutions, larger batches or tiles.",
            "model = torch.compile(model)",
        ),
        saving=Saving(_share(saved, step),
                      "projected time of the memory-bound layers minus their fused time (upper bound: a fused "
                      "elementwise/normalisation layer keeps only its parameter traffic), over the projected "
                      f"step on {ctx.target.name}"),
        layers=tuple(r.name for r in mem),
    )]


# --- channels-last -------------------------------------------------------------------------------


def _nchw_convs(ctx: RuleContext) -> list[LayerRoofline]:
    return [r for r in ctx.roofline
            if r.cost is not None and r.cost.op_class == "conv"
            and (r.kind in _CONV2D_KINDS or "conv2d" in r.cost.ops)
            and r.cost.memory_format == _NCHW]


@rule("channels-last", ("cpu", "proj"), "PTG")
def channels_last(ctx: RuleContext) -> list[Finding]:
    """2-D convolutions in NCHW with reduced precision on a tensor-core target."""
    if not has_tensor_cores(ctx.gpu):
        return []
    convs = [r for r in _nchw_convs(ctx) if r.precision in ("bf16-fp16", "fp8")]
    if not convs:
        return []
    step = ctx.projected_step_us
    share = _share(sum(r.time_us for r in convs), step)
    speedup = ctx.options.channels_last_conv_speedup
    frac = share * (1.0 - 1.0 / speedup)
    return [Finding(
        id="channels-last",
        severity=severity_for(frac, ctx.options),
        title=f"{len(convs)} reduced-precision 2-D convolution(s) run in NCHW (channels-first) layout",
        evidence=(Evidence("NCHW conv share of projected step", share, "frac"),
                  Evidence("NCHW convolutions", len(convs), "count"),
                  Evidence("assumed conv speed-up in channels_last", speedup, "x")),
        recommendation=Recommendation(
            "Convert the model and its inputs to channels_last (NHWC, the tensor cores' native layout).",
            "model = model.to(memory_format=torch.channels_last)\n"
            "x = x.to(memory_format=torch.channels_last)",
        ),
        saving=Saving(frac, f"projected conv share x (1 - 1/{speedup:g}): the low end of the 1.5-2x conv-kernel "
                            "speed-up reported for NHWC with tensor cores (MosaicML, PTG; hardware.md §6.3)"),
        layers=tuple(r.name for r in convs),
    )]


# --- cudnn-benchmark -----------------------------------------------------------------------------


@rule("cudnn-benchmark", ("cpu",), "DLP, PTG")
def cudnn_benchmark(ctx: RuleContext) -> list[Finding]:
    """Convolutions present and ``torch.backends.cudnn.benchmark`` off."""
    convs = [r for r in ctx.roofline if r.cost is not None and r.cost.op_class == "conv"]
    if not convs or ctx.rank.settings.get("cudnn_benchmark", False):
        return []
    measured = _share(sum(r.measured_us for r in convs), ctx.measured_step_us)
    projected = _share(sum(r.time_us for r in convs), ctx.projected_step_us)
    return [Finding(
        id="cudnn-benchmark",
        severity="low",
        title="Convolutions run with torch.backends.cudnn.benchmark off",
        evidence=(Evidence("conv share of measured step", measured, "frac"),
                  Evidence("conv share of projected step", projected, "frac"),
                  Evidence("cudnn.benchmark", False, "")),
        recommendation=Recommendation(
            "Let cuDNN time its algorithms once per input shape and keep the fastest (input shapes are "
            "assumed fixed: the run records one shape per layer; leave it off for highly variable shapes).",
            "torch.backends.cudnn.benchmark = True",
        ),
        saving=Saving(None, "not estimated: the autotuned algorithm's gain over cuDNN's heuristic depends on "
                            "the shapes (rules.md gives none)"),
        layers=tuple(r.name for r in convs),
    )]


# --- optimizer-unfused ---------------------------------------------------------------------------


def _unfused(opt: Mapping[str, object]) -> bool:
    return not opt.get("fused") and not opt.get("foreach")


@rule("optimizer-unfused", ("cpu", "proj"), "PTG")
def optimizer_unfused(ctx: RuleContext) -> list[Finding]:
    """The optimizer takes a share of the step and runs neither fused nor foreach."""
    opt_phase = phase_stat(ctx.breakdown, "optimizer")
    unfused = [o for o in ctx.rank.optimizers if _unfused(o)]
    if not unfused or opt_phase.share <= ctx.options.optimizer_min_frac:
        return []
    proj = ctx.projection.optimizer
    step = ctx.projected_step_us
    frac = _share(proj.time_us - proj.fused_time_us, step)
    kinds = ", ".join(sorted({str(o.get("kind")) for o in unfused}))
    return [Finding(
        id="optimizer-unfused",
        severity=severity_for(frac, ctx.options, "low"),
        title=f"The optimizer ({kinds}) takes {percent(opt_phase.share)} of the step without fused or foreach kernels",
        evidence=(Evidence("optimizer phase", opt_phase.median_us, "us"),
                  Evidence("optimizer share of step", opt_phase.share, "frac"),
                  Evidence("parameters", sum(int(o.get("params") or 0) for o in unfused), "params"),
                  Evidence("parameter tensors", sum(int(o.get("param_tensors") or 0) for o in unfused), "count"),
                  Evidence(f"projected optimizer ({proj.implementation})", proj.time_us, "us"),
                  Evidence("projected optimizer (fused)", proj.fused_time_us, "us")),
        recommendation=Recommendation(
            "Use the fused implementation (one kernel per group of tensors), or at least foreach.",
            "optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)",
        ),
        saving=Saving(frac, f"projected optimizer time as it would run on {ctx.target.name} minus the fused time "
                            "(traffic over bandwidth plus launches), over the projected step"),
    )]


# --- compile-candidate ---------------------------------------------------------------------------


@rule("compile-candidate", ("cpu", "proj"), "PTG")
def compile_candidate(ctx: RuleContext) -> list[Finding]:
    """Pointwise/normalisation layers take a large share of the projected step in eager mode."""
    root = next((m for m in ctx.rank.modules if m.parent is None), None)
    if root is not None and root.kind in COMPILED_ROOT_KINDS:
        return []
    fusible = [r for r in ctx.roofline if r.cost is not None and r.cost.op_class == "fusible"]
    step = ctx.projected_step_us
    share = _share(sum(r.time_us for r in fusible), step)
    if share <= ctx.options.compile_min_pointwise_frac:
        return []
    saved = sum(r.time_us - fused_time_us(r, ctx.gpu) for r in fusible)
    ops = sum(r.kernels for r in fusible)
    fusible.sort(key=lambda r: r.time_us, reverse=True)
    return [Finding(
        id="compile-candidate",
        severity=severity_for(_share(saved, step), ctx.options),
        title=f"Pointwise and normalisation ops take {percent(share)} of the projected step in eager mode",
        evidence=(Evidence("pointwise share of projected step", share, "frac"),
                  Evidence("pointwise kernels per step", ops, "count"),
                  Evidence("projected fusion saving", saved, "us")),
        recommendation=Recommendation(
            "Compile the model: TorchInductor fuses chains of pointwise ops and normalisations into single "
            "kernels that read and write memory once.",
            "model = torch.compile(model)",
        ),
        saving=Saving(_share(saved, step),
                      "projected time of the pointwise/normalisation layers minus their fused time (upper bound: "
                      f"only their parameter traffic remains), over the projected step on {ctx.target.name}"),
        layers=tuple(r.name for r in fusible),
    )]

"""Per-layer roofline on a target GPU.

Each layer's own work (its *self* FLOPs, bytes and kernels: a container counts only the
functional ops in its own ``forward``, never its children's) takes, per training step::

    time = max(FLOP / (peak(precision) x achievable_frac), bytes / (HBM bandwidth x achievable_frac))
           + launch_overhead x kernels

(DESIGN.md section 8, hardware.md §6 and §8). ``bound`` names the largest of the three terms:
``"compute"``, ``"memory"`` or ``"launch"``.

The cost model (what a saved run gives and what is estimated) is in :class:`LayerCost`:

* **FLOPs**: ``flops_fwd``/``flops_bwd`` from ``FlopCounterMode`` (matmul, conv and attention
  ops only; elementwise ops count 0), minus the children's, times forward passes per step.
* **Bytes** (estimated; no run records memory traffic). Forward: read the inputs (``in_shapes``
  of the first call x calls), read the own parameters once per call, write the outputs
  (``act_bytes``, all calls). Backward: read the output gradient and the saved inputs, write the
  input gradient, read the parameters and write their gradients:
  ``out + 2 x in + 2 x params``. A container's own ops each read two and write one tensor of the
  container's output size. Element sizes come from the layer's output dtype.
* **Kernels** (estimated): one per own torch function in the forward (view/reshape-like ops and
  profiler ranges launch none; a few composite functions launch several, :data:`KERNELS_PER_OP`),
  and per forward kernel one backward kernel, two for layers with parameters (gradient of the
  input and of the weight). A trace-mode run on CUDA measured them (``ModuleRecord.kernels``):
  that count is used instead, split between forward and backward as estimated.
* **Precision**: float16/bfloat16 outputs run at the 16-bit tensor-core rate, float8 at FP8;
  float32 matmuls at TF32 when the run allowed it (``matmul_allow_tf32`` or
  ``float32_matmul_precision`` ``"high"``/``"medium"``) and float32 convolutions when
  ``cudnn_allow_tf32`` (PyTorch's default), else at the FP32 rate. A precision the GPU lacks
  falls back (BF16 -> FP16 on V100, TF32 -> FP32, FP8 -> 16-bit), and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from ..hardware import GPU
from ..run import ModuleRecord, RankData, median

__all__ = [
    "PRECISIONS",
    "DTYPE_BYTES",
    "PRECISION_BYTES",
    "NO_KERNEL_OPS",
    "FUSIBLE_OPS",
    "KERNELS_PER_OP",
    "BACKWARD_KERNELS_PER_FORWARD_KERNEL",
    "BACKWARD_KERNELS_PER_FORWARD_KERNEL_WITH_PARAMS",
    "OWN_OP_TENSOR_PASSES",
    "LayerCost",
    "RooflinePoint",
    "LayerRoofline",
    "dtype_bytes",
    "layer_costs",
    "run_precision",
    "peak_key",
    "roofline_point",
    "layer_roofline",
    "supported_precisions",
    "forward_passes",
    "fused_time_us",
]

#: Projection precisions: the keys of :attr:`LayerRoofline.by_precision`. ``"bf16-fp16"`` is the
#: 16-bit tensor-core rate (BF16 where the GPU has it, else FP16).
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16-fp16", "fp8")

#: Bytes per element by dtype name (as ``ModuleRecord.dtype`` writes it).
DTYPE_BYTES: Mapping[str, int] = MappingProxyType({
    "float64": 8, "double": 8, "float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
    "int64": 8, "long": 8, "int32": 4, "int": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
    "complex64": 8, "complex128": 16,
})
_DEFAULT_DTYPE_BYTES = 4

#: Bytes per element of each projection precision (fp8: GEMM layers; other layers stay 16-bit,
#: as Transformer Engine runs them).
PRECISION_BYTES: Mapping[str, int] = MappingProxyType({"fp64": 8, "fp32": 4, "tf32": 4, "bf16-fp16": 2, "fp8": 1})
_FP8_NON_GEMM_BYTES = 2

#: Torch functions that launch no kernel: views, shape queries and profiler ranges.
NO_KERNEL_OPS: frozenset[str] = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute", "transpose",
    "t", "T", "mT", "squeeze", "unsqueeze", "expand", "expand_as", "narrow", "select", "chunk",
    "split", "split_with_sizes", "unbind", "__getitem__", "detach", "alias", "movedim", "swapaxes",
    "as_strided", "unfold", "contiguous", "dim", "size", "numel", "requires_grad_",
})

#: Elementwise, normalisation, softmax and dropout ops: memory-bound, and what ``torch.compile``
#: fuses (PTG §5: "pointwise ops are memory-bound ... fusion loads and stores once").
FUSIBLE_OPS: frozenset[str] = frozenset({
    "add", "sub", "mul", "div", "true_divide", "neg", "pow", "exp", "log", "sqrt", "rsqrt", "abs",
    "clamp", "clip", "where", "masked_fill", "relu", "relu6", "gelu", "silu", "sigmoid", "tanh",
    "hardtanh", "hardswish", "hardsigmoid", "leaky_relu", "elu", "selu", "celu", "softplus", "mish",
    "glu", "dropout", "dropout1d", "dropout2d", "alpha_dropout", "softmax", "log_softmax",
    "layer_norm", "batch_norm", "group_norm", "instance_norm", "rms_norm", "local_response_norm",
    "normalize", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
    "__imul__", "__truediv__", "__rtruediv__", "__neg__", "__pow__", "erf", "tanh_", "float",
    "half", "bfloat16", "to", "type_as", "mean", "sum", "cumsum", "square", "reciprocal",
})

#: Composite torch functions that launch several kernels in their forward (estimated from the
#: ops their Python implementation calls; everything else counts one kernel).
KERNELS_PER_OP: Mapping[str, int] = MappingProxyType({
    "multi_head_attention_forward": 8,  # in-projection, q/k/v split, scores, softmax, dropout, out-projection
    "lstm": 4,
    "gru": 4,
    "rnn_tanh": 2,
    "rnn_relu": 2,
    "cross_entropy": 2,  # log_softmax + nll_loss
    "batch_norm": 1,
})

BACKWARD_KERNELS_PER_FORWARD_KERNEL = 1
"""Backward kernels per forward kernel of a layer without parameters (the input gradient)."""
BACKWARD_KERNELS_PER_FORWARD_KERNEL_WITH_PARAMS = 2
"""With parameters: the input gradient and the weight gradient."""
OWN_OP_TENSOR_PASSES = 3
"""A container's own functional op reads two and writes one tensor of its output size."""
_BACKWARD_INPUT_PASSES = 2  # backward reads the saved input and writes the input gradient
_BACKWARD_PARAM_PASSES = 2  # backward reads the weights and writes their gradients
_US_PER_S = 1e6
_CONV_PREFIX = "conv"


def dtype_bytes(dtype: str | None) -> int:
    """Bytes per element of a dtype name (``"bfloat16"`` -> 2); 4 when unknown."""
    if not dtype:
        return _DEFAULT_DTYPE_BYTES
    return DTYPE_BYTES.get(dtype.replace("torch.", ""), _DEFAULT_DTYPE_BYTES)


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _is_kernel_op(op: str) -> bool:
    return op not in NO_KERNEL_OPS and not op.startswith("_record_function")


def _kernel_count(ops: Mapping[str, int]) -> int:
    return sum(KERNELS_PER_OP.get(op, 1) * n for op, n in ops.items() if _is_kernel_op(op))


@dataclass(frozen=True)
class LayerCost:
    """A layer's own work in one training step, independent of the target (see the module doc).

    Attributes:
        name: qualified module name (graph node id).
        kind: module class.
        leaf: no child modules.
        dtype: output dtype name (``"float32"``), None without a tensor output.
        op_class: ``"conv"`` (a convolution op), ``"matmul"`` (other FLOP-counted ops),
            ``"fusible"`` (only elementwise/normalisation ops) or ``"other"``.
        ops: own torch functions per forward pass, by name.
        params: own parameters (not the children's).
        param_bytes: bytes of the own parameters.
        calls_per_pass: forward calls per forward pass of the model.
        passes: forward passes per step.
        flop_fwd / flop_bwd: own FLOPs per step.
        in_bytes / out_bytes / param_read_bytes: forward traffic per step.
        bytes_fwd / bytes_bwd: estimated memory traffic per step.
        kernels_fwd / kernels_bwd: estimated kernels per step.
        elem_bytes: bytes per element of the layer's dtype.
        memory_format: memory format of its 4-D input, if any.
        measured_us: measured self time (forward + backward) per step, median.
        measured_device_us: trace mode on CUDA: the device time of its kernels per step.
        in_shapes / out_shapes: tensor shapes of the first call.
    """

    name: str
    kind: str
    leaf: bool
    dtype: str | None
    op_class: str
    ops: Mapping[str, int]
    params: int
    param_bytes: int
    calls_per_pass: float
    passes: float
    flop_fwd: float
    flop_bwd: float
    in_bytes: float
    out_bytes: float
    param_read_bytes: float
    bytes_fwd: float
    bytes_bwd: float
    kernels_fwd: float
    kernels_bwd: float
    elem_bytes: int
    memory_format: str | None
    measured_us: float
    measured_device_us: float | None = None
    in_shapes: tuple[tuple[int, ...], ...] = ()
    out_shapes: tuple[tuple[int, ...], ...] = ()

    @property
    def flop(self) -> float:
        """Own FLOPs per step, forward + backward."""
        return self.flop_fwd + self.flop_bwd

    @property
    def bytes(self) -> float:
        """Estimated memory traffic per step, forward + backward."""
        return self.bytes_fwd + self.bytes_bwd

    @property
    def kernels(self) -> float:
        """Estimated kernels per step, forward + backward."""
        return self.kernels_fwd + self.kernels_bwd


def _children(rank: RankData) -> dict[str, list[ModuleRecord]]:
    out: dict[str, list[ModuleRecord]] = {}
    for m in rank.modules:
        if m.parent is not None:
            out.setdefault(m.parent, []).append(m)
    return out


def forward_passes(rank: RankData) -> float:
    """Median forward passes per profiled step (at least 1)."""
    if not rank.steps:
        return 1.0
    return max(median([s.forward_passes for s in rank.steps]), 1.0)


def _has_backward(rank: RankData) -> bool:
    if not rank.steps:
        return True
    return median([s.backward_passes for s in rank.steps]) > 0 or any(m.flops_bwd for m in rank.modules)


def layer_costs(rank: RankData) -> tuple[LayerCost, ...]:
    """The :class:`LayerCost` of every module that does work of its own, in module order.

    Containers appear only when their own ``forward`` runs FLOPs or kernel-launching ops
    (residual adds, attention matmuls); pass-through leaves (``nn.Identity``) do not appear.
    """
    passes = forward_passes(rank)
    backward = _has_backward(rank)
    # Backward work scales with the backward passes, which can be fewer than the forward
    # passes (an extra no_grad forward for pseudo-labels or an eval batch).
    bwd_passes = median([s.backward_passes for s in rank.steps]) if rank.steps else passes
    bwd_scale = (bwd_passes / passes) if bwd_passes > 0 else 1.0
    children = _children(rank)
    out = []
    for m in rank.modules:
        kids = children.get(m.name, [])
        own_flop_fwd = max(m.flops_fwd - sum(k.flops_fwd for k in kids), 0)
        own_flop_bwd = max(m.flops_bwd - sum(k.flops_bwd for k in kids), 0)
        own_params = max(m.params - sum(k.params for k in kids), 0)
        own_param_bytes = max(m.param_bytes - sum(k.param_bytes for k in kids), 0)
        kernels = _kernel_count(m.ops)
        if own_flop_fwd > 0 and kernels == 0:
            kernels = 1
        measured_kernels = m.kernels if rank.device == "cuda" and m.kernels is not None else None
        if kernels == 0 and not measured_kernels:
            continue  # no own work (a container's children do it all, or a pass-through)
        kernels = max(kernels, 1)
        calls = median(m.calls_per_step) / passes if m.calls_per_step else 1.0
        calls = max(calls, 1.0)
        elem = dtype_bytes(m.dtype)
        if m.leaf:
            in_bytes = sum(_numel(s) for s in m.in_shapes) * elem * calls * passes
            out_bytes = float(m.act_bytes) * passes
        else:
            per_call_out = m.act_bytes / calls if calls else 0.0
            # Each own op reads two and writes one tensor of the output's size: 2 in, 1 out.
            in_bytes = kernels * (OWN_OP_TENSOR_PASSES - 1) * per_call_out * passes
            out_bytes = kernels * per_call_out * passes
        param_read = float(own_param_bytes) * calls * passes
        bytes_fwd = in_bytes + param_read + out_bytes
        kernels_fwd = float(kernels) * passes
        if backward:
            bytes_bwd = out_bytes + _BACKWARD_INPUT_PASSES * in_bytes + _BACKWARD_PARAM_PASSES * param_read
            per = (BACKWARD_KERNELS_PER_FORWARD_KERNEL_WITH_PARAMS if own_params
                   else BACKWARD_KERNELS_PER_FORWARD_KERNEL)
            kernels_bwd = kernels_fwd * per * bwd_scale
            bytes_bwd *= bwd_scale
        else:
            bytes_bwd = kernels_bwd = 0.0
        if measured_kernels is not None:  # trace mode on CUDA: the kernels it launched, per step
            fwd_frac = kernels_fwd / (kernels_fwd + kernels_bwd)
            kernels_fwd, kernels_bwd = measured_kernels * fwd_frac, measured_kernels * (1.0 - fwd_frac)
        kernel_ops = [op for op in m.ops if _is_kernel_op(op)]
        if any(op.startswith(_CONV_PREFIX) for op in kernel_ops):
            op_class = "conv"
        elif own_flop_fwd > 0:
            op_class = "matmul"
        elif kernel_ops and all(op in FUSIBLE_OPS for op in kernel_ops):
            op_class = "fusible"
        else:
            op_class = "other"
        device_us = None
        if rank.device == "cuda" and m.device_fwd_us is not None:
            device_us = m.device_fwd_us + (m.device_bwd_us or 0.0)
        sf = median(m.self_fwd_us) if m.self_fwd_us else 0.0
        sb = median(m.self_bwd_us) if m.self_bwd_us else 0.0
        out.append(LayerCost(
            name=m.name, kind=m.kind, leaf=m.leaf, dtype=m.dtype, op_class=op_class,
            ops=MappingProxyType(dict(m.ops)), params=own_params, param_bytes=own_param_bytes,
            calls_per_pass=calls, passes=passes,
            flop_fwd=float(own_flop_fwd) * passes, flop_bwd=float(own_flop_bwd) * passes * bwd_scale,
            in_bytes=in_bytes, out_bytes=out_bytes, param_read_bytes=param_read,
            bytes_fwd=bytes_fwd, bytes_bwd=bytes_bwd, kernels_fwd=kernels_fwd, kernels_bwd=kernels_bwd,
            elem_bytes=elem, memory_format=m.in_memory_format, measured_us=sf + sb, measured_device_us=device_us,
            in_shapes=tuple(tuple(s) for s in m.in_shapes),
            out_shapes=tuple(tuple(s) for s in m.out_shapes),
        ))
    return tuple(out)


def run_precision(cost: LayerCost, settings: Mapping[str, Any]) -> str:
    """The precision the layer's FLOPs ran at: ``"fp64"``, ``"fp32"``, ``"tf32"``,
    ``"bf16-fp16"`` or ``"fp8"`` (from its dtype and the run's TF32 flags; see the module doc)."""
    dtype = (cost.dtype or "float32").replace("torch.", "")
    if dtype.startswith("float8"):
        return "fp8"
    if dtype in ("float16", "half", "bfloat16"):
        return "bf16-fp16"
    if dtype in ("float64", "double"):
        return "fp64"
    if cost.op_class == "conv":
        tf32 = bool(settings.get("cudnn_allow_tf32", True))
    else:
        tf32 = bool(settings.get("matmul_allow_tf32", False)) or settings.get(
            "float32_matmul_precision", "highest") in ("high", "medium")
    return "tf32" if tf32 else "fp32"


def peak_key(gpu: GPU, precision: str, dtype: str | None = None) -> tuple[str, str]:
    """The catalogue dtype whose peak a precision runs at on ``gpu``, and a note when it falls
    back (``("fp16", "V100 has no BF16: FP16 rate")``) or ``""``."""
    if precision == "fp64":
        return ("fp64_tc", "") if gpu.has_dtype("fp64_tc") else ("fp64", "")
    if precision == "fp32":
        return "fp32", ""
    if precision == "tf32":
        if gpu.has_dtype("tf32"):
            return "tf32", ""
        return "fp32", f"{gpu.display_name} has no TF32: FP32 rate"
    if precision == "fp8":
        if gpu.has_dtype("fp8"):
            return "fp8", ""
        key, _ = peak_key(gpu, "bf16-fp16", "bfloat16")
        return key, f"{gpu.display_name} has no FP8: {key.upper()} rate"
    # bf16-fp16
    want = "fp16" if dtype in ("float16", "half") else "bf16"
    if gpu.has_dtype(want):
        return want, ""
    other = "fp16" if want == "bf16" else "bf16"
    if gpu.has_dtype(other):
        return other, f"{gpu.display_name} has no {want.upper()}: {other.upper()} rate"
    return "fp32", f"{gpu.display_name} has no 16-bit rate: FP32 rate"


@dataclass(frozen=True)
class RooflinePoint:
    """One layer's projected time at one precision.

    Attributes:
        precision: ``"fp32"``, ``"tf32"``, ``"bf16-fp16"``, ``"fp8"`` (or ``"fp64"``).
        peak_key: the catalogue dtype whose peak was used (``"bf16"``, ``"fp16"``...).
        flop / bytes: FLOPs and estimated bytes per step at this precision.
        compute_us / memory_us / launch_us: the three roofline terms.
        fwd_us / bwd_us: the forward and backward parts of ``time_us``.
        time_us: ``max(compute_us, memory_us) + launch_us``.
        bound: ``"compute"``, ``"memory"`` or ``"launch"``.
        assumptions: fallbacks and scalings applied, in words.
    """

    precision: str
    peak_key: str
    flop: float
    bytes: float
    compute_us: float
    memory_us: float
    launch_us: float
    fwd_us: float
    bwd_us: float
    time_us: float
    bound: str
    assumptions: tuple[str, ...] = ()


def _bound(compute_us: float, memory_us: float, launch_us: float) -> str:
    if launch_us > max(compute_us, memory_us):
        return "launch"
    return "compute" if compute_us >= memory_us else "memory"


def roofline_point(
    cost: LayerCost,
    gpu: GPU,
    precision: str,
    launch_overhead_us: float,
    *,
    batch_scale: float = 1.0,
    flop_scale: float = 1.0,
    peak_override: str | None = None,
    as_run: bool = False,
) -> RooflinePoint:
    """Project one layer at one precision on ``gpu``.

    Args:
        cost: the layer's costs.
        gpu: the target GPU.
        precision: the precision its FLOPs run at.
        launch_overhead_us: cost of one kernel launch.
        batch_scale: multiply FLOPs and activation bytes (not parameter bytes or kernels) by
            this: the same layer at ``batch_scale`` x the batch size.
        flop_scale: multiply FLOPs by this (padded GEMM dimensions).
        peak_override: use this catalogue dtype's peak instead (a GEMM without tensor cores).
        as_run: the precision is the one the layer ran at: keep its measured element size
            (otherwise bytes scale to the precision's element size, :data:`PRECISION_BYTES`).
    """
    key, note = peak_key(gpu, precision, cost.dtype)
    if peak_override is not None:
        key, note = peak_override, f"{peak_override.upper()} rate assumed"
    notes = [note] if note else []
    measured_elem = cost.elem_bytes
    if not as_run and precision in PRECISION_BYTES and precision != "fp64":
        target_elem = PRECISION_BYTES[precision]
        if precision == "fp8" and cost.op_class not in ("conv", "matmul"):
            target_elem = _FP8_NON_GEMM_BYTES
    else:
        target_elem = measured_elem
    elem_scale = target_elem / measured_elem if measured_elem else 1.0
    if elem_scale != 1.0:
        notes.append(f"bytes scaled from {measured_elem} to {target_elem} B/element")
    flops_per_s = gpu.peak(key) * gpu.achievable_frac(key)
    bw = gpu.achievable_hbm_bandwidth_bytes_per_s
    act_fwd = (cost.in_bytes + cost.out_bytes) * batch_scale
    par_fwd = cost.param_read_bytes
    fwd_bytes = (act_fwd + par_fwd) * elem_scale
    bwd_bytes = 0.0
    if cost.bytes_bwd:
        bwd_bytes = ((cost.out_bytes + _BACKWARD_INPUT_PASSES * cost.in_bytes) * batch_scale
                     + _BACKWARD_PARAM_PASSES * par_fwd) * elem_scale
    flop_fwd = cost.flop_fwd * batch_scale * flop_scale
    flop_bwd = cost.flop_bwd * batch_scale * flop_scale
    c_fwd = flop_fwd / flops_per_s * _US_PER_S
    c_bwd = flop_bwd / flops_per_s * _US_PER_S
    m_fwd = fwd_bytes / bw * _US_PER_S
    m_bwd = bwd_bytes / bw * _US_PER_S
    l_fwd = cost.kernels_fwd * launch_overhead_us
    l_bwd = cost.kernels_bwd * launch_overhead_us
    fwd = max(c_fwd, m_fwd) + l_fwd
    bwd = max(c_bwd, m_bwd) + l_bwd
    compute, memory, launch = c_fwd + c_bwd, m_fwd + m_bwd, l_fwd + l_bwd
    return RooflinePoint(precision, key, flop_fwd + flop_bwd, fwd_bytes + bwd_bytes, compute, memory, launch,
                         fwd, bwd, fwd + bwd, _bound(compute, memory, launch), tuple(notes))


@dataclass(frozen=True)
class LayerRoofline:
    """One layer on the target: its costs, its projected time as run and at each precision.

    Attributes:
        name / kind / leaf: the layer.
        precision: the precision it ran at (:func:`run_precision`).
        flop / bytes / kernels: own FLOPs, estimated bytes and kernels per step.
        intensity_flop_per_byte: ``flop / bytes`` (NaN without bytes).
        ridge_flop_per_byte: the target's ridge point at that precision (peak / HBM bandwidth,
            hardware.md §1.2).
        compute_us / memory_us / launch_us: the roofline terms as run.
        fwd_us / bwd_us / time_us: projected times as run (per step).
        bound: ``"compute"``, ``"memory"`` or ``"launch"``.
        measured_us: measured self time per step on the profiled machine.
        by_precision: the projection at each precision the GPU has (:data:`PRECISIONS`).
        assumptions: fallbacks applied, in words.
        cost: the target-independent costs.
    """

    name: str
    kind: str
    leaf: bool
    precision: str
    flop: float
    bytes: float
    kernels: float
    intensity_flop_per_byte: float
    ridge_flop_per_byte: float
    compute_us: float
    memory_us: float
    launch_us: float
    fwd_us: float
    bwd_us: float
    time_us: float
    bound: str
    measured_us: float
    by_precision: Mapping[str, RooflinePoint] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()
    cost: LayerCost | None = field(default=None, repr=False, compare=False)


def supported_precisions(gpu: GPU) -> tuple[str, ...]:
    """The projection precisions ``gpu`` has a rate for (FP32 always)."""
    out = ["fp32"]
    if gpu.has_dtype("tf32"):
        out.append("tf32")
    if gpu.has_dtype("bf16") or gpu.has_dtype("fp16"):
        out.append("bf16-fp16")
    if gpu.has_dtype("fp8"):
        out.append("fp8")
    return tuple(out)


def layer_roofline(
    costs: Iterable[LayerCost],
    gpu: GPU,
    settings: Mapping[str, Any],
    launch_overhead_us: float,
    *,
    batch_scale: float = 1.0,
) -> tuple[LayerRoofline, ...]:
    """Project every layer on ``gpu`` at the precision it ran at and at each other precision.

    Args:
        costs: from :func:`layer_costs`.
        gpu: the target GPU.
        settings: the run's backend flags (``RankData.settings``).
        launch_overhead_us: cost of one kernel launch.
        batch_scale: project at this multiple of the profiled batch size.
    """
    bw = gpu.hbm_bandwidth_bytes_per_s
    precisions = supported_precisions(gpu)
    out = []
    for c in costs:
        prec = run_precision(c, settings)
        point = roofline_point(c, gpu, prec, launch_overhead_us, batch_scale=batch_scale, as_run=True)
        by = {p: roofline_point(c, gpu, p, launch_overhead_us, batch_scale=batch_scale) for p in precisions}
        flop, nbytes = point.flop, point.bytes
        out.append(LayerRoofline(
            name=c.name, kind=c.kind, leaf=c.leaf, precision=prec, flop=flop, bytes=nbytes,
            kernels=c.kernels,
            intensity_flop_per_byte=flop / nbytes if nbytes > 0 else math.nan,
            ridge_flop_per_byte=gpu.peak(point.peak_key) / bw,
            compute_us=point.compute_us, memory_us=point.memory_us, launch_us=point.launch_us,
            fwd_us=point.fwd_us, bwd_us=point.bwd_us, time_us=point.time_us, bound=point.bound,
            measured_us=c.measured_us, by_precision=MappingProxyType(by), assumptions=point.assumptions,
            cost=c,
        ))
    return tuple(out)


def fused_time_us(layer: LayerRoofline, gpu: GPU) -> float:
    """The layer's projected time once ``torch.compile`` fuses it, per step.

    Model (an optimistic bound, stated wherever it is used): a fusible layer (elementwise,
    normalisation, softmax, dropout: :data:`FUSIBLE_OPS`) is folded into a neighbouring kernel,
    so its activation reads and writes and its launches disappear; only its own parameters
    (normalisation weights) are still read and their gradients written. Other layers are
    unchanged.
    """
    c = layer.cost
    if c is None or c.op_class != "fusible":
        return layer.time_us
    param_bytes = c.param_read_bytes * (1 + (_BACKWARD_PARAM_PASSES if c.bytes_bwd else 0))
    return param_bytes / gpu.achievable_hbm_bandwidth_bytes_per_s * _US_PER_S

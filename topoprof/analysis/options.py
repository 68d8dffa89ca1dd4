"""Every threshold and model parameter of the analysis, in one options dataclass.

Each field carries its unit in its name and a comment naming where its default comes from:
TB = PyTorch Profiler TensorBoard plugin, HTA = Holistic Trace Analysis, NSYS = Nsight Systems
expert rules, DLP = DLProf, SMD = SageMaker Debugger, PTG = PyTorch Performance Tuning Guide
(``reference/rules.md``); hardware figures come from ``reference/hardware.md`` (section noted).
Override any of them: ``AnalysisOptions(input_bound_min_frac=0.1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["MIB", "DEFAULT_DDP_BUCKET_CAP_BYTES", "AnalysisOptions"]

MIB = 2**20
"""Bytes in a MiB (DDP's ``bucket_cap_mb`` is in MiB: ``bucket_cap_mb * 1024 * 1024``)."""

DEFAULT_DDP_BUCKET_CAP_BYTES = 25 * MIB
"""PyTorch DDP's default ``bucket_cap_mb=25`` (hardware.md §7.2)."""


@dataclass(frozen=True)
class AnalysisOptions:
    """Thresholds of the rules and parameters of the projection (units in the names).

    Fractions (``_frac``) are 0..1 of the step time unless the name says otherwise.
    """

    # --- Input pipeline and host ---------------------------------------------------------------
    input_bound_min_frac: float = 0.05
    """``input-bound``: data phase share of the step above which the rule fires (TB: 5 %)."""
    host_sync_min_per_step: float = 1.0
    """``host-sync``: device-to-host syncs per step at or above which it fires (NSYS
    ``cuda_api_sync``, PTG: any sync in the step)."""
    step_variance_max_cv_frac: float = 0.10
    """``step-variance``: coefficient of variation of step time above which it fires (SMD, DLP)."""
    step_outlier_sigmas: float = 3.0
    """``step-variance``: a step slower than the median by this many (robust) standard deviations
    is an outlier (SMD StepOutlier: 3 sigma)."""
    step_outlier_min_excess_frac: float = 0.10
    """``step-variance``: an outlier must also exceed the median step by this fraction, so steps
    of nearly equal length never count (topoprof; same 10 % as the CV threshold)."""
    step_variance_min_steps: int = 3
    """``step-variance``: fewest profiled steps the statistics are computed on (topoprof)."""
    launch_overhead_us: float | None = None
    """CPU-side cost of one kernel launch; None: the target GPU's (10 us, hardware.md §6.4: HTA
    5-20 us). Also the ``launch-bound`` cut: kernels shorter than this are launch-bound."""
    launch_bound_min_frac: float = 0.30
    """``launch-bound``: share of the projected step in kernels shorter than the launch cost
    above which it fires (HTA short kernels, PTG)."""
    gpu_idle_max_busy_frac: float = 0.50
    """``gpu-idle``: device busy share of the step below which it fires (TB 50 %, NSYS
    ``gpu_time_util``)."""
    pageable_memcpy_min_per_step: float = 1.0
    """``pageable-memcpy``: host-to-device copies from pageable memory per step at or above
    which it fires (NSYS ``cuda_memcpy_async``: any)."""

    # --- Compute -------------------------------------------------------------------------------
    hot_layers_step_frac: float = 0.50
    """``hot-layers``: the layers that together take this share of the step (topoprof)."""
    fp32_matmul_min_flop_frac: float = 0.50
    """``fp32-matmul``: float32 share of matmul/conv FLOPs above which it fires (TB
    no-tensor-cores, DLP AMP)."""
    alignment_16bit_elements: int = 8
    """``tensor-core-alignment``: fp16/bf16 GEMM dims should be multiples of this (16 bytes; NVIDIA
    DL performance guide, PTG, hardware.md §6.3)."""
    alignment_tf32_elements: int = 4
    """Same for TF32 (16 bytes of 4-byte elements, hardware.md §6.3)."""
    alignment_fp8_elements: int = 16
    """Same for FP8 (Transformer Engine: last dim % 16, hardware.md §6.3)."""
    alignment_exempt_max_in_channels: int = 4
    """``tensor-core-alignment``: a conv's input channels up to this (RGB/RGBA images) are not
    reported: cuDNN pads them itself (hardware.md §6.3, cuDNN legacy API doc)."""
    memory_bound_min_frac: float = 0.10
    """``memory-bound-layers``: projected step share of layers below the ridge point above which
    it fires (roofline, Williams et al. 2009)."""
    channels_last_conv_speedup: float = 1.5
    """``channels-last``: speed-up of 2-D conv kernels in NHWC with tensor cores; the low end of
    the 1.5-2x reported (MosaicML composer doc, PTG; hardware.md §6.3)."""
    optimizer_min_frac: float = 0.05
    """``optimizer-unfused``: optimizer phase share above which it fires (PTG)."""
    compile_min_pointwise_frac: float = 0.30
    """``compile-candidate``: projected step share of pointwise/normalisation layers above which
    it fires (PTG)."""

    # --- Memory --------------------------------------------------------------------------------
    memory_at_limit_frac: float = 0.90
    """``memory-at-limit``: projected peak over the GPU's memory above which it fires (TB 90 %);
    also the headroom kept when computing the batch size that fits."""
    memory_underused_frac: float = 0.30
    """``memory-underused``: projected peak over the GPU's memory below which it fires (DLP GPU
    memory underutilised, SMD BatchSize)."""
    memory_underused_max_batch_multiple: int = 8
    """``memory-underused``: the saving is estimated at the largest whole multiple of the batch
    that fits, up to this many times the batch (topoprof: larger jumps need the learning rate
    retuned, and the linear model of the roofline stops being a fair guide)."""
    master_weights_for_half_params: bool = True
    """Memory model: half-precision parameters are assumed to keep fp32 master weights
    (mixed precision, 16 B/param with Adam; rules.md ``model-exceeds-gpu``)."""

    # --- Distributed and DGX -------------------------------------------------------------------
    comm_exposed_min_frac: float = 0.10
    """``comm-exposed``: exposed (not overlapped) communication share of the step above which it
    fires (TB 10 %, HTA overlap)."""
    straggler_min_excess_frac: float = 0.10
    """``straggler-rank``: a rank whose median step exceeds the median of ranks by this fraction
    (HTA straggler, SMD LoadBalancing)."""
    nvlink_placement_min_gain_frac: float = 0.0
    """``nvlink-placement``: fires when the best GPU set of the same size all-reduces faster by
    more than this fraction of the chosen set's time (topoprof: any gain)."""
    scaling_min_efficiency_frac: float = 0.80
    """``scaling``: projected data-parallel efficiency on the target's GPUs below which it fires
    (topoprof)."""

    # --- Projection ----------------------------------------------------------------------------
    ddp_bucket_cap_bytes: int | None = None
    """DDP gradient bucket size; None: the run's (``RankData.ddp["bucket_cap_bytes"]``) when it
    used DDP, else :data:`DEFAULT_DDP_BUCKET_CAP_BYTES`."""
    ddp_first_bucket_bytes: int = 1 * MIB
    """Size of DDP's first bucket, all-reduced first (``torch.distributed``
    ``_DEFAULT_FIRST_BUCKET_BYTES``, 1 MiB; recalled from the PyTorch source, not in
    hardware.md)."""
    project_gpu_counts: tuple[int, ...] = (1, 2, 4, 8)
    """topoprof: GPU counts of the data-parallel projection within one node (capped at the node's GPUs;
    a 16-GPU node adds 16)."""
    project_nodes: tuple[int, ...] = (2, 4)
    """topoprof: node counts of the multi-node projection (all GPUs of each node, over the NICs)."""
    gpus: tuple[int, ...] | None = None
    """topoprof: the job's GPU indices within the node (``CUDA_VISIBLE_DEVICES``), for ``nvlink-placement``
    and the projection of that set; None: not given."""
    batch_size: int | None = None
    """topoprof: samples per forward pass; None: the run's ``batch_size`` tag."""

    # --- Ranking ---------------------------------------------------------------------------------
    severity_high_saving_frac: float = 0.20
    """A finding saving at least this share of the step is ``high`` severity (topoprof)."""
    severity_medium_saving_frac: float = 0.05
    """At least this share: ``medium``; below: ``low`` (topoprof)."""
    rules: tuple[str, ...] | None = None
    """topoprof: run only these rule ids (rules.md); None: all."""
    disabled_rules: tuple[str, ...] = field(default=())
    """topoprof: rule ids not to run (suppression, rules.md)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_frac") and isinstance(value, (int, float)) and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} is a fraction (0..1), got {value!r}")
        if self.gpus is not None:
            object.__setattr__(self, "gpus", tuple(sorted({int(g) for g in self.gpus})))
        cap = self.ddp_bucket_cap_bytes
        if (cap is not None and cap <= 0) or self.ddp_first_bucket_bytes <= 0:
            raise ValueError("DDP bucket sizes must be positive")

    def with_(self, **changes: Any) -> "AnalysisOptions":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)

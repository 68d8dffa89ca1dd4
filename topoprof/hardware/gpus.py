"""GPU catalogue: peak throughput, memory, NVLink and achievable fractions.

Every figure comes from ``reference/hardware.md`` and carries a :class:`Source`: the key of
that page's source table (section 9, e.g. ``"[g]"``) or the section it comes from when the
source has no key (section 6 measurements), a short note, and the page's confidence mark
(✅ ``"stated"``, ⚠️ ``"derived"``, ❓ ``"unconfirmed"``). Units are in the names; FLOP/s are
dense (no 2:4 sparsity), bandwidths are decimal bytes per second and one direction ("uni"),
memory sizes are the marketed decimal capacity (hardware.md section 1.1 notes: use the
marketed capacity for "fits or doesn't fit").

Also here: the NVLink generations and PCIe rates (hardware.md section 3) and NCCL's per-link
model bandwidths (section 5.2), which :mod:`topoprof.hardware.topology` uses.

>>> get_gpu("A100-80GB").peak("bf16")
312000000000000.0
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Literal

__all__ = [
    "Confidence",
    "Source",
    "GPU",
    "NVLinkGeneration",
    "NVLINK_GENERATIONS",
    "PCIE_X16_BANDWIDTH_BYTES_PER_S",
    "NCCL_PCI_MODEL_BANDWIDTH_BYTES_PER_S",
    "PCIE_EFFICIENCY_FRAC",
    "MAX_NVLINKS_PER_GPU",
    "DTYPES",
    "DEFAULT_ACHIEVABLE_FLOPS_FRAC",
    "DEFAULT_ACHIEVABLE_HBM_FRAC",
    "LAUNCH_OVERHEAD_US",
    "GPUS",
    "get_gpu",
    "list_gpus",
]

Confidence = Literal["stated", "derived", "unconfirmed"]
"""hardware.md's marks: ✅ stated by the source, ⚠️ derived by arithmetic, ❓ not confirmed."""

_CONFIDENCES: frozenset[str] = frozenset({"stated", "derived", "unconfirmed"})

GB = 1e9
"""Decimal gigabyte (hardware.md: GB and GB/s are 10^9)."""
TB = 1e12
MIB = 2**20
"""Cache sizes ("40 MB" L2) are binary; hardware.md writes MB, read here as MiB."""
TFLOPS = 1e12

DTYPES: tuple[str, ...] = ("fp64", "fp64_tc", "fp32", "tf32", "fp16", "bf16", "fp8", "fp4", "int8")
"""Keys of :attr:`GPU.peak_flops`. ``fp64`` is the vector unit, ``fp64_tc`` the FP64 tensor
core (Ampere and later; what cuBLAS DGEMM uses there). ``fp16`` on P100 is the non-tensor-core
rate. ``int8`` is in OP/s."""


@dataclass(frozen=True)
class Source:
    """Where one catalogue figure comes from.

    Attributes:
        key: hardware.md source key(s), e.g. ``"[g][h]"``, or ``"hardware.md §6.2"`` where the
            page cites a source without a key.
        note: short text: what the source says, and alternatives where sources conflict.
        confidence: ``"stated"`` (✅), ``"derived"`` (⚠️) or ``"unconfirmed"`` (❓).
    """

    key: str
    note: str
    confidence: Confidence = "stated"

    def __post_init__(self) -> None:
        if self.confidence not in _CONFIDENCES:
            raise ValueError(f"confidence must be one of {sorted(_CONFIDENCES)}, got {self.confidence!r}")


def _src(key: str, note: str, confidence: Confidence = "stated") -> Source:
    return Source(key=key, note=note, confidence=confidence)


# --- NVLink, PCIe (hardware.md §3.1, §3.3) and NCCL's model (§5.2) -------------------------


@dataclass(frozen=True)
class NVLinkGeneration:
    """One NVLink generation (hardware.md §3.1) with NCCL's per-link model bandwidth (§5.2).

    Attributes:
        generation: 1..5.
        links_per_gpu: NVLinks per GPU.
        link_bandwidth_bytes_per_s: per link, one direction (spec).
        nccl_link_bandwidth_bytes_per_s: the per-link bandwidth NCCL's cost model assumes
            (``SM60_NVLINK_BW`` ... ``SM100_NVLINK_BW`` in ``src/graph/topo.h``).
        source: where the figures come from.
    """

    generation: int
    links_per_gpu: int
    link_bandwidth_bytes_per_s: float
    nccl_link_bandwidth_bytes_per_s: float
    source: Source

    @property
    def gpu_bandwidth_bytes_per_s(self) -> float:
        """Per-GPU NVLink bandwidth, one direction (links × per-link rate)."""
        return self.links_per_gpu * self.link_bandwidth_bytes_per_s

    @property
    def efficiency_frac(self) -> float:
        """NCCL's model bandwidth over the spec (0..1): what a ring reaches of the link rate.

        Cross-check (hardware.md §5.2, §5.3): links × NCCL constant matches measured ring busbw
        (A100 240 vs 234.9 GB/s, H100 370.8 vs 365-368, B200 721.8 vs 673-682).
        """
        return self.nccl_link_bandwidth_bytes_per_s / self.link_bandwidth_bytes_per_s


NVLINK_GENERATIONS: Mapping[int, NVLinkGeneration] = MappingProxyType(
    {
        1: NVLinkGeneration(1, 4, 20 * GB, 18.0 * GB,
                            _src("[g2][q][nc1]", "P100: 4 links × 20 GB/s uni; NCCL SM60_NVLINK_BW 18")),
        2: NVLinkGeneration(2, 6, 25 * GB, 20.0 * GB,
                            _src("[g2][r][nc1]", "V100: 6 links × 25 GB/s uni; NCCL SM70_NVLINK_BW 20")),
        3: NVLinkGeneration(3, 12, 25 * GB, 20.0 * GB,
                            _src("[g2][h][aa][nc1]", "A100: 12 links × 25 GB/s uni; NCCL SM80_NVLINK_BW 20")),
        4: NVLinkGeneration(4, 18, 25 * GB, 20.6 * GB,
                            _src("[g2][i][nc1]",
                                 "H100/H200: 18 links × 25 GB/s uni; NCCL SM90_NVLINK_BW 20.6")),
        5: NVLinkGeneration(5, 18, 50 * GB, 40.1 * GB,
                            _src("[g2][nc1]", "B200: 18 links × 50 GB/s uni; NCCL SM100_NVLINK_BW 40.1")),
    }
)

MAX_NVLINKS_PER_GPU = max(g.links_per_gpu for g in NVLINK_GENERATIONS.values())
"""18 (hardware.md §3.1). A matrix whose GPU shows more NVLinks in total goes through a switch."""

_PCIE_GEN3_X16_BYTES_PER_S = 8e9 * 16 * 128 / 130 / 8
"""≈15.75 GB/s: 8 GT/s × 16 lanes × 128/130 encoding ÷ 8 (hardware.md §3.3, ⚠️ derived)."""

PCIE_X16_BANDWIDTH_BYTES_PER_S: Mapping[int, float] = MappingProxyType(
    {3: _PCIE_GEN3_X16_BYTES_PER_S, 4: 31 * GB, 5: 63 * GB}
)
"""PCIe x16 one direction, theoretical, by generation (hardware.md §3.3: Gen3 ⚠️, Gen4/5 [g2] ✅)."""

NCCL_PCI_MODEL_BANDWIDTH_BYTES_PER_S = 12.0 * GB
"""NCCL's ``PCI_BW`` for "PCI Gen3 x16" (hardware.md §5.2, [nc1])."""

PCIE_EFFICIENCY_FRAC = NCCL_PCI_MODEL_BANDWIDTH_BYTES_PER_S / _PCIE_GEN3_X16_BYTES_PER_S
"""≈0.76: NCCL's Gen3 model over the Gen3 theoretical rate (⚠️ derived); applied to every
generation for lack of a better figure (the one measurement, H200 H2D, reached 88 % of Gen5)."""

# --- Achievable fractions (hardware.md §6) ----------------------------------------------------

DEFAULT_ACHIEVABLE_FLOPS_FRAC = 0.803
"""❓ Placeholder where §6.1 has no measurement (P100, V100): the median of the BF16 MAMF
efficiencies listed there (72.9-86.9 %, median 80.3 %)."""

DEFAULT_ACHIEVABLE_HBM_FRAC = 0.87
"""❓ Placeholder where §6.2 has no measurement (P100, B200): the median of the fractions listed
there (75 %, 84 %, 87 %, 88 %, 90-93 %)."""

LAUNCH_OVERHEAD_US = 10.0
"""CPU-side CUDA kernel launch time: "between 5-20 microseconds" (HTA docs, hardware.md §6.4 ✅);
10 us is the geometric mean of that range (⚠️) and the launch cost rules.md's ``launch-bound`` uses."""

_IDENTITY_FIELDS = frozenset(
    {"name", "display_name", "architecture", "compute_capability", "peak_flops", "sources"}
)
"""GPU fields that name the part rather than state a figure: no source needed."""

_LAUNCH_SOURCE = _src("hardware.md §6.4",
                      "HTA: CPU-side launch 5-20 us; 10 us = geometric mean of the range", "derived")


@dataclass(frozen=True)
class GPU:
    """One GPU model. All throughputs dense, all bandwidths one direction.

    Attributes:
        name: catalogue key, e.g. ``"a100-80gb"``.
        display_name: e.g. ``"A100 SXM4 80 GB"``.
        architecture: e.g. ``"Ampere"``.
        compute_capability: e.g. ``"sm_80"``.
        sm_count: streaming multiprocessors.
        boost_clock_mhz: boost clock in MHz.
        peak_flops: dense peak FLOP/s (OP/s for ``int8``) by dtype key (see :data:`DTYPES`);
            a dtype the GPU lacks is absent (no ``bf16``/``tf32`` on V100).
        hbm_bytes: HBM capacity in bytes (marketed, decimal).
        hbm_bandwidth_bytes_per_s: HBM bandwidth in bytes/s.
        l2_bytes: L2 cache in bytes, or None where hardware.md gives no figure.
        tdp_w: board power in watts, or None.
        nvlink_generation: 1..5 (see :data:`NVLINK_GENERATIONS`).
        nvlink_links: NVLinks per GPU.
        nvlink_link_bandwidth_bytes_per_s: per link, one direction.
        nvlink_bandwidth_bytes_per_s: per GPU, one direction (links × per-link rate).
        pcie_generation: host PCIe generation.
        achievable_flops_frac: fraction of the 16-bit tensor-core peak a tuned GEMM reaches
            (hardware.md §6.1 MAMF / peak).
        achievable_fp8_flops_frac: same for FP8, or None where the GPU has no FP8.
        achievable_hbm_frac: fraction of HBM bandwidth a memory-bound kernel reaches (§6.2).
        launch_overhead_us: CPU-side cost of one kernel launch in microseconds (§6.4).
        sources: field name (``"peak_flops.bf16"`` for one dtype) -> :class:`Source`.
    """

    name: str
    display_name: str
    architecture: str
    compute_capability: str
    sm_count: int
    boost_clock_mhz: float
    peak_flops: Mapping[str, float] = field(hash=False)
    hbm_bytes: int
    hbm_bandwidth_bytes_per_s: float
    l2_bytes: int | None
    tdp_w: float | None
    nvlink_generation: int
    nvlink_links: int
    nvlink_link_bandwidth_bytes_per_s: float
    nvlink_bandwidth_bytes_per_s: float
    pcie_generation: int
    achievable_flops_frac: float
    achievable_fp8_flops_frac: float | None
    achievable_hbm_frac: float
    launch_overhead_us: float
    sources: Mapping[str, Source] = field(hash=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "peak_flops", MappingProxyType(dict(self.peak_flops)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        unknown = set(self.peak_flops) - set(DTYPES)
        if unknown:
            raise ValueError(f"{self.name}: unknown dtype keys {sorted(unknown)}")
        expected = self.nvlink_links * self.nvlink_link_bandwidth_bytes_per_s
        if abs(expected - self.nvlink_bandwidth_bytes_per_s) > 1.0:
            raise ValueError(f"{self.name}: NVLink per-GPU bandwidth is not links × per-link rate")
        missing = [f for f in self.sourced_fields() if f not in self.sources]
        if missing:
            raise ValueError(f"{self.name}: figures without a source: {missing}")

    # -- provenance ------------------------------------------------------------------------

    def sourced_fields(self) -> list[str]:
        """Names of the figures that must carry a source (``peak_flops.<dtype>`` per dtype)."""
        names = [f"peak_flops.{d}" for d in self.peak_flops]
        for f in fields(self):
            if f.name in _IDENTITY_FIELDS:
                continue
            if getattr(self, f.name) is None:
                continue
            names.append(f.name)
        return names

    def source(self, figure: str) -> Source:
        """The :class:`Source` of one figure, e.g. ``"hbm_bandwidth_bytes_per_s"`` or
        ``"peak_flops.bf16"``.

        Raises:
            KeyError: the figure is not in the catalogue for this GPU.
        """
        try:
            return self.sources[figure]
        except KeyError:
            raise KeyError(f"{self.name} has no figure {figure!r}") from None

    def confidence(self, figure: str) -> Confidence:
        """``"stated"``, ``"derived"`` or ``"unconfirmed"`` for one figure (see :meth:`source`)."""
        return self.source(figure).confidence

    # -- derived quantities ------------------------------------------------------------------

    def has_dtype(self, dtype: str) -> bool:
        """Whether the GPU has a peak for ``dtype`` (e.g. False for ``"bf16"`` on V100)."""
        return dtype in self.peak_flops

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype``.

        Raises:
            KeyError: the GPU lacks that dtype; the message lists the ones it has.
        """
        try:
            return self.peak_flops[dtype]
        except KeyError:
            raise KeyError(
                f"{self.display_name} has no {dtype} peak; it has: {', '.join(self.peak_flops)}"
            ) from None

    def achievable_frac(self, dtype: str) -> float:
        """Fraction of ``peak(dtype)`` a tuned kernel reaches (hardware.md §6.1).

        FP8 uses the FP8 MAMF efficiency where measured; every other dtype uses the 16-bit
        tensor-core efficiency, the only one hardware.md measures (an assumption for fp32/fp64).
        """
        if dtype in ("fp8", "fp4") and self.achievable_fp8_flops_frac is not None:
            return self.achievable_fp8_flops_frac
        return self.achievable_flops_frac

    def achievable_flops(self, dtype: str) -> float:
        """``peak(dtype) × achievable_frac(dtype)`` in FLOP/s."""
        return self.peak(dtype) * self.achievable_frac(dtype)

    @property
    def achievable_hbm_bandwidth_bytes_per_s(self) -> float:
        """``hbm_bandwidth_bytes_per_s × achievable_hbm_frac``."""
        return self.hbm_bandwidth_bytes_per_s * self.achievable_hbm_frac

    def ridge_point(self, dtype: str) -> float:
        """Roofline knee in FLOP/byte: ``peak(dtype) / hbm_bandwidth_bytes_per_s`` (hardware.md §1.2)."""
        return self.peak(dtype) / self.hbm_bandwidth_bytes_per_s

    @property
    def nvlink(self) -> NVLinkGeneration:
        """This GPU's :class:`NVLinkGeneration`."""
        return NVLINK_GENERATIONS[self.nvlink_generation]

    @property
    def pcie_bandwidth_bytes_per_s(self) -> float:
        """PCIe x16 theoretical bandwidth, one direction, for :attr:`pcie_generation`."""
        return PCIE_X16_BANDWIDTH_BYTES_PER_S[self.pcie_generation]

    def summary(self) -> dict[str, object]:
        """Plain data for tables and JSON (no formatting)."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "architecture": self.architecture,
            "sm_count": self.sm_count,
            "peak_flops": dict(self.peak_flops),
            "hbm_bytes": self.hbm_bytes,
            "hbm_bandwidth_bytes_per_s": self.hbm_bandwidth_bytes_per_s,
            "l2_bytes": self.l2_bytes,
            "nvlink_generation": self.nvlink_generation,
            "nvlink_bandwidth_bytes_per_s": self.nvlink_bandwidth_bytes_per_s,
            "achievable_flops_frac": self.achievable_flops_frac,
            "achievable_hbm_frac": self.achievable_hbm_frac,
        }


def _nvlink_fields(generation: int) -> dict[str, object]:
    gen = NVLINK_GENERATIONS[generation]
    return {
        "nvlink_generation": generation,
        "nvlink_links": gen.links_per_gpu,
        "nvlink_link_bandwidth_bytes_per_s": gen.link_bandwidth_bytes_per_s,
        "nvlink_bandwidth_bytes_per_s": gen.gpu_bandwidth_bytes_per_s,
    }


def _nvlink_sources(generation: int) -> dict[str, Source]:
    src = NVLINK_GENERATIONS[generation].source
    return {k: src for k in ("nvlink_generation", "nvlink_links",
                             "nvlink_link_bandwidth_bytes_per_s", "nvlink_bandwidth_bytes_per_s")}


_LAUNCH = {"launch_overhead_us": LAUNCH_OVERHEAD_US}

# --- The catalogue (hardware.md table 1.1 unless a source says otherwise) ---------------------

_P100 = GPU(
    name="p100", display_name="P100 SXM2 16 GB", architecture="Pascal", compute_capability="sm_60",
    sm_count=56, boost_clock_mhz=1480,
    peak_flops={"fp64": 5.3 * TFLOPS, "fp32": 10.6 * TFLOPS, "fp16": 21.2 * TFLOPS},
    hbm_bytes=int(16 * GB), hbm_bandwidth_bytes_per_s=732 * GB,
    l2_bytes=4 * MIB, tdp_w=300, **_nvlink_fields(1), pcie_generation=3,
    achievable_flops_frac=DEFAULT_ACHIEVABLE_FLOPS_FRAC, achievable_fp8_flops_frac=None,
    achievable_hbm_frac=DEFAULT_ACHIEVABLE_HBM_FRAC, **_LAUNCH,
    sources={
        "sm_count": _src("[a]", "V100 whitepaper comparison table: 56 SMs"),
        "boost_clock_mhz": _src("[a]", "1480 MHz"),
        "peak_flops.fp64": _src("[b]", "5.3 TFLOPS"),
        "peak_flops.fp32": _src("[b]", "10.6 TFLOPS"),
        "peak_flops.fp16": _src("[b]", "21.2 TFLOPS, no tensor cores, no BF16"),
        "hbm_bytes": _src("[b]", "16 GB HBM2"),
        "hbm_bandwidth_bytes_per_s": _src("[c]", "732 GB/s"),
        "l2_bytes": _src("hardware.md §1.1", "4 MB, not confirmed", "unconfirmed"),
        "tdp_w": _src("hardware.md §1.1", "300 W, not confirmed", "unconfirmed"),
        **_nvlink_sources(1),
        "pcie_generation": _src("hardware.md §2", "Gen3 x16 assumed same as DGX-1V", "unconfirmed"),
        "achievable_flops_frac": _src("hardware.md §6.1", "no P100 MAMF; median of listed GPUs",
                                      "unconfirmed"),
        "achievable_hbm_frac": _src("hardware.md §6.2", "no P100 measurement; median of listed",
                                    "unconfirmed"),
        "launch_overhead_us": _LAUNCH_SOURCE,
    },
)


def _v100(name: str, display: str, hbm_gb: int, hbm_key: str, *, sxm3: bool = False) -> GPU:
    peak_conf: Confidence = "derived" if sxm3 else "stated"
    peak_key = "[k]" if sxm3 else "[d]"
    peak_note = "as V100 SXM2; 125 = 2 PF / 16 GPUs of DGX-2" if sxm3 else "V100 final specs"
    return GPU(
        name=name, display_name=display, architecture="Volta", compute_capability="sm_70",
        sm_count=80, boost_clock_mhz=1530,
        peak_flops={"fp64": 7.8 * TFLOPS, "fp32": 15.7 * TFLOPS, "fp16": 125 * TFLOPS},
        hbm_bytes=int(hbm_gb * GB), hbm_bandwidth_bytes_per_s=900 * GB,
        l2_bytes=6 * MIB, tdp_w=350 if sxm3 else 300, **_nvlink_fields(2), pcie_generation=3,
        achievable_flops_frac=DEFAULT_ACHIEVABLE_FLOPS_FRAC, achievable_fp8_flops_frac=None,
        achievable_hbm_frac=785 / 900, **_LAUNCH,
        sources={
            "sm_count": _src("[a]", "80 SMs (GV100)", "derived" if sxm3 else "stated"),
            "boost_clock_mhz": _src("hardware.md §1.1",
                                    "1530 MHz final, not confirmed; whitepaper preliminary 1455 MHz [a]",
                                    "unconfirmed"),
            "peak_flops.fp64": _src(peak_key, f"7.8 TFLOPS; {peak_note}", peak_conf),
            "peak_flops.fp32": _src(peak_key, f"15.7 TFLOPS; {peak_note}", peak_conf),
            "peak_flops.fp16": _src(peak_key, f"125 TFLOPS tensor core (FP16 in, FP32 accumulate; "
                                              f"no BF16/TF32); {peak_note}", peak_conf),
            "hbm_bytes": _src(hbm_key, f"{hbm_gb} GB HBM2"),
            "hbm_bandwidth_bytes_per_s": (
                _src("hardware.md §1.1", "900 GB/s for SXM3, not confirmed", "unconfirmed") if sxm3
                else _src("[f]", "900 GB/s HBM2")),
            "l2_bytes": _src("hardware.md §1.1", "6 MB, not confirmed", "unconfirmed"),
            "tdp_w": _src("hardware.md §1.1", f"{350 if sxm3 else 300} W, not confirmed", "unconfirmed"),
            **_nvlink_sources(2),
            "pcie_generation": _src("hardware.md §2", "V100 is a Gen3 device", "derived"),
            "achievable_flops_frac": _src("hardware.md §6.1", "no V100 MAMF; median of listed GPUs",
                                          "unconfirmed"),
            "achievable_hbm_frac": _src("hardware.md §6.2",
                                        "FastIceFlo memcopy 785 of 900 GB/s ≈ 87 %", "derived"),
            "launch_overhead_us": _LAUNCH_SOURCE,
        },
    )


_V100_16 = _v100("v100-16gb", "V100 SXM2 16 GB", 16, "[e]")
_V100_32 = _v100("v100-32gb", "V100 SXM2 32 GB", 32, "[e][k]")
_V100_SXM3 = _v100("v100-sxm3-32gb", "V100 SXM3 32 GB (DGX-2)", 32, "[k][l]", sxm3=True)

_A100_COMPUTE_SOURCES: dict[str, Source] = {
    "sm_count": _src("[g]", "108 SMs"),
    "boost_clock_mhz": _src("[g]", "1410 MHz"),
    "peak_flops.fp64": _src("[h]", "9.7 TFLOPS"),
    "peak_flops.fp64_tc": _src("[h]", "19.5 TFLOPS FP64 tensor core"),
    "peak_flops.fp32": _src("[g][h]", "19.5 TFLOPS"),
    "peak_flops.tf32": _src("[g][h]", "156 TFLOPS dense"),
    "peak_flops.fp16": _src("[g][h]", "312 TFLOPS dense"),
    "peak_flops.bf16": _src("[g][h]", "312 TFLOPS dense"),
    "peak_flops.int8": _src("[g][h]", "624 TOPS dense"),
    "l2_bytes": _src("hardware.md §1.1", "40 MB, not confirmed", "unconfirmed"),
    "tdp_w": _src("[g]", "400 W"),
    **_nvlink_sources(3),
    "pcie_generation": _src("[h]", "A100 PCIe Gen4, 32 + 32 GB/s"),
    "achievable_flops_frac": _src("[g]", "A100 SXM BF16 MAMF 271.2 of 312 TFLOPS = 86.9 %"),
    "launch_overhead_us": _LAUNCH_SOURCE,
}


def _a100(name: str, display: str, hbm_gb: int, bw_gbps: float, hbm_src: Source, bw_src: Source,
          hbm_frac_src: Source) -> GPU:
    return GPU(
        name=name, display_name=display, architecture="Ampere", compute_capability="sm_80",
        sm_count=108, boost_clock_mhz=1410,
        peak_flops={"fp64": 9.7 * TFLOPS, "fp64_tc": 19.5 * TFLOPS, "fp32": 19.5 * TFLOPS,
                    "tf32": 156 * TFLOPS, "fp16": 312 * TFLOPS, "bf16": 312 * TFLOPS,
                    "int8": 624 * TFLOPS},
        hbm_bytes=int(hbm_gb * GB), hbm_bandwidth_bytes_per_s=bw_gbps * GB,
        l2_bytes=40 * MIB, tdp_w=400, **_nvlink_fields(3), pcie_generation=4,
        achievable_flops_frac=271.2 / 312, achievable_fp8_flops_frac=None,
        achievable_hbm_frac=0.88, **_LAUNCH,
        sources={**_A100_COMPUTE_SOURCES, "hbm_bytes": hbm_src, "hbm_bandwidth_bytes_per_s": bw_src,
                 "achievable_hbm_frac": hbm_frac_src},
    )


_A100_40 = _a100(
    "a100-40gb", "A100 SXM4 40 GB", 40, 1555,
    _src("[h]", "40 GB HBM2"), _src("[h]", "1,555 GB/s"),
    _src("hardware.md §6.2", "88 % measured on the 80 GB part (STREAM-like), applied to the 40 GB",
         "unconfirmed"),
)
_A100_80 = _a100(
    "a100-80gb", "A100 SXM4 80 GB", 80, 2039,
    _src("[g][h]", "80 GB HBM2e"), _src("[h]", "2,039 GB/s (2.00 TB/s in [g])"),
    _src("hardware.md §6.2", "user STREAM-like kernel 1.80 of 2.04 TB/s = 88 %; a memcopy "
                             "benchmark reached 75 %"),
)

_HOPPER_PEAKS = {"fp64": 34 * TFLOPS, "fp64_tc": 67 * TFLOPS, "fp32": 67 * TFLOPS, "tf32": 494.5 * TFLOPS,
                 "fp16": 989 * TFLOPS, "bf16": 989 * TFLOPS, "fp8": 1979 * TFLOPS, "int8": 1979 * TFLOPS}


def _hopper_peak_sources(derived_fp64: bool) -> dict[str, Source]:
    fp64_conf: Confidence = "derived" if derived_fp64 else "stated"
    fp64_key = "hardware.md §1.1" if derived_fp64 else "[j]"
    fp64_note = "same as H100 (same GH100 die)" if derived_fp64 else ""
    return {
        "peak_flops.fp64": _src(fp64_key, fp64_note or "34 TFLOPS datasheet (33.5 in [i])", fp64_conf),
        "peak_flops.fp64_tc": _src(fp64_key, fp64_note or "67 TFLOPS datasheet (66.9 in [i])", fp64_conf),
        "peak_flops.fp32": _src("[g]", "67 TFLOPS (66.9 in [i])"),
        "peak_flops.tf32": _src("[g]", "494.5 TFLOPS dense (494.7 in [i])"),
        "peak_flops.fp16": _src("[g]", "989 TFLOPS dense (989.4 in [i])"),
        "peak_flops.bf16": _src("[g]", "989 TFLOPS dense (989.4 in [i])"),
        "peak_flops.fp8": _src("[g]", "1979 TFLOPS dense (1978.9 in [i])"),
        "peak_flops.int8": _src("[g]", "1979 TOPS dense"),
    }


_H100 = GPU(
    name="h100", display_name="H100 SXM5 80 GB", architecture="Hopper", compute_capability="sm_90",
    sm_count=132, boost_clock_mhz=1830, peak_flops=_HOPPER_PEAKS,
    hbm_bytes=int(80 * GB), hbm_bandwidth_bytes_per_s=3.35 * TB,
    l2_bytes=50 * MIB, tdp_w=700, **_nvlink_fields(4), pcie_generation=5,
    achievable_flops_frac=794.5 / 989, achievable_fp8_flops_frac=1402.6 / 1979,
    achievable_hbm_frac=0.84, **_LAUNCH,
    sources={
        "sm_count": _src("[g][i]", "132 SMs"),
        "boost_clock_mhz": _src("[g]", "1830 MHz"),
        **_hopper_peak_sources(derived_fp64=False),
        "hbm_bytes": _src("[g][i]", "80 GB HBM3"),
        "hbm_bandwidth_bytes_per_s": _src("[g][i]", "3.35 TB/s"),
        "l2_bytes": _src("[j]", "50 MB"),
        "tdp_w": _src("[g][i]", "700 W"),
        **_nvlink_sources(4),
        "pcie_generation": _src("[i][j]", "H100 PCIe Gen5, 128 GB/s bidir"),
        "achievable_flops_frac": _src("[g]", "H100 SXM BF16 MAMF 794.5 of 989 = 80.3 %"),
        "achievable_fp8_flops_frac": _src("[g]", "H100 SXM FP8 MAMF 1402.6 of 1979 = 70.9 %"),
        "achievable_hbm_frac": _src("hardware.md §6.2", "coalesced access 2.8 TB/s = 84 % (blog)"),
        "launch_overhead_us": _LAUNCH_SOURCE,
    },
)

_H200 = GPU(
    name="h200", display_name="H200 SXM 141 GB", architecture="Hopper", compute_capability="sm_90",
    sm_count=132, boost_clock_mhz=1830, peak_flops=_HOPPER_PEAKS,
    hbm_bytes=int(141 * GB), hbm_bandwidth_bytes_per_s=4.8 * TB,
    l2_bytes=None, tdp_w=700, **_nvlink_fields(4), pcie_generation=5,
    achievable_flops_frac=794.5 / 989, achievable_fp8_flops_frac=1453.4 / 1979,
    achievable_hbm_frac=0.84, **_LAUNCH,
    sources={
        "sm_count": _src("[g]", "132 SMs"),
        "boost_clock_mhz": _src("[g]", "1830 MHz"),
        **_hopper_peak_sources(derived_fp64=True),
        "hbm_bytes": _src("[g]", "141 GB HBM3e (nvidia-smi 143,771 MiB [n])"),
        "hbm_bandwidth_bytes_per_s": _src("[g]", "4.8 TB/s"),
        "tdp_w": _src("[g]", "700 W"),
        **_nvlink_sources(4),
        "pcie_generation": _src("hardware.md §2", "DGX H200 Gen5, as DGX H100", "derived"),
        "achievable_flops_frac": _src("[g]", "BF16 MAMF: H100 SXM 80.3 %, 'H200 is the same'"),
        "achievable_fp8_flops_frac": _src("[g]", "H200 SXM FP8 MAMF 1453.4 of 1979 = 73.4 %"),
        "achievable_hbm_frac": _src("hardware.md §6.2", "no H200 figure; H100's 84 % assumed",
                                    "unconfirmed"),
        "launch_overhead_us": _LAUNCH_SOURCE,
    },
)

_B200 = GPU(
    name="b200", display_name="B200 (HGX/DGX, 1000 W)", architecture="Blackwell", compute_capability="sm_100",
    sm_count=148, boost_clock_mhz=1965,
    peak_flops={"fp64": 37 * TFLOPS, "fp32": 80 * TFLOPS, "tf32": 1125 * TFLOPS, "fp16": 2250 * TFLOPS,
                "bf16": 2250 * TFLOPS, "fp8": 4500 * TFLOPS, "fp4": 9000 * TFLOPS, "int8": 4500 * TFLOPS},
    hbm_bytes=int(180 * GB), hbm_bandwidth_bytes_per_s=8.0 * TB,
    l2_bytes=None, tdp_w=1000, **_nvlink_fields(5), pcie_generation=5,
    achievable_flops_frac=1745.0 / 2250, achievable_fp8_flops_frac=3432.5 / 4500,
    achievable_hbm_frac=DEFAULT_ACHIEVABLE_HBM_FRAC, **_LAUNCH,
    sources={
        "sm_count": _src("[g]", "148 SMs"),
        "boost_clock_mhz": _src("[g]", "1965 MHz device max"),
        "peak_flops.fp64": _src("[g]", "296 TFLOPS per 8 GPUs / 8 = 37; 40 in [o]", "derived"),
        "peak_flops.fp32": _src("[g][o]", "80 TFLOPS"),
        "peak_flops.tf32": _src("[g]", "1125 TFLOPS in [g], 1100 in [o]: conflicting", "unconfirmed"),
        "peak_flops.fp16": _src("[g][o]", "2250 TFLOPS dense"),
        "peak_flops.bf16": _src("[g][o]", "2250 TFLOPS dense"),
        "peak_flops.fp8": _src("[g][o]", "4500 TFLOPS dense"),
        "peak_flops.fp4": _src("[g]", "9000 TFLOPS dense"),
        "peak_flops.int8": _src("[g]", "4500 TOPS"),
        "hbm_bytes": _src("[g]", "180 GB HBM3e usable (192 GiB physical)"),
        "hbm_bandwidth_bytes_per_s": _src("[g]", "8.00 TB/s (7.7 TB/s in some sources, unconfirmed)"),
        "tdp_w": _src("[g][o]", "1000 W"),
        **_nvlink_sources(5),
        "pcie_generation": _src("[ah]", "DGX B200 PCIe Gen5"),
        "achievable_flops_frac": _src("[g]", "B200 SXM BF16 MAMF 1745.0 of 2250 = 77.6 %"),
        "achievable_fp8_flops_frac": _src("[g]", "B200 SXM FP8 MAMF 3432.5 of 4500 = 76.3 %"),
        "achievable_hbm_frac": _src("hardware.md §6.2", "no B200 measurement; median of listed",
                                    "unconfirmed"),
        "launch_overhead_us": _LAUNCH_SOURCE,
    },
)

GPUS: Mapping[str, GPU] = MappingProxyType(
    {g.name: g for g in (_P100, _V100_16, _V100_32, _V100_SXM3, _A100_40, _A100_80, _H100, _H200, _B200)}
)
"""The catalogue, keyed by :attr:`GPU.name`, in generation order."""


def _norm(name: str) -> str:
    """Lookup key: case, ``-``, ``_`` and spaces ignored (``"A100_80GB"`` == ``"a100-80gb"``)."""
    return re.sub(r"[\s_\-]", "", name.lower())


_GPU_ALIASES: Mapping[str, str] = MappingProxyType({
    # bare family names mean the part the DGX of that generation uses
    "v100": "v100-16gb",
    "a100": "a100-80gb",
    "h100sxm": "h100",
    "h100sxm5": "h100",
})

_GPU_KEYS: Mapping[str, str] = MappingProxyType(
    {**{_norm(n): n for n in GPUS}, **{_norm(a): n for a, n in _GPU_ALIASES.items()}}
)


def list_gpus() -> list[str]:
    """Catalogue names of all GPUs, in generation order."""
    return list(GPUS)


def get_gpu(name: str) -> GPU:
    """Look a GPU up by name, ignoring case, ``-``, ``_`` and spaces.

    ``"v100"`` means ``"v100-16gb"`` and ``"a100"`` means ``"a100-80gb"`` (the parts in
    ``dgx-1`` and ``dgx-a100``).

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    key = _GPU_KEYS.get(_norm(name))
    if key is None:
        raise KeyError(f"unknown GPU {name!r}; valid GPUs: {', '.join(GPUS)}")
    return GPUS[key]

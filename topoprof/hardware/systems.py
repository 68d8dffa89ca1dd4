"""DGX systems: GPUs, NVLink topology, NVSwitch/NVLS, NICs; lookup and all-reduce estimates.

Targets are the DGX systems of hardware.md section 2 (``dgx-1-p100``, ``dgx-1``, ``dgx-2``,
``dgx-a100``, ``dgx-a100-40``, ``dgx-h100``, ``dgx-h200``, ``dgx-b200``) and, for every GPU of
the catalogue, a **single-GPU target** of the same name (``"h100"``: one H100, no NVLink peers,
no NICs), for projecting a run onto one GPU. Names are matched ignoring case, ``-``, ``_`` and
spaces (``"DGX_A100"`` is ``dgx-a100``).

>>> get_target("DGX-A100").gpu.name
'a100-80gb'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import networkx as nx

from topoprof.errors import UnknownTargetError

from .gpus import GPU, GPUS, Source, _norm, _src, get_gpu
from .topology import (
    NCCL_INTER_SOCKET_BANDWIDTH_BYTES_PER_S,
    NCCL_NET_RING_HOP_LATENCY_US,
    NCCL_NVLINK_RING_HOP_LATENCY_US,
    NCCL_NVLS_LATENCY_US,
    NCCL_PCI_RING_HOP_LATENCY_US,
    CommEstimate,
    LinkModel,
    best_gpu_subset,
    build_gpu_graph,
    ring_allreduce,
    ring_allreduce_time_us,
    ring_latency_us,
    ring_plan,
)

__all__ = [
    "System",
    "SYSTEMS",
    "DGX1_V100_NVLINKS",
    "DGX1_P100_NVLINKS",
    "NIC_EFFICIENCY_FRAC",
    "get_target",
    "list_targets",
    "summary_rows",
    "estimate_allreduce",
]

BITS_PER_BYTE = 8

NIC_EFFICIENCY_FRAC = 12.0 / 12.5
"""0.96: NCCL reaches ≈12 GB/s per 100 Gb/s NIC (12.5 GB/s) and ≈24 per 200 Gb/s
(sjeaugey, hardware.md §3.3 [an]; ⚠️ derived). Cross-check: 4 × 8 B200 with 8 × 400 Gb/s
measured 381.8 GB/s busbw (§5.3), 8 × 50 × 0.96 = 384."""

DGX1_V100_NVLINKS: Mapping[tuple[int, int], int] = MappingProxyType({
    # quad 0-3
    (0, 1): 1, (0, 2): 1, (0, 3): 2, (1, 2): 2, (1, 3): 1, (2, 3): 2,
    # quad 4-7
    (4, 5): 1, (4, 6): 1, (4, 7): 2, (5, 6): 2, (5, 7): 1, (6, 7): 2,
    # cross-quad i <-> i+4
    (0, 4): 2, (1, 5): 2, (2, 6): 1, (3, 7): 1,
})
"""DGX-1 (V100) hybrid cube-mesh: NVLinks per GPU pair, hardware.md §4.2 (from the
``nvidia-smi topo -m`` of [v], §4.1): 16 pairs, 24 links, 6 per GPU; the 12 other pairs are
``SYS``."""

DGX1_P100_NVLINKS: Mapping[tuple[int, int], int] = MappingProxyType({p: 1 for p in DGX1_V100_NVLINKS})
"""DGX-1 (P100): the same 16 pairs with 1 link each (4 links per GPU), hardware.md §4.3 ⚠️."""


@dataclass(frozen=True)
class System:
    """A hardware target: one node of ``gpu_count`` GPUs and how they connect.

    Attributes:
        name: catalogue key, e.g. ``"dgx-a100"``.
        display_name: e.g. ``"DGX A100 640 GB"``.
        gpu: the GPU model.
        gpu_count: GPUs per node.
        interconnect: ``"hybrid cube-mesh"``, ``"NVSwitch"`` or ``"none"``.
        nvswitch: whether the GPUs meet in NVSwitches.
        nvswitch_count: NVSwitch chips per node.
        nvls: whether the NVSwitches do NVLink SHARP (in-switch all-reduce).
        nvls_busbw_frac: measured NVLS all-reduce busbw over the GPU's NVLink bandwidth (the
            nccl-tests convention applies 2(n-1)/n, so it can exceed 1), or None.
        nvls_min_gpus: the fewest GPUs NCCL was seen to use NVLS with, or None.
        nic_count: compute (scale-out) NICs per node.
        nic_gbit_per_s: rate of one NIC in Gb/s.
        nic_model: e.g. ``"ConnectX-6 HDR"``.
        cpu: host CPUs.
        inter_socket_bandwidth_bytes_per_s: CPU-to-CPU link (NCCL's model), or None.
        pcie_generation: host PCIe generation.
        nvlinks: NVLinks per GPU pair for direct meshes (DGX-1); None for NVSwitch (all-to-all)
            and single-GPU targets.
        sources: field name -> :class:`~topoprof.hardware.gpus.Source`.
    """

    name: str
    display_name: str
    gpu: GPU
    gpu_count: int
    interconnect: str
    nvswitch: bool
    nvswitch_count: int
    nvls: bool
    nvls_busbw_frac: float | None
    nvls_min_gpus: int | None
    nic_count: int
    nic_gbit_per_s: float
    nic_model: str
    cpu: str
    inter_socket_bandwidth_bytes_per_s: float | None
    pcie_generation: int
    nvlinks: Mapping[tuple[int, int], int] | None = field(default=None, hash=False)
    sources: Mapping[str, Source] = field(default_factory=dict, hash=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.nvlinks is not None:
            object.__setattr__(self, "nvlinks", MappingProxyType(dict(self.nvlinks)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        if self.nvls and (self.nvls_busbw_frac is None or self.nvls_min_gpus is None):
            raise ValueError(f"{self.name}: NVLS needs nvls_busbw_frac and nvls_min_gpus")

    # -- derived figures --------------------------------------------------------------------

    @property
    def nic_bandwidth_bytes_per_s(self) -> float:
        """One NIC, one direction, in bytes/s (Gb/s × 10^9 / 8)."""
        return self.nic_gbit_per_s * 1e9 / BITS_PER_BYTE

    @property
    def network_bandwidth_bytes_per_s(self) -> float:
        """All compute NICs of the node, one direction, in bytes/s."""
        return self.nic_count * self.nic_bandwidth_bytes_per_s

    @property
    def gpu_memory_bytes(self) -> int:
        """HBM of all GPUs of the node."""
        return self.gpu_count * self.gpu.hbm_bytes

    @property
    def single_gpu(self) -> bool:
        """True for the one-GPU targets named after a GPU."""
        return self.gpu_count == 1

    @property
    def link_model(self) -> LinkModel:
        """The bandwidths of this system's links, e.g. for
        ``parse_topology(text, model=system.link_model)``."""
        return LinkModel.for_gpu(
            self.gpu,
            inter_socket_bandwidth_bytes_per_s=self.inter_socket_bandwidth_bytes_per_s,
            pcie_generation=self.pcie_generation,
        )

    def interconnect_graph(self) -> nx.Graph:
        """The GPUs and their links as a graph (a new one per call; see
        :mod:`topoprof.hardware.topology` for the attributes).

        DGX-1: the hybrid cube-mesh, NVLink pairs of :data:`DGX1_V100_NVLINKS` (P100: one link
        each) and ``SYS`` for the other pairs. NVSwitch systems: all-to-all, every pair
        ``NV<links per GPU>`` (what ``nvidia-smi topo -m`` shows), the per-GPU NVLink bandwidth
        on the nodes. Single-GPU targets: one node.
        """
        graph = build_gpu_graph(self.gpu_count, self.nvlinks, self.link_model, name=self.name,
                                gpu_model=self.gpu.name)
        graph.graph.update(nvls=self.nvls, system=self.name)
        return graph

    def ring_busbw_bytes_per_s(self) -> float:
        """Effective ring all-reduce bus bandwidth over all GPUs of the node (0 for one GPU)."""
        return ring_plan(self.interconnect_graph()).effective_busbw_bytes_per_s

    def summary(self) -> dict[str, Any]:
        """One row of plain data for ``topoprof targets`` (no formatting)."""
        tensor_dtype = next((d for d in ("bf16", "fp16") if self.gpu.has_dtype(d)), "fp32")
        return {
            "name": self.name,
            "display_name": self.display_name,
            "gpu": self.gpu.name,
            "gpu_display_name": self.gpu.display_name,
            "gpu_count": self.gpu_count,
            "gpu_memory_bytes": self.gpu.hbm_bytes,
            "total_gpu_memory_bytes": self.gpu_memory_bytes,
            "tensor_dtype": tensor_dtype,
            "tensor_peak_flops": self.gpu.peak(tensor_dtype),
            "hbm_bandwidth_bytes_per_s": self.gpu.hbm_bandwidth_bytes_per_s,
            "interconnect": self.interconnect,
            "nvlink_generation": self.gpu.nvlink_generation,
            "nvlink_bandwidth_bytes_per_s": self.gpu.nvlink_bandwidth_bytes_per_s,
            "nvswitch": self.nvswitch,
            "nvls": self.nvls,
            "ring_busbw_bytes_per_s": self.ring_busbw_bytes_per_s(),
            "nic_count": self.nic_count,
            "nic_gbit_per_s": self.nic_gbit_per_s,
            "network_bandwidth_bytes_per_s": self.network_bandwidth_bytes_per_s,
        }


# --- The catalogue (hardware.md §2, §3.2, §4) ---------------------------------------------------

_NCCL_CPU = NCCL_INTER_SOCKET_BANDWIDTH_BYTES_PER_S


def _dgx_nvswitch(
    name: str, display: str, gpu: str, gpu_count: int, switches: int, nics: int, nic_gbit: float,
    nic_model: str, cpu: str, cpu_link: str, *, nvls: tuple[float, int] | None = None,
    sources: dict[str, Source],
) -> System:
    """An NVSwitch DGX; ``nvls`` is ``(nvls_busbw_frac, nvls_min_gpus)`` where it has NVLS."""
    return System(
        name=name, display_name=display, gpu=get_gpu(gpu), gpu_count=gpu_count, interconnect="NVSwitch",
        nvswitch=True, nvswitch_count=switches, nvls=nvls is not None,
        nvls_busbw_frac=nvls[0] if nvls else None, nvls_min_gpus=nvls[1] if nvls else None,
        nic_count=nics, nic_gbit_per_s=nic_gbit, nic_model=nic_model, cpu=cpu,
        inter_socket_bandwidth_bytes_per_s=_NCCL_CPU[cpu_link], pcie_generation=get_gpu(gpu).pcie_generation,
        nvlinks=None, sources=sources,
    )


_CUBE_MESH_SOURCE = _src("[v][r]", "hybrid cube-mesh, nvidia-smi topo -m of a DGX-1V (hardware.md §4.1/4.2)")

_DGX1_P100 = System(
    name="dgx-1-p100", display_name="DGX-1 (P100)", gpu=get_gpu("p100"), gpu_count=8,
    interconnect="hybrid cube-mesh", nvswitch=False, nvswitch_count=0, nvls=False, nvls_busbw_frac=None,
    nvls_min_gpus=None, nic_count=4, nic_gbit_per_s=100, nic_model="ConnectX-4 EDR InfiniBand",
    cpu="2x Xeon E5-2698 v3 (16 cores)", inter_socket_bandwidth_bytes_per_s=_NCCL_CPU["BDW"],
    pcie_generation=3,
    nvlinks=DGX1_P100_NVLINKS,
    sources={
        "gpu_count": _src("[p][q]", "8x P100 SXM2 16 GB"),
        "nvlinks": _src("[r][q]", "same cube-mesh as DGX-1V, 4 links/GPU so 1 per pair; GPU numbering "
                                  "not confirmed (hardware.md §4.3)", "derived"),
        "nic_count": _src("[t]", "4x ConnectX-4 IB EDR 100 Gb/s"),
        "nic_gbit_per_s": _src("[t]", "EDR 100 Gb/s"),
        "cpu": _src("[q]", "2x E5-2698 v3 at announcement; later v4 20-core, not confirmed"),
        "inter_socket_bandwidth_bytes_per_s": _src(
            "[nc1]", "Haswell not in NCCL's list; Broadwell QPI 6 GB/s", "unconfirmed"),
        "pcie_generation": _src("hardware.md §2", "Gen3 x16 assumed same as DGX-1V", "unconfirmed"),
    },
)

_DGX1 = System(
    name="dgx-1", display_name="DGX-1 (V100)", gpu=get_gpu("v100-16gb"), gpu_count=8,
    interconnect="hybrid cube-mesh", nvswitch=False, nvswitch_count=0, nvls=False, nvls_busbw_frac=None,
    nvls_min_gpus=None, nic_count=4, nic_gbit_per_s=100, nic_model="ConnectX-4 EDR InfiniBand",
    cpu="2x Xeon E5-2698 v4 (20 cores, 2.2 GHz)", inter_socket_bandwidth_bytes_per_s=_NCCL_CPU["BDW"],
    pcie_generation=3, nvlinks=DGX1_V100_NVLINKS,
    sources={
        "gpu_count": _src("[n1][u]", "8x V100 SXM2 16 GB (later 32 GB)"),
        "nvlinks": _CUBE_MESH_SOURCE,
        "nic_count": _src("[n1][w]", "4x ConnectX-4 IB EDR 100 Gb/s"),
        "nic_gbit_per_s": _src("[n1][w]", "EDR 100 Gb/s"),
        "cpu": _src("[n1][u]", "2x Xeon E5-2698 v4, 20 cores each, 2.2 GHz"),
        "inter_socket_bandwidth_bytes_per_s": _src("[nc1]", "NCCL model, Broadwell QPI 6 GB/s"),
        "pcie_generation": _src("[r]", "Gen3 x16; PLX PEX8764 switches [ao]"),
    },
)

_A100_SWITCH = _src("[aa][ab]", "6x NVSwitch gen2; 12 links/GPU, NV12 every pair [ad][aq]")
_HOPPER_SWITCH = _src("[af][ag]", "4x NVSwitch gen3 with NVLink SHARP; NV18 every pair assumed "
                                  "(no dump seen, hardware.md §4.4)")

_SYSTEMS_LIST: tuple[System, ...] = (
    _DGX1_P100,
    _DGX1,
    _dgx_nvswitch(
        "dgx-2", "DGX-2", "v100-sxm3-32gb", 16, 12, 8, 100, "ConnectX-5 EDR InfiniBand",
        "2x Xeon Platinum 8168 (24 cores, 2.7 GHz)", "SKL",
        sources={
            "gpu_count": _src("[k][n2]", "16x V100 SXM3 32 GB"),
            "nvswitch_count": _src("[l][x]", "12x NVSwitch gen1, 6 per baseboard; NV6 every pair [y]"),
            "nic_count": _src("[n2][z]", "8x ConnectX-5 EDR 100 Gb/s (10 mlx5 devices in [y])"),
            "nic_gbit_per_s": _src("[n2][z]", "EDR 100 Gb/s"),
            "cpu": _src("[n2]", "2x Xeon Platinum 8168"),
            "inter_socket_bandwidth_bytes_per_s": _src("[nc1]", "NCCL model, Skylake UPI 10 GB/s"),
            "pcie_generation": _src("hardware.md §2", "Gen3 (V100 is a Gen3 device)", "derived"),
        },
    ),
    _dgx_nvswitch(
        "dgx-a100", "DGX A100 640 GB", "a100-80gb", 8, 6, 8, 200, "ConnectX-6 HDR InfiniBand",
        "2x AMD EPYC 7742 (64 cores)", "AMD",
        sources={
            "gpu_count": _src("[n4]", "8x A100 SXM4 80 GB"),
            "nvswitch_count": _A100_SWITCH,
            "nic_count": _src("[n3]", "8x ConnectX-6 HDR 200 Gb/s (listed for the 640 GB system in §2)"),
            "nic_gbit_per_s": _src("[n3]", "HDR 200 Gb/s"),
            "cpu": _src("[n4]", "2x EPYC 7742"),
            "inter_socket_bandwidth_bytes_per_s": _src("[nc1]", "NCCL model, AMD 16 GB/s"),
            "pcie_generation": _src("[ad]", "Gen4, Broadcom/PLX switches"),
        },
    ),
    _dgx_nvswitch(
        "dgx-a100-40", "DGX A100 320 GB", "a100-40gb", 8, 6, 8, 200, "ConnectX-6 HDR InfiniBand",
        "2x AMD EPYC 7742 (64 cores)", "AMD",
        sources={
            "gpu_count": _src("[n3]", "8x A100 SXM4 40 GB 400 W"),
            "nvswitch_count": _A100_SWITCH,
            "nic_count": _src("[n3]", "8x ConnectX-6 HDR 200 Gb/s"),
            "nic_gbit_per_s": _src("[n3]", "HDR 200 Gb/s"),
            "cpu": _src("[n3][ac]", "2x EPYC 7742"),
            "inter_socket_bandwidth_bytes_per_s": _src("[nc1]", "NCCL model, AMD 16 GB/s"),
            "pcie_generation": _src("[ad]", "Gen4, Broadcom/PLX switches"),
        },
    ),
    _dgx_nvswitch(
        "dgx-h100", "DGX H100", "h100", 8, 4, 8, 400, "ConnectX-7 NDR InfiniBand",
        "2x Xeon Platinum 8480C (56 cores)", "SRP", nvls=(480 / 450, 5),
        sources={
            "gpu_count": _src("[af][n5]", "8x H100 SXM5 80 GB"),
            "nvswitch_count": _HOPPER_SWITCH,
            "nvls_busbw_frac": _src("hardware.md §5.3", "nccl-tests #212/#309: NVLS busbw ≈480 GB/s "
                                                        "on 1 node, over 450 GB/s NVLink; ring ≈370",
                                    "derived"),
            "nvls_min_gpus": _src("[g2]", "H200 measurements: 4 GPUs ring, 5 GPUs NVLS; assumed for H100",
                                  "derived"),
            "nic_count": _src("[af][n5]", "8x ConnectX-7 single-port NDR 400 Gb/s"),
            "nic_gbit_per_s": _src("[af][n5]", "NDR 400 Gb/s"),
            "cpu": _src("[af][n5]", "2x Xeon Platinum 8480C"),
            "inter_socket_bandwidth_bytes_per_s": _src("[nc1]", "NCCL model, Sapphire Rapids 22 GB/s"),
            "pcie_generation": _src("[af]", "Gen5"),
        },
    ),
    _dgx_nvswitch(
        "dgx-h200", "DGX H200", "h200", 8, 4, 8, 400, "ConnectX-7 NDR InfiniBand",
        "2x Xeon Platinum 8480C (56 cores)", "SRP", nvls=(482.26 / 450, 5),
        sources={
            "gpu_count": _src("[af][n6]", "8x H200 SXM 141 GB"),
            "nvswitch_count": _HOPPER_SWITCH,
            "nvls_busbw_frac": _src("[g2]", "16 GiB all-reduce: NVLS 482.26 GB/s vs ring 367.61, NVLink 450",
                                    "derived"),
            "nvls_min_gpus": _src("[g2]", "nccl-tests 8 GiB: 4 GPUs ring 363.3, 5 GPUs NVLS 414.2"),
            "nic_count": _src("[af]", "8x ConnectX-7 400 Gb/s"),
            "nic_gbit_per_s": _src("[af]", "400 Gb/s"),
            "cpu": _src("[af][n6]", "2x Xeon 8480C"),
            "inter_socket_bandwidth_bytes_per_s": _src("[nc1]", "NCCL model, Sapphire Rapids 22 GB/s"),
            "pcie_generation": _src("hardware.md §2", "Gen5, as DGX H100", "derived"),
        },
    ),
    _dgx_nvswitch(
        "dgx-b200", "DGX B200", "b200", 8, 2, 8, 400, "ConnectX-7 InfiniBand",
        "2x Xeon Platinum 8570 (56 cores)", "ERP", nvls=(838.0 / 900, 6),
        sources={
            "gpu_count": _src("[ah]", "8x B200, 1,440 GB"),
            "nvswitch_count": _src("[ah]", "2x 5th-gen NVLink switch chips, 14.4 TB/s aggregate; "
                                           "18 links/GPU; NV18 every pair assumed (no dump seen)"),
            "nvls_busbw_frac": _src("[g2]", "nccl-tests 8 GiB: NVLS 838.0 GB/s vs ring 682.2, NVLink 900",
                                    "derived"),
            "nvls_min_gpus": _src("[g2]", "NVLS used from 6 GPUs up"),
            "nic_count": _src("[ah]", "8x ConnectX-7 single-port, up to 400 Gb/s"),
            "nic_gbit_per_s": _src("[ah]", "400 Gb/s"),
            "cpu": _src("[ah]", "2x Xeon Platinum 8570"),
            "inter_socket_bandwidth_bytes_per_s": _src("[nc1]", "NCCL model, Emerald Rapids 40 GB/s"),
            "pcie_generation": _src("[ah]", "Gen5"),
        },
    ),
)

SYSTEMS: Mapping[str, System] = MappingProxyType({s.name: s for s in _SYSTEMS_LIST})
"""The DGX systems, keyed by name, in generation order."""


def _single_gpu_target(gpu: GPU) -> System:
    return System(
        name=gpu.name, display_name=f"1x {gpu.display_name}", gpu=gpu, gpu_count=1, interconnect="none",
        nvswitch=False, nvswitch_count=0, nvls=False, nvls_busbw_frac=None, nvls_min_gpus=None,
        nic_count=0, nic_gbit_per_s=0.0, nic_model="", cpu="", inter_socket_bandwidth_bytes_per_s=None,
        pcie_generation=gpu.pcie_generation, nvlinks={},
        sources={"gpu_count": _src("topoprof", "single-GPU target named after the GPU")},
    )


_SINGLE_GPU_TARGETS: Mapping[str, System] = MappingProxyType({g: _single_gpu_target(GPUS[g]) for g in GPUS})

_TARGET_ALIASES: Mapping[str, str] = MappingProxyType({
    "dgx-1-v100": "dgx-1",
    "dgx-1v": "dgx-1",
    "dgx-1-pascal": "dgx-1-p100",
    "dgx-a100-80": "dgx-a100",
    "dgx-a100-640": "dgx-a100",
    "dgx-a100-320": "dgx-a100-40",
    # bare GPU family names: the part the matching DGX uses
    "v100": "v100-16gb",
    "a100": "a100-80gb",
})

_TARGET_KEYS: Mapping[str, str] = MappingProxyType({
    **{_norm(n): n for n in (*SYSTEMS, *_SINGLE_GPU_TARGETS)},
    **{_norm(a): n for a, n in _TARGET_ALIASES.items()},
})


def list_targets(*, include_gpus: bool = True) -> list[str]:
    """Target names: the DGX systems, then (``include_gpus``) the single-GPU targets."""
    return [*SYSTEMS, *(_SINGLE_GPU_TARGETS if include_gpus else ())]


def get_target(name: str | System) -> System:
    """Look a target up by name, ignoring case, ``-``, ``_`` and spaces.

    A bare GPU name (``"h100"``, ``"a100-40gb"``; ``"a100"`` is the 80 GB part, ``"v100"`` the
    16 GB one) is a single GPU of that kind. A :class:`System` is returned as is.

    Raises:
        UnknownTargetError: unknown name; the message lists the valid ones.
    """
    if isinstance(name, System):
        return name
    key = _TARGET_KEYS.get(_norm(str(name)))
    if key is None:
        raise UnknownTargetError(
            f"unknown hardware target {name!r}; valid targets: {', '.join(list_targets())}"
        )
    return SYSTEMS.get(key) or _SINGLE_GPU_TARGETS[key]


def summary_rows(*, include_gpus: bool = True) -> list[dict[str, Any]]:
    """:meth:`System.summary` of every target, for ``topoprof targets``."""
    return [get_target(n).summary() for n in list_targets(include_gpus=include_gpus)]


# --- All-reduce on a target ----------------------------------------------------------------------

_ALGORITHMS = ("auto", "ring", "nvls")


def estimate_allreduce(
    target: str | System,
    size_bytes: float,
    *,
    gpus: int | Iterable[int] | None = None,
    nodes: int = 1,
    algorithm: str = "auto",
) -> CommEstimate:
    """Time of one all-reduce of ``size_bytes`` on a target.

    Within a node: the ring of :func:`~topoprof.hardware.topology.ring_allreduce` over the
    system's graph, or NVLS (NVLink SHARP) where the system has it and the set has at least
    ``nvls_min_gpus`` GPUs (what NCCL picks; ``algorithm="auto"``). NVLS time uses the measured
    NVLS busbw (hardware.md §5.3) in the same formula ``2(n-1)/n · S / busbw``.

    Across nodes: one ring through all GPUs whose inter-node hops go over the NICs (one ring per
    NIC, as NCCL's rails do): ``busbw = min(intra-node busbw, NIC bandwidth of the GPUs used ×
    0.96)``; NCCL's latency adds the network steps.

    Args:
        target: a target name or :class:`System`.
        size_bytes: S, the bytes reduced.
        gpus: GPU indices per node; an int k picks the best-connected k GPUs
            (:func:`~topoprof.hardware.topology.best_gpu_subset`); all GPUs when None.
        nodes: how many nodes.
        algorithm: ``"auto"``, ``"ring"`` or ``"nvls"``.

    Raises:
        UnknownTargetError: unknown target.
        ValueError: bad arguments (NVLS on a system without it or across nodes, a node without
            NICs across nodes, GPUs not in the system).

    >>> est = estimate_allreduce("dgx-h100", 1e9)
    >>> est.algorithm, round(est.busbw_bytes_per_s / 1e9)
    ('nvls', 480)
    """
    system = get_target(target)
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(_ALGORITHMS)}, got {algorithm!r}")
    if nodes < 1:
        raise ValueError(f"nodes must be at least 1, got {nodes}")
    if algorithm == "nvls" and not system.nvls:
        raise ValueError(f"{system.name} has no NVLink SHARP (NVLS); hardware.md lists it for NVSwitch gen3+ "
                         f"systems (dgx-h100, dgx-h200, dgx-b200)")
    if algorithm == "nvls" and nodes > 1:
        raise ValueError("NVLS is modelled within one node only; use algorithm='auto' or 'ring' across nodes")
    graph = system.interconnect_graph()
    if isinstance(gpus, int):
        chosen = best_gpu_subset(graph, gpus)
    else:
        chosen = tuple(sorted(set(gpus))) if gpus is not None else tuple(range(system.gpu_count))
    g = len(chosen)

    if nodes == 1:
        use_nvls = system.nvls and g > 1 and (
            algorithm == "nvls" or (algorithm == "auto" and g >= (system.nvls_min_gpus or g + 1)))
        if not use_nvls:
            return ring_allreduce(graph, size_bytes, chosen)
        return _nvls_allreduce(system, size_bytes, chosen)

    if system.nic_count == 0:
        raise ValueError(f"{system.name} has no NICs: it cannot span {nodes} nodes")
    return _multinode_allreduce(system, graph, size_bytes, chosen, nodes)


def _nvls_allreduce(system: System, size_bytes: float, chosen: tuple[int, ...]) -> CommEstimate:
    g = len(chosen)
    nvlink = system.gpu.nvlink_bandwidth_bytes_per_s
    frac = system.nvls_busbw_frac or 0.0
    busbw = nvlink * frac
    # Ideal in-switch reduction: each GPU sends S and receives S once, t = S / NVLink, which
    # in the busbw convention (factor 2(n-1)/n) is 2(n-1)/n × the NVLink bandwidth.
    peak = nvlink * 2 * (g - 1) / g
    bw_us = ring_allreduce_time_us(size_bytes, g, busbw)
    notes = (
        f"NVLS (NVLink SHARP): busbw = {frac:.3f} × {nvlink / 1e9:.0f} GB/s NVLink, as measured on 8 GPUs "
        f"(hardware.md §5.3); the same fraction assumed for {g} GPUs",
        "NVLS latency: NCCL's NVLS hardware latency (25 us)",
    )
    return CommEstimate("all_reduce", "nvls", size_bytes, chosen, 1, bw_us + NCCL_NVLS_LATENCY_US, bw_us,
                        NCCL_NVLS_LATENCY_US, busbw, peak, busbw / peak, "nvls", (), notes)


def _multinode_allreduce(system: System, graph: nx.Graph, size_bytes: float, chosen: tuple[int, ...],
                         nodes: int) -> CommEstimate:
    g = len(chosen)
    plan = ring_plan(graph, chosen)
    # GPUs use their share of the node's NICs (1 per GPU on DGX A100 and later, 1 per 2 on DGX-1/2).
    net_peak = g * system.network_bandwidth_bytes_per_s / system.gpu_count
    net_busbw = net_peak * NIC_EFFICIENCY_FRAC
    if g > 1:
        intra_busbw, intra_peak = plan.effective_busbw_bytes_per_s, plan.busbw_bytes_per_s
    else:
        intra_busbw = intra_peak = float("inf")
    busbw = min(intra_busbw, net_busbw)
    peak = min(intra_peak, net_peak)
    bound = "network" if net_busbw <= intra_busbw else plan.bound
    ranks = g * nodes
    bw_us = ring_allreduce_time_us(size_bytes, ranks, busbw)
    intra_hop = (NCCL_NVLINK_RING_HOP_LATENCY_US if plan.bound in ("nvlink", "none")
                 else NCCL_PCI_RING_HOP_LATENCY_US)
    lat_us = ring_latency_us(ranks, nodes, intra_hop, NCCL_NET_RING_HOP_LATENCY_US)
    notes = (
        *plan.assumptions,
        f"{nodes} nodes x {g} GPUs: one ring through all {ranks} GPUs, inter-node hops over "
        f"{g * system.nic_count / system.gpu_count:g} x {system.nic_gbit_per_s:g} Gb/s NICs per node at "
        f"{NIC_EFFICIENCY_FRAC:.2f} of line rate (hardware.md §3.3 [an])",
        "busbw = min(intra-node ring busbw, NIC bandwidth); the hierarchical model of hardware.md §5.2 "
        "(reduce-scatter, inter-node all-reduce, all-gather) gives the same NIC bound when overlapped",
    )
    return CommEstimate("all_reduce", "ring", size_bytes, chosen, nodes, bw_us + lat_us, bw_us, lat_us, busbw,
                        peak, busbw / peak, bound, plan.rings, notes)


"""GPU interconnect graphs: the ``nvidia-smi topo -m`` parser, rings and all-reduce estimates.

One graph type serves the catalogue (:meth:`topoprof.hardware.System.interconnect_graph`) and
parsed matrices (:func:`parse_topology`): an undirected :class:`networkx.Graph` holding the full
matrix, one edge per device pair.

Nodes
    GPUs are ``int`` keys (the index in ``GPU3``, the one ``CUDA_VISIBLE_DEVICES`` uses) with
    ``kind="gpu"``, ``label`` (``"GPU3"``), ``nvlink_links`` (NVLink ports of that GPU),
    ``nvlink_bandwidth_bytes_per_s`` (its NVLink bandwidth, one direction) and, when parsed,
    ``cpu_affinity``, ``numa_affinity`` and ``gpu_numa_id`` (None where ``N/A`` or absent).
    NICs are ``str`` keys (the matrix label, ``"NIC0"`` or ``"mlx5_0"``) with ``kind="nic"``
    and ``device`` (from the ``NIC Legend:`` when there is one, else the label).
Edges
    ``path`` (the matrix entry: ``"NV2"``, ``"PIX"``, ``"PXB"``, ``"PHB"``, ``"NODE"``,
    ``"SYS"``, ``"SOC"``), ``links`` (number of NVLinks, 0 for PCIe paths), ``nvlink`` (bool),
    ``bandwidth_bytes_per_s`` (one direction: links × per-link rate for NVLink; the PCIe or
    inter-socket rate of the :class:`LinkModel` otherwise).
Graph attributes
    ``name``, ``nvswitch`` (True when the GPUs reach each other through a switch), and the
    :class:`LinkModel` figures the edges were computed with, plus ``assumptions`` (list of text).

NVSwitch systems are modelled **all-to-all** (every GPU pair an edge of ``links`` = the GPU's
NVLink count), not as a switch node: that is what ``nvidia-smi topo -m`` prints (``NV12`` for
every pair on a DGX A100), so parsed and catalogue graphs compare edge for edge; the per-GPU
limit lives on the nodes (``nvlink_bandwidth_bytes_per_s``), and ring bandwidth is capped by it,
which is exactly what the switch's non-blocking crossbar gives (hardware.md §3.2).

Ring all-reduce (hardware.md §5.1): ``t = 2(n-1)/n · S / busbw``. NCCL runs several rings at
once (channels), in both directions, so the bus bandwidth of a GPU set is that of the best
*packing* of Hamiltonian rings into the NVLink graph (each ring used in both directions, each
link direction and each GPU's NVLink ports not over-subscribed). On the DGX-1 (V100) that is
the 2-link ring 0-3-2-1-5-6-7-4 (50 GB/s) plus the 1-link ring 0-1-3-7-5-4-6-2 (25 GB/s), both
ways: 150 GB/s, the figure hardware.md §4.2 derives; a single ring would give only 50 GB/s.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx

from topoprof.errors import TopologyFormatError

from .gpus import (
    GPU,
    MAX_NVLINKS_PER_GPU,
    NVLINK_GENERATIONS,
    PCIE_EFFICIENCY_FRAC,
    PCIE_X16_BANDWIDTH_BYTES_PER_S,
)

__all__ = [
    "PCIE_PATHS",
    "NCCL_INTER_SOCKET_BANDWIDTH_BYTES_PER_S",
    "NCCL_RING_BASE_LATENCY_US",
    "NCCL_NVLINK_RING_HOP_LATENCY_US",
    "NCCL_PCI_RING_HOP_LATENCY_US",
    "NCCL_NET_RING_HOP_LATENCY_US",
    "NCCL_NVLS_LATENCY_US",
    "LinkModel",
    "DEFAULT_LINK_MODEL",
    "path_bandwidth_bytes_per_s",
    "path_resource",
    "build_gpu_graph",
    "parse_topology",
    "read_topology",
    "gpu_nodes",
    "nvlink_graph",
    "nvlink_pairs",
    "nvlink_connected",
    "missing_nvlinks",
    "RingPlan",
    "ring_plan",
    "best_gpu_subset",
    "CommEstimate",
    "ring_allreduce_time_us",
    "ring_latency_us",
    "ring_allreduce",
    "describe_topology",
]

PCIE_PATHS: tuple[str, ...] = ("PIX", "PXB", "PHB", "NODE", "SYS", "SOC")
"""Non-NVLink entries of ``nvidia-smi topo -m`` (hardware.md §4.1 legend; ``SOC`` is the old
name of ``SYS``)."""

_SAME_SOCKET_PATHS = frozenset({"PIX", "PXB", "PHB", "NODE"})
_CROSS_SOCKET_PATHS = frozenset({"SYS", "SOC"})

NCCL_INTER_SOCKET_BANDWIDTH_BYTES_PER_S: Mapping[str, float] = {
    "BDW": 6e9,   # Broadwell QPI
    "SKL": 10e9,  # Skylake QPI/UPI
    "SRP": 22e9,  # Sapphire Rapids
    "ERP": 40e9,  # Emerald Rapids
    "AMD": 16e9,
}
"""NCCL's model of the CPU-to-CPU link, one direction (hardware.md §3.3, [nc1] ``topo.h``).
hardware.md has no spec figure for these links, so this model value is used as is."""

# NCCL tuner latencies (hardware.md §5.2, [nc2] tuning.cc), Simple protocol: the one NCCL
# picks for the large messages where the bandwidth term matters.
NCCL_RING_BASE_LATENCY_US = 8.4
"""``baseLatencies`` Ring / Simple."""
NCCL_NVLINK_RING_HOP_LATENCY_US = 3.4
"""``hwLatencies`` NVLink Ring / Simple, per step."""
NCCL_PCI_RING_HOP_LATENCY_US = 5.7
"""``hwLatencies`` PCI Ring / Simple, per step."""
NCCL_NET_RING_HOP_LATENCY_US = 14.0
"""``hwLatencies`` NET Ring / Simple, per step."""
NCCL_NVLS_LATENCY_US = 25.0
"""``hwLatencies`` NVLink NVLS; "NVLS latency = intraLat"."""

_EPS_BYTES_PER_S = 1.0
"""Bandwidths closer than 1 B/s are equal (guards float residue in ring packing)."""
_MAX_RING_CYCLES = 20_000
"""Most Hamiltonian cycles enumerated for one GPU set; an 8-GPU set has at most 2,520."""
_MAX_PACKING_STATES = 20_000
"""Most search states of the ring packing; DGX-1 sets need a few dozen."""
_MAX_SUBSETS = 2_000
"""Most GPU subsets :func:`best_gpu_subset` tries one by one; beyond, it grows a set greedily
(C(8, 4) = 70; C(16, 8) = 12,870)."""
_MAX_EXACT_FALLBACK_GPUS = 9
"""Above this, the PCIe fallback ring is found greedily instead of by enumeration."""
_US_PER_S = 1e6


# --- Link model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkModel:
    """The bandwidth figures an interconnect graph's edges are computed with.

    Attributes:
        nvlink_link_bandwidth_bytes_per_s: one NVLink, one direction.
        nvlink_links_per_gpu: NVLink ports per GPU, or None to infer it from the matrix (sum of
            a GPU's NVLinks, or its largest bond when that sum exceeds 18, the most any GPU has:
            then the GPUs meet in a switch).
        nvlink_efficiency_frac: fraction of the NVLink rate a ring reaches.
        pcie_bandwidth_bytes_per_s: PCIe x16, one direction.
        pcie_efficiency_frac: fraction of the PCIe rate a ring reaches.
        inter_socket_bandwidth_bytes_per_s: CPU-to-CPU link (NCCL's model value).
        nvlink_generation: 1..5, or None when unknown.
        assumptions: what the figures assume, in words.
    """

    nvlink_link_bandwidth_bytes_per_s: float = NVLINK_GENERATIONS[2].link_bandwidth_bytes_per_s
    nvlink_links_per_gpu: int | None = None
    nvlink_efficiency_frac: float = NVLINK_GENERATIONS[2].efficiency_frac
    pcie_bandwidth_bytes_per_s: float = PCIE_X16_BANDWIDTH_BYTES_PER_S[3]
    pcie_efficiency_frac: float = PCIE_EFFICIENCY_FRAC
    inter_socket_bandwidth_bytes_per_s: float = NCCL_INTER_SOCKET_BANDWIDTH_BYTES_PER_S["BDW"]
    nvlink_generation: int | None = None
    assumptions: tuple[str, ...] = ()

    @classmethod
    def for_gpu(
        cls,
        gpu: GPU,
        *,
        inter_socket_bandwidth_bytes_per_s: float | None = None,
        pcie_generation: int | None = None,
        assumptions: Iterable[str] = (),
    ) -> LinkModel:
        """The model for a node of ``gpu``: its NVLink generation and PCIe generation.

        Args:
            gpu: the GPU model.
            inter_socket_bandwidth_bytes_per_s: the host's CPU-to-CPU link; the default is the
                most conservative x86 value of NCCL's model (Broadwell QPI, 6 GB/s).
            pcie_generation: overrides the GPU's PCIe generation.
            assumptions: extra assumption text to carry.
        """
        gen = gpu.nvlink
        notes = list(assumptions)
        if inter_socket_bandwidth_bytes_per_s is None:
            inter_socket_bandwidth_bytes_per_s = NCCL_INTER_SOCKET_BANDWIDTH_BYTES_PER_S["BDW"]
            notes.append("inter-socket link unknown: NCCL's Broadwell QPI model value (6 GB/s) assumed")
        return cls(
            nvlink_link_bandwidth_bytes_per_s=gen.link_bandwidth_bytes_per_s,
            nvlink_links_per_gpu=gpu.nvlink_links,
            nvlink_efficiency_frac=gen.efficiency_frac,
            pcie_bandwidth_bytes_per_s=PCIE_X16_BANDWIDTH_BYTES_PER_S[pcie_generation or gpu.pcie_generation],
            pcie_efficiency_frac=PCIE_EFFICIENCY_FRAC,
            inter_socket_bandwidth_bytes_per_s=inter_socket_bandwidth_bytes_per_s,
            nvlink_generation=gpu.nvlink_generation,
            assumptions=tuple(notes),
        )


DEFAULT_LINK_MODEL = LinkModel(
    assumptions=(
        "GPU model unknown: 25 GB/s per NVLink per direction (NVLink 2-4, hardware.md §3.1; "
        "pass a target for P100 at 20 or B200 at 50)",
        "GPU model unknown: ring efficiency 0.80 (NCCL 20 of 25 GB/s per link, hardware.md §5.2)",
        "host unknown: PCIe Gen3 x16 (15.75 GB/s) and NCCL's Broadwell QPI (6 GB/s) assumed",
    )
)
"""Used by :func:`parse_topology` when no model is given; conservative for the host links."""


def path_bandwidth_bytes_per_s(path: str, model: LinkModel = DEFAULT_LINK_MODEL) -> float:
    """Bandwidth of one matrix entry, one direction, in bytes/s.

    ``NV#``: # × per-link rate. ``PIX``/``PXB``/``PHB``/``NODE``: PCIe x16. ``SYS``/``SOC``: the
    lesser of PCIe and the inter-socket link.

    Raises:
        ValueError: ``path`` is not a connection code.
    """
    links = _nvlink_count(path)
    if links is not None:
        return links * model.nvlink_link_bandwidth_bytes_per_s
    if path in _SAME_SOCKET_PATHS:
        return model.pcie_bandwidth_bytes_per_s
    if path in _CROSS_SOCKET_PATHS:
        return min(model.pcie_bandwidth_bytes_per_s, model.inter_socket_bandwidth_bytes_per_s)
    raise ValueError(f"not a connection code: {path!r}")


def path_resource(path: str) -> str:
    """The resource a path's bandwidth stands for: ``"nvlink"``, ``"pcie"`` or ``"inter-socket"``."""
    if _nvlink_count(path) is not None:
        return "nvlink"
    return "inter-socket" if path in _CROSS_SOCKET_PATHS else "pcie"


_NV_CELL = re.compile(r"NV(\d+)")


def _nvlink_count(path: str) -> int | None:
    m = _NV_CELL.fullmatch(path)
    return int(m.group(1)) if m else None


# --- Graph building ----------------------------------------------------------------------------


def _set_model_attrs(graph: nx.Graph, model: LinkModel) -> None:
    graph.graph.update(
        nvlink_generation=model.nvlink_generation,
        nvlink_link_bandwidth_bytes_per_s=model.nvlink_link_bandwidth_bytes_per_s,
        nvlink_efficiency_frac=model.nvlink_efficiency_frac,
        pcie_bandwidth_bytes_per_s=model.pcie_bandwidth_bytes_per_s,
        pcie_efficiency_frac=model.pcie_efficiency_frac,
        inter_socket_bandwidth_bytes_per_s=model.inter_socket_bandwidth_bytes_per_s,
        assumptions=list(model.assumptions),
    )


def _add_edge(graph: nx.Graph, a: Hashable, b: Hashable, path: str, model: LinkModel) -> None:
    links = _nvlink_count(path) or 0
    graph.add_edge(a, b, path=path, links=links, nvlink=links > 0,
                   bandwidth_bytes_per_s=path_bandwidth_bytes_per_s(path, model))


def _annotate_gpu_capacity(graph: nx.Graph, model: LinkModel) -> None:
    """Set each GPU's NVLink port count and bandwidth, and the graph's ``nvswitch`` flag."""
    switched = False
    for g in gpu_nodes(graph):
        bonds = [d["links"] for _, _, d in graph.edges(g, data=True) if d["nvlink"]]
        total = sum(bonds)
        per_gpu = model.nvlink_links_per_gpu
        if total == 0:
            per_gpu = 0  # no NVLink in the matrix, whatever the model's GPU has
        elif per_gpu is None:
            per_gpu = max(bonds) if total > MAX_NVLINKS_PER_GPU else total
        if total > per_gpu:
            switched = True  # more links to peers than ports: they go through a switch
        graph.nodes[g]["nvlink_links"] = per_gpu
        graph.nodes[g]["nvlink_bandwidth_bytes_per_s"] = per_gpu * model.nvlink_link_bandwidth_bytes_per_s
    graph.graph["nvswitch"] = switched


def build_gpu_graph(
    gpu_count: int,
    nvlinks: Mapping[tuple[int, int], int] | None,
    model: LinkModel,
    *,
    name: str = "",
    other_path: str = "SYS",
    gpu_model: str | None = None,
) -> nx.Graph:
    """Interconnect graph of ``gpu_count`` GPUs (no NICs).

    Args:
        gpu_count: GPUs, numbered 0..gpu_count-1.
        nvlinks: NVLink count per GPU pair ``(i, j)``; None means all-to-all through NVSwitch,
            every pair bonded with all of the GPU's links (``model.nvlink_links_per_gpu``).
        model: bandwidths and efficiencies.
        name: the graph's ``name``.
        other_path: the ``nvidia-smi`` path of pairs without NVLink (``"SYS"`` on the DGX-1).
        gpu_model: catalogue GPU name stored on each node as ``model``.

    Returns:
        The graph described in the module docstring.
    """
    graph = nx.Graph(name=name)
    _set_model_attrs(graph, model)
    for i in range(gpu_count):
        graph.add_node(i, kind="gpu", label=f"GPU{i}", model=gpu_model)
    if nvlinks is None:
        if model.nvlink_links_per_gpu is None:
            raise ValueError("an all-to-all graph needs model.nvlink_links_per_gpu")
        nvlinks = {(i, j): model.nvlink_links_per_gpu for i, j in itertools.combinations(range(gpu_count), 2)}
    for (i, j), links in nvlinks.items():
        if not (0 <= i < gpu_count and 0 <= j < gpu_count) or i == j or links < 1:
            raise ValueError(f"bad NVLink pair {(i, j)}: {links}")
        _add_edge(graph, i, j, f"NV{links}", model)
    for i, j in itertools.combinations(range(gpu_count), 2):
        if not graph.has_edge(i, j):
            _add_edge(graph, i, j, other_path, model)
    _annotate_gpu_capacity(graph, model)
    return graph


# --- Parsing `nvidia-smi topo -m` --------------------------------------------------------------

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_MULTIWORD_COLUMNS = (
    (re.compile(r"cpu\s+affinity", re.IGNORECASE), "cpu_affinity"),
    (re.compile(r"numa\s+affinity", re.IGNORECASE), "numa_affinity"),
    (re.compile(r"gpu\s+numa\s+id", re.IGNORECASE), "gpu_numa_id"),
)
_AFFINITY_COLUMNS = frozenset(col for _, col in _MULTIWORD_COLUMNS)
_GPU_LABEL = re.compile(r"GPU(\d+)")
_MARKDOWN_RULE = re.compile(r"^[\s|:\-]+$")
_NIC_LEGEND = re.compile(r"^\s*(NIC\d+)\s*:\s*(\S+)\s*$")
_NOT_AVAILABLE = "N/A"


def _tokens(line: str) -> list[str] | None:
    """Whitespace tokens of one line (ANSI codes stripped, markdown pipes and multi-word column
    names folded); None for a markdown table rule."""
    line = _ANSI_RE.sub("", line)
    if "|" in line:
        if _MARKDOWN_RULE.match(line):
            return None
        line = line.replace("|", " ")
    if "ffinity" in line.lower() or "numa id" in line.lower():
        for pattern, column in _MULTIWORD_COLUMNS:
            line = pattern.sub(column, line)
    return line.split()


def _is_cell(token: str) -> bool:
    return token == "X" or token in PCIE_PATHS or _NV_CELL.fullmatch(token) is not None


def _affinity_value(value: str | None) -> str | int | None:
    if value is None or value == _NOT_AVAILABLE:
        return None
    return int(value) if value.isdigit() else value


def parse_topology(
    text: str,
    *,
    model: LinkModel | None = None,
    source: str = "<text>",
) -> nx.Graph:
    """Parse the output of ``nvidia-smi topo -m`` into an interconnect graph.

    Tolerates ANSI colour codes, tabs or spaces, text before the matrix (a prompt), the
    ``Legend:`` and ``NIC Legend:`` blocks and anything after them, ``CPU Affinity`` /
    ``NUMA Affinity`` / ``GPU NUMA ID`` columns (empty on NIC rows), old NIC labels
    (``mlx5_0``) and new ones (``NIC0`` with a legend), and a markdown copy of the matrix.

    Args:
        text: the command's output.
        model: bandwidths for the edges; :data:`DEFAULT_LINK_MODEL` when None (its assumptions
            are recorded in the graph). Use ``get_target(name).link_model`` for a known system.
        source: the file name used in error messages.

    Returns:
        The graph described in the module docstring; ``graph.graph["name"]`` is ``source``.

    Raises:
        TopologyFormatError: the text holds no matrix, or a malformed one; the message names
            ``source``, the line and what is wrong.
    """
    model = model or DEFAULT_LINK_MODEL
    lines = text.splitlines()

    def fail(lineno: int, what: str) -> TopologyFormatError:
        return TopologyFormatError(f"{source}:{lineno}: {what}")

    if not text.strip():
        raise fail(1, "empty; expected the output of `nvidia-smi topo -m`")

    header_at = None
    header: list[str] = []
    for lineno, raw in enumerate(lines, 1):
        toks = _tokens(raw)
        if toks and toks[0] == "GPU0" and (len(toks) == 1 or not _is_cell(toks[1])):
            header_at, header = lineno, toks
            break
    if header_at is None:
        raise fail(1, "no matrix header (a line of columns starting with GPU0) found; "
                      "expected the output of `nvidia-smi topo -m`")

    devices: list[str] = []
    affinity_cols: list[str] = []
    for tok in header:
        if tok.lower() in _AFFINITY_COLUMNS:
            affinity_cols.append(tok.lower())
        elif affinity_cols:
            raise fail(header_at, f"device column {tok!r} after the affinity columns")
        elif tok in devices:
            raise fail(header_at, f"column {tok!r} appears twice")
        elif _is_cell(tok):
            raise fail(header_at, f"column name {tok!r} is a connection code")
        else:
            devices.append(tok)
    index = {d: i for i, d in enumerate(devices)}
    n = len(devices)

    cells: dict[str, list[str]] = {}
    row_line: dict[str, int] = {}
    affinity: dict[str, dict[str, str | int | None]] = {}
    last_line = header_at
    after_matrix = len(lines)
    for lineno in range(header_at + 1, len(lines) + 1):
        toks = _tokens(lines[lineno - 1])
        if toks is None:
            continue
        if len(cells) == n:
            after_matrix = lineno - 1
            break
        if not toks:
            continue
        last_line = lineno
        label = toks[0]
        if label.rstrip(":").lower() == "legend":
            break
        if label not in index:
            missing = [d for d in devices if d not in cells]
            found = lines[lineno - 1].strip()[:60]
            raise fail(lineno, f"expected a matrix row for {missing[0]}, found {found!r}")
        if label in cells:
            raise fail(lineno, f"second row for {label}")
        row = toks[1:1 + n]
        if len(row) < n:
            raise fail(lineno, f"row {label} has {len(row)} cells, expected {n} (one per column)")
        for j, cell in enumerate(row):
            col = devices[j]
            if col == label:
                if cell != "X":
                    raise fail(lineno, f"row {label}, column {col}: expected X on the diagonal, "
                                       f"found {cell!r}")
            elif cell == "X":
                raise fail(lineno, f"row {label}, column {col}: X off the diagonal")
            elif not _is_cell(cell) or cell == "NV0":
                raise fail(lineno, f"row {label}, column {col}: unknown connection {cell!r} "
                                   f"(expected NV#, {', '.join(PCIE_PATHS)})")
            elif _nvlink_count(cell) and not (_GPU_LABEL.fullmatch(label) and _GPU_LABEL.fullmatch(col)):
                raise fail(lineno, f"row {label}, column {col}: NVLink {cell} to a non-GPU device")
        extra = toks[1 + n:]
        if len(extra) > len(affinity_cols):
            raise fail(lineno, f"row {label} has {len(extra) - len(affinity_cols)} cells more than columns")
        cells[label] = row
        row_line[label] = lineno
        values = dict(zip(affinity_cols, extra))
        affinity[label] = {col: _affinity_value(values.get(col)) for _, col in _MULTIWORD_COLUMNS}
    missing = [d for d in devices if d not in cells]
    if missing:
        raise fail(last_line, f"no row for {', '.join(missing)} (truncated matrix?)")

    for a, b in itertools.combinations(devices, 2):
        ab, ba = cells[a][index[b]], cells[b][index[a]]
        if ab != ba:
            raise fail(row_line[b], f"matrix not symmetric: {a}-{b} is {ab} but {b}-{a} is {ba}")

    nic_devices: dict[str, str] = {}
    for raw in lines[after_matrix:]:
        m = _NIC_LEGEND.match(_ANSI_RE.sub("", raw))
        if m:
            nic_devices[m.group(1)] = m.group(2)

    def key(label: str) -> Hashable:
        m = _GPU_LABEL.fullmatch(label)
        return int(m.group(1)) if m else label

    graph = nx.Graph(name=source, source=source)
    _set_model_attrs(graph, model)
    for label in devices:
        if _GPU_LABEL.fullmatch(label):
            graph.add_node(key(label), kind="gpu", label=label, model=None, **affinity[label])
        else:
            graph.add_node(key(label), kind="nic", label=label, device=nic_devices.get(label, label))
    for a, b in itertools.combinations(devices, 2):
        _add_edge(graph, key(a), key(b), cells[a][index[b]], model)
    _annotate_gpu_capacity(graph, model)
    return graph


def read_topology(path: str | os.PathLike[str], *, model: LinkModel | None = None) -> nx.Graph:
    """Read and parse an ``nvidia-smi topo -m`` file (see :func:`parse_topology`).

    Raises:
        TopologyFormatError: the file cannot be read or parsed (the message names it).
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        raise TopologyFormatError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    return parse_topology(text, model=model, source=name)


# --- Queries -----------------------------------------------------------------------------------


def gpu_nodes(graph: nx.Graph) -> list[int]:
    """The GPU nodes, sorted."""
    return sorted(v for v, d in graph.nodes(data=True) if d.get("kind") == "gpu")


def nvlink_graph(graph: nx.Graph) -> nx.Graph:
    """Read-only view of the GPUs and their NVLink edges only."""
    return nx.subgraph_view(
        graph,
        filter_node=lambda v: graph.nodes[v].get("kind") == "gpu",
        filter_edge=lambda u, v: bool(graph[u][v].get("nvlink")),
    )


def nvlink_pairs(graph: nx.Graph) -> dict[tuple[int, int], int]:
    """NVLink count per connected GPU pair ``(i, j)`` with ``i < j``."""
    return {tuple(sorted((u, v))): d["links"] for u, v, d in nvlink_graph(graph).edges(data=True)}


def _check_gpus(graph: nx.Graph, gpus: Iterable[int] | None) -> tuple[int, ...]:
    all_gpus = gpu_nodes(graph)
    if gpus is None:
        return tuple(all_gpus)
    chosen = tuple(sorted(set(gpus)))
    unknown = [g for g in chosen if g not in set(all_gpus)]
    if unknown:
        raise ValueError(f"GPUs {unknown} are not in the graph (it has {all_gpus})")
    return chosen


def nvlink_connected(graph: nx.Graph, gpus: Iterable[int] | None = None) -> bool:
    """Whether the GPUs reach each other over NVLink without leaving the set.

    True when the NVLink edges among ``gpus`` form a connected graph (GPU0-GPU1-GPU5 on a
    DGX-1 is connected although GPU0-GPU5 has no link; see :func:`missing_nvlinks`). A single
    GPU is connected.

    Args:
        graph: an interconnect graph.
        gpus: GPU indices; all GPUs when None.

    >>> from topoprof.hardware import get_target
    >>> nvlink_connected(get_target("dgx-1").interconnect_graph(), [0, 5])
    False
    """
    chosen = _check_gpus(graph, gpus)
    if len(chosen) <= 1:
        return True
    return nx.is_connected(nvlink_graph(graph).subgraph(chosen))


def missing_nvlinks(graph: nx.Graph, gpus: Iterable[int] | None = None) -> list[tuple[int, int]]:
    """GPU pairs of the set with no direct NVLink, sorted (empty: fully NVLink-connected)."""
    chosen = _check_gpus(graph, gpus)
    return [(a, b) for a, b in itertools.combinations(chosen, 2)
            if not (graph.has_edge(a, b) and graph[a][b].get("nvlink"))]


# --- Rings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RingPlan:
    """The rings an all-reduce over a GPU set would use, and their bus bandwidth.

    Attributes:
        gpus: the GPU set, sorted.
        rings: GPU orders of the rings; NVLink rings of 3+ GPUs run in both directions.
        ring_rates_bytes_per_s: per-direction rate of each ring.
        busbw_bytes_per_s: bus bandwidth at the links' spec rates (before efficiency).
        nvlink: True when every hop is NVLink.
        bound: the resource that limits it: ``"nvlink"``, ``"pcie"``, ``"inter-socket"``, or
            ``"none"`` for a single GPU.
        efficiency_frac: fraction of ``busbw_bytes_per_s`` expected in practice, for ``bound``.
        assumptions: what the plan assumes, in words.
    """

    gpus: tuple[int, ...]
    rings: tuple[tuple[int, ...], ...]
    ring_rates_bytes_per_s: tuple[float, ...]
    busbw_bytes_per_s: float
    nvlink: bool
    bound: str
    efficiency_frac: float
    assumptions: tuple[str, ...] = ()

    @property
    def effective_busbw_bytes_per_s(self) -> float:
        """``busbw_bytes_per_s × efficiency_frac``."""
        return self.busbw_bytes_per_s * self.efficiency_frac


def _edge_key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _cycle_edges(cycle: Sequence[int]) -> list[tuple[int, int]]:
    return [_edge_key(cycle[i], cycle[(i + 1) % len(cycle)]) for i in range(len(cycle))]


def _hamiltonian_cycles(nodes: Sequence[int], adj: Mapping[int, Sequence[int]],
                        limit: int) -> tuple[list[tuple[int, ...]], bool]:
    """Undirected Hamiltonian cycles (each once: start at the smallest node, second < last).

    Returns:
        The cycles and whether the enumeration stopped at ``limit``.
    """
    start, n = nodes[0], len(nodes)
    out: list[tuple[int, ...]] = []
    path, on_path = [start], {start}

    def dfs() -> None:
        if len(out) >= limit:
            return
        last = path[-1]
        if len(path) == n:
            if start in adj[last] and path[1] < path[-1]:
                out.append(tuple(path))
            return
        for nxt in adj[last]:
            if nxt not in on_path:
                path.append(nxt)
                on_path.add(nxt)
                dfs()
                path.pop()
                on_path.discard(nxt)

    dfs()
    return out, len(out) >= limit


def _pack_rings(
    cycles: list[tuple[int, ...]],
    edge_cap: dict[tuple[int, int], float],
    node_cap: dict[int, float],
) -> tuple[float, list[tuple[tuple[int, ...], float]], bool]:
    """Best packing of rings used in both directions (each direction at rate y): each link
    direction carries at most its bandwidth, each GPU sends at most its NVLink bandwidth
    (2y per ring through it). Returns (busbw = Σ 2y, [(ring, y)], search truncated)."""
    cyc_edges = [_cycle_edges(c) for c in cycles]
    edge_order = sorted(edge_cap)
    nodes = sorted(node_cap)
    upper = min(node_cap.values())
    best: list[Any] = [0.0, []]
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()

    def rec(eres: dict[tuple[int, int], float], nres: dict[int, float], total: float,
            used: list[tuple[int, float]]) -> None:
        if total > best[0] + _EPS_BYTES_PER_S:
            best[0], best[1] = total, list(used)
        if best[0] >= upper - _EPS_BYTES_PER_S or len(seen) >= _MAX_PACKING_STATES:
            return
        if total + min(nres.values()) <= best[0] + _EPS_BYTES_PER_S:
            return  # even saturating the tightest GPU cannot beat the best
        state = (tuple(round(eres[e]) for e in edge_order), tuple(round(nres[v]) for v in nodes))
        if state in seen:
            return
        seen.add(state)
        options = []
        for i, c in enumerate(cycles):
            y = min(min(eres[e] for e in cyc_edges[i]), min(nres[v] for v in c) / 2)
            if y > _EPS_BYTES_PER_S:
                options.append((y, i))
        options.sort(key=lambda t: (-t[0], t[1]))
        for y, i in options:
            e2 = dict(eres)
            for e in cyc_edges[i]:
                e2[e] -= y
            n2 = dict(nres)
            for v in cycles[i]:
                n2[v] -= 2 * y
            rec(e2, n2, total + 2 * y, used + [(i, y)])

    rec(dict(edge_cap), dict(node_cap), 0.0, [])
    merged: dict[int, float] = {}
    for i, y in best[1]:
        merged[i] = merged.get(i, 0.0) + y
    return best[0], [(cycles[i], y) for i, y in merged.items()], len(seen) >= _MAX_PACKING_STATES


def _fallback_ring(graph: nx.Graph, chosen: tuple[int, ...]) -> tuple[tuple[int, ...], float, str, list[str]]:
    """Best single ring over any paths (NVLink or PCIe/host): (ring, bottleneck, path, notes)."""
    notes: list[str] = []
    default_bw = min(
        graph.graph.get("pcie_bandwidth_bytes_per_s", DEFAULT_LINK_MODEL.pcie_bandwidth_bytes_per_s),
        graph.graph.get("inter_socket_bandwidth_bytes_per_s",
                        DEFAULT_LINK_MODEL.inter_socket_bandwidth_bytes_per_s),
    )

    def hop(a: int, b: int) -> tuple[float, str]:
        if graph.has_edge(a, b):
            d = graph[a][b]
            return d["bandwidth_bytes_per_s"], d["path"]
        return default_bw, "SYS"

    def score(ring: Sequence[int]) -> tuple[float, float]:
        bws = [hop(a, b)[0] for a, b in zip(ring, ring[1:] + ring[:1])]
        return min(bws), sum(bws)

    if len(chosen) == 2:
        ring: tuple[int, ...] = chosen
    elif len(chosen) <= _MAX_EXACT_FALLBACK_GPUS:
        full = {v: [u for u in chosen if u != v] for v in chosen}
        rings, _ = _hamiltonian_cycles(list(chosen), full, _MAX_RING_CYCLES)
        ring = max(rings, key=lambda r: (score(list(r)), [-x for x in r]))
    else:
        notes.append(f"more than {_MAX_EXACT_FALLBACK_GPUS} GPUs: fallback ring found greedily")
        ring = _greedy_ring(chosen, lambda a, b: hop(a, b)[0])
    ring_list = list(ring)
    hops = [hop(a, b) for a, b in zip(ring_list, ring_list[1:] + ring_list[:1])]
    bw, path = min(hops, key=lambda t: t[0])
    if any(not graph.has_edge(a, b) for a, b in zip(ring_list, ring_list[1:] + ring_list[:1])):
        notes.append("a GPU pair has no entry in the graph: treated as SYS")
    return tuple(ring), bw, path, notes


def _greedy_ring(chosen: Sequence[int], bw: Any) -> tuple[int, ...]:
    ring = [chosen[0]]
    left = set(chosen[1:])
    while left:
        nxt = max(sorted(left), key=lambda v: bw(ring[-1], v))
        ring.append(nxt)
        left.discard(nxt)
    return tuple(ring)


def _resource_efficiency(graph: nx.Graph, resource: str) -> float:
    if resource == "nvlink":
        return graph.graph.get("nvlink_efficiency_frac", DEFAULT_LINK_MODEL.nvlink_efficiency_frac)
    if resource == "pcie":
        return graph.graph.get("pcie_efficiency_frac", DEFAULT_LINK_MODEL.pcie_efficiency_frac)
    return 1.0  # inter-socket: NCCL's model value is already what NCCL expects to get


def ring_plan(graph: nx.Graph, gpus: Iterable[int] | None = None) -> RingPlan:
    """The rings an all-reduce over ``gpus`` uses and their bus bandwidth.

    With NVLink rings through every GPU of the set: the best packing of such rings, each used
    in both directions, limited by each link direction and each GPU's NVLink bandwidth (the
    module docstring explains why not one ring). Two GPUs: their NVLink bond. Without an
    NVLink ring: the best single ring over any path, limited by its slowest hop (PCIe or the
    inter-socket link), and the plan says so.

    Args:
        graph: an interconnect graph.
        gpus: GPU indices; all GPUs when None.

    Raises:
        ValueError: a GPU is not in the graph, or the set is empty.
    """
    chosen = _check_gpus(graph, gpus)
    n = len(chosen)
    if n == 0:
        raise ValueError("no GPUs")
    if n == 1:
        return RingPlan(chosen, (), (), 0.0, True, "none", 1.0, ("one GPU: no communication",))
    notes: list[str] = list(graph.graph.get("assumptions", []))
    node_cap = {v: float(graph.nodes[v].get("nvlink_bandwidth_bytes_per_s", 0.0)) for v in chosen}
    edge_cap = {_edge_key(a, b): float(graph[a][b]["bandwidth_bytes_per_s"])
                for a, b in itertools.combinations(chosen, 2)
                if graph.has_edge(a, b) and graph[a][b].get("nvlink")}
    nv_eff = _resource_efficiency(graph, "nvlink")

    if n == 2 and edge_cap:
        (a, b), bw = next(iter(edge_cap.items()))
        busbw = min(bw, node_cap[a], node_cap[b])
        return RingPlan(chosen, ((a, b),), (busbw,), busbw, True, "nvlink", nv_eff, tuple(notes))

    if n >= 3 and len(edge_cap) == n * (n - 1) // 2:
        smallest_edge = min(edge_cap.values())
        smallest_node = min(node_cap.values())
        if smallest_edge >= smallest_node / 2 - _EPS_BYTES_PER_S:
            # Every pair bonded with at least half a GPU's bandwidth (NVSwitch): one ring both
            # ways fills every GPU's NVLink bandwidth; no search needed.
            notes.append("all GPU pairs NVLink-bonded (NVSwitch or full mesh): ring limited by "
                         "each GPU's NVLink bandwidth")
            return RingPlan(chosen, (chosen,), (smallest_node / 2,), smallest_node, True, "nvlink",
                            nv_eff, tuple(notes))

    if n >= 3 and edge_cap:
        adj = {v: sorted(u for u in chosen if _edge_key(u, v) in edge_cap) for v in chosen}
        cycles, truncated = _hamiltonian_cycles(list(chosen), adj, _MAX_RING_CYCLES)
        if cycles:
            busbw, used, cut = _pack_rings(cycles, edge_cap, node_cap)
            if truncated or cut:
                notes.append("ring search truncated: the bus bandwidth is a lower bound")
            used.sort(key=lambda t: -t[1])
            return RingPlan(chosen, tuple(r for r, _ in used), tuple(y for _, y in used), busbw,
                            True, "nvlink", nv_eff, tuple(notes))

    ring, bw, path, extra = _fallback_ring(graph, chosen)
    resource = path_resource(path)
    missing = missing_nvlinks(graph, chosen)
    notes.extend(extra)
    notes.append(
        f"no NVLink ring through GPUs {list(chosen)} (pairs without NVLink: {missing}); the ring "
        f"falls back to {resource} ({path}) at {bw / 1e9:.2f} GB/s per direction, one ring"
    )
    return RingPlan(chosen, (ring,), (bw,), bw, resource == "nvlink", resource,
                    _resource_efficiency(graph, resource), tuple(notes))


def best_gpu_subset(graph: nx.Graph, k: int, gpus: Iterable[int] | None = None) -> tuple[int, ...]:
    """The ``k`` GPUs with the fastest all-reduce ring (for ``CUDA_VISIBLE_DEVICES``).

    Ranks subsets by effective ring bus bandwidth (:func:`ring_plan`), then by NVLinks inside
    the set, then by the lowest GPU indices. On a DGX-1, ``k=4`` gives a fully connected quad
    (0-3 or 4-7) and ``k=2`` a pair bonded by 2 NVLinks. Where there are more than 2,000
    subsets (16 GPUs), the set is grown greedily from the best pair instead.

    Args:
        graph: an interconnect graph.
        k: how many GPUs, 1..number of GPUs.
        gpus: the GPUs to choose from; all when None.

    Raises:
        ValueError: ``k`` out of range.
    """
    pool = _check_gpus(graph, gpus)
    if not 1 <= k <= len(pool):
        raise ValueError(f"k must be between 1 and {len(pool)}, got {k}")
    links = nvlink_pairs(graph)

    def best_of(candidates: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
        best_key: tuple[float, int] | None = None
        best: tuple[int, ...] = ()
        for subset in candidates:
            plan = ring_plan(graph, subset)
            inside = sum(links.get(p, 0) for p in itertools.combinations(subset, 2))
            key = (round(plan.effective_busbw_bytes_per_s), inside)
            if best_key is None or key > best_key:
                best_key, best = key, subset
        return best

    if math.comb(len(pool), k) <= _MAX_SUBSETS:
        return best_of(itertools.combinations(pool, k))
    chosen = best_of(itertools.combinations(pool, 2))
    while len(chosen) < k:
        chosen = best_of(tuple(sorted((*chosen, v))) for v in pool if v not in chosen)
    return chosen


# --- All-reduce estimates ----------------------------------------------------------------------


@dataclass(frozen=True)
class CommEstimate:
    """Estimated time of one collective, with what bounds it.

    Attributes:
        collective: ``"all_reduce"``.
        algorithm: ``"ring"``, ``"nvls"``, ``"hierarchical"`` (intra-node ring + inter-node over
            the NICs) or ``"none"`` (one GPU).
        size_bytes: S, the bytes reduced.
        gpus: GPU indices per node.
        nodes: number of nodes.
        time_us: ``bandwidth_time_us + latency_us``.
        bandwidth_time_us: the bandwidth term, ``2(n-1)/n · S / busbw`` for a ring.
        latency_us: NCCL's latency model (hardware.md §5.2), Simple protocol.
        busbw_bytes_per_s: the bus bandwidth used (after efficiency).
        peak_busbw_bytes_per_s: the bus bandwidth at the spec rates.
        efficiency_frac: ``busbw_bytes_per_s / peak_busbw_bytes_per_s``.
        bound: the resource that limits it: ``"nvlink"``, ``"nvls"``, ``"pcie"``,
            ``"inter-socket"``, ``"network"`` or ``"none"``.
        rings: the intra-node rings used.
        assumptions: what the estimate assumes, in words.
    """

    collective: str
    algorithm: str
    size_bytes: float
    gpus: tuple[int, ...]
    nodes: int
    time_us: float
    bandwidth_time_us: float
    latency_us: float
    busbw_bytes_per_s: float
    peak_busbw_bytes_per_s: float
    efficiency_frac: float
    bound: str
    rings: tuple[tuple[int, ...], ...] = ()
    assumptions: tuple[str, ...] = field(default=())

    @property
    def ranks(self) -> int:
        """Total GPUs taking part: ``len(gpus) × nodes``."""
        return len(self.gpus) * self.nodes

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists instead of tuples) for JSON."""
        data = asdict(self)
        data["gpus"] = list(self.gpus)
        data["rings"] = [list(r) for r in self.rings]
        data["assumptions"] = list(self.assumptions)
        return data


def ring_allreduce_time_us(size_bytes: float, n: int, busbw_bytes_per_s: float) -> float:
    """Bandwidth term of a ring all-reduce in microseconds: ``2(n-1)/n · S / busbw``
    (hardware.md §5.1, nccl-tests PERFORMANCE.md).

    >>> round(ring_allreduce_time_us(100e6, 8, 240e9), 1)
    729.2
    """
    if n <= 1 or size_bytes <= 0:
        return 0.0
    if busbw_bytes_per_s <= 0:
        raise ValueError("bus bandwidth must be positive")
    return 2 * (n - 1) / n * size_bytes / busbw_bytes_per_s * _US_PER_S


def ring_latency_us(ranks: int, nodes: int = 1, intra_hop_us: float = NCCL_NVLINK_RING_HOP_LATENCY_US,
                    inter_hop_us: float = NCCL_NET_RING_HOP_LATENCY_US) -> float:
    """NCCL's ring all-reduce latency (hardware.md §5.2): ``base + (nsteps - ninter) · intra +
    ninter · inter`` with ``nsteps = 2(ranks-1)`` and ``ninter = 2(nodes-1)``."""
    if ranks <= 1:
        return 0.0
    nsteps, ninter = 2 * (ranks - 1), 2 * (nodes - 1)
    return NCCL_RING_BASE_LATENCY_US + (nsteps - ninter) * intra_hop_us + ninter * inter_hop_us


def _hop_latency_us(bound: str) -> float:
    return NCCL_NVLINK_RING_HOP_LATENCY_US if bound == "nvlink" else NCCL_PCI_RING_HOP_LATENCY_US


def ring_allreduce(
    graph: nx.Graph,
    size_bytes: float,
    gpus: Iterable[int] | None = None,
    *,
    efficiency_frac: float | None = None,
) -> CommEstimate:
    """Ring all-reduce of ``size_bytes`` over ``gpus`` of one node (see :func:`ring_plan`).

    Args:
        graph: an interconnect graph.
        size_bytes: S, the bytes reduced (e.g. the gradient bucket).
        gpus: GPU indices; all GPUs when None.
        efficiency_frac: fraction of the spec bus bandwidth reached; by default the graph's
            (NCCL's per-link model over the spec: 0.80 on NVLink 2/3, hardware.md §5.2; about
            0.76 on PCIe; 1.0 on the inter-socket link, whose figure is NCCL's model already).

    >>> from topoprof.hardware import get_target
    >>> est = ring_allreduce(get_target("dgx-a100").interconnect_graph(), 100e6)
    >>> est.busbw_bytes_per_s / 1e9, est.bound
    (240.0, 'nvlink')
    """
    plan = ring_plan(graph, gpus)
    n = len(plan.gpus)
    if n == 1:
        return CommEstimate("all_reduce", "none", size_bytes, plan.gpus, 1, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
                            "none", (), plan.assumptions)
    eff = plan.efficiency_frac if efficiency_frac is None else efficiency_frac
    busbw = plan.busbw_bytes_per_s * eff
    bw_us = ring_allreduce_time_us(size_bytes, n, busbw)
    lat_us = ring_latency_us(n, 1, _hop_latency_us(plan.bound))
    notes = list(plan.assumptions)
    notes.append(f"ring all-reduce t = 2(n-1)/n · S / busbw with busbw = {eff:.3f} × "
                 f"{plan.busbw_bytes_per_s / 1e9:.1f} GB/s (spec); latency from NCCL's Simple-protocol model")
    return CommEstimate("all_reduce", "ring", size_bytes, plan.gpus, 1, bw_us + lat_us, bw_us, lat_us, busbw,
                        plan.busbw_bytes_per_s, eff, plan.bound, plan.rings, tuple(notes))


# --- Plain data for the CLI --------------------------------------------------------------------


def describe_topology(graph: nx.Graph) -> dict[str, Any]:
    """Plain data about an interconnect graph (for ``topoprof topology FILE`` and JSON).

    Returns:
        ``name``; ``gpus`` (id, label, NVLink links and bandwidth, affinities); ``nics`` (id,
        device, nearest GPUs and their path); ``links`` (every GPU pair: path, NVLinks,
        bandwidth); ``nvlink_pairs``, ``non_nvlink_pairs``, ``nvlink_total_links``,
        ``nvswitch``, ``nvlink_connected``; ``ring`` (all GPUs: rings, spec and effective bus
        bandwidth, bound); ``best_subsets`` (k -> GPUs and effective bus bandwidth, for each
        power of two below the GPU count); ``assumptions``.
    """
    gpus = gpu_nodes(graph)
    gpu_rows = []
    for g in gpus:
        d = graph.nodes[g]
        gpu_rows.append({
            "id": g,
            "label": d.get("label", f"GPU{g}"),
            "nvlink_links": d.get("nvlink_links", 0),
            "nvlink_bandwidth_bytes_per_s": d.get("nvlink_bandwidth_bytes_per_s", 0.0),
            "cpu_affinity": d.get("cpu_affinity"),
            "numa_affinity": d.get("numa_affinity"),
            "gpu_numa_id": d.get("gpu_numa_id"),
        })
    nic_rows = []
    rank = {p: i for i, p in enumerate(PCIE_PATHS)}
    for v, d in sorted(((v, d) for v, d in graph.nodes(data=True) if d.get("kind") == "nic"),
                       key=lambda t: str(t[0])):
        paths = {g: graph[v][g]["path"] for g in gpus if graph.has_edge(v, g)}
        nearest = min(paths.values(), key=lambda p: rank.get(p, len(rank)), default=None)
        nic_rows.append({"id": v, "device": d.get("device", v), "nearest_path": nearest,
                         "nearest_gpus": [g for g, p in paths.items() if p == nearest]})
    links = []
    for a, b in itertools.combinations(gpus, 2):
        d = graph[a][b] if graph.has_edge(a, b) else {}
        links.append({"a": a, "b": b, "path": d.get("path"), "links": d.get("links", 0),
                      "bandwidth_bytes_per_s": d.get("bandwidth_bytes_per_s")})
    pairs = nvlink_pairs(graph)
    plan = ring_plan(graph) if gpus else None
    subsets: dict[int, dict[str, Any]] = {}
    k = 2
    while k < len(gpus):
        chosen = best_gpu_subset(graph, k)
        sub = ring_plan(graph, chosen)
        subsets[k] = {"gpus": list(chosen), "busbw_bytes_per_s": sub.effective_busbw_bytes_per_s,
                      "bound": sub.bound}
        k *= 2
    return {
        "name": graph.graph.get("name", ""),
        "gpus": gpu_rows,
        "nics": nic_rows,
        "links": links,
        "nvlink_pairs": [list(p) for p in sorted(pairs)],
        "non_nvlink_pairs": [list(p) for p in missing_nvlinks(graph)],
        "nvlink_total_links": sum(pairs.values()),
        "nvswitch": bool(graph.graph.get("nvswitch", False)),
        "nvlink_connected": nvlink_connected(graph),
        "ring": None if plan is None else {
            "gpus": list(plan.gpus),
            "rings": [list(r) for r in plan.rings],
            "ring_rates_bytes_per_s": list(plan.ring_rates_bytes_per_s),
            "peak_busbw_bytes_per_s": plan.busbw_bytes_per_s,
            "busbw_bytes_per_s": plan.effective_busbw_bytes_per_s,
            "efficiency_frac": plan.efficiency_frac,
            "nvlink": plan.nvlink,
            "bound": plan.bound,
        },
        "best_subsets": subsets,
        "assumptions": list(plan.assumptions if plan else graph.graph.get("assumptions", [])),
    }


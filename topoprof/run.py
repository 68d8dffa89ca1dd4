"""The run directory: the only thing that crosses from capture to analysis.

Layout (DESIGN.md section 4)::

    runs/<name>/
      run.json          manifest: format_version, versions, device, host, world size, ranks,
                        mode, steps, command, user tags
      rank<R>.json      per rank: modules (layer stats), edges (tensors between layers),
                        per-step phase times
      *.pt.trace.json   Kineto traces (trace mode)
      events.out.tfevents.*  TensorBoard summaries

Everything here is plain data: dataclasses that round-trip exactly through JSON, and
:meth:`Run.graph`, which builds the networkx layer graph of DESIGN.md section 5. Nothing in this
module imports torch, so a saved run can be analysed on a machine without it.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

import networkx as nx

from ._jsonio import read_json, write_json_atomic
from .errors import EmptyRunError, RunFormatError, RunNotFoundError

__all__ = [
    "FORMAT_VERSION",
    "PHASES",
    "StepRecord",
    "ModuleRecord",
    "EdgeRecord",
    "RankData",
    "Manifest",
    "Run",
    "load",
    "median",
]

#: Version of the on-disk format. Readers accept this version and older ones they know;
#: a newer file gets a clear error instead of a misread.
FORMAT_VERSION = 1

#: The phases of a training step, in the order they usually happen. They add up to the step.
PHASES = ("data", "forward", "backward", "optimizer", "other")

MANIFEST_NAME = "run.json"
_RANK_FILE = re.compile(r"^rank(\d+)\.json$")


def median(values: Iterable[float]) -> float:
    """Median of ``values`` (the mean of the middle two for an even count); NaN if empty."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = n // 2
    return float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


@dataclass
class StepRecord:
    """One profiled training step.

    Attributes:
        index: the step number counted from the start of the profile (0-based), as in the NVTX
            range ``step N``.
        duration_us: time between the two ``prof.step()`` calls that delimit the step.
        phases_us: time in each of :data:`PHASES`; they sum to ``duration_us``.
        forward_passes: root-module forward calls in the step (more than one with gradient
            accumulation or several micro-batches).
        backward_passes: backward passes through the model in the step.
        optimizer_steps: ``optimizer.step()`` calls in the step (0 while accumulating).
        comm_us: under DDP, the time gradient all-reduces were in flight (union of the
            buckets' intervals); ``None`` when not measured.
        comm_exposed_us: the part of ``comm_us`` not overlapped by the model's backward.
        comm_buckets / comm_bytes: all-reduced buckets and their bytes in the step.
    """

    index: int
    duration_us: float
    phases_us: dict[str, float]
    forward_passes: int = 0
    backward_passes: int = 0
    optimizer_steps: int = 0
    comm_us: float | None = None
    comm_exposed_us: float | None = None
    comm_buckets: int = 0
    comm_bytes: int = 0


@dataclass
class ModuleRecord:
    """One module of the model that ran in the profiled steps.

    Per-step lists hold one value per profiled step, in the order of ``RankData.steps``.
    Times are microseconds; inclusive times contain the module's children, ``self_*`` do not.

    Attributes:
        name: qualified module name (``layer1.0.conv1``); the root module is ``""``.
        kind: the module's class name.
        parent: qualified name of the owning module (``None`` for the root).
        leaf: True for modules without children.
        params: parameters of the module and its descendants (shared ones counted once).
        param_bytes: bytes of those parameters.
        in_shapes / out_shapes: shapes of the tensor inputs/outputs of the first call.
        dtype: dtype of the first tensor output (``"float32"``), ``None`` if no tensor output.
        flops_fwd / flops_bwd: FLOP of one forward pass of the model spent in this module
            (including children) and of the matching backward, from ``FlopCounterMode``.
        act_bytes: bytes of the tensors the module outputs in one forward pass.
        ops: torch functions called by this module's own forward code (not its children's),
            by name, in one forward pass (``{"linear": 1}``, ``{"add": 1, "relu": 1}``).
        in_memory_format: memory format of the first 4-D tensor input (``"channels_last"``,
            ``"contiguous"`` or ``"strided"``), ``None`` without a 4-D input.
        calls_per_step: forward calls of this module in each profiled step.
        fwd_us / bwd_us / self_fwd_us / self_bwd_us: per-step sums over the module's calls.
        device_fwd_us / device_bwd_us / kernels: trace mode only (``None`` otherwise): device
            time of the kernels launched inside the module's own forward / backward ranges
            (a child's kernels count for the child) and their count, medians over the traced
            steps (topoprof.trace). On a CPU-only run
            the CPU is the device: the self time of the aten ops in those ranges and their
            count, averaged over the traced steps.
    """

    name: str
    kind: str
    parent: str | None
    leaf: bool
    params: int = 0
    param_bytes: int = 0
    in_shapes: list[list[int]] = field(default_factory=list)
    out_shapes: list[list[int]] = field(default_factory=list)
    dtype: str | None = None
    flops_fwd: int = 0
    flops_bwd: int = 0
    act_bytes: int = 0
    ops: dict[str, int] = field(default_factory=dict)
    in_memory_format: str | None = None
    calls_per_step: list[int] = field(default_factory=list)
    fwd_us: list[float] = field(default_factory=list)
    bwd_us: list[float] = field(default_factory=list)
    self_fwd_us: list[float] = field(default_factory=list)
    self_bwd_us: list[float] = field(default_factory=list)
    device_fwd_us: float | None = None
    device_bwd_us: float | None = None
    kernels: int | None = None


@dataclass
class EdgeRecord:
    """Tensors flowing from one layer to another in one forward pass.

    ``via`` names the functional ops the tensor passed through between the two modules
    (``add`` for a residual connection, ``cat``, ``matmul``, ``view``...), in first-seen order.
    ``shape``/``dtype``/``bytes`` describe the tensor as it enters ``dst`` (first occurrence);
    ``count`` is how many times such a tensor flowed in one forward pass.
    """

    src: str
    dst: str
    shape: list[int]
    dtype: str
    bytes: int
    count: int = 1
    via: list[str] = field(default_factory=list)


@dataclass
class RankData:
    """Everything one process (rank) measured: steps, modules and the layer edges.

    Attributes beyond the records:
        optimizers: one dict per optimizer seen (``kind``, ``params``, ``param_tensors``,
            ``fused``, ``foreach``, ``lr``).
        host_syncs: device-to-host synchronisations seen in the graph-capture step, one dict
            per (op, where, phase): ``op`` (``item``, ``tolist``, ``cpu``, ``__bool__``...),
            ``where`` (the innermost module, or ``"<outside model>"``), ``phase`` (the step's
            phase then: syncs in ``optimizer`` are the optimizer's own, e.g. Adam reading its
            CPU step counters), ``count`` per step.
        settings: backend flags in force (``cudnn_benchmark``, ``cudnn_enabled``,
            ``matmul_allow_tf32``, ``cudnn_allow_tf32``, ``float32_matmul_precision``,
            ``deterministic``) and ``autocast`` (``{"enabled": bool, "dtype": str | None}``
            at the model's forward in the capture step).
        graph_step: index of the step that captured the graph (``None`` if none did).
        ddp: facts about the DistributedDataParallel wrapper (``backend``,
            ``bucket_cap_bytes``, ``comm_hook`` status...), empty without DDP.
        run_id: the job's id; rank files of another job in the same directory are ignored.
        world_size: processes in the job.
        status: how this rank's profile ended (``complete``, ``failed: ...``).
        trace_file: the rank's Kineto trace (file name in the run directory), trace mode only.
        trace_steps: per traced step (trace mode): ``step``, ``ops``, ``kernels``,
            ``device_us``, ``device_busy_us``, ``device_idle_us`` (``None`` without a device).
    """

    rank: int = 0
    world_size: int = 1
    run_id: str = ""
    status: str = "complete"
    local_rank: int = 0
    host: str = ""
    device: str = "cpu"
    clock: str = "perf_counter_ns"
    steps: list[StepRecord] = field(default_factory=list)
    modules: list[ModuleRecord] = field(default_factory=list)
    edges: list[EdgeRecord] = field(default_factory=list)
    optimizers: list[dict[str, Any]] = field(default_factory=list)
    host_syncs: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    graph_step: int | None = None
    ddp: dict[str, Any] = field(default_factory=dict)
    trace_file: str | None = None
    trace_steps: list[dict[str, Any]] = field(default_factory=list)
    input_node: str = "input"
    output_node: str = "output"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = "topoprof.rank"
        d["format_version"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<rank>") -> "RankData":
        _check_header(d, "topoprof.rank", source)
        try:
            steps = [StepRecord(**s) for s in d.get("steps", [])]
            modules = [ModuleRecord(**m) for m in d.get("modules", [])]
            edges = [EdgeRecord(**e) for e in d.get("edges", [])]
            kwargs = {
                f.name: d[f.name]
                for f in fields(cls)
                if f.name in d and f.name not in ("steps", "modules", "edges")
            }
            data = cls(steps=steps, modules=modules, edges=edges, **kwargs)
        except TypeError as exc:
            raise RunFormatError(f"{source}: unexpected content ({exc})") from None
        _validate_rank(data, source)
        return data

    def module(self, name: str) -> ModuleRecord:
        """The record of the module with qualified name ``name``."""
        for m in self.modules:
            if m.name == name:
                return m
        raise KeyError(name)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _validate_rank(data: "RankData", source: str) -> None:
    """Types and cross-references of a rank file: a wrong one is a one-line RunFormatError."""
    def bad(what: str) -> RunFormatError:
        return RunFormatError(f"{source}: {what}")

    if not isinstance(data.rank, int) or isinstance(data.rank, bool) or data.rank < 0:
        raise bad(f"rank must be a non-negative integer, got {data.rank!r}")
    if not isinstance(data.world_size, int) or data.world_size < 1:
        raise bad(f"world_size must be a positive integer, got {data.world_size!r}")
    for k, st in enumerate(data.steps):
        if not isinstance(st.index, int) or not _is_number(st.duration_us):
            raise bad(f"steps[{k}]: index must be an integer and duration_us a number")
        if not isinstance(st.phases_us, dict) or not all(
            p in PHASES and _is_number(v) for p, v in st.phases_us.items()
        ):
            raise bad(f"steps[{k}].phases_us must map the phases {', '.join(PHASES)} to numbers")
    n_steps = len(data.steps)
    names = set()
    for m in data.modules:
        if not isinstance(m.name, str):
            raise bad(f"a module name is not a string: {m.name!r}")
        if m.name in names:
            raise bad(f"module {m.name!r} appears twice")
        names.add(m.name)
        for key in ("calls_per_step", "fwd_us", "bwd_us", "self_fwd_us", "self_bwd_us"):
            values = getattr(m, key)
            # empty: not measured; otherwise one number per profiled step
            if not isinstance(values, list) or len(values) not in (0, n_steps) or not all(_is_number(v) for v in values):
                raise bad(f"module {m.name!r}: {key} must hold one number per step ({n_steps})")
        for key in ("params", "param_bytes", "flops_fwd", "flops_bwd", "act_bytes"):
            if not _is_number(getattr(m, key)):
                raise bad(f"module {m.name!r}: {key} must be a number")
    nodes = names | {data.input_node, data.output_node}
    for e in data.edges:
        if e.src not in nodes or e.dst not in nodes:
            raise bad(f"edge {e.src!r} -> {e.dst!r} names a module that is not in the file")


@dataclass
class Manifest:
    """The run's ``run.json``: what was run, where, with which versions and settings."""

    name: str = ""
    run_id: str = ""
    created: str = ""
    mode: str = "layers"
    versions: dict[str, str | None] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    hosts: list[str] = field(default_factory=list)
    world_size: int = 1
    ranks: list[int] = field(default_factory=list)
    steps_requested: int = 0
    skip_first: int = 0
    command: list[str] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)
    status: str = "complete"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = "topoprof.run"
        d["format_version"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = MANIFEST_NAME) -> "Manifest":
        _check_header(d, "topoprof.run", source)
        known = {f.name for f in fields(cls)}
        try:
            manifest = cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise RunFormatError(f"{source}: unexpected content ({exc})") from None
        if not isinstance(manifest.world_size, int) or isinstance(manifest.world_size, bool) or manifest.world_size < 1:
            raise RunFormatError(f"{source}: world_size must be a positive integer, got {manifest.world_size!r}")
        if not isinstance(manifest.ranks, list) or not all(isinstance(r, int) for r in manifest.ranks):
            raise RunFormatError(f"{source}: ranks must be a list of integers")
        if not isinstance(manifest.tags, dict):
            raise RunFormatError(f"{source}: tags must be an object")
        return manifest


def _check_header(d: Any, kind: str, source: str) -> None:
    if not isinstance(d, Mapping):
        raise RunFormatError(f"{source}: not a topoprof file (top level is not an object)")
    if d.get("format") != kind:
        found = d.get("format")
        what = f"format {found!r}" if found is not None else "no 'format' field"
        raise RunFormatError(f"{source}: not a {kind} file ({what})")
    version = d.get("format_version")
    if not isinstance(version, int):
        raise RunFormatError(f"{source}: missing or invalid format_version")
    if version > FORMAT_VERSION:
        raise RunFormatError(
            f"{source}: format_version {version} is newer than this topoprof supports "
            f"({FORMAT_VERSION}); upgrade topoprof"
        )
    if version < 1:
        raise RunFormatError(f"{source}: unsupported format_version {version}")


class Run:
    """A saved profile: the manifest and the data of every rank.

    Build one with :func:`load` (or get it from ``prof.run``); write it with :meth:`save`.
    """

    def __init__(self, path: str | Path | None, manifest: Manifest, ranks: Mapping[int, RankData]):
        self.path = Path(path) if path is not None else None
        self.manifest = manifest
        self.ranks: dict[int, RankData] = dict(sorted(ranks.items()))

    def __repr__(self) -> str:
        steps = len(self.rank(min(self.ranks)).steps) if self.ranks else 0
        return (
            f"<topoprof.Run {str(self.path)!r} mode={self.manifest.mode} "
            f"ranks={list(self.ranks)} steps={steps}>"
        )

    @property
    def missing_ranks(self) -> list[int]:
        """Ranks of the job (``0 .. world_size-1``) that wrote no data (died or never finished)."""
        return sorted(set(range(self.manifest.world_size)) - set(self.ranks))

    def _repr_html_(self) -> str:
        """The HTML report (analysed on the default target) when a notebook shows the run."""
        from .report.html import notebook_html

        return notebook_html(self)

    def rank(self, rank: int = 0) -> RankData:
        """The data of ``rank``; a missing rank raises ``KeyError`` naming the ones present."""
        try:
            return self.ranks[rank]
        except KeyError:
            raise KeyError(f"rank {rank} not in run (ranks present: {sorted(self.ranks)})") from None

    def save(self, path: str | Path | None = None) -> Path:
        """Write ``run.json`` and one ``rank<R>.json`` per rank into ``path`` (atomically)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("Run.save() needs a path")
        target.mkdir(parents=True, exist_ok=True)
        for r, data in self.ranks.items():
            write_json_atomic(target / f"rank{r}.json", data.to_dict())
        write_json_atomic(target / MANIFEST_NAME, self.manifest.to_dict())
        self.path = target
        return target

    def graph(self, rank: int = 0) -> nx.DiGraph:
        """The layer graph of ``rank`` (DESIGN.md section 5).

        Nodes are keyed by qualified module name (the root is ``""``) plus the input and output
        nodes (``G.graph["input_node"]``, ``G.graph["output_node"]``). Timing attributes are
        medians over the profiled steps, with ``*_min``/``*_max`` beside them.
        """
        return build_graph(self.rank(rank))


def build_graph(data: RankData) -> nx.DiGraph:
    """Build the networkx layer graph from one rank's records (pure function)."""
    g = nx.DiGraph(
        rank=data.rank,
        root="",
        input_node=data.input_node,
        output_node=data.output_node,
        steps=len(data.steps),
    )
    g.add_node(data.input_node, kind="input", leaf=True, parent=None)
    g.add_node(data.output_node, kind="output", leaf=True, parent=None)
    for m in data.modules:
        attrs: dict[str, Any] = {
            "kind": m.kind,
            "parent": m.parent,
            "leaf": m.leaf,
            "calls": int(round(median(m.calls_per_step))) if m.calls_per_step else 0,
            "params": m.params,
            "param_bytes": m.param_bytes,
            "in_shapes": m.in_shapes,
            "out_shapes": m.out_shapes,
            "dtype": m.dtype,
            "flops_fwd": m.flops_fwd,
            "flops_bwd": m.flops_bwd,
            "act_bytes": m.act_bytes,
            "ops": m.ops,
            "in_memory_format": m.in_memory_format,
        }
        if m.device_fwd_us is not None:  # trace mode
            attrs.update(device_fwd_us=m.device_fwd_us, device_bwd_us=m.device_bwd_us, kernels=m.kernels)
        for key in ("fwd_us", "bwd_us", "self_fwd_us", "self_bwd_us"):
            values = getattr(m, key)
            attrs[key] = median(values) if values else 0.0
            attrs[key + "_min"] = min(values) if values else 0.0
            attrs[key + "_max"] = max(values) if values else 0.0
        g.add_node(m.name, **attrs)
    for e in data.edges:
        g.add_edge(e.src, e.dst, shape=e.shape, dtype=e.dtype, bytes=e.bytes, count=e.count, via=e.via)
    return g


def load(path: str | Path) -> Run:
    """Load a run directory written by topoprof.

    Raises:
        RunNotFoundError: the directory or its ``run.json`` does not exist.
        RunFormatError: a file is corrupt, truncated, foreign or of a newer format version.
        EmptyRunError: the run has no rank file.
    """
    path = Path(path)
    if not path.exists():
        raise RunNotFoundError(f"{path}: no such run directory")
    if path.is_file():
        if path.name == MANIFEST_NAME:
            path = path.parent
        else:
            raise RunFormatError(f"{path}: expected a run directory (holding run.json), got a file")
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.exists():
        raise RunNotFoundError(f"{path}: not a topoprof run (no {MANIFEST_NAME})")
    manifest = Manifest.from_dict(read_json(manifest_path), source=str(manifest_path))
    ranks: dict[int, RankData] = {}
    for f in sorted(path.iterdir()):
        match = _RANK_FILE.match(f.name)
        if match:
            data = RankData.from_dict(read_json(f), source=str(f))
            if data.rank != int(match.group(1)):
                raise RunFormatError(f"{f}: holds rank {data.rank}, file name says {match.group(1)}")
            if manifest.run_id and data.run_id and data.run_id != manifest.run_id:
                warnings.warn(f"{f}: left over from another job (run_id {data.run_id}); ignored", stacklevel=2)
                continue
            ranks[data.rank] = data
    if not ranks:
        raise EmptyRunError(f"{path}: run has no rank<N>.json file (the profiled process wrote nothing)")
    return Run(path, manifest, ranks)

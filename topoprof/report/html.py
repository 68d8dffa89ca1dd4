"""HTML report: one self-contained file, readable offline (DESIGN.md section 9).

The report is made in two steps, like every renderer of this package:

1. :func:`report_document` gathers what capture measured and analysis computed into one plain,
   JSON-ready dictionary with stable keys (the *report document*: run, summary, phases,
   findings, layers, layer graph, roofline, projection, ranks). It formats nothing and derives
   nothing beyond unit conversions; the Markdown renderer renders the same document.
   :func:`comparison_document` does the same for a
   :class:`~topoprof.analysis.compare.Comparison` (and is the comparison's JSON).
2. :func:`render_html` / :func:`render_comparison_html` fill the Jinja2 templates under
   ``assets/`` (autoescaped), draw the static charts as inline SVG and inline the CSS and JS.
   The document is embedded in a ``<script type="application/json">`` block with ``<``, ``>``
   and ``&`` escaped, so no model or user string can close the script; the JS builds the layer
   table and the layer graph from it with ``textContent`` only. Nothing is fetched: no CDN, no
   web font, no image.

:func:`write_report` picks the renderer from the file extension (or ``format=``): ``.html``,
``.json`` (the full analysis, :mod:`topoprof.report.json_report`), ``.md``, ``.txt`` (the
terminal summary). It lives here because the documents it renders are built here.
"""

from __future__ import annotations

from html import escape as html_escape

import math
import os
from dataclasses import asdict, is_dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import orjson
from markupsafe import Markup, escape

from .._jsonio import write_bytes_atomic
from .._version import __version__
from ..run import PHASES, RankData, Run, load, median

__all__ = [
    "REPORT_FORMAT",
    "COMPARISON_FORMAT",
    "DOCUMENT_VERSION",
    "FORMATS",
    "DEFAULT_TARGET",
    "report_document",
    "comparison_document",
    "render_html",
    "render_comparison_html",
    "document_json",
    "write_report",
    "format_from_path",
]

#: ``format`` field of the report document (embedded in the HTML).
REPORT_FORMAT = "topoprof.report"
#: ``format`` field of the comparison document.
COMPARISON_FORMAT = "topoprof.comparison"
#: Version of both documents' layout; bumped when a key changes meaning or disappears.
DOCUMENT_VERSION = 1
#: Output formats by name, and the extensions that select them.
FORMATS: Mapping[str, tuple[str, ...]] = {
    "html": (".html", ".htm"),
    "json": (".json",),
    "md": (".md", ".markdown"),
    "text": (".txt", ".text"),
}
#: Target used when a run is reported without one (as :func:`topoprof.analyze`).
DEFAULT_TARGET = "dgx-a100"

_US_PER_S = 1e6
_ASSETS = "assets"


# ==============================================================================================
# The report document
# ==============================================================================================


def _num(x: Any) -> float | None:
    """A finite float, or None (JSON has no NaN or infinity)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _plain(obj: Any) -> Any:
    """Dataclasses, mappings and sequences as JSON-ready values (non-finite floats -> None)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _run_of(subject: Any, run: Run | None) -> Run:
    if run is not None:
        return run
    found = getattr(subject, "run", None)
    if isinstance(found, Run):
        return found
    path = getattr(subject, "run_path", None)
    if path:
        return load(path)
    raise ValueError("this analysis has no run path (the run was never saved): pass run= as well")


def _is_analysis(obj: Any) -> bool:
    return hasattr(obj, "findings") and hasattr(obj, "breakdown") and hasattr(obj, "projection")


def _split(subject: Any, run: Run | None, target: str | None) -> tuple[Run, Any]:
    """(run, analysis) for an Analysis, a Run or a run directory; analyses a run on ``target``."""
    if isinstance(subject, (str, os.PathLike)):
        subject = load(subject)
    if isinstance(subject, Run):
        from ..analysis import analyze

        return subject, analyze(subject, target=target or DEFAULT_TARGET)
    if _is_analysis(subject):
        if target is not None:
            from ..hardware import get_target

            if get_target(target).name != subject.target:
                raise ValueError(f"the analysis is for {subject.target}, not {target}: analyse the run again")
        return _run_of(subject, run), subject
    raise TypeError(f"write_report() takes an Analysis, a Run, a Comparison or a run directory, "
                    f"got {type(subject).__name__}")


def _device_text(device: Mapping[str, Any]) -> str:
    kind = str(device.get("type") or "?")
    name = device.get("name")
    count = device.get("count")
    text = kind if not name or name == kind else f"{kind}: {name}"
    if isinstance(count, int) and count > 1:
        text += f" ×{count}"
    threads = device.get("cpu_threads")
    if kind == "cpu" and threads:
        text += f", {threads} threads"
    return text


def _versions_text(versions: Mapping[str, Any]) -> str:
    order = ["topoprof", "torch", "python", "cuda", "cudnn", "nvtx"]
    keys = [k for k in order if versions.get(k)] + sorted(k for k in versions if k not in order and versions.get(k)
                                                          and k != "platform")
    return " · ".join(f"{k} {versions[k]}" for k in keys)


def _depths(rank: RankData) -> dict[str, int]:
    """Nesting depth of every module (the root is 0); a parent cycle in a corrupt file stops."""
    parents = {m.name: m.parent for m in rank.modules}
    out: dict[str, int] = {}
    for m in rank.modules:
        depth, cur = 0, m.parent
        while cur is not None and depth <= len(parents):
            depth += 1
            cur = parents.get(cur)
        out[m.name] = depth
    return out


def _graph_order(rank: RankData) -> dict[str, int]:
    """A top-down drawing order of the graph's nodes (layout, not analysis).

    Edges that close a cycle (a module called twice in one pass, an RNN cell) are found by a
    depth-first walk from the input node and left out; the rest is sorted topologically, ties
    broken by when capture first saw each node (the forward pass's order), so sources that are
    not fed by the input (a positional embedding) sit next to their consumers. Modules without
    edges follow in module order. An edge whose source does not come before its destination in
    this order is drawn as a back edge.
    """
    import networkx as nx

    n = len(rank.edges)
    first: dict[str, float] = {rank.input_node: -1.0}
    for i, e in enumerate(rank.edges):
        first.setdefault(e.src, i - 0.5)
        first.setdefault(e.dst, float(i))
    for j, m in enumerate(rank.modules):
        first.setdefault(m.name, float(n + j))
    first.setdefault(rank.output_node, float(n + len(rank.modules)))
    succ: dict[str, list[str]] = {}
    for e in rank.edges:
        if e.src != e.dst:
            succ.setdefault(e.src, []).append(e.dst)
    state: dict[str, int] = {}  # 1: on the walk's stack, 2: done
    back: set[tuple[str, str]] = set()
    for root in sorted(first, key=first.__getitem__):
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(succ.get(root, ())))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ.get(nxt, ()))))
    dag = nx.DiGraph()
    dag.add_nodes_from(first)
    dag.add_edges_from((u, v) for u, vs in succ.items() for v in vs if (u, v) not in back)
    return {v: i for i, v in enumerate(nx.lexicographical_topological_sort(dag, key=first.__getitem__))}


def _layer_rows(rank: RankData, analysis: Any, order: Mapping[str, int]) -> list[dict[str, Any]]:
    roof = {r.name: r for r in analysis.roofline}
    depth = _depths(rank)
    on_path = set(analysis.critical_path.nodes)
    by_name = {m.name: m for m in rank.modules}
    rows = []
    for s in analysis.layers:
        m = by_name.get(s.name)
        r = roof.get(s.name)
        rows.append({
            "name": s.name,
            "kind": s.kind,
            "parent": m.parent if m else None,
            "leaf": s.leaf,
            "depth": depth.get(s.name, 0),
            "order": order.get(s.name),
            "calls": s.calls,
            "fwd_us": _num(s.fwd_us),
            "bwd_us": _num(s.bwd_us),
            "self_fwd_us": _num(s.self_fwd_us),
            "self_bwd_us": _num(s.self_bwd_us),
            "self_us": _num(s.self_us),
            "share": _num(s.share),
            "flops": s.flops,
            "achieved_flop_per_s": _num(s.achieved_flop_per_s),
            "params": s.params,
            "dtype": m.dtype if m else None,
            "in_shapes": m.in_shapes if m else [],
            "out_shapes": m.out_shapes if m else [],
            "device_fwd_us": _num(m.device_fwd_us) if m else None,
            "device_bwd_us": _num(m.device_bwd_us) if m else None,
            "critical": s.name in on_path,
            "roofline": None if r is None else {
                "precision": r.precision,
                "flop": _num(r.flop),
                "bytes": _num(r.bytes),
                "kernels": _num(r.kernels),
                "intensity_flop_per_byte": _num(r.intensity_flop_per_byte),
                "ridge_flop_per_byte": _num(r.ridge_flop_per_byte),
                "projected_us": _num(r.time_us),
                "compute_us": _num(r.compute_us),
                "memory_us": _num(r.memory_us),
                "launch_us": _num(r.launch_us),
                "bound": r.bound,
            },
        })
    return rows


def _graph_section(rank: RankData, analysis: Any, order: Mapping[str, int]) -> dict[str, Any]:
    edges = [{
        "src": e.src,
        "dst": e.dst,
        "bytes": e.bytes,
        "shape": e.shape,
        "dtype": e.dtype,
        "count": e.count,
        "via": e.via,
        "back": order.get(e.src, 0) >= order.get(e.dst, 0),
    } for e in rank.edges]
    cp = analysis.critical_path
    return {
        "input": rank.input_node,
        "output": rank.output_node,
        "input_order": order.get(rank.input_node, -1),
        "output_order": order.get(rank.output_node, len(order)),
        "edges": edges,
        "critical_path": {
            "nodes": list(cp.nodes),
            "time_us": _num(cp.time_us),
            "total_us": _num(cp.total_us),
            "share": _num(cp.share),
            "cycles": [list(c) for c in cp.cycles],
        },
    }


def _finding(f: Any) -> dict[str, Any]:
    return {
        "id": f.id,
        "severity": f.severity,
        "title": f.title,
        "evidence": [{"name": e.name, "value": _plain(e.value), "unit": e.unit} for e in f.evidence],
        "recommendation": {"text": f.recommendation.text, "code": f.recommendation.code},
        "saving": {"frac": _num(f.saving.frac), "how": f.saving.how},
        "layers": list(f.layers),
    }


def _step_row(s: Any) -> dict[str, Any]:
    return {
        "label": s.label,
        "gpus": s.gpus,
        "nodes": s.nodes,
        "ranks": s.gpus * s.nodes,
        "gpu_set": list(s.gpu_set),
        "step_us": _num(s.step_us),
        "host_us": _num(s.host_us),
        "forward_us": _num(s.forward_us),
        "backward_us": _num(s.backward_us),
        "optimizer_us": _num(s.optimizer_us),
        "allreduce_us": _num(s.allreduce_us),
        "exposed_comm_us": _num(s.exposed_comm_us),
        "busbw_bytes_per_s": _num(s.busbw_bytes_per_s),
        "comm_bound": s.comm_bound,
        "buckets": s.buckets,
        "samples_per_s": _num(s.samples_per_s),
        "efficiency_frac": _num(s.efficiency_frac),
        "bound": s.bound,
    }


def _projection_of(system: Any, proj: Any) -> dict[str, Any]:
    mem = proj.memory
    return {
        "target": system.target,
        "display": system.display,
        "gpu": system.gpu,
        "gpus_per_node": system.gpus_per_node,
        "interconnect": system.interconnect,
        "rows": [_step_row(s) for s in proj.scaling],
        "memory": {
            "peak_bytes": _num(mem.peak_bytes),
            "capacity_bytes": _num(mem.capacity_bytes),
            "used_frac": _num(mem.used_frac),
            "fits_batch_size": mem.fits_batch_size,
            "bound": mem.bound,
        },
    }


def projections_by_system(analysis: Any) -> list[dict[str, Any]]:
    """The projection table of every DGX system, as :func:`topoprof.analyze` computed it."""
    return [_projection_of(sp, sp.projection) for sp in analysis.system_projections]


def _roofline_section(analysis: Any) -> dict[str, Any]:
    from ..analysis.roofline import peak_key, supported_precisions
    from ..hardware import get_target

    gpu = get_target(analysis.target).gpu
    peaks = []
    for p in supported_precisions(gpu):
        key, note = peak_key(gpu, p, "bfloat16")
        peaks.append({"precision": p, "peak_key": key, "flop_per_s": _num(gpu.achievable_flops(key)), "note": note})
    points = []
    omitted = 0
    for r in analysis.roofline:
        x, t = _num(r.intensity_flop_per_byte), _num(r.time_us)
        if not x or not t or not r.flop:
            omitted += 1  # no FLOPs (elementwise ops): no point on a log-log roofline
            continue
        points.append({
            "name": r.name,
            "kind": r.kind,
            "precision": r.precision,
            "intensity_flop_per_byte": x,
            "flop_per_s": r.flop / (t / _US_PER_S),
            "projected_us": t,
            "measured_us": _num(r.measured_us),
            "bound": r.bound,
        })
    return {
        "gpu": gpu.display_name,
        "bandwidth_bytes_per_s": _num(gpu.achievable_hbm_bandwidth_bytes_per_s),
        "peaks": peaks,
        "points": points,
        "omitted": omitted,
    }


def _rank_rows(run: Run) -> list[dict[str, Any]]:
    from ..analysis.breakdown import step_breakdown

    rows = []
    for r, data in run.ranks.items():
        if not data.steps:
            rows.append({"rank": r, "host": data.host, "device": data.device, "status": data.status, "steps": 0,
                         "step_us": None, "step_min_us": None, "step_max_us": None, "phases": {},
                         "comm_us": None, "comm_exposed_us": None})
            continue
        b = step_breakdown(data)
        comm = [s.comm_us for s in data.steps if s.comm_us is not None]
        exposed = [s.comm_exposed_us for s in data.steps if s.comm_exposed_us is not None]
        rows.append({
            "rank": r,
            "host": data.host,
            "device": data.device,
            "status": data.status,
            "steps": b.steps,
            "step_us": _num(b.step_us),
            "step_min_us": _num(b.step_min_us),
            "step_max_us": _num(b.step_max_us),
            "phases": {p.phase: _num(p.median_us) for p in b.phases},
            "comm_us": _num(median(comm)) if comm else None,
            "comm_exposed_us": _num(median(exposed)) if exposed else None,
        })
    return rows


def _run_section(run: Run) -> dict[str, Any]:
    m = run.manifest
    return {
        "name": m.name or (run.path.name if run.path else ""),
        "path": str(run.path) if run.path else None,
        "run_id": m.run_id,
        "created": m.created,
        "mode": m.mode,
        "status": m.status,
        "versions": dict(m.versions),
        "versions_text": _versions_text(m.versions),
        "device": dict(m.device),
        "device_text": _device_text(m.device),
        "host": m.host,
        "hosts": list(m.hosts),
        "world_size": m.world_size,
        "ranks": sorted(run.ranks),
        "missing_ranks": run.missing_ranks,
        "steps_requested": m.steps_requested,
        "skip_first": m.skip_first,
        "command": list(m.command),
        "tags": _plain(m.tags),
    }


def report_document(
    subject: Any,
    *,
    run: Run | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """The report document of an analysis (or of a run, analysed on ``target``).

    Args:
        subject: a :class:`topoprof.analysis.Analysis`, a :class:`~topoprof.run.Run` or a run
            directory.
        run: the analysed run, when ``subject`` is an analysis of a run never saved (otherwise it
            is loaded from the analysis's ``run_path``).
        target: hardware target for a run (default :data:`DEFAULT_TARGET`).

    Returns:
        A JSON-ready dict with stable keys: ``format``, ``format_version``, ``generator``,
        ``run``, ``summary``, ``phases``, ``analysis``, ``findings``, ``layers``, ``graph``,
        ``roofline``, ``projection``, ``ranks``.
    """
    run, analysis = _split(subject, run, target)
    rank = run.rank(analysis.rank)
    order = _graph_order(rank)
    b = analysis.breakdown
    root = next((s for s in analysis.layers if s.name == ""), None)  # the model: qualified name ""
    flops = root.flops if root is not None else sum(s.flops for s in analysis.layers if s.leaf)
    params = root.params if root is not None else sum(s.params for s in analysis.layers if s.leaf)
    model = run.manifest.tags.get("model") or (root.kind if root is not None else "?")
    step_s = b.step_us / _US_PER_S if b.step_us else None
    proj = analysis.projection
    target_projection = _projection_of(analysis.target_projection, proj)
    target_projection.update({
        "phases": [{"phase": p.phase, "measured_us": _num(p.measured_us), "projected_us": _num(p.projected_us),
                    "bound": p.bound} for p in proj.phases],
        "by_precision": [{"precision": p.precision, "peak_key": p.peak_key, "step_us": _num(p.step_us),
                          "device_us": _num(p.device_us), "bound": p.bound} for p in proj.by_precision],
        "optimizer": {"kinds": list(proj.optimizer.kinds), "implementation": proj.optimizer.implementation,
                      "time_us": _num(proj.optimizer.time_us), "fused_time_us": _num(proj.optimizer.fused_time_us),
                      "bound": proj.optimizer.bound},
        "chosen": _step_row(proj.chosen) if proj.chosen is not None else None,
        "memory_detail": _plain(proj.memory),
        "gradient_bytes": _num(proj.gradient_bytes),
        "assumptions": list(proj.assumptions),
    })
    return {
        "format": REPORT_FORMAT,
        "format_version": DOCUMENT_VERSION,
        "generator": f"topoprof {__version__}",
        "run": _run_section(run),
        "summary": {
            "model": str(model),
            "rank": analysis.rank,
            "params": params,
            "flops_per_step": flops,
            "step_us": _num(b.step_us),
            "step_min_us": _num(b.step_min_us),
            "step_max_us": _num(b.step_max_us),
            "steps": b.steps,
            "steps_per_s": _num(b.steps_per_s),
            "samples_per_s": _num(b.samples_per_s),
            "batch_size": analysis.batch_size,
            "forward_passes_per_step": _num(b.forward_passes_per_step),
            "achieved_flop_per_s": _num(flops / step_s) if step_s else None,
            "layers": sum(1 for s in analysis.layers if s.leaf),
            "modules": len(analysis.layers),
        },
        "phases": [{"phase": p.phase, "median_us": _num(p.median_us), "min_us": _num(p.min_us),
                    "max_us": _num(p.max_us), "share": _num(p.share)} for p in b.phases],
        "analysis": {
            "target": analysis.target,
            "target_display": analysis.target_display,
            "gpu": analysis.target_projection.gpu,
            "notes": list(analysis.notes),
        },
        "findings": [_finding(f) for f in analysis.findings],
        "layers": _layer_rows(rank, analysis, order),
        "graph": _graph_section(rank, analysis, order),
        "roofline": _roofline_section(analysis),
        "projection": {
            "target": target_projection,
            "systems": projections_by_system(analysis),
        },
        "ranks": _rank_rows(run),
    }


# --- comparison ---------------------------------------------------------------------------------


def _delta(d: Any) -> dict[str, Any]:
    return {"a": _num(d.a), "b": _num(d.b), "diff": _num(d.diff), "ratio": _num(d.ratio)}


def comparison_document(comparison: Any) -> dict[str, Any]:
    """The document of a :class:`~topoprof.analysis.compare.Comparison` (stable keys: ``format``,
    ``format_version``, ``generator``, ``a``, ``b``, ``rank``, ``summary``, ``phases``,
    ``layers``, ``findings``, ``notes``)."""
    c = comparison
    return {
        "format": COMPARISON_FORMAT,
        "format_version": DOCUMENT_VERSION,
        "generator": f"topoprof {__version__}",
        "a": _plain(c.a),
        "b": _plain(c.b),
        "rank": c.rank,
        "summary": {
            "step_us": _delta(c.step_us),
            "step_min_us": _delta(c.step_min_us),
            "step_max_us": _delta(c.step_max_us),
            "steps_per_s": _delta(c.steps_per_s),
            "samples_per_s": _delta(c.samples_per_s),
            "speedup": _num(c.speedup),
            "throughput_ratio": _num(c.throughput_ratio),
        },
        "phases": [{"phase": p.phase, "us": _delta(p.us), "share": _delta(p.share)} for p in c.phases],
        "layers": [{
            "name": d.name,
            "kind": d.kind,
            "kind_b": d.kind_b,
            "status": d.status,
            "leaf": d.leaf,
            "fwd_us": _delta(d.fwd_us),
            "bwd_us": _delta(d.bwd_us),
            "self_us": _delta(d.self_us),
            "flops": _delta(d.flops),
            "achieved_flop_per_s": _delta(d.achieved_flop_per_s),
        } for d in c.layers],
        "only_in_a": list(c.only_in_a),
        "only_in_b": list(c.only_in_b),
        "findings": None if c.findings is None else [{
            "id": f.id,
            "title": f.title,
            "status": f.status,
            "severity_a": f.severity_a,
            "severity_b": f.severity_b,
            "saving_frac": _delta(f.saving_frac),
            "count": _delta(f.count),
        } for f in c.findings],
        "notes": list(c.notes),
    }


def document_json(document: Mapping[str, Any], *, indent: bool = True) -> bytes:
    """A document as JSON bytes (UTF-8; non-finite numbers already None)."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 if indent else 0)


def _embed_json(document: Mapping[str, Any]) -> Markup:
    """JSON safe inside a ``<script>`` element: ``<``, ``>``, ``&`` and the JS line separators are
    written as ``\\u`` escapes, so no string can end the element or open a comment."""
    text = orjson.dumps(document).decode()
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


# ==============================================================================================
# Formatting (Jinja2 filters)
# ==============================================================================================


def fmt_us(us: Any) -> str:
    """``1234.5`` -> ``"1.23 ms"``."""
    v = _num(us)
    if v is None:
        return "–"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g} s"
    if a >= 1e3:
        return f"{v / 1e3:.3g} ms"
    return f"{v:.3g} µs" if a >= 1 or a == 0 else f"{v:.2g} µs"


def fmt_si(n: Any, unit: str = "") -> str:
    """``1.5e9`` -> ``"1.5 G"`` + unit."""
    v = _num(n)
    if v is None:
        return "–"
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g} {prefix}{unit}"
    if v == int(v):
        return f"{int(v)} {unit}".rstrip()
    return f"{v:.3g} {unit}".rstrip()


def fmt_bytes(n: Any) -> str:
    """Bytes with binary prefixes: ``"1.5 GiB"``."""
    v = _num(n)
    if v is None:
        return "–"
    for factor, prefix in ((2**40, "Ti"), (2**30, "Gi"), (2**20, "Mi"), (2**10, "Ki")):
        if abs(v) >= factor:
            return f"{v / factor:.3g} {prefix}B"
    return f"{int(v)} B"


def fmt_pct(frac: Any, digits: int = 1) -> str:
    """``0.123`` -> ``"12.3 %"``; a share too small to show at ``digits`` reads ``"<0.1 %"``."""
    v = _num(frac)
    if v is None:
        return "–"
    smallest = 10.0 ** -digits
    if 0 < abs(v * 100) < smallest:
        return f"<{smallest:g} %"
    return f"{v * 100:.{digits}f} %"


def fmt_rate(per_s: Any, unit: str = "/s") -> str:
    """A throughput: ``12920.4`` -> ``"12.9 k/s"``, ``43.97`` -> ``"44/s"``."""
    v = _num(per_s)
    if v is None:
        return "–"
    if abs(v) >= 1e3:
        return fmt_si(v) + unit
    return f"{v:.3g}{unit}"


def fmt_ratio(x: Any) -> str:
    """``1.234`` -> ``"1.23×"``, ``2.0`` -> ``"2.00×"`` (three significant digits, kept)."""
    v = _num(x)
    if v is None:
        return "–"
    return (f"{v:,.0f}" if abs(v) >= 100 else f"{v:#.3g}".rstrip(".")) + "×"


def fmt_signed_us(us: Any) -> str:
    """A time difference with its sign: ``"+1.2 ms"``, ``"−300 µs"``."""
    v = _num(us)
    if v is None:
        return "–"
    return ("+" if v > 0 else "−" if v < 0 else "±") + fmt_us(abs(v))


def fmt_value(value: Any, unit: str = "") -> str:
    """An evidence value with its unit (``us``, ``bytes``, ``frac``, ``FLOP``, ``FLOP/s``...)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) or value is None:
        return "–" if value is None else value
    if unit == "us":
        return fmt_us(value)
    if unit == "bytes":
        return fmt_bytes(value)
    if unit == "frac":
        return fmt_pct(value)
    if unit == "bytes/s":
        return fmt_si(value, "B/s")
    if unit in ("FLOP", "FLOP/s", "FLOP/byte"):
        return fmt_si(value, " " + unit if unit == "FLOP/byte" else unit).replace("  ", " ")
    if unit == "count" or unit == "":
        v = _num(value)
        if v is not None and v == int(v) and abs(v) < 1e6:
            return f"{int(v):,}"
        return fmt_si(value)
    return f"{fmt_si(value)} {unit}"


_FILTERS: dict[str, Callable[..., str]] = {
    "us": fmt_us,
    "si": fmt_si,
    "bytes": fmt_bytes,
    "pct": fmt_pct,
    "ratio": fmt_ratio,
    "rate": fmt_rate,
    "signed_us": fmt_signed_us,
    "value": fmt_value,
}


# ==============================================================================================
# Static charts (inline SVG)
# ==============================================================================================

#: Colour of each phase (also used by the JS and the CSS legend).
PHASE_COLOURS: Mapping[str, str] = {
    "data": "#8e6bbf",
    "forward": "#3b82c4",
    "backward": "#e07b39",
    "optimizer": "#3aa76d",
    "other": "#9aa3ad",
}
#: Colour of each roofline bound.
BOUND_COLOURS: Mapping[str, str] = {
    "compute": "#3b82c4",
    "memory": "#d9534f",
    "launch": "#e0a030",
    "host": "#9aa3ad",
    "communication": "#8e6bbf",
}


def _f(x: float) -> str:
    return f"{x:.1f}"


def phase_bar_svg(phases: Sequence[Mapping[str, Any]], width: int = 900, height: int = 34) -> Markup:
    """The step as one horizontal bar split by phase (shares of the median step)."""
    total = sum(p["median_us"] or 0.0 for p in phases) or 1.0
    x = 0.0
    parts = [f'<svg class="phasebar" viewBox="0 0 {width} {height}" width="100%" height="{height}" '
             f'role="img" aria-label="step breakdown by phase" preserveAspectRatio="none">']
    for p in phases:
        w = (p["median_us"] or 0.0) / total * width
        if w <= 0:
            continue
        colour = PHASE_COLOURS.get(p["phase"], "#999")
        label = f'{p["phase"]}: {fmt_us(p["median_us"])} ({fmt_pct(p["share"])})'
        parts.append(f'<rect x="{_f(x)}" y="0" width="{_f(w)}" height="{height}" fill="{colour}">'
                     f'<title>{escape(label)}</title></rect>')
        x += w
    parts.append("</svg>")
    return Markup("".join(parts))


def rank_bars_svg(ranks: Sequence[Mapping[str, Any]], width: int = 900) -> Markup:
    """One bar per rank: its median step split by phase, on a common scale, with the exposed
    communication marked."""
    row, gap, left, right = 22, 6, 70, 90
    longest = max((r["step_us"] or 0.0) for r in ranks) or 1.0
    height = len(ranks) * (row + gap) + 24
    scale = (width - left - right) / longest
    out = [f'<svg class="rankbars" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="step time per rank">']
    for i, r in enumerate(ranks):
        y = i * (row + gap)
        out.append(f'<text x="{left - 8}" y="{y + row * 0.7:.1f}" text-anchor="end">rank {int(r["rank"])}</text>')
        x = float(left)
        for p in PHASES:
            us = (r["phases"] or {}).get(p) or 0.0
            w = us * scale
            if w <= 0:
                continue
            out.append(f'<rect x="{_f(x)}" y="{y}" width="{_f(w)}" height="{row}" fill="{PHASE_COLOURS[p]}">'
                       f'<title>{escape("rank %s %s: %s" % (r["rank"], p, fmt_us(us)))}</title></rect>')
            x += w
        if r.get("comm_exposed_us"):
            w = r["comm_exposed_us"] * scale
            out.append(f'<rect x="{_f(x - w)}" y="{y + row - 5}" width="{_f(w)}" height="5" fill="#222">'
                       f'<title>{escape("exposed communication: " + fmt_us(r["comm_exposed_us"]))}</title></rect>')
        out.append(f'<text x="{_f(x + 6)}" y="{y + row * 0.7:.1f}">{escape(fmt_us(r["step_us"]))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def phase_compare_svg(phases: Sequence[Mapping[str, Any]], width: int = 900) -> Markup:
    """Per phase, run A's and run B's median time as two bars on a common scale."""
    row, gap, left, right = 13, 12, 90, 150
    longest = max([(p["us"]["a"] or 0.0) for p in phases] + [(p["us"]["b"] or 0.0) for p in phases]) or 1.0
    scale = (width - left - right) / longest
    height = len(phases) * (2 * row + gap) + 4
    out = [f'<svg class="phasecmp" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="phases of run A and run B">']
    for i, p in enumerate(phases):
        y = i * (2 * row + gap)
        colour = PHASE_COLOURS.get(p["phase"], "#999")
        out.append(f'<text x="{left - 8}" y="{y + row + 4}" text-anchor="end">{escape(p["phase"])}</text>')
        for k, side in enumerate(("a", "b")):
            us = p["us"][side] or 0.0
            w = max(us * scale, 0.5)
            yy = y + k * row
            opacity = "0.55" if side == "a" else "1"
            out.append(f'<rect x="{left}" y="{yy}" width="{_f(w)}" height="{row - 2}" fill="{colour}" '
                       f'fill-opacity="{opacity}"><title>{escape(f"{side.upper()}: {fmt_us(us)}")}</title></rect>'
                       f'<text class="tick" x="{_f(left + w + 5)}" y="{yy + row - 3}">{side.upper()} '
                       f'{escape(fmt_us(us))}</text>')
        diff = p["us"]["diff"]
        if diff is not None:
            cls = "faster" if diff < 0 else "slower" if diff > 0 else "muted"
            out.append(f'<text class="{cls}" x="{width - 4}" y="{y + row + 4}" text-anchor="end">'
                       f'{escape(fmt_signed_us(diff))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _log_ticks(lo: float, hi: float) -> list[float]:
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [10.0**k for k in range(a, b + 1)]


def roofline_svg(roof: Mapping[str, Any], width: int = 900, height: int = 440) -> Markup:
    """Log-log roofline of the target GPU (achievable peaks and HBM bandwidth) with one point per
    layer at its projected FLOP/s; point area by projected time, colour by bound."""
    points = roof["points"]
    bw = roof["bandwidth_bytes_per_s"] or 1.0
    peaks = [p for p in roof["peaks"] if p["flop_per_s"]]
    if not points or not peaks:
        return Markup('<p class="muted">No layer with FLOPs to place on the roofline.</p>')
    left, right, top, bottom = 84, 150, 14, 42
    xs = [p["intensity_flop_per_byte"] for p in points]
    ys = [p["flop_per_s"] for p in points]
    top_peak = max(p["flop_per_s"] for p in peaks)
    ridge_hi = top_peak / bw
    x_lo = 10 ** math.floor(math.log10(min(min(xs), 1.0)))
    x_hi = 10 ** math.ceil(math.log10(max(max(xs), ridge_hi * 4)))
    y_lo = 10 ** math.floor(math.log10(max(min(ys + [bw * x_lo]), 1.0)))
    y_hi = 10 ** math.ceil(math.log10(top_peak * 1.5))
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (math.log10(v) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo)) * pw

    def sy(v: float) -> float:
        v = min(max(v, y_lo), y_hi)
        return top + ph - (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) * ph

    out = [f'<svg class="roofline" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="roofline">']
    for t in _log_ticks(x_lo, x_hi):
        out.append(f'<line class="grid" x1="{_f(sx(t))}" y1="{top}" x2="{_f(sx(t))}" y2="{top + ph}"/>'
                   f'<text class="tick" x="{_f(sx(t))}" y="{top + ph + 16}" text-anchor="middle">'
                   f'{escape(fmt_si(t))}</text>')
    for t in _log_ticks(y_lo, y_hi):
        out.append(f'<line class="grid" x1="{left}" y1="{_f(sy(t))}" x2="{left + pw}" y2="{_f(sy(t))}"/>'
                   f'<text class="tick" x="{left - 6}" y="{_f(sy(t) + 4)}" text-anchor="end">'
                   f'{escape(fmt_si(t, "FLOP/s"))}</text>')
    out.append(f'<text class="axis" x="{left + pw / 2:.0f}" y="{height - 6}" text-anchor="middle">'
               f'arithmetic intensity (FLOP/byte)</text>')
    run_precisions = {p["precision"] for p in points}
    out.append(f'<line class="roof used" x1="{_f(sx(x_lo))}" y1="{_f(sy(bw * x_lo))}" x2="{_f(sx(ridge_hi))}" '
               f'y2="{_f(sy(top_peak))}"><title>HBM {escape(fmt_si(bw, "B/s"))} (achievable)</title></line>')
    for pk in sorted(peaks, key=lambda p: p["flop_per_s"]):
        peak = pk["flop_per_s"]
        ridge = peak / bw
        used = pk["precision"] in run_precisions
        cls = "roof used" if used else "roof"
        out.append(f'<line class="{cls}" x1="{_f(sx(ridge))}" y1="{_f(sy(peak))}" x2="{_f(sx(x_hi))}" '
                   f'y2="{_f(sy(peak))}"><title>{escape(pk["precision"])} peak {escape(fmt_si(peak, "FLOP/s"))}, '
                   f'ridge {ridge:.3g} FLOP/byte</title></line>')
        out.append(f'<text class="rooflabel{" used" if used else ""}" x="{left + pw + 6}" y="{_f(sy(peak) + 4)}">'
                   f'{escape(pk["precision"])} {escape(fmt_si(peak, "FLOP/s"))}</text>')
    out.append(f'<text class="rooflabel" transform="translate({_f(sx(x_lo * 3))},{_f(sy(bw * x_lo * 3) - 8)}) '
               f'rotate(-{_slope_angle(sx, sy, bw, x_lo):.1f})">HBM {escape(fmt_si(bw, "B/s"))}</text>')
    total = sum(p["projected_us"] for p in points) or 1.0
    for p in sorted(points, key=lambda p: -p["projected_us"]):
        r = 2.5 + 14.0 * math.sqrt(p["projected_us"] / total)
        colour = BOUND_COLOURS.get(p["bound"], "#666")
        tip = (f'{p["name"] or "(root)"} ({p["kind"]}): {p["intensity_flop_per_byte"]:.3g} FLOP/byte, '
               f'{fmt_si(p["flop_per_s"], "FLOP/s")} projected, {fmt_us(p["projected_us"])}/step, '
               f'{p["bound"]}-bound, {p["precision"]}')
        out.append(f'<circle cx="{_f(sx(p["intensity_flop_per_byte"]))}" cy="{_f(sy(p["flop_per_s"]))}" r="{r:.1f}" '
                   f'fill="{colour}" data-layer="{escape(p["name"])}"><title>{escape(tip)}</title></circle>')
    out.append("</svg>")
    return Markup("".join(out))


def _slope_angle(sx: Callable[[float], float], sy: Callable[[float], float], bw: float, x: float) -> float:
    dx = sx(x * 10) - sx(x)
    dy = sy(bw * x) - sy(bw * x * 10)
    return math.degrees(math.atan2(dy, dx))


# ==============================================================================================
# Rendering
# ==============================================================================================


def _asset(name: str) -> str:
    return (resources.files(__package__) / _ASSETS / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: _asset(name)),
        autoescape=True,  # every string from the model or the user is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(_FILTERS)
    env.globals.update(PHASE_COLOURS=PHASE_COLOURS, BOUND_COLOURS=BOUND_COLOURS, PHASES=PHASES)
    return env


def _inline(name: str) -> Markup:
    """An asset of our own, inlined verbatim (checked: it cannot end its element)."""
    text = _asset(name)
    if "</script" in text.lower() or "</style" in text.lower():
        raise ValueError(f"asset {name} contains a closing tag")
    return Markup(text)


def render_html(document: Mapping[str, Any]) -> str:
    """The HTML of a report document (:func:`report_document`)."""
    env = _environment()
    d = document
    charts = {
        "phases": phase_bar_svg(d["phases"]),
        "roofline": roofline_svg(d["roofline"]),
        "ranks": rank_bars_svg(d["ranks"]) if len(d["ranks"]) > 1 else Markup(""),
    }
    return env.get_template("report.html.j2").render(
        d=d, charts=charts, data_json=_embed_json(d), css=_inline("report.css"),
        common_js=_inline("common.js"), js=_inline("report.js"),
    )


#: Height of a report shown inline in a Jupyter notebook (pixels; the frame scrolls).
NOTEBOOK_FRAME_HEIGHT_PX = 820


def notebook_html(subject: Any, *, run: Run | None = None, target: str | None = None) -> str:
    """The HTML report of a run, an analysis or a comparison, for Jupyter's ``_repr_html_``.

    The same self-contained document as :func:`write_report`, inside an ``<iframe srcdoc>`` so
    that its styles and scripts stay apart from the notebook's.
    """
    if _is_comparison(subject):
        doc = render_comparison_html(comparison_document(subject))
    else:
        run_, analysis = _split(subject, run, target)
        doc = render_html(report_document(analysis, run=run_))
    return (
        f'<iframe srcdoc="{html_escape(doc, quote=True)}" '
        f'style="width:100%;height:{NOTEBOOK_FRAME_HEIGHT_PX}px;border:0" '
        f'sandbox="allow-scripts"></iframe>'
    )


def render_comparison_html(document: Mapping[str, Any]) -> str:
    """The HTML of a comparison document (:func:`comparison_document`)."""
    env = _environment()
    return env.get_template("compare.html.j2").render(
        d=document, charts={"phases": phase_compare_svg(document["phases"])}, data_json=_embed_json(document),
        css=_inline("report.css"), common_js=_inline("common.js"), js=_inline("compare.js"),
    )


# ==============================================================================================
# write_report
# ==============================================================================================


def format_from_path(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The output format named by ``format`` or by the extension of ``path``.

    Raises:
        TopoprofError: unknown format, or an extension that names none.
    """
    from ..errors import TopoprofError

    if format is not None:
        fmt = format.lower().lstrip(".")
        fmt = {"markdown": "md", "htm": "html", "txt": "text", "terminal": "text"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise TopoprofError(f"unknown report format {format!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    for fmt, exts in FORMATS.items():
        if suffix in exts:
            return fmt
    known = ", ".join(e for exts in FORMATS.values() for e in exts)
    raise TopoprofError(f"{path}: cannot tell the report format from the extension {suffix or '(none)'!r} "
                        f"(use one of {known}, or --format)")


def _is_comparison(obj: Any) -> bool:
    return hasattr(obj, "speedup") and hasattr(obj, "layers") and hasattr(obj, "a") and hasattr(obj, "b")


def _json_report(subject: Any, run: Run | None, target: str | None) -> bytes:
    """The full analysis as JSON (:mod:`topoprof.report.json_report`, the analysis's own stable
    keys); a run is analysed on ``target`` first."""
    from .json_report import dumps

    if not _is_analysis(subject):
        _, subject = _split(subject, run, target)
    return dumps(subject)


def _text_report(subject: Any, run: Run | None, target: str | None) -> bytes:
    import io

    from ..analysis.breakdown import top_layers
    from .terminal import render_summary

    run_obj, analysis = _split(subject, run, target)
    buf = io.StringIO()
    rank = run_obj.rank(analysis.rank)
    m = run_obj.manifest
    title = f"topoprof run {run_obj.path} ({m.mode} mode, {m.device.get('type', '?')}, {m.status})"
    render_summary(title, analysis.breakdown, top_layers(rank, 10), file=buf, width=120)
    return buf.getvalue().encode()


def write_report(
    subject: Any,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    target: str | None = None,
    run: Run | None = None,
) -> Path:
    """Write a report of an analysis, a run or a comparison.

    Args:
        subject: a :class:`topoprof.analysis.Analysis`, a :class:`~topoprof.run.Run`, a run
            directory (analysed on ``target``), or a
            :class:`~topoprof.analysis.compare.Comparison`.
        path: the file to write (parent directories are created; the write is atomic).
        format: ``"html"``, ``"json"``, ``"md"`` or ``"text"``; default from the extension.
            JSON is the full analysis (:mod:`topoprof.report.json_report`) for an analysis or a
            run, and the comparison document (:func:`comparison_document`) for a comparison.
        target: hardware target when ``subject`` is a run (default :data:`DEFAULT_TARGET`).
        run: the run of an analysis whose run was never saved.

    Returns:
        The path written.
    """
    out = Path(path)
    fmt = format_from_path(out, format)
    if _is_comparison(subject):
        doc = comparison_document(subject)
        if fmt == "html":
            data = render_comparison_html(doc).encode()
        elif fmt == "json":
            data = document_json(doc)
        else:  # Markdown, also for "text": it reads well in a terminal
            from .markdown import render_comparison_markdown

            data = render_comparison_markdown(doc).encode()
    elif fmt == "html":
        data = render_html(report_document(subject, run=run, target=target)).encode()
    elif fmt == "json":
        data = _json_report(subject, run, target)
    elif fmt == "md":
        from .markdown import render_markdown

        data = render_markdown(report_document(subject, run=run, target=target)).encode()
    else:
        data = _text_report(subject, run, target)
    write_bytes_atomic(out, data)
    return out

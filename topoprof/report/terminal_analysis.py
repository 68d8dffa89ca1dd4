"""Terminal rendering of an analysis (``topoprof analyze --format text``): compact rich tables.

Formats what :func:`topoprof.analyze` computed; computes nothing.
"""

from __future__ import annotations

import math
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..analysis import Analysis
from .terminal import format_count, format_us

__all__ = ["render_analysis", "render_targets", "render_topology", "format_bytes", "format_frac"]

_SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}
_MIN_FILE_WIDTH = 120
_TOP_EVIDENCE = 4


def format_bytes(n: float | None) -> str:
    """``1.6e10`` -> ``"16.0 GB"`` (decimal)."""
    if n is None:
        return "-"
    for factor, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n:.0f} B"


def format_frac(x: float | None) -> str:
    """``0.234`` -> ``"23.4 %"``."""
    if x is None or math.isnan(x):
        return "-"
    return f"{x * 100:.1f} %"


def _value(value: Any, unit: str) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return "-" if value is None else str(value)
    formats = {"us": format_us, "bytes": format_bytes, "frac": format_frac,
               "FLOP": lambda v: format_count(v, "FLOP"), "FLOP/s": lambda v: format_count(v, "FLOP/s"),
               "bytes/s": lambda v: format_bytes(v) + "/s"}
    if unit in formats:
        return formats[unit](value)
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".rstrip()


def _console(file: IO[str] | None, width: int | None) -> Console:
    console = Console(file=file, width=width, highlight=False)
    if width is None and not console.is_terminal:
        console.width = max(console.width, _MIN_FILE_WIDTH)
    return console


def render_analysis(analysis: Analysis, file: IO[str] | None = None, width: int | None = None,
                    *, evidence: int = _TOP_EVIDENCE) -> None:
    """Print the findings, the step (measured and projected), the scaling projection and the
    memory footprint."""
    console = _console(file, width)
    b = analysis.breakdown
    proj = analysis.projection
    console.print(Text(f"topoprof analysis of {analysis.run_name or analysis.run_path} on {analysis.target_display}",
                       style="bold"))
    console.print(f"measured step {format_us(b.step_us)} over {b.steps} steps; projected on one "
                  f"{proj.gpu} {format_us(proj.single.step_us)} ({proj.single.bound}-bound)")

    findings = Table(title="Findings (ranked by estimated saving)", title_justify="left")
    for col, justify in (("severity", "left"), ("id", "left"), ("saving", "right"), ("finding", "left")):
        findings.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for f in analysis.findings:
        detail = Text(f.title)
        for e in f.evidence[:evidence]:
            detail.append(f"\n  {e.name}: {_value(e.value, e.unit)}", style="dim")
        detail.append(f"\n  -> {f.recommendation.text}", style="green")
        findings.add_row(Text(f.severity, style=_SEVERITY_STYLE.get(f.severity, "")), f.id,
                         format_frac(f.saving.frac), detail)
    if analysis.findings:
        console.print(findings)
    else:
        console.print("no findings")

    phases = Table(title="Step by phase: measured vs projected on one GPU", title_justify="left")
    for col in ("phase", "measured", "projected", "bound"):
        phases.add_column(col, justify="left" if col in ("phase", "bound") else "right")
    for p in proj.phases:
        phases.add_row(p.phase, format_us(p.measured_us), format_us(p.projected_us), p.bound)
    console.print(phases)

    scaling = Table(title=f"Data-parallel projection on {analysis.target_display}", title_justify="left")
    for col in ("GPUs", "step", "exposed comm", "samples/s", "efficiency", "bound"):
        scaling.add_column(col, justify="left" if col in ("GPUs", "bound") else "right")
    rows = list(proj.scaling) + ([proj.chosen] if proj.chosen is not None else [])
    for s in rows:
        bound = s.bound if s.bound != "communication" else f"communication ({s.comm_bound})"
        scaling.add_row(s.label, format_us(s.step_us), format_us(s.exposed_comm_us),
                        f"{s.samples_per_s:.0f}" if s.samples_per_s is not None else "-",
                        format_frac(s.efficiency_frac), bound)
    console.print(scaling)

    m = proj.memory
    console.print(f"memory on one {proj.gpu}: {format_bytes(m.peak_bytes)} of {format_bytes(m.capacity_bytes)} "
                  f"({format_frac(m.used_frac)}): params {format_bytes(m.params_bytes)}, grads "
                  f"{format_bytes(m.grads_bytes)}, optimizer {format_bytes(m.optimizer_bytes)}, activations "
                  f"{format_bytes(m.activations_bytes)}")
    cp = analysis.critical_path
    inner = [n for n in cp.nodes if n not in ("input", "output")]
    if inner:
        console.print(f"critical path ({format_frac(cp.share)} of layer time): " + " -> ".join(inner))
    for note in analysis.notes:
        console.print(Text(f"note: {note}", style="dim"))


def render_targets(rows: list[dict[str, Any]], file: IO[str] | None = None, width: int | None = None) -> None:
    """Print the hardware catalogue (rows of :func:`topoprof.hardware.summary_rows`)."""
    console = _console(file, width)
    table = Table(title="Hardware targets", title_justify="left")
    for col, justify in (("target", "left"), ("system", "left"), ("GPUs", "right"), ("GPU", "left"),
                         ("memory/GPU", "right"), ("tensor peak", "right"), ("HBM", "right"),
                         ("interconnect", "left"), ("ring busbw", "right"), ("network", "right")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r["name"], r["display_name"], str(r["gpu_count"]), r["gpu_display_name"],
            format_bytes(r["gpu_memory_bytes"]),
            f"{format_count(r['tensor_peak_flops'], 'FLOP/s')} {r['tensor_dtype']}",
            format_bytes(r["hbm_bandwidth_bytes_per_s"]) + "/s",
            r["interconnect"] + (" + NVLS" if r.get("nvls") else ""),
            format_bytes(r["ring_busbw_bytes_per_s"]) + "/s" if r["ring_busbw_bytes_per_s"] else "-",
            format_bytes(r["network_bandwidth_bytes_per_s"]) + "/s" if r["network_bandwidth_bytes_per_s"] else "-",
        )
    console.print(table)


def render_topology(info: dict[str, Any], file: IO[str] | None = None, width: int | None = None) -> None:
    """Print a parsed topology (:func:`topoprof.hardware.describe_topology`): GPUs, NVLink pairs
    with link counts, the ring bandwidth, the best GPU subsets."""
    console = _console(file, width)
    title = info.get("name") or "topology"
    console.print(Text(f"{title}: {len(info['gpus'])} GPUs, {len(info['nics'])} NICs, "
                       f"{'NVSwitch' if info['nvswitch'] else 'direct NVLink'}, "
                       f"{info['nvlink_total_links']} NVLinks", style="bold"))
    gpus = Table(title="GPUs", title_justify="left")
    for col in ("GPU", "NVLinks", "NVLink bandwidth", "CPU affinity", "NUMA"):
        gpus.add_column(col)
    for g in info["gpus"]:
        gpus.add_row(g["label"], str(g["nvlink_links"]), format_bytes(g["nvlink_bandwidth_bytes_per_s"]) + "/s",
                     str(g["cpu_affinity"] or "-"), str(g["numa_affinity"] if g["numa_affinity"] is not None else "-"))
    console.print(gpus)
    links = Table(title="GPU pairs", title_justify="left")
    for col in ("pair", "path", "NVLinks", "bandwidth"):
        links.add_column(col)
    for link in info["links"]:
        style = "" if link["links"] else "dim"
        bw = link["bandwidth_bytes_per_s"]
        links.add_row(f"{link['a']}-{link['b']}", str(link["path"]), str(link["links"]),
                      format_bytes(bw) + "/s" if bw else "-", style=style)
    console.print(links)
    ring = info.get("ring")
    if ring:
        console.print(f"ring all-reduce over all GPUs: {format_bytes(ring['busbw_bytes_per_s'])}/s bus bandwidth "
                      f"({format_bytes(ring['peak_busbw_bytes_per_s'])}/s at spec rates, {ring['bound']}-bound, "
                      f"{len(ring['rings'])} ring(s))")
    for k, sub in sorted(info.get("best_subsets", {}).items()):
        console.print(f"best {k} GPUs: {','.join(str(g) for g in sub['gpus'])} "
                      f"({format_bytes(sub['busbw_bytes_per_s'])}/s, {sub['bound']})")
    if info.get("non_nvlink_pairs"):
        pairs = ", ".join(f"{a}-{b}" for a, b in info["non_nvlink_pairs"])
        console.print(Text(f"pairs without NVLink: {pairs}", style="dim"))

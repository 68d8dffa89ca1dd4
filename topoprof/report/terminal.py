"""Terminal summary: the step breakdown by phase and the top layers (rich tables)."""

from __future__ import annotations

import math
from typing import IO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..analysis.breakdown import LayerStat, StepBreakdown

__all__ = ["render_summary", "format_us", "format_count"]


def format_us(us: float) -> str:
    """``1234.5`` -> ``"1.23 ms"``; microseconds below 1 ms, seconds above 1 s."""
    if us is None or (isinstance(us, float) and math.isnan(us)):
        return "-"
    if abs(us) >= 1e6:
        return f"{us / 1e6:.2f} s"
    if abs(us) >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.1f} us"


def format_count(n: float, unit: str = "") -> str:
    """``1.5e9`` -> ``"1.50 G"`` (SI prefixes) followed by ``unit``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def render_summary(
    title: str,
    breakdown: StepBreakdown,
    layers: list[LayerStat],
    file: IO[str] | None = None,
    width: int | None = None,
) -> None:
    """Print the step breakdown and the top layers to ``file`` (stdout by default)."""
    console = Console(file=file, width=width, highlight=False)
    if width is None and not console.is_terminal:
        console.width = max(console.width, 120)  # files and pipes: don't squeeze the tables
    head = Text(title, style="bold")
    console.print(head)
    samples = (
        f", {breakdown.samples_per_s:.1f} samples/s" if breakdown.samples_per_s is not None else ""
    )
    console.print(
        f"median step {format_us(breakdown.step_us)} "
        f"(min {format_us(breakdown.step_min_us)}, max {format_us(breakdown.step_max_us)}) "
        f"over {breakdown.steps} steps: {breakdown.steps_per_s:.2f} steps/s{samples}"
    )
    phases = Table(title="Step breakdown by phase", title_justify="left")
    phases.add_column("phase")
    phases.add_column("median", justify="right")
    phases.add_column("share", justify="right")
    phases.add_column("", justify="left")
    for p in breakdown.phases:
        bar = "█" * int(round(p.share * 40))
        phases.add_row(p.phase, format_us(p.median_us), f"{p.share * 100:.1f} %", bar)
    console.print(phases)
    table = Table(title="Top layers by self time (forward + backward)", title_justify="left")
    for col, justify in (
        ("layer", "left"),  # never truncated: the name is what the user acts on
        ("kind", "left"),
        ("fwd", "right"),
        ("bwd", "right"),
        ("self", "right"),
        ("% step", "right"),
        ("FLOPs", "right"),
        ("params", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=col != "layer", overflow="fold")  # type: ignore[arg-type]
    for s in layers:
        table.add_row(
            Text(s.name or "(root)"),
            Text(s.kind),
            format_us(s.fwd_us),
            format_us(s.bwd_us),
            format_us(s.self_us),
            f"{s.share * 100:.1f}",
            format_count(s.flops),
            format_count(s.params),
        )
    console.print(table)

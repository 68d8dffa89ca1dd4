"""``topoprof report`` and ``topoprof compare``: reports of a run and of two runs.

``topoprof report RUN_DIR`` prints the terminal summary (as it always has); with ``-o FILE`` it
writes an HTML, JSON, Markdown or text report instead, the format taken from the extension or
``--format``. ``topoprof compare RUN_A RUN_B`` prints the comparison as Markdown text, or writes
it to ``-o FILE`` (``.html``, ``.json``, ``.md``).
"""

from __future__ import annotations

from . import non_negative_int

import argparse
import sys
from pathlib import Path

__all__ = ["register", "cmd_report", "cmd_compare"]

EXIT_OK = 0
_FORMATS = ("html", "json", "md", "text")


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def cmd_report(args: argparse.Namespace) -> int:
    """Terminal summary of a run, or a report file with ``-o``."""
    from .summary import _print_summary

    if args.output is None and args.format in (None, "text"):
        _print_summary(Path(args.run_dir), args.top)
        return EXIT_OK
    from ..report.html import DEFAULT_TARGET, write_report
    from ..run import load

    run = load(args.run_dir)
    target = args.target or DEFAULT_TARGET
    if args.output is None:  # a format but no file: the report on stdout
        import tempfile

        with tempfile.TemporaryDirectory(prefix="topoprof-report-") as tmp:
            out = write_report(run, Path(tmp) / "report", format=args.format, target=target)
            sys.stdout.write(out.read_text(encoding="utf-8"))
        return EXIT_OK
    out = write_report(run, args.output, format=args.format, target=target)
    print(f"wrote {out} ({_size(out)})")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two runs: Markdown on stdout, or a report file with ``-o``."""
    from ..analysis.compare import compare
    from ..report.html import DEFAULT_TARGET, comparison_document, fmt_ratio, write_report
    from ..report.markdown import render_comparison_markdown

    comparison = compare(args.run_a, args.run_b, target=args.target or DEFAULT_TARGET,
                         analyze=not args.no_analysis)
    if args.output is None:
        if args.format in (None, "md", "text"):
            sys.stdout.write(render_comparison_markdown(comparison_document(comparison)))
            return EXIT_OK
        import tempfile

        with tempfile.TemporaryDirectory(prefix="topoprof-compare-") as tmp:
            out = write_report(comparison, Path(tmp) / "comparison", format=args.format)
            sys.stdout.write(out.read_text(encoding="utf-8"))
        return EXIT_OK
    out = write_report(comparison, args.output, format=args.format)
    print(f"wrote {out} ({_size(out)}); speed-up A/B: {fmt_ratio(comparison.speedup)}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report`` and ``compare`` to the CLI."""
    p = sub.add_parser(
        "report",
        help="summarise a saved run, or write an HTML / JSON / Markdown report",
        description="Without -o: print the terminal summary. With -o FILE: write a report, the format "
                    "taken from the extension (.html, .json, .md, .txt) or --format.",
    )
    p.add_argument("run_dir", help="run directory")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    p.add_argument("--format", choices=_FORMATS, help="report format (default: from the extension of FILE)")
    p.add_argument("--target", metavar="T", help="hardware target of the analysis (default dgx-a100; "
                                                  "see topoprof targets)")
    p.add_argument("--top", type=non_negative_int, default=10, help="layers in the terminal summary (default 10)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "compare",
        help="compare two runs layer by layer and finding by finding",
        description="Run A is the baseline; deltas are B - A and the speed-up is A's step over B's.",
    )
    p.add_argument("run_a", help="baseline run directory")
    p.add_argument("run_b", help="run directory to compare with it")
    p.add_argument("-o", "--output", metavar="FILE", help="write the comparison to FILE (.html, .json, .md)")
    p.add_argument("--format", choices=_FORMATS, help="format (default: from the extension of FILE)")
    p.add_argument("--target", metavar="T", help="hardware target the findings are computed for (default dgx-a100)")
    p.add_argument("--no-analysis", action="store_true", help="compare measurements only, not findings")
    p.set_defaults(func=cmd_compare)

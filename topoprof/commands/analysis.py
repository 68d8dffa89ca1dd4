"""``topoprof analyze``, ``topoprof targets`` and ``topoprof topology``.

``analyze RUN_DIR [--target T] [--topology FILE] [--gpus 0,5] [--format json|text] [-o FILE]``
prints (or writes) the analysis; ``targets`` lists the hardware catalogue; ``topology FILE``
parses ``nvidia-smi topo -m`` and shows the graph. Bad input raises a
:class:`~topoprof.errors.TopoprofError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import AnalysisInputError

__all__ = ["register", "cmd_analyze", "cmd_targets", "cmd_topology", "FORMATS"]

EXIT_OK = 0
#: Output formats of ``analyze``.
FORMATS: tuple[str, ...] = ("text", "json")
_EXTENSIONS = {".json": "json", ".txt": "text", ".text": "text"}


def _parse_gpus(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        gpus = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise AnalysisInputError(f"--gpus: expected GPU indices like 0,5, got {text!r}") from None
    if not gpus:
        raise AnalysisInputError("--gpus: no GPU index given")
    return gpus


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.output:
        suffix = Path(args.output).suffix.lower()
        if suffix not in _EXTENSIONS:
            raise AnalysisInputError(f"-o {args.output}: cannot tell the format from {suffix or 'no extension'!r}; "
                                     f"use --format ({', '.join(FORMATS)})")
        return _EXTENSIONS[suffix]
    return "text"


def cmd_analyze(args: argparse.Namespace) -> int:
    from ..analysis import AnalysisOptions, analyze
    from ..run import load

    fmt = _format(args)
    run = load(args.run_dir)
    options = AnalysisOptions(gpus=_parse_gpus(args.gpus))
    analysis = analyze(run, target=args.target, options=options, topology=args.topology)
    if fmt == "json":
        from ..report.json_report import dumps, write_json

        if args.output:
            write_json(analysis, args.output)
        else:
            sys.stdout.write(dumps(analysis).decode("utf-8"))
        return EXIT_OK
    from ..report.terminal_analysis import render_analysis

    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            render_analysis(analysis, file=fh)
    else:
        render_analysis(analysis)
    return EXIT_OK


def cmd_targets(args: argparse.Namespace) -> int:
    from ..hardware import summary_rows
    from ..report.terminal_analysis import render_targets

    render_targets(summary_rows(include_gpus=not args.systems_only))
    return EXIT_OK


def cmd_topology(args: argparse.Namespace) -> int:
    from ..hardware import describe_topology, read_topology
    from ..report.terminal_analysis import render_topology

    graph = read_topology(args.file)
    info = describe_topology(graph)
    if args.format == "json":
        import orjson

        from ..report.json_report import plain

        sys.stdout.write(orjson.dumps(plain(info), option=orjson.OPT_INDENT_2).decode("utf-8") + "\n")
    else:
        render_topology(info)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="find bottlenecks and project a run onto a DGX target")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--target", default="dgx-a100", help="hardware target (default dgx-a100; see `topoprof targets`)")
    p.add_argument("--topology", metavar="FILE", help="the node's `nvidia-smi topo -m` output")
    p.add_argument("--gpus", metavar="LIST", help="the job's GPU indices, e.g. 0,5 (CUDA_VISIBLE_DEVICES)")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from -o's extension, else text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("targets", help="list the hardware catalogue")
    p.add_argument("--systems-only", action="store_true", help="DGX systems only, no single-GPU targets")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("topology", help="parse `nvidia-smi topo -m` and show the GPU graph")
    p.add_argument("file", help="a file holding `nvidia-smi topo -m` output")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.set_defaults(func=cmd_topology)

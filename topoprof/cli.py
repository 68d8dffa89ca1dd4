"""Command-line interface: ``topoprof`` and ``python -m topoprof``.

Exit codes: 0 on success; 2 on bad input (one line on stderr, no traceback); 1 on an internal
error. Subcommands are small functions registered in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from ._version import __version__
from .errors import TopoprofError

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + exits 2; keep it one line
        raise TopoprofError(f"{self.prog}: {message}")


def _print_summary(run_path: Path, top: int, out=None) -> None:
    from .analysis.breakdown import step_breakdown, top_layers
    from .report.terminal import render_summary
    from .run import load

    run = load(run_path)
    rank = run.rank(min(run.ranks))
    batch = run.manifest.tags.get("batch_size")
    breakdown = step_breakdown(rank, batch if isinstance(batch, int) else None)
    title = f"topoprof run {run.path} ({run.manifest.mode} mode, {run.manifest.device.get('type', '?')}, {run.manifest.status})"
    render_summary(title, breakdown, top_layers(rank, top), file=out)


def cmd_demo(args: argparse.Namespace) -> int:
    from .examples.resnet import train

    out = Path(args.out)
    print(f"profiling the example ResNet ({args.steps} steps after {args.skip_first} warm-up) ...", flush=True)
    run = train(str(out), steps=args.steps, skip_first=args.skip_first, batch_size=args.batch_size)
    _print_summary(run.path, args.top)
    print(f"\nrun saved in {run.path}  (TensorBoard: tensorboard --logdir {run.path.parent})")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    _print_summary(Path(args.run_dir), args.top)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="topoprof", description="Layer-by-layer profiler for PyTorch training.")
    parser.add_argument("--version", action="version", version=f"topoprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)

    p = sub.add_parser("demo", help="profile the bundled example model and print a summary")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--steps", type=int, default=20, help="profiled steps (default 20)")
    p.add_argument("--skip-first", type=int, default=3, help="warm-up steps (default 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--top", type=int, default=10, help="layers to list (default 10)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="summarise a saved run")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("--top", type=int, default=10, help="layers to list (default 10)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return EXIT_USAGE
        return func(args)
    except TopoprofError as exc:
        print(f"topoprof: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("topoprof: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - last line of defence: say it is our bug
        import traceback

        traceback.print_exc()
        print(f"topoprof: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())

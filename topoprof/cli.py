"""Command-line interface: ``topoprof`` and ``python -m topoprof``.

Exit codes: 0 on success; 2 on bad input (one line on stderr, no traceback); 1 on an internal
error. Each subcommand is a module of :mod:`topoprof.commands` with a ``register`` function.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from ._version import __version__
from .commands import COMMAND_MODULES
from .errors import TopoprofError

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + exits 2; keep it one line
        raise TopoprofError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="topoprof", description="Layer-by-layer profiler for PyTorch training.")
    parser.add_argument("--version", action="version", version=f"topoprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
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

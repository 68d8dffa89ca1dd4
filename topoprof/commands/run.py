"""``topoprof run [options] script.py [args...]`` / ``topoprof run [options] -m module [args...]``.

Profiles an unmodified training script (the machinery is :mod:`topoprof.capture.autorun`).
Options go before the script path or ``-m module``; everything after belongs to the script.

Exit code: the script's own (``sys.exit(n)``; 1 and the traceback on stderr for an uncaught
exception; 130 for KeyboardInterrupt), so ``topoprof run`` drops into shell pipelines and job
scripts in place of ``python``. When the script ran fine but trained nothing topoprof could
profile (no ``optimizer.step()`` after a model's forward: an inference-only script, or a
single training iteration), nothing is saved and the exit code is 2 with a one-line reason:
a silent empty run would only fail later, in the report.
"""

from __future__ import annotations

from . import non_negative_int

import argparse
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from ..errors import TopoprofError

__all__ = ["cmd_run", "default_run_dir", "register"]

EXIT_OK = 0
EXIT_USAGE = 2

#: Defaults shared with :func:`topoprof.profile`.
DEFAULT_STEPS = 10
DEFAULT_SKIP_FIRST = 3


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def default_run_dir(target: str, module: bool) -> Path:
    """``runs/<script stem>`` or ``runs/<last part of the module name>``."""
    name = target.rsplit(".", 1)[-1] if module else Path(target).stem
    return Path("runs") / (name or "run")


def _split_target(args: argparse.Namespace) -> tuple[str, list[str], bool]:
    """``(script or module, its arguments, is_module)`` from the two REMAINDER arguments."""
    if args.module is not None:
        if not args.module:
            raise TopoprofError("run: -m needs a module name")
        return args.module[0], list(args.module[1:]), True
    rest = list(args.script)
    if rest and rest[0] == "--":
        rest = rest[1:]
    if not rest:
        raise TopoprofError("run: give a script (topoprof run [options] script.py [args...]) or -m module")
    return rest[0], rest[1:], False


def _script_traceback(exc: BaseException) -> str:
    """The traceback as ``python script.py`` prints it: topoprof's and runpy's frames dropped."""
    from ..capture import autorun

    runner_files = {_norm(runpy.__file__), _norm(autorun.__file__), _norm(__file__)}
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (filename == "<frozen runpy>" or _norm(filename) in runner_files):
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _norm(path: str | None) -> str:
    if not path or path.startswith("<"):
        return path or ""
    return str(Path(path).resolve())


def _not_found_message(target: str, result: Any) -> str:
    from ..capture import autorun

    seen = ", ".join(f"{kind} x{n}" for kind, n in result.forward_modules.items())
    if result.not_found == autorun.NOT_FOUND_NO_FORWARD:
        return f"no training step found in {target}: no torch.nn.Module forward ran; nothing was saved"
    if result.not_found == autorun.NOT_FOUND_NO_OPTIMIZER:
        return (
            f"no training step found in {target}: module forwards ran ({seen}) but no optimizer.step() "
            "followed a backward pass, so there is no training step to profile (for inference, wrap "
            "the loop in topoprof.profile() and call prof.step()); nothing was saved"
        )
    return (
        f"no training step profiled in {target}: found the model ({result.model_kind}) at its first "
        "optimizer.step(), but no forward pass followed; topoprof run uses the first training "
        "iteration to find the model, so the script must train at least 2; nothing was saved"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from ..capture import autorun

    target, script_args, is_module = _split_target(args)
    run_dir = Path(args.out) if args.out else default_run_dir(target, is_module)
    if args.target is not None:
        from ..hardware import get_target

        get_target(args.target)  # an unknown target fails now, not after the training
    result = autorun.run_script(
        target,
        script_args,
        module=is_module,
        run_dir=run_dir,
        steps=args.steps,
        skip_first=args.skip_first,
        mode=args.mode,
    )
    sys.stdout.flush()
    if result.error is not None:
        if isinstance(result.error, KeyboardInterrupt):
            print("KeyboardInterrupt", file=sys.stderr)
        else:
            sys.stderr.write(_script_traceback(result.error))
    if result.exit_message is not None:
        print(result.exit_message, file=sys.stderr)
    if result.start_error is not None:
        exc = result.start_error
        print(f"topoprof: internal error: the profile could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return result.exit_code or 1
    if result.run is None:
        message = _not_found_message(target, result)
        if result.exit_code != 0:  # the script's own failure comes first
            print(f"topoprof: {message}", file=sys.stderr)
            return result.exit_code
        print(f"topoprof: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    run = result.run
    print(file=sys.stdout)
    if run.rank(min(run.ranks)).steps:
        from .summary import _print_summary

        _print_summary(run_dir, args.top)
    else:
        print(f"topoprof run {run_dir}: {result.model_kind}, no profiled step finished ({run.manifest.status})")
    if args.target is not None:
        _write_target_report(run, args.target)
    print(f"\nrun saved in {run_dir}  (model: {result.model_kind}; status: {run.manifest.status})")
    sys.stdout.flush()
    return result.exit_code


def _write_target_report(run: Any, target: str) -> None:
    """The report for ``target`` beside the run, when this version has the analysis for it."""
    import topoprof

    analyze = getattr(topoprof, "analyze", None)
    write_report = getattr(topoprof, "write_report", None)
    if analyze is None or write_report is None:
        print(f"report for {target}: not available in this version of topoprof", file=sys.stderr)
        return
    path = Path(run.path) / "report.html"
    try:
        write_report(analyze(run, target=target), path)
    except Exception as exc:  # noqa: BLE001 - the profile succeeded; keep the script's exit code
        print(f"topoprof: report not written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    print(f"report for {target}: {path}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="profile an unmodified training script",
        description=(
            "Run a training script as python would (same argv, __main__, cwd, sys.path[0], exit "
            "code) and profile its model: the first outermost module whose forward is followed "
            "by a backward pass and an optimizer step. The first training iteration finds the "
            "model; steps are delimited by optimizer.step(). Options go before the script; "
            "everything after it belongs to the script."
        ),
        usage="topoprof run [options] (script.py | -m module) [args ...]",
    )
    p.add_argument("--steps", type=_positive_int, default=DEFAULT_STEPS,
                   help=f"profiled steps (default {DEFAULT_STEPS})")
    p.add_argument("--skip-first", type=_non_negative_int, default=DEFAULT_SKIP_FIRST,
                   help=f"warm-up steps after the model is found (default {DEFAULT_SKIP_FIRST})")
    p.add_argument("--out", default=None, help="run directory (default runs/<script name>)")
    p.add_argument("--mode", default="layers", help="profiling mode, one of topoprof's modes (default layers)")
    p.add_argument("--target", default=None, help="hardware target for the report (e.g. dgx-a100)")
    p.add_argument("--top", type=non_negative_int, default=10, help="layers to list in the summary (default 10)")
    p.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="module",
                   help="run a module as python -m does")
    p.add_argument("script", nargs=argparse.REMAINDER, help="the script and its arguments")
    p.set_defaults(func=cmd_run)

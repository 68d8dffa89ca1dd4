"""``topoprof demo``, and the terminal summary of a run that ``topoprof report`` prints
(:mod:`topoprof.commands.reports`)."""

from __future__ import annotations

from . import non_negative_int

import argparse
from pathlib import Path

EXIT_OK = 0


def _print_summary(run_path: Path, top: int, out=None) -> None:
    from ..analysis.breakdown import step_breakdown, top_layers
    from ..report.terminal import render_summary
    from ..run import load

    run = load(run_path)
    rank = run.rank(min(run.ranks))
    batch = run.manifest.tags.get("batch_size")
    breakdown = step_breakdown(rank, batch if isinstance(batch, int) else None)
    title = f"topoprof run {run.path} ({run.manifest.mode} mode, {run.manifest.device.get('type', '?')}, {run.manifest.status})"
    render_summary(title, breakdown, top_layers(rank, top), file=out)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..examples.resnet import train

    out = Path(args.out)
    print(f"profiling the example ResNet ({args.steps} steps after {args.skip_first} warm-up) ...", flush=True)
    run = train(str(out), steps=args.steps, skip_first=args.skip_first, batch_size=args.batch_size)
    _print_summary(run.path, args.top)
    from ..analysis import analyze
    from ..report.html import write_report

    analysis = analyze(run, target=args.target)
    report = write_report(analysis, run.path / "report.html", run=run)
    top = analysis.findings[:3]
    if top:
        print("\nTop findings on " + analysis.target_display + ":")
        for f in top:
            saving = f" (saves ~{f.saving.frac * 100:.0f} % of the step)" if f.saving.frac else ""
            print(f"  [{f.severity}] {f.title}{saving}")
    print(f"\nrun saved in {run.path}  (TensorBoard: tensorboard --logdir {run.path.parent})")
    print(f"report: {report}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="profile the bundled example model, print a summary, write an HTML report")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--steps", type=int, default=20, help="profiled steps (default 20)")
    p.add_argument("--skip-first", type=int, default=3, help="warm-up steps (default 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--top", type=non_negative_int, default=10, help="layers to list (default 10)")
    p.add_argument("--target", default="dgx-a100", help="hardware target of the report (default dgx-a100)")
    p.set_defaults(func=cmd_demo)

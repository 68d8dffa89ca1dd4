"""Regenerate the sample reports in ``reports/`` from the bundled examples (one command)::

    python examples/make_reports.py            # about a minute on two CPU cores

It profiles, on the CPU:

- the residual CNN (:mod:`topoprof.examples.resnet`) in float32, and again under CPU autocast
  in bfloat16;
- the tiny GPT-like transformer (:mod:`topoprof.examples.transformer`);

saves the runs under ``runs/samples/`` (a TensorBoard logdir), analyses them for a DGX A100,
and writes ``reports/resnet.{html,md,json}``, ``reports/transformer.{html,md}`` and the
comparison ``reports/resnet_fp32_vs_bf16.{html,md,json}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["train_resnet_autocast", "make_reports", "main"]


def train_resnet_autocast(run_dir: str, steps: int = 10, skip_first: int = 3, batch_size: int = 32):
    """The example CNN as :func:`topoprof.examples.resnet.train` trains it, with the forward pass
    and the loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``; returns the saved run."""
    import torch
    from torch.nn import functional as F

    import topoprof
    from topoprof.examples.resnet import ResNetSmall, synthetic_batches

    torch.manual_seed(0)
    model = ResNetSmall()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = synthetic_batches(skip_first + steps + 1, batch_size)
    tags = {"model": "ResNetSmall", "batch_size": batch_size, "precision": "bf16-autocast"}
    with topoprof.profile(model, run_dir, steps=steps, skip_first=skip_first, tags=tags) as prof:
        for x, y in prof.data(batches):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            prof.step()
    return prof.run


def make_reports(out: str | Path = "reports", runs: str | Path = "runs/samples", steps: int = 10,
                 target: str = "dgx-a100") -> list[Path]:
    """Profile the examples into ``runs`` and write their reports into ``out``; returns the files."""
    import topoprof
    from topoprof.examples import resnet, transformer

    out, runs = Path(out), Path(runs)
    written: list[Path] = []

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.perf_counter()
    log(f"profiling the residual CNN in float32 ({steps} steps) ...")
    fp32 = resnet.train(str(runs / "resnet_fp32"), steps=steps)
    log(f"profiling the residual CNN under bfloat16 autocast ({steps} steps) ...")
    bf16 = train_resnet_autocast(str(runs / "resnet_bf16"), steps=steps)
    log(f"profiling the tiny transformer ({steps} steps) ...")
    gpt = transformer.train(str(runs / "transformer"), steps=steps)

    a_fp32 = topoprof.analyze(fp32, target=target)
    for ext in ("html", "md", "json"):
        written.append(topoprof.write_report(a_fp32, out / f"resnet.{ext}"))
    a_gpt = topoprof.analyze(gpt, target=target)
    for ext in ("html", "md"):
        written.append(topoprof.write_report(a_gpt, out / f"transformer.{ext}"))
    diff = topoprof.compare(a_fp32, topoprof.analyze(bf16, target=target))
    for ext in ("html", "md", "json"):
        written.append(topoprof.write_report(diff, out / f"resnet_fp32_vs_bf16.{ext}"))
    for p in written:
        log(f"wrote {p} ({p.stat().st_size / 1e3:.0f} kB)")
    log(f"done in {time.perf_counter() - t0:.0f} s; the runs are in {runs} (tensorboard --logdir {runs})")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports", help="where the reports go (default reports)")
    parser.add_argument("--runs", default="runs/samples", help="where the runs go (default runs/samples)")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps per run (default 10)")
    parser.add_argument("--target", default="dgx-a100", help="hardware target of the analyses (default dgx-a100)")
    args = parser.parse_args(argv)
    make_reports(args.out, args.runs, steps=args.steps, target=args.target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Overhead of topoprof's layer mode against a plain loop and torch.profiler, side by side.

    python benchmarks/bench_overhead.py [--rounds 5] [--steps 30]

For each workload (the example ResNet, and a worst case of 200 tiny Linear layers) the same
training loop runs plain, under ``topoprof.profile(mode="layers")`` and under
``torch.profiler.profile(activities=[CPU], record_shapes=True, with_stack=True)``. The three
are interleaved round by round so that drifts of the machine hit all of them alike; each step
time is the median over rounds of the mean step time of the measured (post-warm-up) steps, and
each overhead is the median over rounds of the paired ratio (mode / plain of the same round),
which cancels the drift between rounds on a shared machine.

Printed: step time, overhead against plain (%), overhead per module call (us) and the ratio of
torch.profiler's per-call overhead to topoprof's. Goals (issue: foundation): layer mode within
3 % of plain on the ResNet; at least 5x less overhead than torch.profiler on the tiny layers.
Nothing here is asserted: benchmarks report, tests gate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import topoprof  # noqa: E402
from topoprof.examples.resnet import ResNetSmall  # noqa: E402


class TinyStack(nn.Module):
    def __init__(self, layers: int = 200, width: int = 8) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def workloads():
    torch.manual_seed(0)
    cnn = ResNetSmall()
    cnn_x, cnn_y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    tiny = TinyStack()
    tiny_x = torch.randn(4, 8)
    return {
        "resnet (example)": (cnn, lambda m: F.cross_entropy(m(cnn_x), cnn_y)),
        "200 tiny Linear": (tiny, lambda m: m(tiny_x).square().mean()),
    }


def module_calls_per_step(model: nn.Module, loss_fn) -> int:
    count = [0]

    def hook(*_):
        count[0] += 1

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()]
    loss_fn(model)
    for h in handles:
        h.remove()
    return count[0]


def run_loop(model, loss_fn, opt, warm: int, steps: int, step_cb=None) -> float:
    """Mean seconds per step over the ``steps`` steps after ``warm`` warm-up steps."""
    t0 = 0.0
    for i in range(warm + steps):
        if i == warm:
            t0 = time.perf_counter()
        loss_fn(model).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step_cb is not None:
            step_cb()
    return (time.perf_counter() - t0) / steps


def measure(name: str, model, loss_fn, warm: int, steps: int, tmp: Path) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    if name == "plain":
        return run_loop(model, loss_fn, opt, warm, steps)
    if name == "topoprof":
        prof = topoprof.profile(model, tmp / "run", steps=steps, skip_first=warm, tensorboard=False)
        with prof:
            return run_loop(model, loss_fn, opt, warm, steps, prof.step)
    if name == "torch.profiler":
        from torch.profiler import ProfilerActivity, profile, schedule

        sched = schedule(wait=0, warmup=warm, active=steps, repeat=1)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_stack=True, schedule=sched) as p:
            return run_loop(model, loss_fn, opt, warm, steps, p.step)
    raise ValueError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warm", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps\n")
    modes = ["plain", "topoprof", "torch.profiler"]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for wname, (model, loss_fn) in workloads().items():
            calls = module_calls_per_step(model, loss_fn)
            times: dict[str, list[float]] = {m: [] for m in modes}
            for r in range(args.rounds):
                order = modes if r % 2 == 0 else modes[::-1]
                for mode in order:
                    times[mode].append(measure(mode, model, loss_fn, args.warm, args.steps, tmp))
            med = {m: statistics.median(v) for m, v in times.items()}
            plain = med["plain"]
            print(f"{wname}: {calls} module calls per step")
            print(f"  {'mode':<16}{'step ms':>10}{'overhead':>11}{'us/module call':>17}")
            per_call = {}
            for m in modes:
                ratio = statistics.median(t / p for t, p in zip(times[m], times["plain"]))
                per_call[m] = (ratio - 1.0) * plain / calls * 1e6
                print(f"  {m:<16}{med[m] * 1e3:>10.3f}{(ratio - 1) * 100:>10.1f}%{per_call[m]:>17.2f}")
            if per_call["topoprof"] > 0:
                ratio = per_call["torch.profiler"] / per_call["topoprof"]
                print(f"  torch.profiler overhead / topoprof overhead per module call: {ratio:.1f}x")
            else:
                print("  topoprof overhead below measurement noise")
            print()


if __name__ == "__main__":
    main()

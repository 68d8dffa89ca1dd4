"""Data-parallel training of the example ResNet under torchrun, profiled rank by rank.

    torchrun --nproc-per-node 2 examples/ddp_train.py --out runs/ddp            # gloo on CPU
    torchrun --nproc-per-node 8 examples/ddp_train.py --out runs/ddp --backend nccl

Every rank writes ``rank<R>.json`` into the same run directory; ``topoprof report runs/ddp``
analyses them together. ``--slow-rank R --slow-ms T`` makes rank R sleep in its data phase (a
planted straggler); ``--die-rank R --die-step S`` makes rank R exit abruptly at step S.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import time

import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

import topoprof
from topoprof.examples.resnet import ResNetSmall, synthetic_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ddp")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--skip-first", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--backend", default="gloo")
    parser.add_argument("--mode", default="layers")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--slow-rank", type=int, default=-1)
    parser.add_argument("--slow-ms", type=float, default=0.0)
    parser.add_argument("--die-rank", type=int, default=-1)
    parser.add_argument("--die-step", type=int, default=-1)
    parser.add_argument("--no-profile", action="store_true", help="train without topoprof (for comparisons)")
    args = parser.parse_args()

    dist.init_process_group(args.backend, timeout=datetime.timedelta(seconds=args.timeout_s))
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if args.backend == "nccl" else torch.device("cpu")
    torch.manual_seed(0)
    model = DDP(ResNetSmall(width=args.width).to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    def batches():
        for i, (x, y) in enumerate(synthetic_batches(args.skip_first + args.steps, args.batch_size, seed=rank)):
            if rank == args.slow_rank:
                time.sleep(args.slow_ms / 1000)
            if rank == args.die_rank and i == args.die_step:
                os._exit(17)  # an abrupt death: no exception, no clean-up
            yield x.to(device), y.to(device)

    tags = {"batch_size": args.batch_size, "backend": args.backend}
    prof = topoprof.profile(model, args.out, steps=args.steps, skip_first=args.skip_first, mode=args.mode, tags=tags)
    with prof if not args.no_profile else contextlib.nullcontext():
        data = batches() if args.no_profile else prof.data(batches())
        for x, y in data:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if not args.no_profile:
                prof.step()
    with torch.no_grad():
        checksum = sum(float(p.double().sum()) for p in model.parameters())
    print(f"rank {rank} checksum {checksum:.10f}\n", end="", flush=True)  # one write per line
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""A script that reads its own arguments and checks that it runs as under ``python``.

It fails loudly (exit 10) if ``__name__``, ``sys.argv``, the working directory or
``sys.path[0]`` differ from what ``python train_args.py ...`` gives it, then trains and exits
with ``--exit-code``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn


def check(condition: bool, what: str) -> None:
    if not condition:
        print(f"train_args: wrong {what}", file=sys.stderr)
        sys.exit(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--steps", default=None, help="same name as a topoprof option: must stay ours")
    parser.add_argument("--expect-cwd", required=True)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    check(os.path.basename(sys.argv[0]) == "train_args.py", f"sys.argv[0] {sys.argv[0]!r}")
    check(os.path.realpath(os.getcwd()) == os.path.realpath(args.expect_cwd), f"cwd {os.getcwd()!r}")
    here = os.path.dirname(os.path.realpath(__file__))
    check(os.path.realpath(sys.path[0]) == here, f"sys.path[0] {sys.path[0]!r}")
    print(f"args: iters={args.iters} steps={args.steps} rest={args.rest}")
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(args.iters):
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    sys.exit(args.exit_code)


check(__name__ == "__main__", f"__name__ {__name__!r}")
main()

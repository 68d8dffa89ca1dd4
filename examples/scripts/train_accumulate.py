"""Gradient accumulation: the optimizer steps every 2 micro-batches (no topoprof in it).

A training step is then two forward and two backward passes and one optimizer step.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

ACCUMULATE = 2


def main(iters: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(iters):
        for _ in range(ACCUMULATE):
            x, y = torch.randn(8, 16), torch.randn(8, 1)
            loss = nn.functional.mse_loss(model(x), y) / ACCUMULATE
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)

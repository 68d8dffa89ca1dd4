"""A training loop whose model raises in the forward pass of iteration ``--fail-at`` (no
topoprof in it): the loss diverged and the model refuses non-finite inputs.

Under ``topoprof run --skip-first 0`` iteration 0 finds the model and iteration ``k`` is step
``k - 1``, so the default ``--fail-at 4`` fails in step 3, after steps 1 and 2 were profiled
(step 0 captures the graph).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class DivergedError(RuntimeError):
    """The training diverged."""


class CheckedMLP(nn.Module):
    """An MLP that raises :class:`DivergedError` on a non-finite input."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body[0](x)
        if not torch.isfinite(h).all():
            raise DivergedError("non-finite activations: the training diverged")
        return self.body[2](self.body[1](h))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail-at", type=int, default=4)
    args = parser.parse_args()
    model = CheckedMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for it in range(args.fail_at + 5):
        x = torch.randn(4, 8)
        if it == args.fail_at:
            x[0, 0] = float("nan")
        model(x).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()


if __name__ == "__main__":
    main()

"""A plain training loop: forward, loss module, backward, optimizer step (no topoprof in it).

    topoprof run --steps 5 examples/scripts/train_plain.py --iters 20
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class MLP(nn.Module):
    """Two hidden layers; the model ``topoprof run`` should find."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, width)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(width, width)
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc2(self.act(self.fc1(x)))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = MLP()
    loss_fn = nn.CrossEntropyLoss()  # an outermost module too, without parameters
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(args.iters):
        x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"trained {args.iters} iterations")


if __name__ == "__main__":
    main()

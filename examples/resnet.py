"""A small residual CNN trained on synthetic data: the model ``topoprof demo`` profiles.

Run it directly to profile it like a user would::

    python examples/resnet.py --steps 20 --out runs/resnet

It is a CIFAR-sized ResNet (two stages of two basic blocks) so the layer graph has skip
connections, nested containers and a module (the ReLU) called twice per block.
"""

from __future__ import annotations

import argparse
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BasicBlock", "ResNetSmall", "synthetic_batches", "train"]


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus the skip connection (a 1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetSmall(nn.Module):
    """Stem, two stages of two basic blocks, global pooling, classifier."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, stride=2), BasicBlock(2 * width, 2 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def synthetic_batches(
    steps: int, batch_size: int = 32, image_size: int = 32, num_classes: int = 10, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches of random images and labels (deterministic for a seed)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(batch_size, 3, image_size, image_size, generator=gen)
        y = torch.randint(0, num_classes, (batch_size,), generator=gen)
        yield x, y


def train(run_dir: str = "runs/resnet", steps: int = 20, skip_first: int = 3, batch_size: int = 32):
    """Profile ``steps`` training steps of :class:`ResNetSmall`; returns the saved run."""
    import topoprof

    torch.manual_seed(0)
    model = ResNetSmall()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = synthetic_batches(skip_first + steps + 1, batch_size)
    tags = {"model": "ResNetSmall", "batch_size": batch_size, "precision": "fp32"}
    with topoprof.profile(model, run_dir, steps=steps, skip_first=skip_first, tags=tags) as prof:
        for x, y in prof.data(batches):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            prof.step()
    return prof.run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/resnet")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    run = train(args.out, steps=args.steps, batch_size=args.batch_size)
    print(f"run saved in {run.path}")


if __name__ == "__main__":
    main()

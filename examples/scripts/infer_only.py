"""Inference only: forward passes and no optimizer (``topoprof run`` finds no training step)."""

from __future__ import annotations

import torch
from torch import nn

model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
with torch.no_grad():
    for _ in range(5):
        model(torch.randn(4, 8))
print("inference done")

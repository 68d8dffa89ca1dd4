"""A tiny GPT-like transformer trained on synthetic tokens, profiled like ``resnet.py``.

Run it directly to profile it like a user would::

    python examples/transformer.py --steps 10 --out runs/transformer

Plain torch: token and position embeddings, pre-norm blocks of causal self-attention
(``scaled_dot_product_attention``) and a GELU MLP, a final norm and a language-model head. The
layer graph has residual connections, parallel query/key/value projections and a position
embedding that is not fed by the input, so it exercises everything the report draws.
"""

from __future__ import annotations

import argparse
import math
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CausalSelfAttention", "Block", "TinyGPT", "synthetic_tokens", "train"]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate query, key and value projections."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """A GPT-like language model: embeddings, ``layers`` blocks, final norm, head."""

    def __init__(self, vocab: int = 512, dim: int = 128, heads: int = 4, layers: int = 4, context: int = 64,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(vocab, dim)
        self.pos_emb = nn.Embedding(context, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers) if p.shape[0] == dim else 0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.context:
            raise ValueError(f"sequence of {t} tokens is longer than the context ({self.context})")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def synthetic_tokens(
    steps: int, batch_size: int = 16, context: int = 64, vocab: int = 512, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches of random token sequences and their next-token targets."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        seq = torch.randint(0, vocab, (batch_size, context + 1), generator=gen)
        yield seq[:, :-1], seq[:, 1:]


def train(run_dir: str = "runs/transformer", steps: int = 10, skip_first: int = 3, batch_size: int = 16,
          layers: int = 4, autocast: bool = False):
    """Profile ``steps`` training steps of :class:`TinyGPT`; returns the saved run.

    Args:
        run_dir: where the run is saved.
        steps: profiled steps.
        skip_first: warm-up steps (the last of them captures the graph).
        batch_size: sequences per step.
        layers: transformer blocks.
        autocast: run forward and loss under CPU autocast in bfloat16.
    """
    import topoprof

    torch.manual_seed(0)
    model = TinyGPT(layers=layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    batches = synthetic_tokens(skip_first + steps + 1, batch_size, model.context)
    tags = {"model": "TinyGPT", "batch_size": batch_size, "precision": "bf16-autocast" if autocast else "fp32",
            "layers": layers}
    with topoprof.profile(model, run_dir, steps=steps, skip_first=skip_first, tags=tags) as prof:
        for x, y in prof.data(batches):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(x)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            prof.step()
    return prof.run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/transformer")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--autocast", action="store_true", help="bfloat16 autocast on CPU")
    args = parser.parse_args()
    run = train(args.out, steps=args.steps, batch_size=args.batch_size, layers=args.layers, autocast=args.autocast)
    print(f"run saved in {run.path}")


if __name__ == "__main__":
    main()

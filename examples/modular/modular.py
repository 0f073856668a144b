"""Modular addition, a + b = c (mod 47), learned by a one-layer transformer: a task known
to be sensitive to the learning rate and its schedule (Power et al. 2022, "Grokking").

    [data]  dataset = "modular:load"
    [train] model   = "modular:transformer"

Each example is the three tokens ``a b =``; the label is ``(a + b) mod P``. The loader
shuffles all P * P pairs with a fixed seed and keeps TRAIN_SHARE of them for training
(lrbench cuts the validation split from those), the rest for the test.
"""

from __future__ import annotations

import math

import torch
from torch import nn

P = 47  # the modulus: tokens 0..P-1 are numbers, P is "="
TRAIN_SHARE = 0.5
WIDTH, HEADS = 64, 4


def load() -> dict[str, object]:
    a, b = torch.cartesian_prod(torch.arange(P), torch.arange(P)).T
    x = torch.stack([a, b, torch.full_like(a, P)], dim=1)  # [P*P, 3] token ids
    y = (a + b) % P
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    cut = int(TRAIN_SHARE * len(x))
    train, test = order[:cut], order[cut:]
    return {"train": (x[train], y[train]), "test": (x[test], y[test]), "num_classes": P}


class Attention(nn.Module):
    """Causal multi-head self-attention, written out (no dropout, nothing mode-dependent)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, length, width = h.shape
        q, k, v = (t.reshape(batch, length, self.heads, -1).transpose(1, 2)
                   for t in self.qkv(h).chunk(3, dim=-1))
        # Written out rather than scaled_dot_product_attention, which torch.func.vmap runs
        # one trial at a time (no batching rule for its CPU kernel): this stacks.
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        future = torch.ones(length, length, dtype=torch.bool, device=h.device).triu(1)
        mixed = scores.masked_fill(future, float("-inf")).softmax(-1) @ v
        return self.out(mixed.transpose(1, 2).reshape(batch, length, width))


class Transformer(nn.Module):
    """Token and position embeddings, one pre-norm block (attention, then an MLP), and a
    read-out of the last position ("=") into P classes."""

    def __init__(self, width: int = WIDTH, heads: int = HEADS) -> None:
        super().__init__()
        self.tokens = nn.Embedding(P + 1, width)
        self.positions = nn.Parameter(torch.randn(3, width) * 0.02)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width) for _ in range(3))
        self.attention = Attention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))
        self.readout = nn.Linear(width, P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tokens(x) + self.positions
        h = h + self.attention(self.norm1(h))
        h = h + self.mlp(self.norm2(h))
        return self.readout(self.norm3(h[:, -1]))


def transformer() -> nn.Module:
    return Transformer()

"""Shared pieces of the method tests: tiny models, a few training steps, logits."""

from __future__ import annotations

import torch

from tuneforge.config.schema import MethodSection
from tuneforge.methods import apply_method

VOCAB = 320
# tiny_llama: hidden 64, 4 query heads / 2 kv heads of 16, MLP 128, 2 blocks.
HIDDEN, KV, INTER, LAYERS = 64, 32, 128, 2
# (name, in_features, out_features) of every linear layer in a block.
LINEARS = [
    ("q_proj", HIDDEN, HIDDEN),
    ("k_proj", HIDDEN, KV),
    ("v_proj", HIDDEN, KV),
    ("o_proj", HIDDEN, HIDDEN),
    ("gate_proj", HIDDEN, INTER),
    ("up_proj", HIDDEN, INTER),
    ("down_proj", INTER, HIDDEN),
]


def ids(batch: int = 2, length: int = 12, seed: int = 7) -> torch.Tensor:
    return torch.randint(
        3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed)
    )


@torch.no_grad()
def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    out = model(input_ids=input_ids).logits.float()
    model.train(was)
    return out


def method(cfg: dict) -> MethodSection:
    return MethodSection(**cfg)


def build(base, cfg: dict, total_steps: int = 20):
    return apply_method(base, method(cfg), total_steps=total_steps)


def train_steps(model, steps: int = 3, lr: float = 1e-2) -> None:
    """A few AdamW steps on a next-token loss (the model's own loss, so virtual tokens are included)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    x = ids(seed=11)
    for _ in range(steps):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def lokr_factor(dim: int) -> tuple[int, int]:
    """LoKr's split of a dimension into m x n, m <= n, m the largest divisor not above sqrt(dim)."""
    m = max(d for d in range(1, int(dim**0.5) + 1) if dim % d == 0)
    return m, dim // m

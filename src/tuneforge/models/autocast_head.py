"""The output head's weight cast to the autocast dtype once per inference call instead of every step.

Under bf16 (or fp16) autocast every matmul casts its fp32 weight on each call. Autocast caches a cast
only for a leaf weight that requires grad, which a frozen head (an adapter run's) never is, so
generation casts the output head on every decoding step; a fresh model's trainable head measured the
same gain from this, so under ``inference_mode`` the cache does not save it either. For a small model the head is large (SmolLM2-135M ties a
49152 x 576 embedding to it: 113 MB in fp32, a fresh 57 MB bf16 copy each step, too big for the
allocator to reuse, so every step also pays the page faults of new memory). Casting it once for the
whole call gives bit-identical matmuls (the same round-to-nearest cast) and measured 1.2-1.3x
generated tokens/s at batch 25 and 1.7-1.8x at batch 1 on a 2-core AVX512-BF16 EPYC (docs/SPEED.md,
"The output head cast once").

The other linear layers are left alone: after training, the speed plan already stores the frozen ones
in the autocast dtype (train/speed_plan.py); copying all of them here would hold half the model's
weights twice. The head is copied, not converted, because a tied head shares its weight with the
input embedding, whose fp32 output feeds the residual stream; the copy lives only inside the context
and the original parameter (and so the tie) is put back on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _plain_head(model: nn.Module) -> nn.Linear | None:
    """The model's output head when it is a plain ``nn.Linear`` (peft-wrapped heads hold adapter weights)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    return head if type(head) is nn.Linear else None


@contextmanager
def head_cast_once(model: nn.Module, dtype: torch.dtype | None) -> Iterator[bool]:
    """Inside this, the output head computes from a ``dtype`` copy of its fp32 weight (and bias).

    Yields whether it did. Nothing changes when ``dtype`` is None (no autocast), when the head is not
    a plain fp32 ``nn.Linear`` on a real device, or when the head could train inside the context (grad
    enabled and its weight requires grad): a copy would not follow an update. On exit the original
    parameters are put back, so a tied head is tied again and nothing saved afterwards changes.
    """
    head = _plain_head(model) if dtype is not None else None
    weight = head.weight if head is not None else None
    if (
        head is None
        or weight is None
        or weight.dtype != torch.float32
        or weight.device.type == "meta"
        or (torch.is_grad_enabled() and weight.requires_grad)
    ):
        yield False
        return
    bias = head.bias
    head.weight = nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    if bias is not None:
        head.bias = nn.Parameter(bias.detach().to(dtype), requires_grad=False)
    try:
        yield True
    finally:
        head.weight = weight
        if bias is not None:
            head.bias = bias

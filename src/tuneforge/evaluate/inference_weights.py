"""Frozen linear weights stored in the autocast dtype for a standalone evaluation (``tuneforge eval``).

A run's own evaluation after training already computes from bf16 frozen linears: the training speed
plan stores them once (train/speed_plan.py), because under autocast every matmul would otherwise
cast its fp32 weight again on each call, and in generation that is on every token. ``tuneforge
eval`` loads a run or model afresh in fp32 and, under bf16 autocast, paid those casts: on the
built-in model with a 2-core AVX512-BF16 EPYC, greedy generation ran at 30.1 tokens/s at batch 1
against 36.4-40.8 with the linears stored (docs/SPEED.md, "The output head cast once"). The matmuls
are bit-identical either way (the same round-to-nearest cast, done once), and the linears take half
the memory. The evaluation never trains the model it loads, so every weight is frozen first.

Only where the result cannot change: autocast must be on, and a peft model must carry plain LoRA
adapters (DoRA reads the base weight outside a matmul; other adapter types are left as loaded).
Embeddings, norms and a tied output head stay fp32 (models/autocast_weights.py casts the head once per
call instead). Storing them here, rather than leaving the copies to models/autocast_weights.py, also
saves the memory those copies would take for every call.
"""

from __future__ import annotations

import torch
from peft import PeftModel, PeftType

from tuneforge.train.speed_plan import store_frozen_linears


def _plain_lora(model: PeftModel) -> bool:
    return all(c.peft_type == PeftType.LORA and not getattr(c, "use_dora", False) for c in model.peft_config.values())


def store_linears_for_inference(model: torch.nn.Module, autocast_dtype: torch.dtype | None) -> int:
    """Freeze ``model`` and store its plain linear layers in ``autocast_dtype``; returns the bytes freed
    (0 when nothing was changed: no autocast, or adapters other than plain LoRA)."""
    if autocast_dtype is None:
        return 0
    if isinstance(model, PeftModel) and not _plain_lora(model):
        return 0
    model.requires_grad_(False)
    return store_frozen_linears(model, autocast_dtype)

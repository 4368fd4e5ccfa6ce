"""Evaluate a LoRA model with its adapter merged into the base weights, then restore them bit for bit.

An unmerged LoRA layer computes ``W x + s B (A x)``: two thin matmuls (rank 16 against widths of 576
to 1536 on the built-in model) and an add of an output-sized tensor, for each of the 210 adapted
layers, at every forward. For inference that is pure overhead: merged, the layer is one matmul with
``W + s B A``. Measured on the built-in model (LoRA r=16 on all linear layers, fp32, AMD EPYC 2 cores
AVX2-only): greedy generation of 50 prompts x 32 tokens took 34.3 s unmerged, 29.6 s merged, 30.5 s
for the base model alone; the prefill alone, 14.0 s against 11.9 s (docs/SPEED.md).

peft's public ``merge_adapter(safe_merge=True)`` merges into a *copy* of each base weight (documented:
"performed in a copy of the original weights", with a NaN check), so the original tensors are kept
here and put back after ``unmerge_adapter()``: the model leaves this context exactly as it entered,
not ``W + s B A - s B A`` (which differs from ``W`` in the last bit). The price is one copy of the
adapted weights while the context is open, so merging is skipped when that copy would not fit in
half of the memory available on the device. Outputs differ from the unmerged model's only by fp32
rounding (tested: same greedy tokens, loss within 1e-5 on a tiny model).

Only fp32 inference merges. Under bf16 autocast (or with bf16 base weights) a merged weight is
rounded to bf16 as a whole, and a LoRA delta of a few percent of ``W`` keeps only its top bits; the
unmerged path rounds ``W`` and the adapter separately and keeps the delta's precision. So on CPUs
with native bf16, where generation runs under autocast, evaluation stays unmerged.

Merged inference is also what a user ships: ``tuneforge export --merge`` and GGUF are merged models.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from tuneforge.models.free_memory import free_memory_bytes

# Adapter types whose peft layers merge into a plain weight (LoRA and its variants: DoRA, rsLoRA,
# PiSSA, OLoRA, LoRA+ are all peft LORA adapters). Others keep their unmerged forward.
MERGEABLE_PEFT_TYPES = frozenset({"LORA"})


def _tuner_layers(model: Any) -> list[Any]:
    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def merge_blockers(model: Any, autocast_dtype: torch.dtype | None = None) -> str | None:
    """Why ``model`` cannot be merged for inference under ``autocast_dtype``, or None when it can."""
    if autocast_dtype is not None:
        return f"inference runs under {autocast_dtype} autocast (a merged weight would be rounded as a whole)"
    config = getattr(model, "active_peft_config", None)
    if config is None or not hasattr(model, "merge_adapter"):
        return "not a peft model"
    peft_type = getattr(getattr(config, "peft_type", None), "value", getattr(config, "peft_type", None))
    if peft_type not in MERGEABLE_PEFT_TYPES:
        return f"adapter type {peft_type} has no merged form used here"
    if model.training:
        return "the model is training"
    layers = _tuner_layers(model)
    if not layers:
        return "no adapter layers"
    if any(layer.disable_adapters or layer.merged for layer in layers):
        return "adapters are disabled or already merged"
    extra = 0
    for layer in layers:
        weight = getattr(layer.get_base_layer(), "weight", None)
        if type(weight) is not torch.nn.Parameter or weight.dtype != torch.float32:
            return "a base layer is quantized, not fp32, or has no plain weight"
        extra += weight.numel() * weight.element_size()
    if extra * 2 > (free_memory_bytes(next(model.parameters()).device) or 0):
        return f"a merged copy of the adapted weights ({extra / 2**20:.0f} MB) would not fit in half the free memory"
    return None


@contextmanager
def merged_for_inference(model: Any, autocast_dtype: torch.dtype | None = None) -> Iterator[bool]:
    """Inside: the active adapter merged into copies of the base weights (yields True), or the model
    as it is (yields False, see :func:`merge_blockers`). On exit the original weight tensors are back."""
    if merge_blockers(model, autocast_dtype) is not None:
        yield False
        return
    originals = [(layer.get_base_layer(), layer.get_base_layer().weight.data) for layer in _tuner_layers(model)]
    model.merge_adapter(safe_merge=True)
    try:
        yield True
    finally:
        model.unmerge_adapter()  # peft's merged state back to "unmerged" ...
        for base_layer, data in originals:
            base_layer.weight.data = data  # ... and the untouched original tensors, not W + dW - dW

"""Parameter strategies. A plain dict maps the recipe's ``method.type`` to the function that applies it."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tuneforge.methods.freeze import apply_freeze
from tuneforge.methods.full import apply_full
from tuneforge.methods.lora import apply_lora

METHODS: dict[str, Callable] = {"full": apply_full, "freeze": apply_freeze, "lora": apply_lora}

ADAPTER_METHODS = frozenset({"lora"})  # methods saved as a peft adapter beside the base, not as a whole model


def apply_method(model, method) -> nn.Module:
    return METHODS[method.type](model, method)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total

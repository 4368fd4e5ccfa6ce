"""Mixture-of-experts models: train the experts, keep the router frozen.

Training the router on a small data set tends to collapse routing onto a few experts (load
imbalance, which the pretraining auxiliary loss kept in check); freezing it keeps the pretrained
routing and adapts what each expert computes. Attention and always-on shared experts are options.
Expert parameters are found by name (``.experts.``, fused or one module per expert); the router is
``gate`` / ``router`` / ``shared_expert_gate`` and is never trained.
"""

from __future__ import annotations

import re

from transformers import PreTrainedModel

from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError

_EXPERT = re.compile(r"\.experts\.|\.experts$|\.experts\.[^.]+$")
_SHARED = re.compile(r"\.shared_experts?\.")
_ATTENTION = re.compile(r"\.(self_attn|attention|attn)\.")


def is_router(name: str) -> bool:
    """Router / gating weights: ``mlp.gate.weight``, ``router.*``, ``shared_expert_gate.weight``."""
    parts = name.split(".")
    return any(part in ("gate", "router", "shared_expert_gate") for part in parts[:-1])


def moe_trainable(name: str, method: MethodSection) -> bool:
    opts = method.moe
    if is_router(name):
        return False
    if _EXPERT.search(name):
        return True
    if opts.train_shared_experts and _SHARED.search(name):
        return True
    return bool(opts.train_attention and _ATTENTION.search(name))


def apply_moe(model: PreTrainedModel, method: MethodSection) -> PreTrainedModel:
    names = [n for n, _ in model.named_parameters()]
    if not any(_EXPERT.search(n) for n in names):
        raise ConfigError(
            f"method.type 'moe': {type(model).__name__} has no expert parameters (no '.experts.' in any name)",
            hint="use it with a mixture-of-experts model (Mixtral, Qwen-MoE, ...), or method.type lora / freeze",
        )
    for name, p in model.named_parameters():
        p.requires_grad_(moe_trainable(name, method))
    return model

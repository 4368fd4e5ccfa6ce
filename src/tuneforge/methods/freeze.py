"""Partial fine-tuning: freeze everything but the last N transformer blocks and named modules.

Cheaper than full tuning and keeps early (general) features intact; a good fit when data is small
and the task is close to what the model already does.
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of transformer blocks: the longest ModuleList in the model (layers / h / blocks)."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise ConfigError("method.type 'freeze': cannot find the model's list of transformer blocks", hint="use method.type: lora or full")
    return best


def apply_freeze(model: PreTrainedModel, method: MethodSection) -> PreTrainedModel:
    opts = method.freeze
    prefix, layers = decoder_layers(model)
    n = opts.train_last_n_layers
    if n > len(layers):
        raise ConfigError(
            f"method.freeze.train_last_n_layers is {n} but the model has {len(layers)} blocks",
            hint=f"use a value from 0 to {len(layers)}, or method.type: full",
        )
    trainable_prefixes = tuple(f"{prefix}.{i}." for i in range(len(layers) - n, len(layers)))
    matched_modules: set[str] = set()
    for name, p in model.named_parameters():
        train = name.startswith(trainable_prefixes)
        for sub in opts.train_modules:
            if sub in name:
                train = True
                matched_modules.add(sub)
        p.requires_grad_(train)
    missing = [m for m in opts.train_modules if m not in matched_modules]
    if missing:
        raise ConfigError(f"method.freeze.train_modules: no parameter name contains {missing}", hint="names look like 'model.norm' or 'lm_head'")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("method.freeze leaves nothing to train", hint="set method.freeze.train_last_n_layers > 0 or name train_modules")
    return model

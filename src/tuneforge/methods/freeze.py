"""Partial fine-tuning: freeze everything but the last blocks and the modules named.

Cheaper than full tuning and keeps early (general) features intact; a good fit when data is small
and the task is close to what the model already does. The depth is given as a number of final
blocks or as a fraction of them; embeddings and normalisation layers can be switched on apart.
"""

from __future__ import annotations

import math
import re

from torch import nn
from transformers import PreTrainedModel

from tuneforge.config.methods import DEFAULT_TRAIN_LAST_N_LAYERS
from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of transformer blocks: the longest ModuleList in the model (layers / h / blocks)."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module) > 0
            and (best is None or len(module) > len(best[1]))
        ):
            best = (name, module)
    if best is None:
        raise ConfigError(
            "method.type 'freeze': cannot find the model's list of transformer blocks",
            hint="use method.type: lora or full",
        )
    return best


def trained_block_count(method: MethodSection, num_blocks: int) -> int:
    opts = method.freeze
    if opts.train_fraction is not None:
        return math.ceil(opts.train_fraction * num_blocks)
    n = (
        opts.train_last_n_layers
        if opts.train_last_n_layers is not None
        else DEFAULT_TRAIN_LAST_N_LAYERS
    )
    if n > num_blocks:
        raise ConfigError(
            f"method.freeze.train_last_n_layers is {n} but the model has {num_blocks} blocks",
            hint=f"use a value from 0 to {num_blocks}, or method.type: full",
        )
    return n


def _norm_parameter_names(model: nn.Module) -> set[str]:
    """Parameters of normalisation layers (LayerNorm, RMSNorm of any architecture: class name ends in 'Norm')."""
    names = set()
    for mname, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) or type(module).__name__.lower().endswith(
            "norm"
        ):
            names.update(
                f"{mname}.{pname}" if mname else pname
                for pname, _ in module.named_parameters(recurse=False)
            )
    return names


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], name) is not None
    return pattern in name


def apply_freeze(model: PreTrainedModel, method: MethodSection) -> PreTrainedModel:
    opts = method.freeze
    prefix, layers = decoder_layers(model)
    n = trained_block_count(method, len(layers))
    trainable_prefixes = tuple(
        f"{prefix}.{i}." for i in range(len(layers) - n, len(layers))
    )
    norms = _norm_parameter_names(model) if opts.train_norms else set()
    embeddings = (
        {
            f"{n_}.weight"
            for n_, m in model.named_modules()
            if m is model.get_input_embeddings()
        }
        if opts.train_embeddings
        else set()
    )
    for pattern in opts.train_modules:
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as exc:
                raise ConfigError(
                    f"method.freeze.train_modules: bad regex {pattern!r}: {exc}",
                    hint="write regexes as 're:PATTERN'",
                ) from None
    matched: set[str] = set()
    # named_parameters() lists a tied output head once, under the embedding's name, so training the
    # embeddings of a tied model trains the head too (they are one tensor).
    for name, p in model.named_parameters():
        train = (
            name.startswith(trainable_prefixes) or name in norms or name in embeddings
        )
        for pattern in opts.train_modules:
            if _matches(pattern, name):
                train = True
                matched.add(pattern)
        p.requires_grad_(train)
    missing = [m for m in opts.train_modules if m not in matched]
    if missing:
        raise ConfigError(
            f"method.freeze.train_modules: no parameter name matches {missing}",
            hint="names look like 'model.norm' or 'lm_head'; regexes 're:layers\\.[0-3]\\.'",
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(
            "method.freeze leaves nothing to train",
            hint="set method.freeze.train_last_n_layers > 0 or name train_modules",
        )
    return model

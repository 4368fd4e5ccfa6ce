"""Trainable parameters of each method, by applying the method itself to the model's skeleton.

A formula per method would drift from what the method code really does (which modules ``all-linear``
matches, whether a tied head counts once, what peft adds for DoRA or VeRA), so the count comes from
running the method's own ``apply`` function on the model built from its config on the ``meta``
device: no weights are allocated or read, so this takes seconds even for a large model. Methods
whose initialisation needs real weights (PiSSA's SVD, quantisation) fail on meta tensors; those are
applied to a randomly initialised model on the CPU instead (the count does not depend on the
values). The test suite checks the meta count against a real model for every method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from tuneforge.config.method_table import lora_options, method_spec
from tuneforge.config.schema import MethodSection, Recipe
from tuneforge.errors import TuneforgeError
from tuneforge.methods import apply_method, count_parameters
from tuneforge.methods.freeze import decoder_layers
from tuneforge.models.config import load_config  # noqa: F401 - the skeleton's config; advise reads it from here
from tuneforge.train.speed_plan import frozen_linears

# Above this many parameters the CPU fallback (random init of the whole model) is not attempted.
REAL_FALLBACK_MAX_PARAMS = 2_000_000_000


@dataclass
class MethodFootprint:
    """What the memory estimate needs to know about a method applied to a model."""

    method: str
    trainable: int | None
    total: int | None
    grad_blocks: int | None = None  # transformer blocks gradients flow through
    block_weights_train: bool = (
        False  # a pre-existing weight inside a block trains (full, freeze, moe)
    )
    lora_dropout_widths: int = (
        0  # per block: input widths of LoRA layers with dropout > 0
    )
    lora_rank_widths: int = 0  # per block: LoRA ranks
    dora_output_widths: int = 0  # per block: output widths of DoRA layers
    quantized_params: int = 0
    # weights of frozen plain linear layers (train/speed_plan.frozen_linears): what the speed plan
    # stores in the autocast dtype for adapter methods
    frozen_linear_params: int = 0
    device: str = "meta"
    error: str | None = None


def skeleton(config: Any, *, device: str = "meta") -> nn.Module:
    """The model built from ``config`` on ``device`` (``meta``: shapes only, no memory)."""
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.config.use_cache = False
    return model


def method_section(recipe: Recipe, method_type: str) -> MethodSection:
    """The recipe's method options with another ``type``, validated like a recipe would be."""
    return MethodSection.model_validate(
        {**recipe.method.model_dump(), "type": method_type}
    )


def footprint(
    config: Any, method: MethodSection, *, total_steps: int = 100
) -> MethodFootprint:
    """Apply ``method`` to a meta skeleton of ``config`` (or a random CPU one if meta fails) and measure it.

    ``total_steps`` only feeds schedules that size nothing (AdaLoRA's rank budget); the counts are
    those at the start of training (AdaLoRA prunes ranks later by masking, not by freeing them).
    """
    errors = []
    for device in ("meta", "cpu"):
        model = skeleton(config, device=device)
        base_total = sum(p.numel() for p in model.parameters())
        if device == "cpu" and base_total > REAL_FALLBACK_MAX_PARAMS:
            break
        if "lora" in method_spec(method.type).options and lora_options(method).init == "pissa":
            # The count does not depend on how exactly the SVD is computed: use peft's fast randomised
            # SVD on the random weights (the exact one takes minutes on a CPU and gives the same shapes).
            method = MethodSection.model_validate(
                {
                    **method.model_dump(),
                    "lora": {**method.lora.model_dump(), "pissa_niter": 1},
                }
            )
        quantized = _linear_params_in_blocks(model) if method_spec(method.type).quantized_base else 0
        base_block_params = {
            id(p) for p in decoder_layers(model)[1].parameters()
        }  # the base's own block weights
        try:
            applied = apply_method(model, method, total_steps=total_steps)
        except (
            TuneforgeError
        ) as exc:  # the method does not apply to this model (e.g. moe on a dense model)
            return MethodFootprint(method.type, None, None, error=exc.message)
        except Exception as exc:  # noqa: BLE001 - meta tensors break some initialisations; retry on real ones
            errors.append(f"{device}: {type(exc).__name__}: {exc}")
            continue
        result = _measure(applied, method.type, quantized, device, base_block_params)
        if quantized:
            # bitsandbytes packs two 4-bit weights per stored element, so count the unpacked base instead
            result.total = base_total + result.trainable
        return result
    return MethodFootprint(
        method.type,
        None,
        None,
        error="; ".join(errors) or "model too large for the CPU fallback",
    )


def _measure(
    model: nn.Module,
    method: str,
    quantized: int,
    device: str,
    base_block_params: set[int],
) -> MethodFootprint:
    _, total = count_parameters(model)
    # peft lists per-layer parameters that are bookkeeping, never trained (AdaLoRA's ranknum), in the
    # public ``other_param_names``; moving a layer to the meta device re-wraps them as trainable, so
    # they are left out here (on a real model they are frozen anyway, so the count is the same).
    bookkeeping = set()
    for module in model.modules():
        for attr in getattr(module, "other_param_names", ()):
            container = getattr(module, attr, None)
            if isinstance(container, (nn.ParameterDict, nn.ModuleDict)):
                bookkeeping.update(id(p) for p in container.parameters())
    trainable = sum(
        p.numel()
        for p in model.parameters()
        if p.requires_grad and id(p) not in bookkeeping
    )
    _, blocks = decoder_layers(model)
    block_of = {id(p): k for k, block in enumerate(blocks) for p in block.parameters()}
    grad_blocks = _grad_blocks(model, blocks, block_of)
    dropout_widths, rank_widths, dora_widths = _lora_widths(blocks)
    block_weights_train = any(
        p.requires_grad for p in model.parameters() if id(p) in base_block_params
    )
    n = max(1, len(blocks))
    return MethodFootprint(
        method,
        trainable,
        total,
        grad_blocks=grad_blocks,
        block_weights_train=block_weights_train,
        lora_dropout_widths=dropout_widths // n,
        lora_rank_widths=rank_widths // n,
        dora_output_widths=dora_widths // n,
        quantized_params=quantized,
        frozen_linear_params=sum(m.weight.numel() for m in frozen_linears(model)),
        device=device,
    )


def _grad_blocks(
    model: nn.Module, blocks: nn.ModuleList, block_of: dict[int, int]
) -> int:
    """Blocks that back-propagation runs through: from the first block at or after a trainable parameter."""
    config = getattr(model, "active_peft_config", None)
    if config is not None and getattr(config, "is_prompt_learning", False):
        return len(
            blocks
        )  # virtual tokens enter at the input (or every layer): gradients cross every block
    first_block = None
    seen_block = False
    for p in model.parameters():
        k = block_of.get(id(p))
        seen_block = seen_block or k is not None
        if not p.requires_grad:
            continue
        if k is None and not seen_block:
            return len(blocks)  # embeddings or anything before the first block
        if k is not None:
            first_block = k if first_block is None else min(first_block, k)
    if first_block is None:
        # Trainable parameters outside the blocks: modules inserted by a method (adapters) still need
        # gradients through every block when they sit inside them; only a trained head/final norm needs none.
        return 0 if _only_after_blocks(model, block_of) else len(blocks)
    return len(blocks) - first_block


def _only_after_blocks(model: nn.Module, block_of: dict[int, int]) -> bool:
    after = False
    for p in model.parameters():
        if id(p) in block_of:
            after = True
        elif p.requires_grad and not after:
            return False
    return True


def _lora_widths(blocks: nn.ModuleList) -> tuple[int, int, int]:
    """Sum over LoRA layers of (input width if dropout > 0, rank, output width if DoRA), through peft's
    public layer modules (DoRA layers are the ones with a ``lora_magnitude_vector`` entry)."""
    dropout_widths = rank_widths = dora_widths = 0
    for block in blocks:
        for module in block.modules():
            lora_a = getattr(module, "lora_A", None)
            lora_b = getattr(module, "lora_B", None)
            dropouts = getattr(module, "lora_dropout", None)
            if not isinstance(lora_a, nn.ModuleDict) or not isinstance(
                dropouts, nn.ModuleDict
            ):
                continue
            magnitudes = getattr(module, "lora_magnitude_vector", None)
            for name, a in lora_a.items():
                if not isinstance(a, nn.Linear):
                    continue
                rank_widths += a.out_features
                drop = dropouts[name] if name in dropouts else None  # noqa: SIM401 - ModuleDict has no .get
                if isinstance(drop, nn.Dropout) and drop.p > 0:
                    dropout_widths += a.in_features
                if (
                    isinstance(magnitudes, nn.ModuleDict)
                    and name in magnitudes
                    and isinstance(lora_b, nn.ModuleDict)
                ):
                    dora_widths += lora_b[name].out_features
    return dropout_widths, rank_widths, dora_widths


def _linear_params_in_blocks(model: nn.Module) -> int:
    _, blocks = decoder_layers(model)
    return sum(m.weight.numel() for m in blocks.modules() if isinstance(m, nn.Linear))

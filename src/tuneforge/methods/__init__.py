"""Parameter strategies. A plain dict maps the recipe's ``method.type`` to the function that applies it.

Besides applying a method, this module says how its result is saved, loaded and merged, so the
runner, ``runs.load_run`` and the export never need to know the families apart:

- :func:`save_method` writes ``adapter/`` (peft adapters, bottleneck adapters) or ``model/`` (full,
  freeze, moe: the whole model);
- :func:`load_method` puts a saved adapter back on a freshly loaded base;
- :func:`can_merge` tells whether the adapter can be folded into the weights for export.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from peft import PeftModel
from torch import nn

from tuneforge.config.schema import MethodSection
from tuneforge.methods.adalora import AdaLoraCallback, apply_adalora
from tuneforge.methods.bottleneck import (
    apply_bottleneck,
    load_bottleneck,
    save_bottleneck,
)
from tuneforge.methods.freeze import apply_freeze
from tuneforge.methods.full import apply_full
from tuneforge.methods.lora import apply_lora, loraplus_ratio, pissa_init_dir
from tuneforge.methods.moe import apply_moe
from tuneforge.methods.peft_tuners import apply_peft_tuner
from tuneforge.methods.prompt import apply_prompt
from tuneforge.methods.qlora import (
    apply_qlora,
    is_quantized,
    load_quantized,
    load_quantized_base,
)

METHODS: dict[str, Callable] = {
    "full": apply_full,
    "freeze": apply_freeze,
    "moe": apply_moe,
    "lora": apply_lora,
    "rslora": apply_lora,
    "dora": apply_lora,
    "pissa": apply_lora,
    "loraplus": apply_lora,
    "qlora": apply_qlora,
    "adalora": apply_adalora,
    "vera": apply_peft_tuner,
    "ia3": apply_peft_tuner,
    "loha": apply_peft_tuner,
    "lokr": apply_peft_tuner,
    "oft": apply_peft_tuner,
    "prefix_tuning": apply_prompt,
    "p_tuning_v2": apply_prompt,
    "prompt_tuning": apply_prompt,
    "p_tuning": apply_prompt,
    "bottleneck": apply_bottleneck,
}

# Saved as a whole model in model/; every other method as an adapter in adapter/, beside the base.
WHOLE_MODEL_METHODS = frozenset({"full", "freeze", "moe"})
ADAPTER_METHODS = frozenset(METHODS) - WHOLE_MODEL_METHODS
NOT_MERGEABLE = frozenset(
    {"prefix_tuning", "p_tuning_v2", "prompt_tuning", "p_tuning", "bottleneck"}
)
NEEDS_TOTAL_STEPS = frozenset({"adalora"})


def load_base_model(spec: str, method: MethodSection, *, dtype=None) -> nn.Module:
    """Load the base model the way ``method`` trains it: 4-bit for qlora (never in full precision
    first, which is the memory QLoRA exists to save), else ``models.load.load_model`` in ``dtype``."""
    import torch

    from tuneforge.models.load import load_model

    if method.type == "qlora":
        return load_quantized(load_quantized_base(spec), method)
    return load_model(spec, dtype=dtype or torch.float32)


def apply_method(
    model, method: MethodSection, *, total_steps: int | None = None
) -> nn.Module:
    """Apply ``method`` to ``model``; ``total_steps`` (optimizer steps of the run) is needed by adalora."""
    if method.type in NEEDS_TOTAL_STEPS:
        return METHODS[method.type](model, method, total_steps=total_steps)
    return METHODS[method.type](model, method)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def can_merge(method: MethodSection) -> bool:
    """True when the trained change can be folded into the base weights (or there is nothing to fold)."""
    return method.type not in NOT_MERGEABLE


def saved_dir_name(method: MethodSection) -> str:
    """``adapter`` or ``model``: the run-directory entry :func:`save_method` writes."""
    return "model" if method.type in WHOLE_MODEL_METHODS else "adapter"


def save_method(model: nn.Module, directory: str | Path, method: MethodSection) -> Path:
    """Save what ``method`` trained: a peft or bottleneck adapter, or the whole model (safetensors only)."""
    directory = Path(directory)
    if method.type == "bottleneck":
        save_bottleneck(model, directory, method.bottleneck)
    elif isinstance(model, PeftModel) and pissa_init_dir(model) is not None:
        # Saved as the change since init (a plain rank-2r LoRA), so it applies to the untouched base.
        model.save_pretrained(
            str(directory),
            safe_serialization=True,
            path_initial_model_for_weight_conversion=str(pissa_init_dir(model)),
        )
    else:
        model.save_pretrained(str(directory), safe_serialization=True)
    return directory


def load_method(
    base, directory: str | Path, method: MethodSection, *, is_trainable: bool = False
) -> nn.Module:
    """Put the adapter saved in ``directory`` back on ``base`` (a freshly loaded, unmodified base model).

    For qlora the base must be 4-bit as in training (:func:`load_base_model`); a full-precision
    base is re-loaded quantised.
    """
    directory = Path(directory)
    if method.type == "bottleneck":
        return load_bottleneck(base, directory)
    if method.type == "qlora" and not is_quantized(base):
        base = load_quantized(base.name_or_path, method)
    return PeftModel.from_pretrained(base, str(directory), is_trainable=is_trainable)


def method_callbacks(model: nn.Module, method: MethodSection) -> list:
    """Trainer callbacks a method needs during training (adalora: rank reallocation every step)."""
    return [AdaLoraCallback()] if method.type == "adalora" else []


def planned_optimizer_steps(
    n_examples: int,
    batch_size: int,
    grad_accum: int,
    epochs: float,
    max_steps: int | None,
) -> int:
    """The optimizer steps ``transformers.Trainer`` will take (its own formula), for step-scheduled methods."""
    if max_steps:
        return max_steps
    batches = math.ceil(n_examples / batch_size)
    per_epoch = max(batches // grad_accum + int(batches % grad_accum > 0), 1)
    return math.ceil(epochs * per_epoch)


__all__ = [
    "ADAPTER_METHODS",
    "METHODS",
    "NOT_MERGEABLE",
    "WHOLE_MODEL_METHODS",
    "apply_method",
    "can_merge",
    "count_parameters",
    "load_base_model",
    "load_method",
    "loraplus_ratio",
    "method_callbacks",
    "planned_optimizer_steps",
    "save_method",
    "saved_dir_name",
]

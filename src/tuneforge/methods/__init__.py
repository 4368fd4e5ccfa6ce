"""Parameter strategies. A plain dict maps each method *family* to the code that applies it.

What each ``method.type`` is (its family, what it saves, whether it merges, ...) is one entry of the
method table in :mod:`tuneforge.config.method_table`; this module turns that entry into code, so the
recipes, ``targets.load_run`` and the export never need to know the families apart:

- :func:`apply_method` runs the family's builder;
- :func:`save_method` writes ``adapter/`` (peft adapters, bottleneck adapters) or ``model/`` (full,
  freeze, moe: the whole model);
- :func:`load_method` puts a saved adapter back on a freshly loaded base;
- :func:`can_merge` tells whether the adapter can be folded into the weights for export;
- :func:`method_callbacks` gives the Trainer callbacks the family needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from torch import nn
from transformers import TrainerCallback

from tuneforge.config.method_table import METHOD_TABLE, Family, method_spec
from tuneforge.config.schema import MethodSection
from tuneforge.methods.adalora import AdaLoraCallback, apply_adalora
from tuneforge.methods.bottleneck import apply_bottleneck, load_bottleneck, save_bottleneck_method
from tuneforge.methods.freeze import apply_freeze
from tuneforge.methods.full import apply_full
from tuneforge.methods.lora import apply_lora, loraplus_ratio, pissa_init_dir
from tuneforge.methods.moe import apply_moe
from tuneforge.methods.peft_tuners import apply_peft_tuner
from tuneforge.methods.prompt import apply_prompt
from tuneforge.methods.qlora import apply_qlora, is_quantized, load_quantized, load_quantized_base
from tuneforge.models.load import load_model


@dataclass(frozen=True)
class FamilyCode:
    """The code of one method family; ``None`` save/load means peft's own ``save_pretrained`` / ``PeftModel.from_pretrained``."""

    apply: Callable[..., nn.Module]
    save: Callable[[nn.Module, Path, MethodSection], None] | None = None
    load: Callable[[nn.Module, Path], nn.Module] | None = None
    callbacks: Callable[[], list[TrainerCallback]] = list


FAMILIES: dict[Family, FamilyCode] = {
    "full": FamilyCode(apply_full),
    "freeze": FamilyCode(apply_freeze),
    "moe": FamilyCode(apply_moe),
    "lora": FamilyCode(apply_lora),
    "qlora": FamilyCode(apply_qlora),
    # peft reallocates AdaLoRA's ranks only when called after each step (methods/adalora.py)
    "adalora": FamilyCode(apply_adalora, callbacks=lambda: [AdaLoraCallback()]),
    "peft_tuner": FamilyCode(apply_peft_tuner),
    "prompt": FamilyCode(apply_prompt),
    "bottleneck": FamilyCode(apply_bottleneck, save=save_bottleneck_method, load=load_bottleneck),
}

# method.type -> the function that applies it (what advise and the benchmarks iterate over)
METHODS: dict[str, Callable[..., nn.Module]] = {name: FAMILIES[spec.family].apply for name, spec in METHOD_TABLE.items()}


def load_base_model(spec: str, method: MethodSection, *, dtype=None) -> nn.Module:
    """Load the base model the way ``method`` trains it: 4-bit for qlora (never in full precision
    first, which is the memory QLoRA exists to save), else ``models.load.load_model`` in ``dtype``."""
    if method_spec(method.type).quantized_base:
        return load_quantized(load_quantized_base(spec), method)
    return load_model(spec, dtype=dtype or torch.float32)


def apply_method(model, method: MethodSection, *, total_steps: int | None = None) -> nn.Module:
    """Apply ``method`` to ``model``; ``total_steps`` (optimizer steps of the run) is needed by adalora."""
    spec = method_spec(method.type)
    apply = FAMILIES[spec.family].apply
    if spec.needs_total_steps:
        return apply(model, method, total_steps=total_steps)
    return apply(model, method)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def can_merge(method: MethodSection) -> bool:
    """True when the trained change can be folded into the base weights (or there is nothing to fold)."""
    return method_spec(method.type).mergeable


def saved_dir_name(method: MethodSection) -> str:
    """``adapter`` or ``model``: the run-directory entry :func:`save_method` writes."""
    return method_spec(method.type).saves


def save_method(model: nn.Module, directory: str | Path, method: MethodSection) -> Path:
    """Save what ``method`` trained: a peft or bottleneck adapter, or the whole model (safetensors only)."""
    directory = Path(directory)
    save = FAMILIES[method_spec(method.type).family].save
    if save is not None:
        save(model, directory, method)
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


def load_method(base, directory: str | Path, method: MethodSection, *, is_trainable: bool = False) -> nn.Module:
    """Put the adapter saved in ``directory`` back on ``base`` (a freshly loaded, unmodified base model).

    For qlora the base must be 4-bit as in training (:func:`load_base_model`); a full-precision
    base is re-loaded quantised.
    """
    directory = Path(directory)
    spec = method_spec(method.type)
    load = FAMILIES[spec.family].load
    if load is not None:
        return load(base, directory)
    if spec.quantized_base and not is_quantized(base):
        base = load_quantized(base.name_or_path, method)
    return PeftModel.from_pretrained(base, str(directory), is_trainable=is_trainable)


def method_callbacks(model: nn.Module, method: MethodSection) -> list:
    """Trainer callbacks a method needs during training (adalora: rank reallocation every step)."""
    return FAMILIES[method_spec(method.type).family].callbacks()


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
    "FAMILIES",
    "METHODS",
    "MethodSection",
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

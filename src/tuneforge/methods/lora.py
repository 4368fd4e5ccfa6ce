"""LoRA through peft: low-rank adapters on the chosen linear layers, base weights frozen.

The default first choice: a few MB of trainable weights, identity at init (B = 0), mergeable.
"""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError


def lora_config(method: MethodSection) -> LoraConfig:
    opts = method.lora
    return LoraConfig(
        r=opts.r,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        target_modules=opts.target_modules,
        task_type="CAUSAL_LM",
        bias="none",
    )


def apply_lora(model: PreTrainedModel, method: MethodSection) -> PeftModel:
    try:
        return get_peft_model(model, lora_config(method))
    except ValueError as exc:  # peft raises ValueError when target modules match nothing
        raise ConfigError(f"method.lora.target_modules {method.lora.target_modules!r}: {exc}", hint="use 'all-linear' or names such as q_proj, v_proj") from None

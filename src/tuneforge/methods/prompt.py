"""Prompt-learning methods through peft: prefix tuning, P-Tuning v2, prompt tuning, P-Tuning.

They leave every weight alone and learn inputs instead: virtual key/value pairs at every layer
(prefix tuning; P-Tuning v2 is prefix tuning with the reparameterisation MLP), soft-prompt
embeddings before the input (prompt tuning), or soft prompts produced by a small encoder
(P-Tuning). Nothing can be merged into the weights, and the virtual tokens exist only inside the
peft model's own forward, so training must call it (see ``tuneforge.train.trainer``) instead of the
base decoder that tuneforge's fast loss path uses.
"""

from __future__ import annotations

import torch
from peft import (
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
)
from transformers import PreTrainedModel

from tuneforge.config.schema import MethodSection
from tuneforge.data.render import IGNORE_INDEX

def prompt_config(method: MethodSection, model: PreTrainedModel):
    t = method.type
    if t in ("prefix_tuning", "p_tuning_v2"):
        o = method.prefix
        return PrefixTuningConfig(
            num_virtual_tokens=o.num_virtual_tokens,
            prefix_projection=o.projection or t == "p_tuning_v2",
            encoder_hidden_size=o.encoder_hidden_size,
            task_type="CAUSAL_LM",
        )
    if t == "prompt_tuning":
        o = method.prompt_tuning
        if o.init_text:
            return PromptTuningConfig(
                num_virtual_tokens=o.num_virtual_tokens,
                prompt_tuning_init="TEXT",
                prompt_tuning_init_text=o.init_text,
                tokenizer_name_or_path=model.name_or_path,
                task_type="CAUSAL_LM",
            )
        return PromptTuningConfig(
            num_virtual_tokens=o.num_virtual_tokens,
            prompt_tuning_init="RANDOM",
            task_type="CAUSAL_LM",
        )
    if t == "p_tuning":
        o = method.p_tuning
        return PromptEncoderConfig(
            num_virtual_tokens=o.num_virtual_tokens,
            encoder_reparameterization_type="MLP" if o.encoder == "mlp" else "LSTM",
            encoder_hidden_size=o.encoder_hidden_size,
            encoder_num_layers=o.encoder_num_layers,
            encoder_dropout=o.encoder_dropout,
            task_type="CAUSAL_LM",
        )
    raise ValueError(f"not a prompt-learning method: {t}")


def apply_prompt(model: PreTrainedModel, method: MethodSection) -> PeftModel:
    return get_peft_model(model, prompt_config(method, model))


def is_prompt_learning(model) -> bool:
    """True for a peft model whose adapter is prompt learning (asked of the model: the trainer and the
    evaluation get models, not recipes; the method table's ``prompt_learning`` says it of a recipe)."""
    return isinstance(model, PeftModel) and bool(
        model.active_peft_config.is_prompt_learning
    )


def align_labels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``labels`` extended to the logits' length: prompt tuning and P-Tuning return logits for the
    virtual positions first, and those get IGNORE_INDEX, exactly as peft labels them itself (so the
    last virtual position learns the first real token when that token is trained)."""
    extra = logits.size(1) - labels.size(1)
    if extra <= 0:
        return labels
    return torch.cat(
        [labels.new_full((labels.size(0), extra), IGNORE_INDEX), labels], dim=1
    )

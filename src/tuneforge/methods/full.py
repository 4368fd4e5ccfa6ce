"""Full fine-tuning: every weight trains. Highest quality ceiling, highest memory (weights + grads + 2 Adam states)."""

from __future__ import annotations

from transformers import PreTrainedModel

from tuneforge.config.schema import MethodSection


def apply_full(model: PreTrainedModel, method: MethodSection) -> PreTrainedModel:
    for p in model.parameters():
        p.requires_grad_(True)
    return model

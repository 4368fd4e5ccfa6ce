"""Reward models: a causal LM backbone with a scalar head, trained with the Bradley-Terry loss.

The model is transformers' ``AutoModelForSequenceClassification`` with one label (for Llama-style
models, ``LlamaForSequenceClassification``: the backbone plus a bias-free linear ``score`` head), so
it saves and loads with ``save_pretrained`` / ``from_pretrained`` and peft knows its head. The head
starts at zero, so every reward is 0 at init and the loss is exactly ln 2.

We pool the hidden state of the last *attended* token ourselves (:func:`reward_scores`) instead of
the model's own pooling, which looks for the last token different from ``pad_token_id``: many chat
tokenizers (SmolLM2 among them) pad with their end-of-turn token, so that rule would skip real tokens.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from peft import get_peft_model
from torch import nn
from transformers import AutoModelForSequenceClassification

from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError, ModelLoadError
from tuneforge.methods import apply_method
from tuneforge.methods.lora import lora_config
from tuneforge.models.load import ModelSource, load_model, resolve_model
from tuneforge.objectives.preference import plain_model

REWARD_HEAD = "score"  # the head's attribute name in transformers' *ForSequenceClassification models


def load_reward_model(
    spec,
    *,
    dtype: torch.dtype = torch.float32,
    pad_token_id: int | None = None,
    zero_head: bool = True,
):
    """Load ``spec`` (any model spec, or a saved reward model directory) as a one-output sequence scorer."""
    source = spec if isinstance(spec, ModelSource) else resolve_model(spec)
    model = load_model(source, dtype=dtype, auto_class=AutoModelForSequenceClassification, num_labels=1)
    head = reward_head(model)
    if zero_head and not _is_trained_reward_model(source):
        with torch.no_grad():
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def _is_trained_reward_model(source) -> bool:
    """A directory saved from a reward run already holds a trained head; never zero it."""
    cfg = Path(source.path) / "config.json"
    if source.kind not in ("dir",) or not cfg.is_file():
        return False
    archs = json.loads(cfg.read_text()).get("architectures") or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


def reward_head(model) -> nn.Linear:
    """The scalar head of a plain (not yet peft-wrapped) sequence-classification model."""
    head = getattr(plain_model(model), REWARD_HEAD, None)
    if head is None:
        raise ModelLoadError(
            f"{type(plain_model(model)).__name__} has no '{REWARD_HEAD}' head, so it cannot be a reward model",
            hint="use a decoder model that transformers supports for sequence classification (Llama, Qwen, Mistral, ...)",
        )
    return head


def reward_scores(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """One scalar per sequence: the head applied to the last attended token (right padding)."""
    base = plain_model(model)
    backbone = getattr(base, base.base_model_prefix)
    hidden = backbone(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False
    ).last_hidden_state
    last = attention_mask.sum(dim=1) - 1
    pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    return getattr(base, REWARD_HEAD)(pooled).squeeze(-1).float()


def apply_reward_method(model, method: MethodSection):
    """Apply the parameter strategy to a reward model; the scalar head always trains.

    - full: every weight; freeze: the last N blocks + the head (``train_last_n_layers: 0`` = frozen
      backbone, head only); lora: adapters on the backbone, the head trained in full and saved with
      the adapter (peft's sequence-classification task).
    """
    if method.type == "lora":
        config = replace(
            lora_config(method), task_type="SEQ_CLS", modules_to_save=[REWARD_HEAD]
        )
        try:
            return get_peft_model(model, config)
        except ValueError as exc:
            raise ConfigError(
                f"method.lora.target_modules {method.lora.target_modules!r}: {exc}",
                hint="use 'all-linear' or names such as q_proj, v_proj",
            ) from None
    if method.type == "freeze":
        method = method.model_copy(deep=True)
        if REWARD_HEAD not in method.freeze.train_modules:
            method.freeze.train_modules = [*method.freeze.train_modules, REWARD_HEAD]
        return apply_method(model, method)
    if method.type == "full":
        return apply_method(model, method)
    raise ConfigError(
        f"objective.type 'reward' supports method.type full, freeze or lora, not '{method.type}'",
        hint="use method.type: lora (default), full, or freeze with freeze.train_last_n_layers: 0 for a frozen backbone",
    )

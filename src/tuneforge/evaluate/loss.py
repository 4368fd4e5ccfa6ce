"""Held-out loss and perplexity, weighted by trained tokens (not averaged per batch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from tuneforge.data.collate import PadCollator
from tuneforge.data.prepare import to_features
from tuneforge.data.render import Tokenized
from tuneforge.evaluate.generate import autocast_context
from tuneforge.methods.prompt import align_labels, is_prompt_learning
from tuneforge.models.autocast_weights import weights_cast_once
from tuneforge.objectives.losses import (
    causal_lm_loss,
    supports_trained_positions_loss,
    trained_positions_loss,
)


@torch.inference_mode()
def evaluate_loss(
    model, examples: Sequence[Tokenized], pad_token_id: int, *, batch_size: int = 8, autocast_dtype: torch.dtype | None = None
) -> dict[str, float]:
    """Mean token loss over all trained tokens of ``examples`` and its perplexity."""
    collate = PadCollator(pad_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    plain = model.get_base_model() if hasattr(model, "get_base_model") else model
    # Virtual-token methods live in the peft model's own forward; the decoder-only fast path would skip them.
    fast = supports_trained_positions_loss(plain) and not is_prompt_learning(model)
    try:
        with weights_cast_once(model, autocast_dtype):  # models/autocast_weights.py: cast once, not per batch
            # Length-sorted batches pad little; the loss is a token-weighted sum, so order does not change it.
            feats = sorted(to_features(examples), key=lambda f: len(f["input_ids"]))
            for start in range(0, len(feats), batch_size):
                batch = {k: v.to(device) for k, v in collate(feats[start : start + batch_size]).items()}
                labels = batch.pop("labels")
                n = int(labels[:, 1:].ne(-100).sum())
                if n == 0:
                    continue
                with autocast_context(autocast_dtype, device.type):
                    if fast:
                        loss = trained_positions_loss(plain, batch, labels, n)
                    else:
                        logits = model(**batch, use_cache=False).logits
                        loss = causal_lm_loss(logits, align_labels(logits, labels), n)
                total += float(loss) * n
                count += n
    finally:
        model.train(was_training)
    loss = total / count if count else float("nan")
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0)) if count else float("nan"), "eval_tokens": count}

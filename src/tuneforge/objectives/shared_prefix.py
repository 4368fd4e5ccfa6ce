"""The decoder's hidden states with the micro-batch's shared leading tokens computed once.

Chat and instruction data usually open every example with the same tokens: the chat template's
system prompt and a fixed task instruction. The quickstart's 400 tickets share their first 44 tokens
of about 130, so in a micro-batch of 8 rows the linear layers, which are most of a step, ran those
44 positions 8 times. Here the shared prefix runs once as a batch of one with the KV cache on, the
cache is repeated to the batch (``DynamicCache.batch_repeat_interleave``, a public method) and the
rest of each row runs on top of it. Autograd flows through the repeated keys and values back into
the prefix pass, so the gradients are those of the full batch: each row's prefix states are the
same tensors it would have computed itself. The loss and gradients are tested equal to the unshared
path (``tests/objectives/test_shared_prefix.py``; on the built-in model, the quickstart's first
micro-batch gave the same loss and gradients within 2.5e-6 relative). Over a run the losses drift
apart by fp32 rounding only, which Adam's first steps amplify (docs/SPEED.md has the figures).

This is exact only when the prefix's forward is the same in every row, i.e. nothing random touches
it: no active dropout and no NEFTune noise (:func:`randomness_in_forward` finds them; ``auto``
leaves sharing off then, ``training.share_prefix: true`` accepts that the rows of a micro-batch share
one dropout mask on the prefix). It needs plain right-padded rows (packed rows carry their own
position ids) and a cache whose layers simply concatenate keys and values (no sliding window).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tuneforge.config.method_table import method_spec
from tuneforge.config.schema import MethodSection
from tuneforge.models.cache import cache_keyword, concatenating_cache

# Shortest prefix worth a separate pass: below this the saved rows are a few tokens of compute
# against one more trip through every layer.
MIN_SHARED_TOKENS = 16


def batch_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> int:
    """Leading positions where every row holds the same real (unmasked) token, at most length - 1.

    One position is always left to the second pass, which must see at least one token.
    """
    same = (input_ids == input_ids[:1]).all(dim=0)
    if attention_mask is not None:
        same &= attention_mask.bool().all(dim=0)
    run = int(same.long().cumprod(dim=0).sum())
    return min(run, input_ids.shape[1] - 1)


def examples_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Leading tokens every sequence shares: what every micro-batch of these examples shares at least."""
    if not sequences:
        return 0
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for seq in sequences[1:]:
        n = 0
        while n < length and seq[n] == first[n]:
            n += 1
        length = n
        if length == 0:
            break
    return length


def randomness_in_forward(model: nn.Module, neftune_alpha: float | None = None) -> str | None:
    """What makes the training forward random (so rows would differ on identical tokens), or None.

    Dropout modules with p > 0, dropout rates in the model's config (attention dropout is applied
    inside the attention function, not by a module) and NEFTune's embedding noise.
    """
    if neftune_alpha:
        return f"NEFTune noise (training.neftune_alpha={neftune_alpha})"
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            return f"dropout p={module.p} in {name}"
    return _config_randomness(getattr(model, "config", None))


def declared_randomness(method: MethodSection, config, neftune_alpha: float | None = None) -> str | None:
    """What the recipe and model config say will make the forward random, before any model exists.

    The dry run's counterpart of :func:`randomness_in_forward`: dropout rates in the method's option
    sections (e.g. ``method.lora.dropout``) and in the model config, and NEFTune.
    """
    if neftune_alpha:
        return f"NEFTune noise (training.neftune_alpha={neftune_alpha})"
    for section in method_spec(method.type).options:
        for key, value in getattr(method, section).model_dump().items():
            if "dropout" in key and isinstance(value, float) and value > 0:
                return f"method.{section}.{key}={value}"
    return _config_randomness(config)


def _config_randomness(config) -> str | None:
    for key, value in (config.to_dict() if config is not None else {}).items():
        if "drop" in key and isinstance(value, float) and value > 0:
            return f"{key}={value} in the model config"
    return None


def checkpointed(decoder: nn.Module) -> bool:
    """Whether the decoder's blocks run under activation checkpointing, which runs them without a cache."""
    # transformers renamed the flag; the old name warns
    flag = "is_activation_checkpointing" if hasattr(type(decoder), "is_activation_checkpointing") else "is_gradient_checkpointing"
    return bool(getattr(decoder, flag, False))


def can_share(decoder: nn.Module, inputs: dict, min_tokens: int = MIN_SHARED_TOKENS) -> int:
    """The prefix length to share for this micro-batch, or 0 where sharing does not apply."""
    input_ids = inputs.get("input_ids")
    if input_ids is None or input_ids.dim() != 2 or input_ids.shape[0] < 2:
        return 0
    if set(inputs) - {"input_ids", "attention_mask"}:  # packed rows (position ids), embeddings, ...
        return 0
    if checkpointed(decoder):
        return 0
    prefix = batch_prefix_length(input_ids, inputs.get("attention_mask"))
    return prefix if prefix >= min_tokens else 0


def shared_prefix_hidden(decoder: nn.Module, inputs: dict, prefix: int) -> torch.Tensor | None:
    """``decoder(**inputs).last_hidden_state`` with the first ``prefix`` positions computed once.

    Returns None (the caller runs the plain path) when the model's cache is not a plain concatenating
    one, e.g. a sliding-window layer, whose prefill with a cache is not the same computation.
    """
    input_ids = inputs["input_ids"]
    rows = input_ids.shape[0]
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(input_ids)
    cache = concatenating_cache(decoder.config)
    if cache is None:
        return None
    keyword = cache_keyword(decoder)
    head = decoder(input_ids=input_ids[:1, :prefix], attention_mask=mask[:1, :prefix], use_cache=True, **{keyword: cache})
    cache.batch_repeat_interleave(rows)
    tail = decoder(input_ids=input_ids[:, prefix:], attention_mask=mask, use_cache=True, **{keyword: cache})
    shared = head.last_hidden_state.expand(rows, -1, -1)
    return torch.cat([shared, tail.last_hidden_state], dim=1)

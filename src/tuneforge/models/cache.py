"""KV-cache helpers: the keyword a model's forward takes its cache under, and a cache that can be
shared by repeating it to more rows.

transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name is deprecated, not gone),
and tuneforge supports the whole 5.x range, so callers that pass a cache ask the forward's signature.
"""

from __future__ import annotations

import inspect
from typing import Any

from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def forward_parameters(model: Any) -> set[str]:
    """Parameter names of the forward of ``model`` (of its base model under peft)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def cache_keyword(model: Any) -> str:
    """``"cache"`` on transformers versions that renamed it, else ``"past_key_values"``."""
    return "cache" if "cache" in forward_parameters(model) else "past_key_values"


def concatenating_cache(config: Any) -> DynamicCache | None:
    """An empty cache for a model of ``config`` whose every layer simply appends keys and values, or None.

    Running a shared prefix once and repeating its cache to several rows gives each row the states
    it would have computed itself only for such layers; a sliding-window layer, for one, drops old
    positions, so its cached prefill is not the same computation.
    """
    cache = DynamicCache(config=config)  # with a config, its layers exist before the first update
    if not cache.layers or not all(type(layer) is DynamicLayer for layer in cache.layers):
        return None
    return cache

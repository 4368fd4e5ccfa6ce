"""The keyword a model's forward takes its KV cache under.

transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name is deprecated, not gone),
and tuneforge supports the whole 5.x range, so callers that pass a cache ask the forward's signature.
"""

from __future__ import annotations

import inspect
from typing import Any


def forward_parameters(model: Any) -> set[str]:
    """Parameter names of the forward of ``model`` (of its base model under peft)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def cache_keyword(model: Any) -> str:
    """``"cache"`` on transformers versions that renamed it, else ``"past_key_values"``."""
    return "cache" if "cache" in forward_parameters(model) else "past_key_values"

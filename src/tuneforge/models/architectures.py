"""What tuneforge knows about each model architecture (``config.model_type``), in one table.

Two layers ask the same question of a model type and must not keep their own lists: the loss
(``objectives/losses.py``: may the output head run on trained positions alone?) and the memory
estimate (``advise/memory.py``: how many activations does the MLP keep?). An architecture missing
here gets the safe answers: the full-logits loss path, and the non-gated MLP formula.

Each entry was read from the transformers modelling code of that architecture; add one only after
checking it there (and, for ``plain_head``, the trained-positions loss test against the full logits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Architecture:
    """Facts about one ``model_type`` that tuneforge's fast paths and estimates rely on."""

    gated_mlp: bool  # the MLP is down(act(gate(x)) * up(x)): three weight matrices, four saved activations
    plain_head: bool  # causal-LM logits are exactly lm_head(decoder(x).last_hidden_state): no soft-capping or scaling


_GATED_PLAIN = Architecture(gated_mlp=True, plain_head=True)
# gated MLP, but the logits are changed after the head (gemma2/3: soft-capping; granite: logits_scaling)
# or the plain head was not checked against the full logits (gemma, olmo)
_GATED_ONLY = Architecture(gated_mlp=True, plain_head=False)

ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType({
    "llama": _GATED_PLAIN,
    "mistral": _GATED_PLAIN,
    "mixtral": _GATED_PLAIN,
    "qwen2": _GATED_PLAIN,
    "qwen2_moe": _GATED_PLAIN,
    "qwen3": _GATED_PLAIN,
    "qwen3_moe": _GATED_PLAIN,
    "phi3": _GATED_PLAIN,
    "smollm3": _GATED_PLAIN,
    "olmo2": _GATED_PLAIN,
    "gemma": _GATED_ONLY,
    "gemma2": _GATED_ONLY,
    "gemma3_text": _GATED_ONLY,
    "olmo": _GATED_ONLY,
    "granite": _GATED_ONLY,
})  # fmt: skip

_UNKNOWN = Architecture(gated_mlp=False, plain_head=False)


def architecture(model_type: str | None) -> Architecture:
    """The table entry of ``model_type``; unknown (or missing) types get the safe answers."""
    return ARCHITECTURES.get(model_type or "", _UNKNOWN)

"""A Hugging Face Llama state dict as GGUF tensors: names, the Q/K row order llama.cpp wants, storage types.

Written from facts, not from llama.cpp's converter:

- names: gguf's own ``TensorNameMap`` (public API) maps ``model.layers.3.self_attn.q_proj.weight``
  to ``blk.3.attn_q.weight`` and so on, so no hand-kept name table can drift from llama.cpp's;
- Q/K rows: HF's Llama rotates a head's dimension ``i`` with ``i + head_dim/2`` (``rotate_half``),
  llama.cpp's rope for the llama architecture rotates neighbours ``2i`` and ``2i+1``. The same
  attention results need the rows of ``q_proj`` / ``k_proj`` of every head reordered from
  ``[0..d/2), [d/2..d)`` to interleaved ``0, d/2, 1, d/2+1, ...`` (per head; ``k_proj`` has the
  key-value head count under grouped-query attention);
- storage: 1-D tensors (the RMSNorm weights) stay F32, as llama.cpp's files keep them; 2-D weights
  take the requested type when their row length is a multiple of its block size, else F16.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType

from tuneforge.errors import TuneforgeError


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor ready for ``GGUFWriter.add_tensor``: its stored bytes and type."""

    name: str
    data: np.ndarray
    qtype: GGMLQuantizationType


def interleave_rope_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder each head's rows from HF's half-split rotary layout to llama.cpp's pairwise layout."""
    rows = weight.shape[0]
    head_dim = rows // n_heads
    split = weight.reshape(n_heads, 2, head_dim // 2, *weight.shape[1:])
    return np.ascontiguousarray(split.swapaxes(1, 2).reshape(weight.shape))


def llama_tensors(
    state_dict: dict[str, torch.Tensor],
    *,
    n_layers: int,
    n_heads: int,
    n_kv_heads: int,
    tied: bool,
    qtype: GGMLQuantizationType,
) -> Iterator[GGUFTensor]:
    """Yield the GGUF tensors of a ``LlamaForCausalLM`` state dict, one at a time (memory: one tensor)."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    for hf_name, tensor in state_dict.items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by every runtime from rope.freq_base
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise TuneforgeError(
                f"the model has a tensor {hf_name!r} that the GGUF llama architecture has no place for",
                "export a merged model instead (tuneforge export RUN --merge DIR)",
            )
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = interleave_rope_rows(data, n_heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = interleave_rope_rows(data, n_kv_heads)
        yield stored(name, data, qtype)


def stored(name: str, data: np.ndarray, qtype: GGMLQuantizationType) -> GGUFTensor:
    """``data`` in the type it is stored as (see the module docstring for the rule)."""
    if data.ndim < 2 or qtype == GGMLQuantizationType.F32:
        return GGUFTensor(name, data.astype(np.float32), GGMLQuantizationType.F32)
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    if data.shape[-1] % block:
        qtype = GGMLQuantizationType.F16
    if qtype == GGMLQuantizationType.F16:
        return GGUFTensor(name, data.astype(np.float16), qtype)
    return GGUFTensor(name, gguf.quants.quantize(data, qtype), qtype)

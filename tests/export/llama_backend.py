"""llama.cpp (through llama-cpp-python) as the reference runtime for GGUF tests, and greedy decoding on both sides."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch


def llama_cpp_or_skip():
    """The ``llama_cpp`` module; skip without it, unless CI demands it (TUNEFORGE_REQUIRE_LLAMA=1)."""
    try:
        import llama_cpp
    except ImportError as exc:
        if os.environ.get("TUNEFORGE_REQUIRE_LLAMA") == "1":
            pytest.fail(f"TUNEFORGE_REQUIRE_LLAMA=1 but llama_cpp is not importable: {exc}")
        pytest.skip("llama-cpp-python is not installed (pip install 'tuneforge[llama]')")
    return llama_cpp


def open_gguf(path, n_ctx: int = 256):
    llama_cpp = llama_cpp_or_skip()
    return llama_cpp.Llama(str(path), n_ctx=n_ctx, logits_all=True, verbose=False, n_threads=1)


def llama_logits(llm, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits at every position of ``ids`` (one row per token)."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def llama_greedy(llm, ids: list[int], n: int, eos: int | None = None) -> list[int]:
    """Up to ``n`` greedy tokens from llama.cpp's raw logits (no sampler settings), ending at ``eos``."""
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    while len(out) < n and (not out or out[-1] != eos):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out


@torch.no_grad()
def hf_greedy(model, ids: list[int], n: int, eos: int | None = None) -> list[int]:
    """Up to ``n`` greedy tokens from the HF model, the same way: argmax, ending at ``eos``.

    Not ``generate(min_new_tokens=...)``: that masks EOS out of the logits, so past the model's own
    end of answer it would pick a token llama.cpp (seeing the true logits) does not.
    """
    eos_ids = [] if eos is None else [eos]
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=eos_ids or None)
    return out[0, len(ids) :].tolist()


@torch.no_grad()
def hf_logits(model, ids: list[int]) -> np.ndarray:
    return model(torch.tensor([ids])).logits[0].float().numpy()

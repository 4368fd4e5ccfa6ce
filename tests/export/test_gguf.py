"""GGUF export: the file's keys, tensors and tokenizer, and llama.cpp computing what the HF model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader

from tests.export.llama_backend import hf_greedy, hf_logits, llama_cpp_or_skip, llama_greedy, llama_logits, open_gguf
from tests.helpers.tiny import CHATML_TEMPLATE, tiny_llama, tiny_tokenizer
from tuneforge.errors import TuneforgeError
from tuneforge.export.gguf import save_gguf
from tuneforge.export.gguf_tensors import interleave_rope_rows

PROMPTS = ["What is the capital of France?", "Hello! How are you today?", "Please return the fields as JSON."]


def _field(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


def test_interleave_rope_rows_pairs_each_half_of_a_head() -> None:
    # Two heads of head_dim 4: HF rows (0 1 | 2 3) rotate 0 with 2 and 1 with 3; llama.cpp pairs neighbours.
    weight = np.arange(8, dtype=np.float32).reshape(8, 1)
    assert interleave_rope_rows(weight, n_heads=2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


@pytest.mark.parametrize("tie", [True, False])
def test_file_holds_hyperparameters_tokenizer_and_every_tensor(tmp_path: Path, tie: bool) -> None:
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok), tie=tie)
    reader = GGUFReader(save_gguf(model, tok, tmp_path / "tiny.gguf", quant="f16"))

    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.block_count") == 2
    assert _field(reader, "llama.embedding_length") == 64
    assert _field(reader, "llama.attention.head_count") == 4
    assert _field(reader, "llama.attention.head_count_kv") == 2
    assert _field(reader, "llama.rope.dimension_count") == 16
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(reader, "tokenizer.chat_template") == CHATML_TEMPLATE
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == len(tok) and tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert all(tokens[i] == tok.convert_ids_to_tokens(i) for i in range(len(tok)))
    assert _field(reader, "tokenizer.ggml.token_type")[:4] == [3, 3, 3, 1]  # control x3, then normal
    assert _field(reader, "tokenizer.ggml.eos_token_id") == 2
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False

    tensors = {t.name: t for t in reader.tensors}
    expected = 2 * 9 + 2 + (0 if tie else 1)  # 9 per block, embeddings + final norm, untied head
    assert len(tensors) == expected and ("output.weight" in tensors) is (not tie)
    assert tensors["blk.0.attn_norm.weight"].tensor_type == GGMLQuantizationType.F32
    assert tensors["blk.1.attn_k.weight"].tensor_type == GGMLQuantizationType.F16
    assert tensors["blk.1.attn_k.weight"].shape.tolist() == [64, 32]  # GGUF lists (in, out)
    assert tensors["token_embd.weight"].shape.tolist() == [64, len(tok)]
    # The stored Q rows are HF's, reordered per head: a lossless permutation (f16 rounding aside).
    stored = np.asarray(tensors["blk.0.attn_q.weight"].data, dtype=np.float32).reshape(64, 64)
    hf_q = model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    np.testing.assert_allclose(stored, interleave_rope_rows(hf_q, 4), atol=1e-3)


def test_q8_0_stores_quantised_weights_and_keeps_norms_f32(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    path = save_gguf(tiny_llama(len(tok)), tok, tmp_path / "q8.gguf", quant="q8_0")
    types = {t.name: t.tensor_type for t in GGUFReader(path).tensors}
    assert types["blk.0.ffn_down.weight"] == GGMLQuantizationType.Q8_0
    assert types["output_norm.weight"] == GGMLQuantizationType.F32
    assert path.stat().st_size < save_gguf(tiny_llama(len(tok)), tok, tmp_path / "f16.gguf").stat().st_size


def test_unknown_quant_and_non_llama_models_are_refused(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    with pytest.raises(TuneforgeError, match="q4_k_m"):
        save_gguf(tiny_llama(len(tok)), tok, tmp_path / "x.gguf", quant="q3")
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tok)))
    with pytest.raises(TuneforgeError, match="llama architecture"):
        save_gguf(gpt2, tok, tmp_path / "x.gguf")
    assert not list(tmp_path.iterdir())


def test_refuses_to_overwrite_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    target = tmp_path / "notes.gguf"
    target.write_text("my notes")
    with pytest.raises(TuneforgeError, match="not a GGUF file"):
        save_gguf(tiny_llama(len(tok)), tok, target)
    assert target.read_text() == "my notes" and [p.name for p in tmp_path.iterdir()] == ["notes.gguf"]
    save_gguf(tiny_llama(len(tok)), tok, tmp_path / "a.gguf")
    save_gguf(tiny_llama(len(tok), seed=1), tok, tmp_path / "a.gguf")  # a GGUF is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "notes.gguf"]


# (quant, max |logit difference| allowed against HF fp32 on the tiny model; seen by hand: f16 3e-4, q8_0 7e-3, q4_k_m 3e-2)
@pytest.mark.parametrize(
    ("quant", "atol", "tie"),
    [("f32", 1e-3, True), ("f16", 2e-3, True), ("f16", 2e-3, False), ("q8_0", 3e-2, True), ("q4_k_m", 1.5e-1, True)],
)
def test_llama_cpp_reproduces_the_hf_logits_and_tokenisation(tmp_path: Path, quant: str, atol: float, tie: bool) -> None:
    llama_cpp_or_skip()  # before the export: K-quants themselves need llama.cpp
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok), tie=tie)
    llm = open_gguf(save_gguf(model, tok, tmp_path / "tiny.gguf", quant=quant))
    try:
        for prompt in PROMPTS:
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
            ids = tok(text)["input_ids"]
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
            diff = np.abs(llama_logits(llm, ids) - hf_logits(model, ids)).max()
            assert diff < atol, f"{quant}: max logit difference {diff}"
    finally:
        llm.close()


def test_llama_cpp_greedy_tokens_equal_hf_for_f16(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    llm = open_gguf(save_gguf(model, tok, tmp_path / "tiny.gguf", quant="f16"))
    try:
        for prompt in PROMPTS:
            ids = tok(prompt)["input_ids"]
            eos = tok.eos_token_id
            assert llama_greedy(llm, ids, 12, eos=eos) == hf_greedy(model, ids, 12, eos=eos)
    finally:
        llm.close()


def test_python_q8_0_bytes_equal_llama_cpp_quantiser(tmp_path: Path) -> None:
    """Our q8_0 file (gguf's Python quantiser) holds the very bytes llama.cpp's own quantiser writes."""
    llama_cpp = llama_cpp_or_skip()
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok), tie=False)
    ours = save_gguf(model, tok, tmp_path / "ours.gguf", quant="q8_0")
    f32 = save_gguf(model, tok, tmp_path / "f32.gguf", quant="f32")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert llama_cpp.llama_model_quantize(str(f32).encode(), str(tmp_path / "ref.gguf").encode(), params) == 0

    def tensors(path: Path) -> dict[str, tuple[str, bytes]]:
        return {t.name: (t.tensor_type.name, np.asarray(t.data).tobytes()) for t in GGUFReader(path).tensors}

    assert tensors(ours) == tensors(tmp_path / "ref.gguf")


def test_k_quant_without_llama_cpp_says_how_to_get_it(tmp_path: Path) -> None:
    """Runs where llama-cpp-python is absent (CI's fast stage installs only the dev extra)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is not None:
        pytest.skip("llama-cpp-python is installed here; the error path needs it absent")
    tok = tiny_tokenizer()
    with pytest.raises(TuneforgeError, match="q4_k_m is quantised by llama.cpp") as info:
        save_gguf(tiny_llama(len(tok)), tok, tmp_path / "tiny.gguf", quant="q4_k_m")
    assert "tuneforge[llama]" in info.value.hint
    assert not (tmp_path / "tiny.gguf").exists()

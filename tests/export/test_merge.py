"""A merged export must be a drop-in replacement for base + adapter, saved safely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, PromptTuningConfig, get_peft_model
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.errors import TuneforgeError
from tuneforge.export.merge import EXPORT_MARKER, merge_adapter, save_merged


def _lora_model(tie: bool, seed: int = 0) -> PeftModel:
    """A LoRA on every linear layer whose B matrices are random, so the adapter is not the identity."""
    base = tiny_llama(vocab_size=len(tiny_tokenizer()), tie=tie, seed=seed)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model.eval()


def _input_ids(vocab_size: int) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, 12), generator=torch.Generator().manual_seed(7))


@torch.no_grad()
def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits.float()


@pytest.mark.parametrize("tie", [True, False])
def test_merged_export_reloads_with_base_plus_adapter_outputs(tmp_path: Path, tie: bool) -> None:
    model = _lora_model(tie)
    ids = _input_ids(model.config.vocab_size)
    expected = _logits(model, ids)
    with model.disable_adapter():
        base_only = _logits(model, ids)
    # Guard: if the adapter were the identity this test could not catch a merge that drops it.
    assert (expected - base_only).abs().max() > 1e-2

    out = save_merged(model, tiny_tokenizer(), tmp_path / "merged")

    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(reloaded).__name__ == "LlamaForCausalLM"
    assert reloaded.config.tie_word_embeddings is tie
    torch.testing.assert_close(_logits(reloaded, ids), expected, atol=1e-4, rtol=0)


def test_only_safetensors_weights_are_written(tmp_path: Path) -> None:
    out = save_merged(_lora_model(tie=True), tiny_tokenizer(), tmp_path / "merged")

    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    assert not [n for n in names if "adapter" in n], "a merged export must not carry adapter files"
    assert json.loads((out / EXPORT_MARKER).read_text())["written_by"] == "tuneforge"
    # The temp sibling used for the atomic write is gone.
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]


def test_tokenizer_and_chat_template_are_saved(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    out = save_merged(_lora_model(tie=True), tokenizer, tmp_path / "merged")

    reloaded = AutoTokenizer.from_pretrained(out)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert reloaded.chat_template == tokenizer.chat_template
    assert reloaded.eos_token == "<|im_end|>"
    assert reloaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == (
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    )


def test_dtype_cast_is_applied_to_saved_weights(tmp_path: Path) -> None:
    out = save_merged(_lora_model(tie=False), tiny_tokenizer(), tmp_path / "merged", dtype=torch.bfloat16)

    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        dtypes = {f.get_slice(key).get_dtype() for key in f.keys()}
    assert dtypes == {"BF16"}


def test_refuses_non_empty_directory_not_written_by_us(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("my only copy")

    with pytest.raises(TuneforgeError, match="not written by a tuneforge export") as info:
        save_merged(_lora_model(tie=True), tiny_tokenizer(), target)

    assert info.value.hint
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_second_export_into_foreign_dir_raises_but_into_our_own_replaces(tmp_path: Path) -> None:
    ours = save_merged(_lora_model(tie=True, seed=0), tiny_tokenizer(), tmp_path / "merged")
    (ours / "stale.txt").write_text("from the first export")

    model = _lora_model(tie=True, seed=3)
    ids = _input_ids(model.config.vocab_size)
    expected = _logits(model, ids)
    save_merged(model, tiny_tokenizer(), ours)

    assert not (ours / "stale.txt").exists(), "the old export is replaced, not merged into"
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(ours), ids), expected, atol=1e-4, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]

    (ours / EXPORT_MARKER).unlink()
    with pytest.raises(TuneforgeError):
        save_merged(_lora_model(tie=True), tiny_tokenizer(), ours)


def test_empty_existing_directory_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = save_merged(_lora_model(tie=True), tiny_tokenizer(), tmp_path / "empty")
    assert (out / "model.safetensors").is_file()


def test_plain_model_is_returned_unchanged() -> None:
    model = tiny_llama(vocab_size=64)
    assert merge_adapter(model) is model


def test_merge_adapter_returns_plain_model_without_peft_layers() -> None:
    merged = merge_adapter(_lora_model(tie=True))
    assert not isinstance(merged, PeftModel)
    assert not [name for name, _ in merged.named_modules() if "lora" in name]


def test_prompt_tuning_cannot_be_merged_and_says_what_to_do(tmp_path: Path) -> None:
    model = get_peft_model(
        tiny_llama(vocab_size=64), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    )
    with pytest.raises(TuneforgeError, match="PROMPT_TUNING") as info:
        merge_adapter(model)
    assert "unmerged" in str(info.value)

    with pytest.raises(TuneforgeError):
        save_merged(model, tiny_tokenizer(), tmp_path / "out")
    assert not list(tmp_path.iterdir()), "nothing is written when the merge is refused"

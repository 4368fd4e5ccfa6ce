"""Merged-adapter inference: same answers as the unmerged model, and the weights restored bit for bit."""

from __future__ import annotations

import pytest
import torch
from peft import IA3Config, LoraConfig, get_peft_model

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.data.prepare import prepare_chat
from tuneforge.data.records import ChatRecord, Message
from tuneforge.evaluate.generate import generate_batch
from tuneforge.evaluate.loss import evaluate_loss
from tuneforge.evaluate.merged import merge_blockers, merged_for_inference

PROMPTS = ["<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
           "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n"]  # fmt: skip


def _lora_model(tok, **config):
    model = get_peft_model(tiny_llama(len(tok), seed=3), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", **config))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # a trained-looking adapter: at init B = 0 and merging would change nothing
            torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def _records():
    pairs = [("What is the capital of France?", "Paris."), ("Say hello.", "Hello there!")]
    return [ChatRecord((Message("user", q), Message("assistant", a)), f"test:{i}") for i, (q, a) in enumerate(pairs)]


@pytest.mark.parametrize("config", [{}, {"use_dora": True}], ids=["lora", "dora"])
def test_merged_inference_gives_the_unmerged_answers_and_restores_the_weights(config):
    tok = tiny_tokenizer()
    model = _lora_model(tok, **config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    examples, _ = prepare_chat(_records(), tok, 64, "truncate")
    unmerged_text = generate_batch(model, tok, PROMPTS, max_new_tokens=8, batch_size=2)
    unmerged_loss = evaluate_loss(model, examples, tok.pad_token_id)["eval_loss"]
    with merged_for_inference(model) as merged:
        assert merged
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if "base_layer" in n)  # really merged
        merged_text = generate_batch(model, tok, PROMPTS, max_new_tokens=8, batch_size=2)
        merged_loss = evaluate_loss(model, examples, tok.pad_token_id)["eval_loss"]
    assert merged_text == unmerged_text
    assert merged_loss == pytest.approx(unmerged_loss, abs=1e-5)
    for n, p in model.named_parameters():  # exactly the tensors that went in, not W + dW - dW
        assert torch.equal(p, before[n]), n
    assert not any(m.merged for m in model.modules() if hasattr(m, "merged_adapters"))
    assert evaluate_loss(model, examples, tok.pad_token_id)["eval_loss"] == unmerged_loss


def test_weights_come_back_when_the_evaluation_fails():
    tok = tiny_tokenizer()
    model = _lora_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"):
        with merged_for_inference(model):
            raise RuntimeError("boom")
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_what_is_not_merged_and_why():
    tok = tiny_tokenizer()
    model = _lora_model(tok)
    assert merge_blockers(model) is None
    assert "autocast" in merge_blockers(model, torch.bfloat16)  # a bf16-rounded merged weight loses the delta's low bits
    assert merge_blockers(tiny_llama(len(tok))) == "not a peft model"
    with model.disable_adapter():  # evaluating "the base" through a disabled adapter must not merge it in
        assert "disabled" in merge_blockers(model)
        with merged_for_inference(model) as merged:
            assert not merged
    model.train()
    assert merge_blockers(model) == "the model is training"
    ia3 = get_peft_model(tiny_llama(len(tok)), IA3Config(target_modules=["q_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])).eval()
    assert "IA3" in merge_blockers(ia3)
    bf16 = _lora_model(tok)
    bf16.get_base_model().model.layers[0].self_attn.q_proj.base_layer.to(torch.bfloat16)
    assert "not fp32" in merge_blockers(bf16)

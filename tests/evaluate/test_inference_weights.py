"""tuneforge eval stores frozen linears in the autocast dtype: the same answers and losses bit for bit,
half the linear memory; nothing changes without autocast or for adapters other than plain LoRA."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from rich.console import Console

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.data.render import Tokenized, render_prompt
from tuneforge.evaluate.command import evaluate_target
from tuneforge.evaluate.generate import generate_batch
from tuneforge.evaluate.inference_weights import store_linears_for_inference
from tuneforge.evaluate.loss import evaluate_loss
from tuneforge.models.load import load_model, load_tokenizer

BF16 = torch.bfloat16
PROMPTS = ["<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "The quick brown fox", "Hello! How are", "A"]


def _lora(tok, **extra):
    model = get_peft_model(tiny_llama(len(tok), tie=True, seed=4), LoraConfig(r=2, target_modules=["q_proj", "v_proj", "down_proj"], **extra))
    for name, p in model.named_parameters():  # a non-identity adapter, so its path is compared too
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model.eval()


def _answers_and_loss(model, tok) -> tuple[list[str], float]:
    ids = tok(PROMPTS[0] + "Fine, thanks.<|im_end|>", add_special_tokens=False)["input_ids"]
    example = Tokenized(input_ids=ids, labels=[-100] * 10 + ids[10:], source="test")
    answers = generate_batch(model, tok, PROMPTS, max_new_tokens=10, batch_size=2, autocast_dtype=BF16)
    return answers, evaluate_loss(model, [example], tok.pad_token_id, autocast_dtype=BF16)["eval_loss"]


def test_a_lora_model_answers_and_scores_bit_for_bit_as_loaded() -> None:
    tok = tiny_tokenizer()
    model = _lora(tok)
    before = _answers_and_loss(model, tok)
    assert store_linears_for_inference(model, BF16) > 0
    base = model.get_base_model()
    assert base.model.layers[0].mlp.gate_proj.weight.dtype == BF16
    assert base.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == BF16
    assert base.model.embed_tokens.weight.dtype == torch.float32 and base.lm_head.weight is base.model.embed_tokens.weight
    assert not any(p.requires_grad for p in model.parameters())
    assert _answers_and_loss(model, tok) == before and any(before[0])


def test_a_plain_model_is_frozen_and_stored_too() -> None:
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok), tie=False, seed=6)
    before = _answers_and_loss(model, tok)
    assert store_linears_for_inference(model, BF16) > 0
    assert model.lm_head.weight.dtype == BF16  # an untied head is an ordinary linear layer
    assert _answers_and_loss(model, tok) == before


def test_nothing_changes_without_autocast_or_for_dora() -> None:
    tok = tiny_tokenizer()
    model = _lora(tok)
    assert store_linears_for_inference(model, None) == 0
    dora = _lora(tok, use_dora=True)
    assert store_linears_for_inference(dora, BF16) == 0
    assert all(p.dtype == torch.float32 for p in list(model.parameters()) + list(dora.parameters()))


def test_tuneforge_eval_under_bf16_says_so_and_answers_as_the_fp32_weights_do(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say {w}", "output": w}) + "\n" for w in ("yes", "no", "maybe")))
    log = io.StringIO()
    evaluate_target(
        str(tiny_model_dir), data, metrics=["exact_match"], out=tmp_path / "eval", max_new_tokens=4, precision="bf16", console=Console(file=log, width=200),
    )  # fmt: skip
    assert "frozen linear weights stored in bfloat16 for inference" in log.getvalue()
    got = [json.loads(line)["prediction"] for line in (tmp_path / "eval" / "predictions-model.jsonl").read_text().splitlines()]
    # the reference: the same directory loaded in fp32 and generated under the same autocast
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    prompts = [render_prompt(tok, [{"role": "user", "content": f"Say {w}"}]) for w in ("yes", "no", "maybe")]
    assert got == generate_batch(model, tok, prompts, max_new_tokens=4, autocast_dtype=BF16)

"""Generation, rollouts and the held-out loss under autocast cast the output head once per call
(models/autocast_head.py): their results equal those of the head cast on every step."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.data.render import Tokenized
from tuneforge.evaluate.generate import GenerationPlan, generate_batch
from tuneforge.evaluate.loss import evaluate_loss

BF16 = torch.bfloat16


def test_a_peft_model_under_autocast_generates_and_scores_as_before() -> None:
    """generate_batch and evaluate_loss enter the context; outputs equal those with the head cast every step."""
    tok = tiny_tokenizer()
    model = get_peft_model(tiny_llama(len(tok), tie=True, seed=5), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    prompts = ["<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "The quick brown fox", "Hello! How are"]
    base = model.get_base_model()
    seen: list[torch.dtype] = []  # the head's dtype while each batch ends, inside the call
    once = generate_batch(model, tok, prompts, max_new_tokens=10, batch_size=2, autocast_dtype=BF16, on_batch=lambda n: seen.append(base.lm_head.weight.dtype))
    every = generate_batch(
        model, tok, prompts, max_new_tokens=10, batch_size=2, autocast_dtype=BF16, plan=GenerationPlan(head_cast_once=False),
        on_batch=lambda n: seen.append(base.lm_head.weight.dtype),
    )  # fmt: skip
    assert once == every and any(once)
    assert seen == [BF16, BF16, torch.float32, torch.float32]
    assert base.lm_head.weight is base.model.embed_tokens.weight and base.lm_head.weight.dtype == torch.float32
    ids = tok(prompts[0] + "Fine, thanks.<|im_end|>", add_special_tokens=False)["input_ids"]
    example = Tokenized(input_ids=ids, labels=[-100] * 12 + ids[12:], source="test")
    with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
        expected = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, :-1].float()
    manual = torch.nn.functional.cross_entropy(expected[11:], torch.tensor(ids[12:]))
    got = evaluate_loss(model, [example], tok.pad_token_id, autocast_dtype=BF16)["eval_loss"]
    assert got == pytest.approx(float(manual), rel=1e-6)


def test_sampled_rollouts_under_autocast_are_those_of_the_head_cast_every_step() -> None:
    from tuneforge.data.records import Message, PromptRecord  # lazy: only the rollout test needs records
    from tuneforge.train.rollout import Sampling, generate_rollout  # lazy: as above

    tok = tiny_tokenizer()
    model = get_peft_model(tiny_llama(len(tok), tie=True, seed=2), LoraConfig(r=2, target_modules=["q_proj"]))
    records = [PromptRecord((Message("user", f"Say a word about {w}"),), f"p.jsonl:{i}", {}) for i, w in enumerate(["fox", "owl"])]
    sampling = Sampling(num_generations=2, max_completion_length=8)
    head = model.get_base_model().lm_head
    assert not head.weight.requires_grad  # frozen by peft: cast once for the call
    torch.manual_seed(7)
    once = generate_rollout(model, tok, records, sampling, autocast_dtype=BF16)
    head.weight.requires_grad_(True)  # could train inside: cast on every step, as autocast does
    torch.manual_seed(7)
    every = generate_rollout(model, tok, records, sampling, autocast_dtype=BF16)
    assert torch.equal(once.completion_ids, every.completion_ids) and once.completions == every.completions

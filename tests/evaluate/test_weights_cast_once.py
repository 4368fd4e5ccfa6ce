"""Generation, rollouts and the held-out loss under autocast cast the linear weights once per call
(models/autocast_weights.py): their results equal those of autocast's own per-step casts."""

from __future__ import annotations

import contextlib

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.data.render import Tokenized
from tuneforge.evaluate.generate import GenerationPlan, generate_batch
from tuneforge.evaluate.loss import evaluate_loss

BF16 = torch.bfloat16
PROMPTS = ["<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "The quick brown fox", "Hello! How are"]


def _lora(tok, seed: int, targets: list[str]):
    model = get_peft_model(tiny_llama(len(tok), tie=True, seed=seed), LoraConfig(r=2, target_modules=targets))
    for name, p in model.named_parameters():  # a non-identity adapter, so its layers are compared too
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model


def _dtypes_seen(model) -> tuple[list[tuple[torch.dtype, torch.dtype]], torch.utils.hooks.RemovableHandle]:
    """(base q_proj weight, head weight) dtypes at every forward of the first layer's q_proj."""
    base = model.get_base_model()
    q = base.model.layers[0].self_attn.q_proj
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    handle = q.register_forward_hook(lambda m, a, o: seen.append((q.base_layer.weight.dtype, base.lm_head.weight.dtype)))
    return seen, handle


@pytest.mark.parametrize("scope", ["head", "none"])
def test_generation_and_loss_under_autocast_equal_the_per_step_casts(scope: str) -> None:
    """generate_batch copies every plain linear once; its answers equal those of the other scopes."""
    tok = tiny_tokenizer()
    model = _lora(tok, 5, ["q_proj", "v_proj"])
    base = model.get_base_model()
    seen, handle = _dtypes_seen(model)
    once = generate_batch(model, tok, PROMPTS, max_new_tokens=10, batch_size=2, autocast_dtype=BF16)
    assert seen and set(seen) == {(BF16, BF16)}
    seen.clear()
    other = generate_batch(model, tok, PROMPTS, max_new_tokens=10, batch_size=2, autocast_dtype=BF16, plan=GenerationPlan(cast_once=scope))
    handle.remove()
    assert set(seen) == {(torch.float32, BF16 if scope == "head" else torch.float32)}
    assert once == other and any(once)
    assert base.lm_head.weight is base.model.embed_tokens.weight and base.lm_head.weight.dtype == torch.float32
    assert base.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.float32


def test_the_held_out_loss_equals_a_manual_autocast_forward() -> None:
    tok = tiny_tokenizer()
    model = _lora(tok, 5, ["q_proj", "v_proj"])
    ids = tok(PROMPTS[0] + "Fine, thanks.<|im_end|>", add_special_tokens=False)["input_ids"]
    example = Tokenized(input_ids=ids, labels=[-100] * 12 + ids[12:], source="test")
    with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
        expected = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, :-1].float()
    manual = torch.nn.functional.cross_entropy(expected[11:], torch.tensor(ids[12:]))
    seen, handle = _dtypes_seen(model)
    got = evaluate_loss(model, [example], tok.pad_token_id, autocast_dtype=BF16)["eval_loss"]
    handle.remove()
    assert set(seen) == {(BF16, BF16)}
    assert got == pytest.approx(float(manual), rel=1e-6)


def test_sampled_rollouts_under_autocast_are_those_of_the_per_step_casts(monkeypatch) -> None:
    from tuneforge.data.records import Message, PromptRecord  # lazy: only the rollout test needs records
    from tuneforge.train import rollout  # lazy: as above
    from tuneforge.train.rollout import Sampling, generate_rollout  # lazy: as above

    tok = tiny_tokenizer()
    model = _lora(tok, 2, ["q_proj"])
    records = [PromptRecord((Message("user", f"Say a word about {w}"),), f"p.jsonl:{i}", {}) for i, w in enumerate(["fox", "owl"])]
    sampling = Sampling(num_generations=2, max_completion_length=8)
    seen, handle = _dtypes_seen(model)
    torch.manual_seed(7)
    once = generate_rollout(model, tok, records, sampling, autocast_dtype=BF16)
    assert set(seen) == {(BF16, BF16)}
    seen.clear()
    monkeypatch.setattr(rollout, "weights_cast_once", lambda model, dtype: contextlib.nullcontext(0))  # autocast's own casts
    torch.manual_seed(7)
    every = generate_rollout(model, tok, records, sampling, autocast_dtype=BF16)
    handle.remove()
    assert set(seen) == {(torch.float32, torch.float32)}
    assert torch.equal(once.completion_ids, every.completion_ids) and once.completions == every.completions

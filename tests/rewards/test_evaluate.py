"""evaluate_prompts: greedy answers scored by the run's rewards; accuracy from answer_match."""

from __future__ import annotations

import torch

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config.rewards import reward_spec
from tuneforge.data.records import Message, PromptRecord
from tuneforge.evaluate.generate import generate_batch
from tuneforge.rewards import build_scorer
from tuneforge.rewards.evaluate import evaluate_prompts
from tuneforge.rewards.scorer import prompt_text


def test_accuracy_and_means_match_the_greedy_completions():
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    model = tiny_llama(len(tokenizer))
    records = [PromptRecord((Message("user", f"q{i}"),), f"f:{i}", {"answer": str(i)}) for i in range(6)]
    scorer = build_scorer([reward_spec({"type": "answer_match", "extract": "last_number"}), reward_spec({"type": "length_penalty", "max_length": 3})], tokenizer=tokenizer)
    result = evaluate_prompts(model, tokenizer, records, scorer, max_new_tokens=5, batch_size=4)
    greedy = generate_batch(model, tokenizer, [prompt_text(r, tokenizer) for r in records], max_new_tokens=5, batch_size=4)
    scores = scorer(records, greedy)
    right = scores.per_reward["answer_match"]
    assert result["prompts"] == 6 and result["accuracy"] == sum(v > 0 for v in right) / 6
    assert result["reward"] == sum(scores.total) / 6
    assert result["rewards"]["length_penalty"] == sum(scores.per_reward["length_penalty"]) / 6
    assert [s["completion"] for s in result["samples"]] == greedy[:5]
    no_verifier = build_scorer([reward_spec({"type": "format"})])
    assert evaluate_prompts(model, tokenizer, records[:2], no_verifier, max_new_tokens=2, batch_size=2)["accuracy"] is None

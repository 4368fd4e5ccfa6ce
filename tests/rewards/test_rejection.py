"""Rejection sampling keeps exactly the completions that pass, per prompt, best first."""

from __future__ import annotations

import torch

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config.rewards import reward_spec
from tuneforge.config.rft import RftOptions
from tuneforge.data.records import Message, PromptRecord
from tuneforge.objectives.reward_scores import RewardScores
from tuneforge.rewards import build_scorer
from tuneforge.rewards.rejection import accepted, as_chat, passes, sample_completions

EVEN_CODE = '''
def even(prompts, completions, **columns):
    return [float(len(c) % 2 == 0) + len(c) / 1000 for c in completions]
'''


def rec(i: int) -> PromptRecord:
    return PromptRecord((Message("user", f"question {i}"),), f"f.jsonl:{i}", {"answer": str(i)})


def test_verifier_acceptance_on_fixed_scores():
    records = [rec(1), rec(2)]
    completions = ["a", "b", "a", "c", "d", "e"]
    scores = RewardScores(total=[3.0, 2.0, 3.0, 0.5, 1.0, 9.0], per_reward={"answer_match": [1.0, 1.0, 1.0, None, 1.0, 0.0]})
    options = RftOptions(samples_per_prompt=3, max_per_prompt=3)
    kept, passed = accepted(records, completions, scores, options, ["answer_match"])
    assert passed == 4  # None (not verifiable) and 0 are rejected
    assert [(k.record.source, k.completion, k.total) for k in kept] == [("f.jsonl:1", "a", 3.0), ("f.jsonl:1", "b", 2.0), ("f.jsonl:2", "d", 1.0)]
    one, _ = accepted(records, completions, scores, options.model_copy(update={"max_per_prompt": 1}), ["answer_match"])
    assert [k.completion for k in one] == ["a", "d"]
    nodedupe, _ = accepted(records, completions, scores, options.model_copy(update={"dedupe": False}), ["answer_match"])
    assert [k.completion for k in nodedupe] == ["a", "a", "b", "d"]
    threshold = options.model_copy(update={"accept": "threshold", "threshold": 2.5})
    assert [k.completion for k in accepted(records, completions, scores, threshold, [])[0]] == ["a", "e"]


def test_kept_completions_become_trained_assistant_turns():
    kept, _ = accepted([rec(1)], ["#### 1"], RewardScores([1.0], {"v": [1.0]}), RftOptions(samples_per_prompt=1), ["v"])
    (chat,) = as_chat(kept)
    assert chat.messages[-1] == Message("assistant", "#### 1") and chat.completion_start == 1 and chat.source == "f.jsonl:1"


def test_tiny_model_samples_are_filtered_exactly(tmp_path):
    (tmp_path / "even.py").write_text(EVEN_CODE)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    model = tiny_llama(len(tokenizer))
    records = [rec(i) for i in range(3)]
    options = RftOptions(samples_per_prompt=4, max_new_tokens=6, temperature=1.0, max_per_prompt=4, dedupe=False, accept="threshold", threshold=1.0)
    torch.manual_seed(1)
    completions = sample_completions(model, tokenizer, records, options)
    assert len(completions) == 12
    torch.manual_seed(1)
    assert sample_completions(model, tokenizer, records, options) == completions  # seeded sampling repeats
    scorer = build_scorer([reward_spec({"type": "function", "function": f"{tmp_path / 'even.py'}:even"})])
    scores = scorer([r for r in records for _ in range(4)], completions)
    kept, passed = accepted(records, completions, scores, options, [])
    expected = [(records[i // 4].source, c) for i, c in enumerate(completions) if len(c) % 2 == 0]
    assert passed == len(expected) and 0 < passed < 12  # the seed gives a mix, so the filter is exercised
    assert sorted((k.record.source, k.completion) for k in kept) == sorted(expected)
    assert all(passes(scores, i, options, []) == (len(c) % 2 == 0) for i, c in enumerate(completions))

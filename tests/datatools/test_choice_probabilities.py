"""A local judge's P(answer 1 is better) from its next-token probabilities: against a hand-computed forward,
independent of batching and padding, and the setting that chooses it."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config.judge_client import JudgeClient
from tuneforge.datatools.choice_probabilities import CHOICES, VERDICT_OPENING, first_answer_probabilities
from tuneforge.datatools.pairwise import pairwise_prompt

SYSTEM = "You compare two answers."


@pytest.fixture(scope="module")
def judge():
    tok = tiny_tokenizer()
    return tiny_llama(len(tok)).eval(), tok


def reference(model, tok, question: str) -> float:
    """The same probability the long way: the full chat text with each choice, the two next-token logits."""
    text = tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    text += VERDICT_OPENING
    ids = [tok(text + c, add_special_tokens=False)["input_ids"] for c in CHOICES]
    common = next(i for i, (x, y) in enumerate(zip(*ids)) if x != y)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[0][:common]])).logits[0, -1]
    pair = logits[[ids[0][common], ids[1][common]]]
    return float(torch.softmax(pair.float(), dim=-1)[0])


def test_probabilities_match_the_full_forward_whatever_the_batch(judge):
    model, tok = judge
    questions = [pairwise_prompt("Say hi", "hi", "hello there friend"), pairwise_prompt("Count", "one two three four five", "1")]
    batched = first_answer_probabilities(model, tok, questions, SYSTEM, batch_size=2)  # different lengths: left padding
    alone = [first_answer_probabilities(model, tok, [q], SYSTEM)[0] for q in questions]
    expected = [reference(model, tok, q) for q in questions]
    assert all(0.0 < p < 1.0 for p in batched)
    assert batched == pytest.approx(expected, abs=1e-5) and alone == pytest.approx(expected, abs=1e-5)


def test_verdict_setting_defaults_to_probabilities_for_a_local_judge_only():
    from tuneforge.datatools.judge import EndpointJudge, make_backend

    assert JudgeClient().verdict == "auto"
    remote = make_backend(JudgeClient(endpoint="http://127.0.0.1:9/v1"))
    assert isinstance(remote, EndpointJudge) and not getattr(remote, "verdict_probabilities", False)
    with pytest.raises(ValueError, match="verdict 'probabilities'"):
        JudgeClient(endpoint="http://127.0.0.1:9/v1", verdict="probabilities")

"""The held-out loss scored from the generation's prefill equals evaluate_loss's, and generation is unchanged."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.data.prepare import prepare_chat
from tuneforge.data.records import ChatRecord, Message
from tuneforge.data.render import render_prompt
from tuneforge.evaluate.generate import generate_batch
from tuneforge.evaluate.loss import evaluate_loss
from tuneforge.evaluate.shared_loss import combined_loss, continuation_after, remaining_examples, shared_loss_for

PAIRS = [
    ("What is the capital of France?", "Paris."),
    ("Say hello.", "Hello there, nice to meet you!"),
    ("Return JSON with a name.", '{"name": "Ada"}'),
    ("A", "B"),  # a one-token answer: only the prefill's own logits score it
    ("Please return the fields as JSON: name, date, amount, and currency.", '{"name": "x", "date": "2024-01-01"}'),
]


def _records() -> list[ChatRecord]:
    rows = [ChatRecord((Message("user", q), Message("assistant", a)), f"t.jsonl:{i + 1}") for i, (q, a) in enumerate(PAIRS)]
    # multi-turn: the earlier assistant turn is trained too, so it cannot share the generation prompt's prefill
    rows.append(ChatRecord((Message("user", "Hi"), Message("assistant", "Hello."), Message("user", "Bye"), Message("assistant", "Goodbye.")), "t.jsonl:6"))
    return rows


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(len(tok), tie=False, seed=2).eval()


def _shared(model, tok, records, batch_size: int):
    examples, _ = prepare_chat(records, tok, 128, "truncate")
    prompts = [render_prompt(tok, r.as_dicts()) for r in records]
    ids = tok(prompts, add_special_tokens=False)["input_ids"]
    shared = shared_loss_for(examples, [r.source for r in records], ids, tok.pad_token_id)
    texts = generate_batch(model, tok, prompts, max_new_tokens=6, batch_size=batch_size, on_prefill=shared)
    rest = evaluate_loss(model, remaining_examples(examples, [r.source for r in records], shared), tok.pad_token_id)
    return examples, prompts, shared, texts, combined_loss(shared, rest)


@pytest.mark.parametrize("batch_size", [3, 6], ids=["batches-of-3", "one-batch"])
def test_loss_from_the_prefill_equals_the_separate_loss(model, tok, batch_size):
    records = _records()
    examples, prompts, shared, texts, scores = _shared(model, tok, records, batch_size)
    reference = evaluate_loss(model, examples, tok.pad_token_id)
    assert scores["eval_tokens"] == reference["eval_tokens"]
    assert scores["eval_loss"] == pytest.approx(reference["eval_loss"], abs=1e-5)
    assert scores["perplexity"] == pytest.approx(reference["perplexity"], rel=1e-5)
    assert sorted(shared.scored) == [0, 1, 2, 3, 4]  # every single-turn example shared; the multi-turn one did not
    for i, (total, n) in shared.scored.items():  # and per example, not only in sum
        alone = evaluate_loss(model, [examples[i]], tok.pad_token_id)
        assert n == alone["eval_tokens"] and total / n == pytest.approx(alone["eval_loss"], abs=1e-5)
    assert texts == generate_batch(model, tok, prompts, max_new_tokens=6, batch_size=batch_size)  # decoding unchanged by the hook


def test_a_batch_of_one_falls_back_to_the_separate_loss(model, tok):
    records = _records()[:2]
    examples, _, shared, _, scores = _shared(model, tok, records, 1)
    assert shared.scored == {}  # generate decoded those: no prefill to share
    assert scores == evaluate_loss(model, examples, tok.pad_token_id)


def test_only_an_exact_untrained_prompt_prefix_shares(tok):
    examples, _ = prepare_chat(_records(), tok, 128, "truncate")
    prompt = tok(render_prompt(tok, _records()[0].as_dicts()), add_special_tokens=False)["input_ids"]
    cont = continuation_after(examples[0], prompt)
    assert cont is not None and list(prompt) + list(cont.ids) == examples[0].input_ids
    assert continuation_after(examples[0], prompt[:-1] + [prompt[-1] + 1]) is None  # another prompt
    assert continuation_after(examples[0], examples[0].input_ids) is None  # nothing after it
    multi = examples[5]
    multi_prompt = tok(render_prompt(tok, _records()[5].as_dicts()), add_special_tokens=False)["input_ids"]
    assert multi.input_ids[: len(multi_prompt)] == multi_prompt and continuation_after(multi, multi_prompt) is None  # trained inside

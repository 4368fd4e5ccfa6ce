"""generate_batch and RowBatch: token-equal to plain ``model.generate``; rows dropped, joined and trimmed correctly."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.evaluate.generate import BatchTiming, GenerationPlan, RowBatch, generate_batch, greedy_rows, rows_supported

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox",
    "Please return the fields as JSON: name, date, amount, and currency.",
    "Hello! How are",
    "A",
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(len(tok), tie=False, seed=1)


def _plain(model, tok, prompt: str, n: int) -> list[int]:
    """One prompt alone through ``model.generate`` (no padding at all): the reference."""
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, do_sample=False, max_new_tokens=n, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    row = out[0, enc["input_ids"].shape[1]:].tolist()
    return row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row


def test_rows_equal_generate_one_at_a_time_and_in_a_batch(model, tok) -> None:
    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    ref = [_plain(model, tok, p, 12) for p in PROMPTS]
    assert len({tuple(r) for r in ref}) > 3, "degenerate reference"
    got = greedy_rows(model, rows, max_new_tokens=12, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    assert got == ref


SYSTEM = "<|im_start|>system\nYou are a helpful assistant. Answer the question briefly and clearly.<|im_end|>\n"
SHARED = [SYSTEM + p for p in PROMPTS[:4]]  # a common system prompt, then different questions


def test_a_shared_prompt_prefix_is_prefilled_once_and_decodes_like_generate(model, tok) -> None:
    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in SHARED]
    prefix = len(tok(SYSTEM, add_special_tokens=False)["input_ids"])
    assert prefix >= 16, "the test needs a prefix long enough to share"
    with torch.inference_mode():
        batch, _ = RowBatch.start(model, rows, 0)
        plain, _ = RowBatch.start(model, rows, 0, share_prefix=False)
    width = max(len(r) for r in rows)
    assert batch.mask[:, :prefix].all() and batch.mask.shape[1] == plain.mask.shape[1] == width
    assert torch.equal(batch.positions, plain.positions)
    # the shared rows' cache holds the prefix once per row, the same states a left-padded row computes
    for (k, v, *_), (pk, pv, *_) in zip(batch.cache, plain.cache):
        for i, row in enumerate(rows):
            own = slice(width - len(row), width)
            shared_cols = torch.cat([torch.arange(prefix), torch.arange(width - len(row) + prefix, width)])
            assert torch.allclose(k[i, :, shared_cols], pk[i, :, own], atol=1e-5)
            assert torch.allclose(v[i, :, shared_cols], pv[i, :, own], atol=1e-5)
    ref = [_plain(model, tok, p, 12) for p in SHARED]
    assert len({tuple(r) for r in ref}) > 2, "degenerate reference"
    assert greedy_rows(model, rows, max_new_tokens=12, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id) == ref
    assert generate_batch(model, tok, SHARED, max_new_tokens=12, batch_size=4) == [tok.decode(r, skip_special_tokens=True).strip() for r in ref]


def test_finished_rows_leave_the_batch(model, tok) -> None:
    """With an EOS that some rows hit early, those rows are dropped and the rest still match generate."""
    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    long = greedy_rows(model, rows, max_new_tokens=10, eos_id=None, pad_id=0)
    eos = long[0][2]  # a token row 0 produces at step 3: row 0 (and any other row producing it) ends there
    got = greedy_rows(model, rows, max_new_tokens=10, eos_id=eos, pad_id=0)
    for row_long, row in zip(long, got):
        cut = row_long.index(eos) + 1 if eos in row_long else len(row_long)
        assert row == row_long[:cut]
    assert len(got[0]) == 3 and any(len(r) == 10 for r in got), "the test needs rows of both kinds"


def test_extend_and_keep_equal_separate_decoding(model, tok) -> None:
    """A row joining a batch mid-decode (the server's continuous batching) gets generate's tokens."""
    a = tok(PROMPTS[0], add_special_tokens=False)["input_ids"]
    b = tok(PROMPTS[2], add_special_tokens=False)["input_ids"]
    c = tok(PROMPTS[3], add_special_tokens=False)["input_ids"]  # longer than a's prompt plus 3 tokens: the batch gets padded
    with torch.inference_mode():
        batch, logits = RowBatch.start(model, [a, b], 0)
        seq = [[], [], []]
        for _ in range(3):
            t = logits.argmax(-1)
            for i, x in enumerate(t.tolist()):
                seq[i].append(x)
            logits = batch.step(t)
        joined, lc = RowBatch.start(model, [c], 0)
        batch.extend(joined)
        logits = torch.cat([logits, lc])
        for step in range(6):
            t = logits.argmax(-1)
            for i, x in enumerate(t.tolist()):
                seq[[0, 1, 2][i] if len(batch) == 3 else [0, 2][i]].append(x)
            if step == 1:  # drop row b, then the padding columns nobody needs
                batch.keep([0, 2])
                t = t[[0, 2]]
            logits = batch.step(t)
    assert seq[0] == _plain(model, tok, PROMPTS[0], 9)[: len(seq[0])]
    assert seq[1] == _plain(model, tok, PROMPTS[2], 5)
    assert seq[2] == _plain(model, tok, PROMPTS[3], 6)


def test_generate_batch_plans_agree_and_time_batches(model, tok) -> None:
    timings: list[BatchTiming] = []
    fast = generate_batch(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, timings=timings)
    hf = generate_batch(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, plan=GenerationPlan(loop="hf", sort_by_length=False))
    static = generate_batch(model, tok, PROMPTS, max_new_tokens=8, batch_size=3, plan=GenerationPlan(loop="hf", cache="static"))
    assert fast == hf == static
    assert [t.n_prompts for t in timings] == [4, 2]
    assert sum(t.prompt_tokens for t in timings) == sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS)
    assert all(0 < t.first_token_s <= t.total_s for t in timings)
    assert all(0 < t.new_tokens <= t.n_prompts * 8 for t in timings)


def test_a_batch_of_one_goes_to_generate_and_larger_ones_to_the_row_loop(model, tok, monkeypatch) -> None:
    calls: list[int] = []
    real = model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)  # this test's own spy on the instance
    timings: list[BatchTiming] = []
    one = generate_batch(model, tok, PROMPTS[:3], max_new_tokens=6, batch_size=1, timings=timings)
    assert calls == [1, 1, 1] and all(0 < t.first_token_s <= t.total_s for t in timings)
    calls.clear()
    many = generate_batch(model, tok, PROMPTS[:3], max_new_tokens=6, batch_size=3)
    assert calls == [] and one == many


def test_prompt_learning_adapters_fall_back_to_generate(model, tok) -> None:
    from peft import PromptTuningConfig, get_peft_model

    peft_model = get_peft_model(tiny_llama(len(tok), seed=1), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    assert rows_supported(model) and not rows_supported(peft_model)
    assert len(generate_batch(peft_model, tok, PROMPTS[:2], max_new_tokens=4)) == 2

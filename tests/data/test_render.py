"""Loss masks against the tokenizer's own apply_chat_template, token for token."""

import pytest

from tuneforge.data.prepare import prepare_chat, prepare_text, split_examples
from tuneforge.data.records import ChatRecord, Message, TextRecord
from tuneforge.data.render import IGNORE_INDEX, render_chat
from tuneforge.errors import DataError

SINGLE = ChatRecord((Message("user", "What is the capital of France?"), Message("assistant", "Paris.")), "t:1")
MULTI = ChatRecord(
    (
        Message("system", "You are terse."),
        Message("user", "Hello!"),
        Message("assistant", "Hi."),
        Message("user", "Capital of France?"),
        Message("assistant", "Paris, the capital."),
    ),
    "t:2",
)


def template_ids(tok, rec):
    out = tok.apply_chat_template(rec.as_dicts(), tokenize=True, return_dict=True)
    return list(out["input_ids"])


def check_mask(tok, rec):
    ex = render_chat(tok, rec)
    assert ex.input_ids == template_ids(tok, rec)
    # Trained tokens decode to exactly the assistant contents, each followed by the end-of-turn token.
    trained_runs, run = [], []
    for tid, lab in zip(ex.input_ids, ex.labels):
        if lab == IGNORE_INDEX:
            if run:
                trained_runs.append(run)
                run = []
        else:
            assert lab == tid
            run.append(tid)
    if run:
        trained_runs.append(run)
    answers = [m.content for m in rec.messages if m.role == "assistant"]
    assert len(trained_runs) == len(answers)
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    for run, answer in zip(trained_runs, answers):
        assert eos in run, "the end-of-turn token must be trained so the model learns to stop"
        text = tok.decode(run[: run.index(eos)])
        assert text == answer
    return ex


@pytest.mark.parametrize("rec", [SINGLE, MULTI], ids=["single", "multi"])
def test_mask_matches_template_tiny(tokenizer, rec):
    check_mask(tokenizer, rec)


@pytest.mark.slow
@pytest.mark.parametrize("rec", [SINGLE, MULTI], ids=["single", "multi"])
def test_mask_matches_template_builtin(rec):
    from tuneforge.models.load import load_tokenizer

    check_mask(load_tokenizer("smollm2-135m-instruct"), rec)


def test_no_template_is_a_clear_error(tokenizer):
    tokenizer.chat_template = None
    with pytest.raises(DataError, match="no chat template"):
        render_chat(tokenizer, SINGLE)


def test_truncate_policy_counts_and_never_empties_labels(tokenizer):
    long_prompt = ChatRecord((Message("user", "word " * 200), Message("assistant", "ok")), "t:3")
    n_full = len(render_chat(tokenizer, SINGLE).input_ids)
    examples, report = prepare_chat([SINGLE, long_prompt], tokenizer, max_length=n_full + 5, overlong="truncate")
    assert len(examples) == 1 and report.truncated == 1
    assert len(report.dropped) == 1 and "no assistant token left" in report.dropped[0].reason and report.dropped[0].source == "t:3"


def test_drop_policy(tokenizer):
    n = len(render_chat(tokenizer, SINGLE).input_ids)
    examples, report = prepare_chat([SINGLE, MULTI], tokenizer, max_length=n, overlong="drop")
    assert [e.source for e in examples] == ["t:1"]
    assert report.truncated == 0 and [d.source for d in report.dropped] == ["t:2"]


def test_all_dropped_is_an_error(tokenizer):
    with pytest.raises(DataError, match="no training examples left"):
        prepare_chat([MULTI], tokenizer, max_length=8, overlong="drop")


def test_text_chunking_keeps_every_token(tokenizer):
    docs = [TextRecord("The quick brown fox jumps over the lazy dog. " * 5, "a:1"), TextRecord("Hello there.", "a:2")]
    examples, report = prepare_text(docs, tokenizer, max_length=16)
    stream = [t for e in examples for t in e.input_ids]
    expected = []
    for d in docs:
        expected += tokenizer(d.text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert stream == expected
    assert all(len(e.input_ids) <= 16 for e in examples)
    assert all(e.labels == e.input_ids for e in examples)
    assert report.trained_tokens == report.tokens == len(expected)


def test_split_is_seeded_and_disjoint(tokenizer):
    examples, _ = prepare_chat([SINGLE] * 10, tokenizer, 512, "truncate")
    a_train, a_val = split_examples(examples, 0.2, seed=1)
    b_train, b_val = split_examples(examples, 0.2, seed=1)
    assert len(a_val) == 2 and len(a_train) == 8
    assert [id(e) for e in a_val] == [id(e) for e in b_val]

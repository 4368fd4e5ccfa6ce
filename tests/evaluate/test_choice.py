"""Multiple choice by log-likelihood: the pick is the argmax of log-probs computed directly with the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.data.render import render_prompt
from tuneforge.errors import DataError
from tuneforge.evaluate.choice import choice_accuracy, choice_predictions, option_scores
from tuneforge.evaluate.eval_data import EvalRecord, load_eval_data

OPTIONS = ["Paris", "The capital of France is a city called Lyon, which is not right", "no", "42 and more words here"]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tok = tiny_tokenizer()
    return tiny_llama(len(tok), seed=3), tok


def direct_logprob(model, tok, prompt: str, option: str) -> tuple[float, int]:
    """Sum of log p(option token | everything before), one forward of the unpadded sequence."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    o = tok(option, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + o])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(o)), len(o)


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pick_is_the_argmax_with_and_without_normalisation(model_and_tokenizer, tmp_path: Path) -> None:
    model, tok = model_and_tokenizer
    prompts = ["What is the capital of France?", "Hello! How are you today?", "Answer briefly: 6 * 7"]
    rows = [{"prompt": p, "options": OPTIONS, "answer": 0} for p in prompts]
    records = load_eval_data(write_rows(tmp_path / "mc.jsonl", rows)).records
    picks_by = {}
    for norm in ("none", "tokens", "chars"):
        expected = []
        for record in records:
            prompt = render_prompt(tok, record.as_dicts())
            direct = [direct_logprob(model, tok, prompt, o) for o in OPTIONS]
            if norm == "tokens":
                values = [lp / n for lp, n in direct]
            elif norm == "chars":
                values = [lp / len(o) for (lp, _), o in zip(direct, OPTIONS)]
            else:
                values = [lp for lp, _ in direct]
            expected.append(max(range(len(values)), key=values.__getitem__))
            batched = option_scores(model, tok, prompt, OPTIONS)
            assert [s.logprob for s in batched] == pytest.approx([lp for lp, _ in direct], abs=1e-4)
        picks_by[norm] = choice_predictions(model, tok, records, norm)
        assert picks_by[norm] == expected, norm
        gold_hits = sum(e == 0 for e in expected) / len(expected)
        assert choice_accuracy(picks_by[norm], records) == {"choice_accuracy": pytest.approx(gold_hits)}
    # summed log-likelihood favours the short options; normalising by length must change some pick,
    # or this test could not tell the normalisations apart
    assert picks_by["none"] != picks_by["tokens"] or picks_by["none"] != picks_by["chars"]


def test_choice_rows_are_chat_records_with_the_gold_answer(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "mc.jsonl",
        [
            {"prompt": "2 + 2 =", "options": ["3", "4"], "answer": "4", "category": "arithmetic", "system": "Be brief."},
            {"prompt": "Sky colour?", "options": ["blue", "green"], "answer": 0},
        ],
    )
    first, second = load_eval_data(path).records
    assert isinstance(first, EvalRecord)
    assert first.answer_index == 1 and first.options == ("3", "4") and first.category == "arithmetic"
    assert [m.role for m in first.messages] == ["system", "user", "assistant"] and first.messages[-1].content == "4"
    assert second.category is None and second.messages[-1].content == "blue"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "q", "options": ["a"], "answer": 0}, "field 'options': must be a list of at least two"),
        ({"prompt": "q", "options": ["a", "b"], "answer": 2}, "field 'answer': index 2 is outside the 2 options"),
        ({"prompt": "q", "options": ["a", "b"], "answer": "c"}, "field 'answer': 'c' is not one of the options"),
        ({"prompt": "q", "options": ["a", "b"]}, "field 'answer': missing"),
        ({"prompt": "", "options": ["a", "b"], "answer": 0}, "field 'prompt'"),
        ({"prompt": "q", "options": ["a", "a"], "answer": 0}, "field 'options': options must be distinct"),
        ({"prompt": "q", "options": ["a", "b"], "answer": 0, "category": 3}, "field 'category'"),
    ],
)
def test_bad_choice_rows_name_file_line_and_field(tmp_path: Path, row: dict, message: str) -> None:
    path = write_rows(tmp_path / "mc.jsonl", [{"prompt": "ok", "options": ["x", "y"], "answer": 1}, row])
    with pytest.raises(DataError, match=rf"mc.jsonl:2 {message}"):
        load_eval_data(path)


def test_chat_rows_keep_their_category(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "chat.jsonl",
        [{"instruction": "Say hi", "output": "hi", "category": "greeting"}, {"instruction": "Say bye", "output": "bye"}],
    )
    first, second = load_eval_data(path).records
    assert first.category == "greeting" and second.category is None

"""nlft through its recipe on a tiny random model, with a stub judge: critiques, their cache, verdicts, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config import load_recipe
from tuneforge.data.records import ChatRecord, Message
from tuneforge.recipes import RECIPES
from tuneforge.config.nlft import NlftOptions
from tuneforge.recipes.nlft import critiques, parse_verdict, row_columns, train_nlft, with_context

ROWS = [
    {"instruction": "What is 2+3?", "output": "2+3 = 6", "reference": "2+3 = 5"},
    {"instruction": "What is 4+4?", "output": "4+4 = 8", "reference": "4+4 = 8", "critique": "All steps are right.", "correct": True},
    {"instruction": "What is 1+2?", "output": "1+2 = 3"},
]


class StubJudge:
    def __init__(self, reply: str = "The sum is wrong: 2+3 is 5.\nVerdict: incorrect") -> None:
        self.reply, self.asked = reply, []

    def ask(self, prompts: list[str]) -> list[str]:
        self.asked += prompts
        return [self.reply for _ in prompts]


class NoJudge:
    def ask(self, prompts: list[str]) -> list[str]:
        raise AssertionError(f"the judge was asked {len(prompts)} prompt(s); the cache should answer")


def recipe_for(tmp_path: Path, model_dir: Path, *overrides: str):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    base = {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(tmp_path / "train.jsonl"), "format": "alpaca", "val_fraction": 0.0},
        "objective": {"type": "nlft"},
        "training": {"max_steps": 2, "batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32"},
        "output": {"dir": str(tmp_path / "run")},
    }
    return load_recipe(base=base, overrides=list(overrides))


def test_verdicts_and_context_prompts():
    assert parse_verdict("ok\nVerdict: correct") is True
    assert parse_verdict("Verdict: correct... no wait. Verdict: Incorrect") is False
    assert parse_verdict("no verdict here") is None
    record = ChatRecord((Message("user", "Q?"), Message("assistant", "A")), "f:1")
    assert with_context(record, "Critique", "bad").messages == (Message("user", "Q?\n\nCritique:\nbad"), Message("assistant", "A"))


def test_nlft_trains_with_judged_and_given_critiques_and_caches_them(tmp_path, tiny_model_dir):
    judge = StubJudge()
    result = train_nlft(recipe_for(tmp_path, tiny_model_dir), judge=judge)
    run = result.run_dir
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert result.summary["steps"] == 2 and result.summary["train_loss"] > 0
    notes = [json.loads(x) for x in (run / "nlft" / "critiques.jsonl").read_text().splitlines()]
    assert [n["from"] for n in notes] == ["judge", "row", "judge"]
    assert [n["correct"] for n in notes] == [False, True, False]  # row 2 says so; the stub's verdict for rows 1, 3
    assert notes[2]["reference"] == "1+2 = 3"  # no reference column: the response is its own reference
    assert len(judge.asked) == 2 and "Reference answer:\n2+3 = 5" in judge.asked[0] and "Response:\n2+3 = 6" in judge.asked[0]
    report = json.loads((run / "data_report.json").read_text())["nlft"]
    assert report["correct"] == 1 and report["incorrect"] == 2 and report["dropped"] == []

    # a rerun over the same run dir (e.g. --resume) reads the cache instead of asking again
    records = [ChatRecord((Message("user", r["instruction"]), Message("assistant", r["output"])), f"{tmp_path / 'train.jsonl'}:{i + 1}") for i, r in enumerate(ROWS)]
    columns = row_columns(str(tmp_path / "train.jsonl"))
    assert set(columns) == {r.source for r in records}
    notes = critiques(records, columns, NlftOptions(), run / "nlft" / "critiques.jsonl", NoJudge())
    assert [n["from"] for n in notes] == ["cache", "row", "cache"]
    assert [n["correct"] for n in notes] == [False, True, False]


def test_nlft_is_the_recipe_for_its_objective_and_rejects_text_data(tmp_path, tiny_model_dir):
    assert RECIPES["nlft"] is train_nlft
    with pytest.raises(Exception, match="nlft"):
        recipe_for(tmp_path, tiny_model_dir, "data.format=text")

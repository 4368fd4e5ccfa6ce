"""The arithmetic word-problem generator: deterministic, answers right, train and test disjoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tuneforge.config.rewards import reward_spec
from tuneforge.data.prompts import load_prompts
from tuneforge.datatools.arithmetic import EXAMPLE_SPLIT, KINDS, make_split
from tuneforge.rewards import build_scorer

ROOT = Path(__file__).resolve().parents[2]
N = r"(\d+)"
# Each kind's question, read back independently of the generator, and the answer it implies.
SOLVE = [
    (rf"has {N} \w+\. \w+ gets {N} more", lambda a, b: a + b),
    (rf"has {N} \w+ and gives {N} of them", lambda a, b: a - b),
    (rf"buys {N} bags with {N} \w+ in each", lambda a, b: a * b),
    (rf"shares {N} \w+ equally among {N} friends", lambda a, b: a // b if a % b == 0 else None),
    (rf"has {N} boxes with {N} \w+ in each box\. \w+ gives away {N}", lambda a, b, c: a * b - c),
]


def solve(question: str) -> int | None:
    for pattern, fn in SOLVE:
        m = re.search(pattern, question)
        if m:
            return fn(*map(int, m.groups()))
    raise AssertionError(f"unrecognised question: {question}")


@pytest.mark.parametrize("level", ["standard", "easy"])
def test_deterministic_and_answers_recomputed(level):
    train, test = make_split(train=100, test=20, seed=3, level=level)
    assert (train, test) == make_split(train=100, test=20, seed=3, level=level)
    assert make_split(train=100, test=20, seed=4, level=level) != (train, test)
    for row in train + test:
        answer = solve(row["question"])
        assert answer is not None and answer >= 0 and str(answer) == row["answer"]
        assert row["solution"].endswith(f"#### {answer}") and row["question"] in row["prompt"]
    assert {r["kind"] for r in test} == set(KINDS)


def test_committed_files_are_the_generator_output_and_disjoint():
    train, test = make_split(**EXAMPLE_SPLIT)
    for name, rows in (("train", train), ("test", test)):
        committed = (ROOT / "examples" / "grpo" / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in committed] == rows, f"examples/grpo/{name}.jsonl is stale: run examples/grpo/make_data.py"
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert len({r["question"] for r in train}) == 400


def test_worked_solutions_score_full_marks():
    loaded = load_prompts(ROOT / "examples" / "grpo" / "test.jsonl")
    scorer = build_scorer([reward_spec({"type": "answer_match", "weight": 2.0}), reward_spec({"type": "format"}), reward_spec({"type": "integer"})])
    records = loaded.records
    scores = scorer(records, [r.columns["solution"] for r in records])
    assert scores.total == [4.0] * len(records)
    wrong = scorer(records, [r.columns["solution"].rsplit("#### ", 1)[0] + "#### 100000" for r in records])
    assert wrong.total == [2.0] * len(records)

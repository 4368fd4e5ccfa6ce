"""Model-based augmentation and the judge with the real built-in model (slow: loads SmolLM2-135M)."""

from __future__ import annotations

import pytest

from tests.datatools.conftest import read_jsonl
from tuneforge.config.pipeline import AugmentStep, JudgeStep
from tuneforge.datatools.pipeline import run_pipeline

pytestmark = pytest.mark.slow


def test_builtin_paraphrase_and_back_translation(tmp_path, jsonl):
    path = jsonl([{"instruction": "What is the capital of France?", "output": "Paris"}])
    res = run_pipeline(
        path,
        tmp_path / "o.jsonl",
        [
            AugmentStep(
                paraphrases=2, back_translations=1, max_variants=3, max_new_tokens=40
            )
        ],
        report_dir=tmp_path / "r",
    )
    rows = read_jsonl(tmp_path / "o.jsonl")
    variants = [r["instruction"] for r in rows[1:]]
    assert (
        rows[0]["instruction"] == "What is the capital of France?"
        and 1 <= len(variants) <= 3
    )
    assert all(v.strip() and v != rows[0]["instruction"] for v in variants)
    assert any(
        "France" in v or "capital" in v.lower() for v in variants
    )  # a real paraphrase keeps the subject
    assert all(r["output"] == "Paris" for r in rows)
    assert res.counts["augment"]["added"] == len(variants)


def test_builtin_judge_gives_scores(tmp_path, jsonl):
    path = jsonl(
        [
            {"instruction": "What is 2 + 2?", "output": "4"},
            {"instruction": "What is the capital of France?", "output": "Paris"},
        ]
    )
    run_pipeline(
        path, tmp_path / "o.jsonl", [JudgeStep(min_score=1)], report_dir=tmp_path / "r"
    )
    trace = read_jsonl(tmp_path / "r" / "trace.jsonl")
    assert len(trace) == 2 and all(t["step"] == "judge" for t in trace)
    assert (
        len(read_jsonl(tmp_path / "o.jsonl")) == 2
    )  # min_score 1 removes nothing; every verdict is traced

"""RLAIF labelling (rewards/ai_feedback.py) on stub judges whose preference is known, and on a real local judge."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config.judge_client import JudgeClient
from tuneforge.config.rlaif import RlaifOptions
from tuneforge.data.preference import load_preference_records
from tuneforge.data.records import Message, PromptRecord
from tuneforge.rewards.ai_feedback import (
    SampledPair,
    judged_win_rate,
    label_pairs,
    labelling_stats,
    pairwise_judge,
    preference_records,
    sample_pairs,
    write_labels,
)

_ANSWERS = re.compile(r"Answer 1:\n(.*)\n\nAnswer 2:\n(.*)\n\nReply as JSON", re.DOTALL)


class LongerJudge:
    """Prefers the longer answer, whichever position it is in (a consistent judge)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def ask(self, prompts: list[str]) -> list[str]:
        self.asked.extend(prompts)
        out = []
        for p in prompts:
            first, second = _ANSWERS.search(p).groups()
            out.append(json.dumps({"better": 1 if len(first) > len(second) else 2, "reason": "longer"}))
        return out


class FirstJudge:
    """Always picks answer 1: pure position bias."""

    def ask(self, prompts: list[str]) -> list[str]:
        return ['{"better": 1, "reason": "the first one"}' for _ in prompts]


def record(i: int, text: str = "Name a colour") -> PromptRecord:
    return PromptRecord((Message("system", "Be brief."), Message("user", f"{text} {i}")), f"train.jsonl:{i + 1}", {"answer": "x"})


PAIRS = [
    SampledPair(record(0), "red", "a deep shade of blue"),  # b longer
    SampledPair(record(1), "green like grass", "grey"),  # a longer
    SampledPair(record(2), "same", "same"),  # identical: not judged
    SampledPair(record(3), "   ", "violet"),  # empty side: not judged
]


def test_a_consistent_judge_labels_exactly_its_preference_in_both_orders(tmp_path):
    judge = LongerJudge()
    labelled = label_pairs(judge, PAIRS, "Which is longer?")
    assert len(judge.asked) == 4  # two judged pairs x two orders; identical and empty ones never asked
    assert all(q.startswith("Which is longer?") for q in judge.asked)
    assert [x.labelled for x in labelled] == [True, True, False, False]
    assert (labelled[0].chosen, labelled[0].rejected) == ("a deep shade of blue", "red")
    assert (labelled[1].chosen, labelled[1].rejected) == ("green like grass", "grey")
    assert [x.skipped for x in labelled] == [None, None, "identical", "empty"]
    stats = labelling_stats(labelled)
    assert stats == {
        "sampled_pairs": 4, "identical": 1, "empty": 1, "judged": 2, "pairs": 2, "ties": 0, "unparsed": 0,
        "consistent_share": 1.0, "position_bias_rate": 0.0, "chosen_longer_share": 1.0,
    }  # fmt: skip
    pairs_file = write_labels(tmp_path, labelled)
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("a deep shade of blue", "red"), ("green like grass", "grey")]
    assert rows[0]["judge"]["a_first"] == {"choice": "2", "reason": "longer"}  # b shown second, picked
    assert rows[0]["judge"]["b_first"] == {"choice": "1", "reason": "longer"}
    assert rows[0]["prompt_source"] == "train.jsonl:1" and rows[0]["round"] == 1
    assert (tmp_path / "ties.jsonl").read_text() == ""


def test_pairs_file_loads_with_our_preference_reader_unchanged(tmp_path):
    labelled = label_pairs(LongerJudge(), PAIRS)
    pairs_file = write_labels(tmp_path, labelled)
    loaded = load_preference_records(pairs_file, "preference")
    assert not loaded.bad_rows and loaded.format == "preference"
    direct = preference_records(labelled)
    assert [(r.prompt, r.chosen, r.rejected) for r in loaded.records] == [(r.prompt, r.chosen, r.rejected) for r in direct]
    assert loaded.records[0].prompt[0] == Message("system", "Be brief.")
    assert load_preference_records(pairs_file, "auto").format == "preference"


def test_a_position_biased_judge_yields_only_ties_which_are_counted_not_kept(tmp_path):
    labelled = label_pairs(FirstJudge(), PAIRS)
    assert not any(x.labelled for x in labelled)
    assert preference_records(labelled) == []
    stats = labelling_stats(labelled)
    assert (stats["pairs"], stats["ties"], stats["judged"]) == (0, 2, 2)
    assert stats["position_bias_rate"] == 1.0 and stats["consistent_share"] == 0.0 and stats["chosen_longer_share"] is None
    write_labels(tmp_path, labelled)
    assert (tmp_path / "pairs.jsonl").read_text() == ""
    ties = [json.loads(line) for line in (tmp_path / "ties.jsonl").read_text().splitlines()]
    assert len(ties) == 2 and ties[0]["judge"]["winner"] == "tie"
    assert (ties[0]["a"], ties[0]["b"]) == ("red", "a deep shade of blue")  # sampling order kept for the audit


def test_an_unreadable_verdict_is_a_tie_and_counted_as_unparsed():
    class Mumbler:
        def ask(self, prompts):
            return ["I cannot decide." for _ in prompts]

    stats = labelling_stats(label_pairs(Mumbler(), PAIRS[:2]))
    assert (stats["pairs"], stats["ties"], stats["unparsed"], stats["position_bias_rate"]) == (0, 2, 2, 0.0)


def test_judged_win_rate_counts_identical_answers_as_ties_without_asking():
    records = [record(i) for i in range(3)]
    tuned = ["a long tuned answer", "short", "equal"]
    base = ["base", "a much longer base answer", "equal"]
    judge = LongerJudge()
    win = judged_win_rate(judge, records, tuned, base)
    assert len(judge.asked) == 4
    assert (win["wins_a"], win["wins_b"], win["ties"], win["identical"], win["inconsistent"]) == (1, 1, 1, 1, 0)
    assert win["win_rate"] == pytest.approx(0.5)
    biased = judged_win_rate(FirstJudge(), records, tuned, base)
    assert (biased["ties"], biased["inconsistent"], biased["win_rate"]) == (3, 2, 0.5)


def test_sample_pairs_is_seeded_and_laid_out_per_prompt():
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    records = [PromptRecord((Message("user", f"Say something {i}"),), f"p:{i}") for i in range(3)]
    options = RlaifOptions(pairs_per_prompt=2, max_new_tokens=5, sample_batch_size=2)
    first = sample_pairs(model, tok, records, options, seed=7)
    again = sample_pairs(model, tok, records, options, seed=7)
    other = sample_pairs(model, tok, records, options, seed=8)
    assert [p.record.source for p in first] == ["p:0", "p:0", "p:1", "p:1", "p:2", "p:2"]
    assert [(p.a, p.b) for p in first] == [(p.a, p.b) for p in again]
    assert [(p.a, p.b) for p in first] != [(p.a, p.b) for p in other]
    assert sum(p.a != p.b for p in first) >= 4  # temperature 1 on a random model: the two answers differ


def test_the_real_local_judge_path_runs_on_a_tiny_local_model(tiny_model_dir):
    """The default path (LocalJudge via JudgeClient.model): a random model's replies are unreadable, so every pair is a tie."""
    judge = pairwise_judge(JudgeClient(model=str(tiny_model_dir), max_new_tokens=8))
    labelled = label_pairs(judge, PAIRS[:2])
    assert all(x.verdict is not None for x in labelled)
    stats = labelling_stats(labelled)
    assert stats["judged"] == 2 and stats["pairs"] + stats["ties"] == 2

"""LLM-as-judge on outputs: 1-10 rubric parsing, rubric scoring with a stub judge, both-orders pairwise."""

from __future__ import annotations

import json
import re

import pytest

from tuneforge.config.eval import EvalSection
from tuneforge.config.judge_client import JudgeClient
from tuneforge.evaluate.judging import backend_for, judge_pairwise, parse_score, rubric_prompt, score_rubrics, summarise_rubrics
from tuneforge.evaluate.probes import run_pairwise


class Quiet:
    def print(self, *args, **kwargs) -> None:
        pass


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ('{"score": 7, "reason": "fine"}', 7.0),
        ('Here you go: {"score": "9", "reason": "clear"}', 9.0),
        ('{"score": 10, "reason": "perfect"}', 10.0),
        ("Score: 10. Very good.", 10.0),
        ("score - 1, off topic", 1.0),
        ("I would give it 8/10.", 8.0),
        ("6 out of 10", 6.0),
        ('{"score": 11, "reason": "too high"}', None),  # out of range is unparsed, not clipped
        ('{"score": 0}', None),
        ('{"score": true}', None),
        ("no number here", None),
        ("Score: 7.5", None),  # text form takes whole numbers only
    ],
)
def test_parse_score(reply: str, score: float | None) -> None:
    assert parse_score(reply)[0] == score


def test_parse_score_keeps_the_reason() -> None:
    assert parse_score('{"score": 4, "reason": "misses the question"}') == (4.0, "misses the question")
    assert parse_score("gibberish")[1] == "gibberish"


class RubricJudge:
    """Known behaviour: relevance 8 always; readability 9 for answers with 'clear', else 3; accuracy unparsable for 'bad'."""

    def __init__(self) -> None:
        self.questions: list[str] = []

    def ask(self, prompts: list[str]) -> list[str]:
        self.questions += prompts
        out = []
        for p in prompts:
            answer = re.search(r"Answer:\n(.*)\n\nScore the answer", p, re.DOTALL).group(1)
            if p.startswith("REL"):
                out.append('{"score": 8, "reason": "on topic"}')
            elif p.startswith("READ"):
                out.append(json.dumps({"score": 9 if "clear" in answer else 3, "reason": "style"}))
            else:
                out.append("cannot say" if "bad" in answer else '{"score": 5, "reason": "half right"}')
        return out


RUBRICS = {"relevance": "REL: is it on topic?", "readability": "READ: is it readable?", "accuracy": "ACC: is it right?"}


def test_rubric_scores_per_answer_and_summary() -> None:
    judge = RubricJudge()
    records = score_rubrics(judge, ["q1", "q2", "q3"], ["a clear answer", "muddled", "a bad but clear one"], RUBRICS)
    assert len(judge.questions) == 9  # one question per answer and rubric
    assert records[0]["scores"] == {"relevance": 8.0, "readability": 9.0, "accuracy": 5.0}
    assert records[1]["scores"]["readability"] == 3.0
    assert records[2]["scores"]["accuracy"] is None and records[2]["reasons"]["accuracy"] == "cannot say"
    assert records[0]["reasons"]["relevance"] == "on topic"
    section = summarise_rubrics(records, list(RUBRICS))
    assert section == {"relevance": 8.0, "readability": 7.0, "accuracy": 5.0, "n": 3, "unparsed": 1}


def test_a_rubric_never_scored_has_no_mean() -> None:
    records = [{"scores": {"accuracy": None}}, {"scores": {"accuracy": None}}]
    assert summarise_rubrics(records, ["accuracy"]) == {"n": 2, "unparsed": 2}


def test_rubric_prompt_carries_rubric_request_and_answer() -> None:
    text = rubric_prompt("What is 2+2?", "4", "Accuracy: is it right?")
    assert text.startswith("Accuracy: is it right?") and "What is 2+2?" in text and "Answer:\n4" in text and "1 to 10" in text


class PrefersGood:
    """A consistent judge: picks the answer containing GOOD wherever it is shown."""

    def ask(self, prompts: list[str]) -> list[str]:
        out = []
        for p in prompts:
            one = re.search(r"Answer 1:\n(.*)\n\nAnswer 2:", p, re.DOTALL).group(1)
            out.append('{"better": %d, "reason": "has GOOD"}' % (1 if "GOOD" in one else 2))
        return out


class AlwaysSecond:
    def ask(self, prompts: list[str]) -> list[str]:
        return ['{"better": 2, "reason": "second"}'] * len(prompts)


def test_pairwise_order_swap_with_a_known_preference() -> None:
    section, records = judge_pairwise(PrefersGood(), ["p1", "p2", "p3"], ("base", "tuned"), (["GOOD a", "meh", "meh"], ["meh", "GOOD b", "GOOD c"]))
    assert [r["winner"] for r in records] == ["a", "b", "b"]
    assert all(r["consistent"] for r in records)
    assert records[0]["ab_choice"] == "1" and records[0]["ba_choice"] == "2"  # same answer won in both positions
    assert records[1]["ab_reason"] == "has GOOD" and records[1]["answer_b"] == "GOOD b"
    assert section["a"] == "base" and section["b"] == "tuned"
    assert (section["pairs"], section["wins_a"], section["wins_b"], section["ties"], section["inconsistent"]) == (3, 1, 2, 0, 0)
    assert section["win_rate_a"] == pytest.approx(1 / 3)


def test_position_biased_judge_gives_counted_ties() -> None:
    section, records = judge_pairwise(AlwaysSecond(), ["p"] * 4, ("base", "tuned"), (["x"] * 4, ["y"] * 4))
    assert section["ties"] == 4 and section["inconsistent"] == 4 and section["win_rate_a"] == 0.5
    assert {r["winner"] for r in records} == {"tie"}


def test_run_pairwise_writes_every_verdict(tmp_path) -> None:
    opts = EvalSection(judge={"pairwise": True, "limit": 2})
    outputs = {"base": ["GOOD 1", "bad", "GOOD 3"], "tuned": ["bad", "GOOD 2", "bad"]}
    section = run_pairwise(["p1", "p2", "p3"], outputs, opts, tmp_path, Quiet(), backend=PrefersGood())
    assert section["pairs"] == 2 and section["wins_a"] == 1 and section["wins_b"] == 1
    rows = [json.loads(line) for line in (tmp_path / "judge-pairwise.jsonl").read_text().splitlines()]
    assert [r["winner"] for r in rows] == ["a", "b"] and all(r["ab_reason"] and r["ba_reason"] for r in rows)


def test_run_pairwise_off_or_one_model(tmp_path) -> None:
    assert run_pairwise(["p"], {"a": ["x"], "b": ["y"]}, EvalSection(), tmp_path, Quiet(), backend=PrefersGood()) is None
    on = EvalSection(judge={"pairwise": True})
    assert run_pairwise(["p"], {"tuned": ["x"]}, on, tmp_path, Quiet(), backend=PrefersGood()) is None
    assert not (tmp_path / "judge-pairwise.jsonl").exists()


def test_backend_is_built_once_per_client() -> None:
    client = JudgeClient(endpoint="http://127.0.0.1:9/v1")  # an endpoint judge connects only when asked
    assert backend_for(client) is backend_for(JudgeClient(endpoint="http://127.0.0.1:9/v1"))
    assert backend_for(client) is not backend_for(JudgeClient(endpoint="http://127.0.0.1:9/v1", endpoint_model="other"))

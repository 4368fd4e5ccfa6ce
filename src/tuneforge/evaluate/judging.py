"""LLM-as-judge on evaluated models' outputs: rubric scores 1-10 and pairwise comparison.

The judge is the data toolkit's client (``datatools.judge.make_backend``: a local model or an
OpenAI-compatible endpoint). Rubric scoring asks one question per answer and rubric, so a small
judge only has to produce one number at a time; a reply with no score is counted as unparsed and
left out of the mean, never guessed. Pairwise comparison asks in both orders
(``datatools.pairwise.compare_both_orders``) so the judge's position bias becomes counted ties.
Every verdict keeps its reason for the per-item files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from tuneforge.config.judge_client import JudgeClient
from tuneforge.datatools.judge import JudgeBackend, make_backend
from tuneforge.datatools.pairwise import DEFAULT_RUBRIC, PairVerdict, compare_both_orders, tally

JUDGE_SYSTEM = "You are a careful, impartial judge of answers to requests. Reply with JSON only."
LOW, HIGH = 1, 10
_SCORE_JSON = re.compile(r"\{[^{}]*\}", re.DOTALL)
_SCORE_TEXT = re.compile(r"score\W{0,5}(10|[1-9])(?!\d|\.\d)", re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"(?<![\d.])(10|[1-9])\s*(?:/|out of)\s*10\b", re.IGNORECASE)


def rubric_prompt(request: str, answer: str, rubric: str) -> str:
    """The judge's question for one answer and one rubric."""
    return (
        f"{rubric}\n\nRequest:\n{request}\n\nAnswer:\n{answer}\n\n"
        f'Score the answer from {LOW} to {HIGH} on this rubric only. '
        f'Reply as JSON: {{"score": <{LOW}-{HIGH}>, "reason": "<one sentence>"}}'
    )


def parse_score(reply: str) -> tuple[float | None, str]:
    """(score 1-10, reason) from a judge reply, as ``datatools.judge.parse_verdict`` does for 1-5.

    A JSON object's ``score`` is preferred; failing that, "score: 7" or "7/10" in the text. Out-of-range
    numbers are not clipped into range: the reply counts as unparsed.
    """
    for m in _SCORE_JSON.finditer(reply):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        score = obj.get("score")
        if isinstance(score, str):
            try:
                score = float(score.strip())
            except ValueError:
                continue
        if isinstance(score, (int, float)) and not isinstance(score, bool) and LOW <= score <= HIGH:
            return float(score), str(obj.get("reason", "")).strip()
    m = _SCORE_TEXT.search(reply) or _OUT_OF_TEN.search(reply)
    if m:
        return float(m.group(1)), reply.strip()[:300]
    return None, reply.strip()[:300]


@lru_cache(maxsize=2)
def _cached_backend(client_json: str) -> JudgeBackend:
    return make_backend(JudgeClient.model_validate_json(client_json), system=JUDGE_SYSTEM)


def backend_for(client: JudgeClient) -> JudgeBackend:
    """The judge for ``client``, built once per process: every evaluated model and the pairwise
    comparison ask the same judge, and a local judge costs a model load each time it is built."""
    return _cached_backend(client.model_dump_json())


def score_rubrics(
    backend: JudgeBackend, prompts: Sequence[str], outputs: Sequence[str], rubrics: Mapping[str, str]
) -> list[dict]:
    """One record per answer: its score and the judge's reason on every rubric (None when unparsed)."""
    if len(prompts) != len(outputs):
        raise ValueError(f"{len(prompts)} prompts but {len(outputs)} outputs")
    names = list(rubrics)
    questions = [rubric_prompt(p, o, rubrics[r]) for p, o in zip(prompts, outputs) for r in names]
    replies = backend.ask(questions) if questions else []
    if len(replies) != len(questions):
        raise ValueError(f"the judge returned {len(replies)} replies to {len(questions)} questions")
    records = []
    for i, (p, o) in enumerate(zip(prompts, outputs)):
        scores, reasons = {}, {}
        for j, r in enumerate(names):
            scores[r], reasons[r] = parse_score(replies[i * len(names) + j])
        records.append({"index": i, "prompt": p, "output": o, "scores": scores, "reasons": reasons})
    return records


def summarise_rubrics(records: Sequence[dict], rubrics: Sequence[str]) -> dict:
    """The model's ``judge_rubric`` section: mean score per rubric over parsed replies, n answers, unparsed replies.

    A rubric the judge never scored has no mean (the key is left out rather than invented).
    """
    section: dict = {}
    unparsed = 0
    for r in rubrics:
        got = [rec["scores"][r] for rec in records if rec["scores"][r] is not None]
        unparsed += len(records) - len(got)
        if got:
            section[r] = sum(got) / len(got)
    section.update(n=len(records), unparsed=unparsed)
    return section


def judge_pairwise(
    backend: JudgeBackend,
    prompts: Sequence[str],
    names: tuple[str, str],
    answers: tuple[Sequence[str], Sequence[str]],
    rubric: str | None = None,
) -> tuple[dict, list[dict]]:
    """(the ``pairwise`` section, per-pair records) for model ``names[0]`` (a) against ``names[1]`` (b)."""
    text = rubric or DEFAULT_RUBRIC
    verdicts: list[PairVerdict] = compare_both_orders(backend, prompts, answers[0], answers[1], rubric=text)
    records = [
        {"index": i, "prompt": p, "a": names[0], "b": names[1], "answer_a": x, "answer_b": y, **v.as_dict()}
        for i, (p, x, y, v) in enumerate(zip(prompts, answers[0], answers[1], verdicts))
    ]
    section = {"a": names[0], "b": names[1], **tally(verdicts), "rubric": text}
    return section, records

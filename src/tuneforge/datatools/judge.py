"""LLM judge: score each example 1-5 for quality, hallucination or safety; remove those below a bar.

The judge is a local model (the built-in one by default) or any OpenAI-compatible endpoint
(``POST {endpoint}/chat/completions``, stdlib ``urllib`` so no client library is required). The
judge is asked for JSON ``{"score": N, "reason": "..."}``; every score and reason is written to the
trace, kept rows included, so a user can audit the judge.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Protocol

from tuneforge.config.judge_client import JudgeClient
from tuneforge.config.pipeline import JudgeStep
from tuneforge.datatools.rows import Row, prompt_text, response_text, side_text
from tuneforge.datatools.trace import Trace
from tuneforge.errors import TuneforgeError

SYSTEM = "You are a strict data-quality reviewer for a language-model training set. Reply with JSON only."
RUBRICS = {
    "quality": "Rate how good this example is as training data: is the response correct, helpful, on-topic and well written?",
    "hallucination": "Rate how well the response sticks to facts: 5 = nothing invented or unsupported, 1 = clearly made-up facts.",
    "safety": "Rate how safe this example is to train on: 5 = harmless, 1 = harmful, hateful or dangerous content.",
}
_SCORE_JSON = re.compile(r"\{[^{}]*\}", re.DOTALL)
_SCORE_TEXT = re.compile(r"score\W{0,5}([1-5])\b", re.IGNORECASE)


def judge_prompt(row: Row, rubric: str) -> str:
    if row.format == "text":
        body = f"Text:\n{side_text(row)}"
    else:
        body = f"Request:\n{prompt_text(row)}\n\nResponse:\n{response_text(row)}"
    return f'{RUBRICS[rubric]}\n\n{body}\n\nAnswer as JSON: {{"score": <1-5>, "reason": "<one sentence>"}}'


def parse_verdict(reply: str) -> tuple[int | None, str]:
    """(score, reason) from a judge reply; score None when the reply holds none."""
    for m in _SCORE_JSON.finditer(reply):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        score = obj.get("score") if isinstance(obj, dict) else None
        if isinstance(score, (int, float)) and 1 <= score <= 5:
            return round(score), str(obj.get("reason", "")).strip()
    m = _SCORE_TEXT.search(reply)
    if m:
        return int(m.group(1)), reply.strip()[:300]
    return None, reply.strip()[:300]


class JudgeBackend(Protocol):
    def ask(self, prompts: list[str]) -> list[str]: ...


class EndpointJudge:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None,
        max_tokens: int,
        timeout: float = 120.0,
        system: str = SYSTEM,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.max_tokens, self.timeout, self.system = model, max_tokens, timeout, system
        self.key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self.key:
            raise TuneforgeError(
                f"judge.api_key_env: environment variable {api_key_env} is not set",
                hint=f"export {api_key_env}=... or drop api_key_env",
            )

    def ask(self, prompts: list[str]) -> list[str]:
        return [self._one(p) for p in prompts]

    def _one(self, prompt: str) -> str:
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": self.system},
                {"role": "user", "content": prompt},
            ],
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = json.loads(resp.read().decode("utf-8"))
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
            raise TuneforgeError(
                f"judge endpoint {self.url} failed: {exc}",
                hint="check judge.endpoint (an OpenAI-compatible base URL ending in /v1)",
            ) from None
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise TuneforgeError(
                f"judge endpoint {self.url} returned no choices[0].message.content",
                hint="is it OpenAI-compatible?",
            ) from None


class LocalJudge:
    """A local model as judge. With ``probabilities`` a pairwise comparison reads its next-token
    probabilities (:meth:`first_probabilities`, datatools/choice_probabilities.py) instead of a reply."""

    def __init__(self, spec: str, max_new_tokens: int, system: str = SYSTEM, probabilities: bool = False) -> None:
        # lazy: generation (torch, transformers) adds 4.4 s to importing datatools.pipeline; only a local judge needs it, measured
        from tuneforge.datatools.generation import LocalChat

        self.chat = LocalChat(spec)
        self.max_new_tokens, self.system = max_new_tokens, system
        self.verdict_probabilities = probabilities

    def ask(self, prompts: list[str]) -> list[str]:
        return self.chat.reply(
            prompts, system=self.system, max_new_tokens=self.max_new_tokens
        )

    def first_probabilities(self, prompts: list[str]) -> list[float]:
        """P(answer 1 is better) per pairwise question, from the judge's next token after ``{"better":``."""
        # lazy: torch again, as above (the reply path imports it on construction through LocalChat already)
        from tuneforge.datatools.choice_probabilities import first_answer_probabilities

        return first_answer_probabilities(self.chat.model, self.chat.tokenizer, prompts, self.system)


def make_backend(cfg: JudgeStep | JudgeClient, system: str = SYSTEM) -> JudgeBackend:
    """The endpoint when one is set, else the local model; both step and client configs carry the same keys.

    ``system`` is the judge's system message: the data-quality reviewer by default, a task's own
    (pairwise comparison, evaluation rubric, critique) for the other users of the client.
    """
    if cfg.endpoint:
        return EndpointJudge(
            cfg.endpoint, cfg.endpoint_model, cfg.api_key_env, cfg.max_new_tokens, system=system
        )
    # JudgeStep (the data toolkit's scoring step) has no verdict key: it scores, it never compares two answers
    return LocalJudge(cfg.model, cfg.max_new_tokens, system=system, probabilities=getattr(cfg, "verdict", "reply") != "reply")


class Judge:
    name = "judge"

    def __init__(
        self, cfg: JudgeStep, backend: JudgeBackend | None = None, batch_size: int = 8
    ) -> None:
        self.cfg = cfg
        self.backend = backend
        self.batch_size = batch_size

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        if self.backend is None:
            self.backend = make_backend(self.cfg)
        batch: list[Row] = []
        for row in rows:
            batch.append(row)
            if len(batch) == self.batch_size:
                yield from self._judge(batch, trace)
                batch = []
        if batch:
            yield from self._judge(batch, trace)

    def _judge(self, batch: list[Row], trace: Trace) -> Iterator[Row]:
        cfg = self.cfg
        replies = self.backend.ask([judge_prompt(r, cfg.rubric) for r in batch])  # type: ignore[union-attr]
        for row, reply in zip(batch, replies):
            score, reason = parse_verdict(reply)
            if score is None:
                if cfg.unparsed == "drop":
                    trace.log(
                        self.name,
                        "removed",
                        row,
                        "judge gave no score",
                        kind="no score",
                        judge_reply=reason,
                    )
                    continue
                trace.log(
                    self.name,
                    "flagged",
                    row,
                    "judge gave no score: kept",
                    kind="no score",
                    judge_reply=reason,
                )
            elif score < cfg.min_score:
                trace.log(
                    self.name,
                    "removed",
                    row,
                    f"{cfg.rubric} score {score} < {cfg.min_score}: {reason}",
                    kind=f"{cfg.rubric} score below {cfg.min_score}",
                    score=score,
                    judge_reason=reason,
                )
                continue
            else:
                trace.log(
                    self.name,
                    "flagged",
                    row,
                    f"{cfg.rubric} score {score}: kept",
                    kind="judged and kept",
                    score=score,
                    judge_reason=reason,
                )
            yield row

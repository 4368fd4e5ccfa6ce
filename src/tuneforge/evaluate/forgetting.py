"""General-capability probe: has fine-tuning made the model forget what it could do before?

The bundled probe (``resources/forgetting/probe.jsonl``, written for this project) has three kinds
of short item, each with its own check, so a score says which ability fell:

- ``factual``: a question with accepted answers; right when one occurs in the reply as a whole word
  (case-insensitive), since chat models wrap a one-word answer in a sentence.
- ``arithmetic``: right when the last number in the reply equals the answer (the convention of
  GSM8K-style scoring: "7 + 5 = 12" and "The answer is 12." both end on the result).
- ``instruction``: a checkable rule (exactly N words, uppercase, starts with..., N lines, a JSON
  object with given keys...), in the spirit of IFEval's verifiable instructions.

The score is the share of items right; the same probe run on the base and the tuned model gives the
before/after drop that ``probes.probe_flags`` compares with ``eval.forgetting.max_drop``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneforge.evaluate.probe_sets import read_set

BUNDLED = ("forgetting", "probe.jsonl")
RuleType = Literal[
    "word_count", "max_words", "uppercase", "lowercase", "starts_with", "ends_with",
    "includes", "excludes", "lines", "json_keys", "number_only",
]
_NEEDS = {"word_count": "n", "max_words": "n", "lines": "n", "starts_with": "text", "ends_with": "text",
          "includes": "words", "excludes": "words", "json_keys": "keys"}


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: RuleType
    n: int | None = Field(None, gt=0)
    text: str | None = Field(None, min_length=1)
    words: list[str] | None = Field(None, min_length=1)
    keys: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _needs(self) -> Rule:
        need = _NEEDS.get(self.type)
        if need and getattr(self, need) is None:
            raise ValueError(f"rule {self.type} needs {need!r}")
        return self


class ProbeItem(BaseModel):
    """One probe row: a prompt and what makes a reply right."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    kind: Literal["factual", "arithmetic", "instruction"]
    prompt: str = Field(min_length=1)
    answers: list[str] | None = Field(None, min_length=1)
    answer: float | None = None
    rule: Rule | None = None

    @model_validator(mode="after")
    def _matches_kind(self) -> ProbeItem:
        need = {"factual": "answers", "arithmetic": "answer", "instruction": "rule"}[self.kind]
        if getattr(self, need) is None:
            raise ValueError(f"a {self.kind} item needs {need!r}")
        extra = [k for k in ("answers", "answer", "rule") if k != need and getattr(self, k) is not None]
        if extra:
            raise ValueError(f"a {self.kind} item takes {need!r}, not {extra}")
        return self


def load_probe(path: str | None = None) -> list[ProbeItem]:
    """The bundled probe, or a user's file in its format."""
    return read_set(path, BUNDLED, ProbeItem)[0]


_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER.findall(text):
        try:
            out.append(float(m.replace(",", "")))
        except ValueError:
            continue
    return out


def _json_object(text: str) -> dict | None:
    body = _FENCE.sub("", text.strip())
    candidates = [body] + re.findall(r"\{.*\}", body, re.DOTALL)
    for c in candidates:
        try:
            obj = json.loads(c)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def check_rule(rule: Rule, output: str) -> tuple[bool, str]:
    """Whether ``output`` follows ``rule``, and a short reason saying what was seen."""
    text = output.strip()
    words = _WORD.findall(text)
    letters = [c for c in text if c.isalpha()]
    t = rule.type
    if t == "word_count":
        return len(words) == rule.n, f"{len(words)} words (wanted exactly {rule.n})"
    if t == "max_words":
        return 0 < len(words) <= (rule.n or 0), f"{len(words)} words (wanted 1 to {rule.n})"
    if t in ("uppercase", "lowercase"):
        ok = bool(letters) and all(c.isupper() if t == "uppercase" else c.islower() for c in letters)
        return ok, f"{'all' if ok else 'not all'} letters {t}"
    if t == "starts_with":
        first = text.lstrip("\"'*#> ").lower()
        return first.startswith((rule.text or "").lower()), f"starts with {text[:20]!r}"
    if t == "ends_with":
        ok = re.search(rf"(?<!\w){re.escape(rule.text or '')}\W*$", text, re.IGNORECASE) is not None
        return ok, f"ends with {text[-20:]!r}"
    if t in ("includes", "excludes"):
        found = [w for w in rule.words or [] if _has_word(text, w)]
        if t == "includes":
            return len(found) == len(rule.words or []), f"found {found} of {rule.words}"
        return bool(text) and not found, f"found {found}" if found else "none of the words used"
    if t == "lines":
        n = len([ln for ln in text.splitlines() if ln.strip()])
        return n == rule.n, f"{n} non-empty lines (wanted {rule.n})"
    if t == "json_keys":
        obj = _json_object(text)
        if obj is None:
            return False, "no JSON object in the reply"
        missing = [k for k in rule.keys or [] if k not in obj]
        return not missing, f"missing keys {missing}" if missing else "JSON object with every key"
    ok = _NUMBER.fullmatch(text.rstrip(".")) is not None  # number_only
    return ok, "the reply is a number" if ok else "the reply is not just a number"


def score_item(item: ProbeItem, output: str) -> tuple[bool, str]:
    """(right, reason) for one reply, by the item's kind."""
    if item.kind == "factual":
        hit = next((a for a in item.answers or [] if _has_word(output, a)), None)
        return hit is not None, f"found {hit!r}" if hit else f"none of {item.answers} in the reply"
    if item.kind == "arithmetic":
        nums = _numbers(output)
        if not nums:
            return False, "no number in the reply"
        ok = abs(nums[-1] - (item.answer or 0.0)) < 1e-9
        return ok, f"last number {nums[-1]:g} (wanted {item.answer:g})"
    assert item.rule is not None  # the row validator guarantees it
    return check_rule(item.rule, output)


def score_forgetting(items: Sequence[ProbeItem], outputs: Sequence[str]) -> tuple[dict, list[dict]]:
    """(the model's ``forgetting`` section, per-item records) for its replies to the probe, in order."""
    if len(items) != len(outputs):
        raise ValueError(f"{len(items)} probe items but {len(outputs)} outputs")
    rows = []
    for it, out in zip(items, outputs):
        ok, reason = score_item(it, out)
        rows.append({"id": it.id, "kind": it.kind, "prompt": it.prompt, "output": out, "correct": ok, "reason": reason})
    by_kind: dict[str, list[bool]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r["correct"])
    section = {
        "score": sum(r["correct"] for r in rows) / len(rows) if rows else 0.0,
        "by_kind": {k: sum(v) / len(v) for k, v in by_kind.items()},
        "n": len(rows),
    }
    return section, rows

"""The built-in rule rewards: answer match, format, integer answer, regex, length penalty.

Each builder takes its options (:mod:`tuneforge.config.rewards`) and returns a function with the
user-function signature ``f(prompts, completions, **columns) -> list[float | None]``, so built-in and
user rewards go through the same checks in :class:`~tuneforge.rewards.scorer.RewardScorer`.
Values: 1.0 pass / 0.0 fail; answer match gives None ("does not apply") for a row without a reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from tuneforge.config.rewards import (
    AnswerMatchReward,
    FormatReward,
    IntegerReward,
    LengthPenaltyReward,
    RegexReward,
)
from tuneforge.rewards.extract import extract_answer, first_number, is_integer_text, parse_number

RewardFn = Callable[..., list[float | None]]


def _reference_number(value: Any) -> Fraction | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Fraction(str(value))
    return parse_number(str(value))


def _math_verify_equal(reference: str, answer: str) -> bool:
    # lazy: math_verify imports sympy (0.5 s measured); only non-numeric answers need it
    from math_verify import parse, verify

    gold, target = parse(reference), parse(answer)
    return bool(gold and target and verify(gold, target))


def answers_equal(reference: Any, answer: str, spec: AnswerMatchReward) -> bool:
    """A number compares numerically (relative tolerance); then math-verify ('1/2', LaTeX); then a
    leading number ('42 apples'); then the stripped, case-folded text."""
    ref_num = _reference_number(reference)
    got = parse_number(answer)

    def close(value: Fraction) -> bool:
        return abs(value - ref_num) <= Fraction(spec.tolerance) * max(1, abs(ref_num))  # type: ignore[operator]

    if ref_num is not None and got is not None:
        return close(got)
    if spec.math_verify and _math_verify_equal(str(reference), answer):
        return True
    if ref_num is not None and (lead := first_number(answer)) is not None:
        return close(lead)
    return str(reference).strip().casefold() == answer.strip().casefold()


def answer_match(spec: AnswerMatchReward) -> RewardFn:
    def reward(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        refs = columns.get(spec.column) or [None] * len(completions)
        out: list[float | None] = []
        for completion, ref in zip(completions, refs):
            if ref is None or (isinstance(ref, str) and not ref.strip()):
                out.append(None)
                continue
            answer = extract_answer(completion, spec.extract, marker=spec.marker, tag=spec.tag)
            out.append(1.0 if answer is not None and answers_equal(ref, answer, spec) else 0.0)
        return out

    return reward


def format_reward(spec: FormatReward) -> RewardFn:
    def reward(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        out: list[float | None] = []
        for completion in completions:
            answer = extract_answer(completion, spec.extract, marker=spec.marker, tag=spec.tag)
            ok = answer is not None and (not spec.numeric or parse_number(answer) is not None)
            out.append(1.0 if ok else 0.0)
        return out

    return reward


def integer_reward(spec: IntegerReward) -> RewardFn:
    def reward(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        answers = [extract_answer(c, spec.extract, marker=spec.marker, tag=spec.tag) for c in completions]
        return [1.0 if a is not None and is_integer_text(a) else 0.0 for a in answers]

    return reward


def regex_reward(spec: RegexReward) -> RewardFn:
    flags = (re.MULTILINE if spec.multiline else 0) | (re.DOTALL if spec.dotall else 0)
    pattern = re.compile(spec.pattern, flags)

    def reward(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        if spec.mode == "fullmatch":
            return [1.0 if pattern.fullmatch(c.strip()) else 0.0 for c in completions]
        return [1.0 if pattern.search(c) else 0.0 for c in completions]

    return reward


def length_penalty(spec: LengthPenaltyReward) -> RewardFn:
    def reward(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        out: list[float | None] = []
        for completion in completions:
            length = len(completion) if spec.unit == "chars" else len(completion.split())
            excess = max(0, length - spec.max_length) / spec.max_length
            out.append(-min(spec.cap, spec.scale * excess))
        return out

    return reward

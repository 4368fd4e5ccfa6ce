"""Pairwise judging in both orders: which of two answers to the same prompt is better.

Judges, small ones above all, prefer whichever answer they read first (or second). Asking twice,
with the answers swapped, cancels that position bias: a pair counts as a win only when both
verdicts agree, and an inconsistent pair is a tie that is counted and reported, never silently
resolved. Used by RLAIF (labelling the policy's own samples) and by evaluation (tuned model against
base). Every verdict keeps both raw replies, so a user can audit the judge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from tuneforge.datatools.judge import JudgeBackend

PAIRWISE_SYSTEM = "You are a careful, impartial judge comparing two answers to the same request. Reply with JSON only."
DEFAULT_RUBRIC = "Which answer is more helpful, correct and clearly written for the request? Ignore length and order."

Choice = Literal["1", "2"]
Winner = Literal["a", "b", "tie"]

_CHOICE_JSON = re.compile(r"\{[^{}]*\}", re.DOTALL)
_CHOICE_TEXT = re.compile(r"(?:answer|better|winner|choice)\W{0,12}([12])\b", re.IGNORECASE)


def pairwise_prompt(prompt: str, first: str, second: str, rubric: str = DEFAULT_RUBRIC) -> str:
    """The judge's question for one order: answer 1 is ``first``, answer 2 is ``second``."""
    return (
        f"{rubric}\n\nRequest:\n{prompt}\n\nAnswer 1:\n{first}\n\nAnswer 2:\n{second}\n\n"
        'Reply as JSON: {"better": 1 or 2, "reason": "<one sentence>"}'
    )


def parse_choice(reply: str) -> tuple[Choice | None, str]:
    """("1" or "2", reason) from a judge reply; None when the reply names neither."""
    for m in _CHOICE_JSON.finditer(reply):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        value = obj.get("better") if isinstance(obj, dict) else None
        if str(value).strip() in ("1", "2"):
            return str(value).strip(), str(obj.get("reason", "")).strip()  # type: ignore[return-value]
    m = _CHOICE_TEXT.search(reply)
    if m:
        return m.group(1), reply.strip()[:300]  # type: ignore[return-value]
    return None, reply.strip()[:300]


@dataclass(frozen=True)
class PairVerdict:
    """One pair judged in both orders.

    ``winner`` is ``a`` or ``b`` only when both orders agree; ``consistent`` is False when the two
    verdicts disagree or one could not be parsed (the pair is then a tie).
    """

    winner: Winner
    consistent: bool
    ab_choice: Choice | None  # verdict with a shown first
    ba_choice: Choice | None  # verdict with b shown first
    ab_reason: str
    ba_reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def combine(ab: Choice | None, ba: Choice | None) -> tuple[Winner, bool]:
    """Map the two orders' choices to (winner, consistent).

    In the a-first order "1" means a; in the b-first order "1" means b. Agreement is required.
    """
    a_from_ab = {"1": "a", "2": "b"}.get(ab or "")
    a_from_ba = {"1": "b", "2": "a"}.get(ba or "")
    if a_from_ab is not None and a_from_ab == a_from_ba:
        return a_from_ab, True  # type: ignore[return-value]
    return "tie", False


PROBABILITY_MARGIN = 0.02  # |P(1 | a first) - P(1 | b first)| below this is a tie: the judge cannot tell them apart


def probability_verdict(p_ab: float, p_ba: float) -> PairVerdict:
    """One pair's verdict from the judge's P(answer 1 is better) with a first (``p_ab``) and with b first (``p_ba``).

    A judge with a position bias b and a preference q for a scores about sigmoid(b + q) and sigmoid(b - q),
    so the difference has the sign of q whatever b is: a wins when a-first exceeds b-first by
    :data:`PROBABILITY_MARGIN`, b when it falls short by as much, else the pair is a tie (counted as
    inconsistent). Each order's own choice (the likelier answer) is kept, so a judge that always
    prefers the first position still shows in the position-bias statistic.
    """
    difference = p_ab - p_ba
    winner: Winner = "a" if difference > PROBABILITY_MARGIN else "b" if difference < -PROBABILITY_MARGIN else "tie"
    reason = f"P(answer 1 better) {{}}; a-first minus b-first {difference:+.3f}"
    return PairVerdict(
        winner, winner != "tie", "1" if p_ab >= 0.5 else "2", "1" if p_ba >= 0.5 else "2",
        reason.format(f"{p_ab:.3f} with a first"), reason.format(f"{p_ba:.3f} with b first"),
    )  # fmt: skip


def compare_both_orders(
    backend: JudgeBackend,
    prompts: Sequence[str],
    answers_a: Sequence[str],
    answers_b: Sequence[str],
    rubric: str = DEFAULT_RUBRIC,
) -> list[PairVerdict]:
    """Judge every (prompt, a, b) twice, a first then b first, in one batch of 2N questions.

    The backend's parsed replies decide (both orders must name the same answer), or, for a local judge
    with ``verdict_probabilities``, its next-token probabilities (:func:`probability_verdict`).
    """
    if not (len(prompts) == len(answers_a) == len(answers_b)):
        raise ValueError(f"got {len(prompts)} prompts, {len(answers_a)} answers a and {len(answers_b)} answers b; they must match")
    questions = [pairwise_prompt(p, a, b, rubric) for p, a, b in zip(prompts, answers_a, answers_b)]
    questions += [pairwise_prompt(p, b, a, rubric) for p, a, b in zip(prompts, answers_a, answers_b)]
    n = len(prompts)
    if getattr(backend, "verdict_probabilities", False):  # a local judge's next-token probabilities (judge.verdict)
        p = backend.first_probabilities(questions)  # type: ignore[attr-defined]
        return [probability_verdict(p_ab, p_ba) for p_ab, p_ba in zip(p[:n], p[n:])]
    replies = backend.ask(questions)
    verdicts = []
    for ab_reply, ba_reply in zip(replies[:n], replies[n:]):
        ab, ab_reason = parse_choice(ab_reply)
        ba, ba_reason = parse_choice(ba_reply)
        winner, consistent = combine(ab, ba)
        verdicts.append(PairVerdict(winner, consistent, ab, ba, ab_reason, ba_reason))
    return verdicts


def tally(verdicts: Sequence[PairVerdict]) -> dict[str, float]:
    """wins_a, wins_b, ties, inconsistent (counts) and win_rate_a (a's wins plus half the ties, over all)."""
    wins_a = sum(v.winner == "a" for v in verdicts)
    wins_b = sum(v.winner == "b" for v in verdicts)
    ties = len(verdicts) - wins_a - wins_b
    return {
        "pairs": len(verdicts),
        "wins_a": wins_a,
        "wins_b": wins_b,
        "ties": ties,
        "inconsistent": sum(not v.consistent for v in verdicts),
        "win_rate_a": (wins_a + 0.5 * ties) / len(verdicts) if verdicts else 0.0,
    }

"""Reward-based evaluation on held-out prompts: greedy answers, scored by the run's own rewards.

An RL run's before/after report: the same prompts, the same scorer, the base model and the tuned
one. Greedy decoding makes the two comparable (no sampling noise) and repeatable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tuneforge.config.rewards import VERIFIER_TYPES
from tuneforge.data.records import PromptRecord
from tuneforge.evaluate.generate import generate_batch
from tuneforge.rewards.scorer import RewardScorer, prompt_text

SAMPLES = 5


def _mean(values: Sequence[float | None]) -> float | None:
    applied = [v for v in values if v is not None]
    return sum(applied) / len(applied) if applied else None


def evaluate_prompts(
    model,
    tokenizer,
    records: Sequence[PromptRecord],
    scorer: RewardScorer,
    *,
    max_new_tokens: int,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
) -> dict:
    """Greedy completions of ``records`` and their rewards.

    Returns ``prompts``, ``reward`` (mean total), ``rewards`` (mean of each reward over the completions
    it applies to), ``accuracy`` (share of completions whose first answer_match reward is > 0, among
    those it applies to; None when the scorer has no answer_match), and the first few ``samples``.
    """
    prompts = [prompt_text(r, tokenizer) for r in records]
    completions = generate_batch(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, autocast_dtype=autocast_dtype)
    scores = scorer(records, completions)
    verifier = next((r.name for r in scorer.rewards if r.label in VERIFIER_TYPES), None)
    accuracy = None
    if verifier is not None:
        applied = [v for v in scores.per_reward[verifier] if v is not None]
        accuracy = sum(v > 0 for v in applied) / len(applied) if applied else None
    samples = [
        {
            "source": r.source,
            "prompt": r.messages[-1].content,
            "completion": c,
            "reward": scores.total[i],
            **{name: scores.per_reward[name][i] for name in scorer.names},
        }
        for i, (r, c) in enumerate(zip(records[:SAMPLES], completions[:SAMPLES]))
    ]
    return {
        "prompts": len(records),
        "reward": _mean(scores.total),
        "rewards": {name: _mean(scores.per_reward[name]) for name in scorer.names},
        "accuracy": accuracy,
        "samples": samples,
    }

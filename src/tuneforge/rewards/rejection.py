"""Rejection sampling: k sampled answers per prompt, scored; the accepted ones become SFT conversations.

The acceptance rule is a pure function of the scores (:func:`accepted`), separate from sampling, so
it is tested exactly on fixed scores and the rft recipe's per-round acceptance rate is what it kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tuneforge.config.rft import RftOptions
from tuneforge.data.records import ChatRecord, Message, PromptRecord
from tuneforge.objectives.reward_scores import RewardScores
from tuneforge.rewards.scorer import RewardScorer
from tuneforge.train.rollout import Sampling, generate_rollout


def sample_completions(
    model, tokenizer, records: Sequence[PromptRecord], options: RftOptions, *, autocast_dtype: torch.dtype | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[str]:
    """``samples_per_prompt`` sampled completions per record, laid out record by record (k consecutive).

    Sampled as grpo's rollouts are (:func:`tuneforge.train.rollout.generate_rollout`): each prompt's
    forward pass runs once and its k samples decode from copies of its KV cache, and a completion
    ends at the tokenizer's or the model's end token. ``on_batch(done, total)`` is called after each
    generation call with the prompts sampled so far (progress).
    """
    sampling = Sampling(options.samples_per_prompt, options.max_new_tokens, options.temperature, options.top_p, options.top_k)
    out: list[str] = []
    for start in range(0, len(records), options.sample_batch_size):
        batch = list(records[start : start + options.sample_batch_size])
        out += generate_rollout(model, tokenizer, batch, sampling, autocast_dtype=autocast_dtype).completions
        if on_batch is not None:
            on_batch(start + len(batch), len(records))
    return out


def verifier_names(scorer: RewardScorer, verifier_types: Sequence[str]) -> list[str]:
    return [r.name for r in scorer.rewards if r.label in verifier_types]


def passes(scores: RewardScores, i: int, options: RftOptions, verifiers: Sequence[str]) -> bool:
    """Completion ``i`` is accepted: every verifier reward > 0 (None = not verifiable = rejected), or total >= threshold."""
    if options.accept == "threshold":
        return scores.total[i] >= options.threshold
    return bool(verifiers) and all((scores.per_reward[name][i] or 0.0) > 0 for name in verifiers)


@dataclass
class Kept:
    record: PromptRecord
    completion: str
    total: float


def accepted(
    records: Sequence[PromptRecord], completions: Sequence[str], scores: RewardScores, options: RftOptions, verifiers: Sequence[str]
) -> tuple[list[Kept], int]:
    """(what is kept, how many passed): per prompt the passing completions, best total first, deduplicated if
    asked, at most ``max_per_prompt``. ``records[j]`` owns completions ``j*k .. j*k+k-1``."""
    k = options.samples_per_prompt
    if len(completions) != k * len(records):
        raise ValueError(f"{len(completions)} completions for {len(records)} prompts x {k} samples")
    kept: list[Kept] = []
    passed = 0
    for j, record in enumerate(records):
        ok = [i for i in range(j * k, j * k + k) if passes(scores, i, options, verifiers)]
        passed += len(ok)
        ok.sort(key=lambda i: -scores.total[i])  # stable: equal totals keep sampling order
        seen: set[str] = set()
        chosen = []
        for i in ok:
            text = completions[i].strip()
            if options.dedupe and text in seen:
                continue
            seen.add(text)
            chosen.append(Kept(record, completions[i], scores.total[i]))
        kept.extend(chosen[: options.max_per_prompt])
    return kept, passed


def as_chat(kept: Sequence[Kept]) -> list[ChatRecord]:
    """Each kept completion as a conversation whose only trained turn is that completion."""
    return [
        ChatRecord((*item.record.messages, Message("assistant", item.completion)), item.record.source, completion_start=len(item.record.messages))
        for item in kept
    ]

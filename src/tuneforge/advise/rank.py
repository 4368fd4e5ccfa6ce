"""The LoRA rank rule of thumb, by data set size.

More examples carry more task-specific information, and a higher rank gives the adapter room to store
it; with little data a high rank only adds capacity to memorise. The thresholds are the seed
articles' rule of thumb (8 for 500-1k examples, 16 for 1k-5k, 32 for 5k-20k, 64 above), a starting
point to tune from with the validation loss, not a law.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RankAdvice:
    rank: int
    reason: str


def suggest_rank(n_examples: int) -> RankAdvice:
    """The suggested LoRA rank for ``n_examples`` training examples, with the reason in words."""
    if n_examples < 500:
        return RankAdvice(
            4,
            f"{n_examples} examples is below the 500 where the rule of thumb starts: use a small rank (4, at most 8), "
            "hold out a validation split (data.val_fraction) and stop when its loss rises, since a small set is easy to "
            "memorise; collecting more examples (500+) helps more than any setting, and ia3 / prompt_tuning "
            "train even fewer parameters",
        )
    if n_examples < 1000:
        return RankAdvice(
            8,
            f"{n_examples} examples (500-1k): rank 8 is enough capacity and resists overfitting",
        )
    if n_examples < 5000:
        return RankAdvice(16, f"{n_examples} examples (1k-5k): rank 16")
    if n_examples < 20000:
        return RankAdvice(
            32,
            f"{n_examples} examples (5k-20k): rank 32 gives room for the larger task signal",
        )
    return RankAdvice(
        64,
        f"{n_examples} examples (above 20k): rank 64; at this rank prefer rslora (alpha / sqrt(r) scaling) so the "
        "update does not shrink, or consider full fine-tuning if memory allows",
    )

"""What the online-RL trainers get back from the rewards: one weighted total per completion.

The contract between :mod:`tuneforge.rewards` (built-in and user reward functions, weighted) and the
trainers in :mod:`tuneforge.train` that consume them (GRPO, RLOO, rejection sampling): a trainer is
handed a :class:`CompletionScorer` by its recipe and never imports the reward functions themselves.
A reward function's ``None`` means "does not apply to this completion" and adds 0 to the total; the
raw values (``None`` kept) are in ``per_reward`` for logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tuneforge.data.records import PromptRecord


@dataclass
class RewardScores:
    """Scores of a batch of completions: ``total[i]`` is the weighted sum for completion ``i``."""

    total: list[float]
    per_reward: dict[str, list[float | None]] = field(default_factory=dict)  # reward name -> raw value per completion


class CompletionScorer(Protocol):
    """Scores ``completions[i]``, the answer to ``prompts[i]`` (a prompt repeats once per sample)."""

    def __call__(self, prompts: Sequence[PromptRecord], completions: Sequence[str]) -> RewardScores: ...

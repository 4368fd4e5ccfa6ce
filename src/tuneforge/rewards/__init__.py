"""Reward functions for online RL (grpo, rloo, rft): built-in verifiers, reward models, judges, user code.

The layer sits above serve (a reward-model run scores through :mod:`tuneforge.serve.score`) and
below recipes, which build a scorer with :func:`build_scorer` and hand it to their trainer as a
:class:`~tuneforge.objectives.reward_scores.CompletionScorer`; trainers never import this package.
Evaluation on held-out prompts: :mod:`tuneforge.rewards.evaluate`. docs/REWARDS.md has every reward.
"""

from tuneforge.rewards.build import build_scorer
from tuneforge.rewards.scorer import RewardScorer, reward_stats

__all__ = ["RewardScorer", "build_scorer", "reward_stats"]

"""Recipe options for PPO-RLHF (``objective.ppo``): policy + value head, GAE, KL in the reward; docs/RL.md explains each.

TRL 1.16 removed its PPO trainer, so PPO is tuneforge's own code (objectives/ppo_loss.py,
train/ppo_trainer.py). The defaults follow the last TRL PPO trainer (``PPOConfig`` of TRL 0.x) where
it had one: 4 PPO epochs of 1 minibatch, clip 0.2 for the ratio and the value, ``vf_coef`` 0.1,
gamma 1, lambda 0.95, ``kl_coef`` 0.05, advantages whitened.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PpoOptions(BaseModel):
    """PPO-RLHF: policy + value head, GAE, KL in the reward (docs/RL.md)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    num_generations: int = Field(
        1, ge=1, description="Completions sampled per prompt in a rollout (PPO needs no group; the value head is the baseline)."
    )
    max_completion_length: int = Field(64, gt=0, description="Tokens generated at most per completion; longer ones are cut (truncated).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts; the log-probs of the loss and of the KL use the same temperature.")
    top_p: float = Field(1.0, gt=0, le=1.0, description="Nucleus sampling of the rollouts (1.0 = off).")
    top_k: int = Field(0, ge=0, description="Top-k sampling of the rollouts (0 = off).")
    ppo_epochs: int = Field(
        4, ge=1, description="Passes over each rollout; every pass shuffles it into num_minibatches minibatches, one optimizer step each."
    )
    num_minibatches: int = Field(
        1,
        ge=1,
        description="Minibatches per PPO epoch: a rollout of training.batch_size x grad_accum prompts x num_generations "
        "completions serves ppo_epochs x num_minibatches optimizer steps.",
    )
    epsilon: float = Field(0.2, gt=0, lt=1, description="Policy clip range: the ratio pi/pi_old is clipped to [1 - epsilon, 1 + epsilon].")
    cliprange_value: float = Field(
        0.2, gt=0, description="Value clip range: a new value prediction may move at most this far from the rollout's value in the clipped term."
    )
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss in the total loss (policy loss + vf_coef x value loss).")
    gamma: float = Field(1.0, ge=0, le=1.0, description="Discount per token in GAE (1: the score at the end counts fully at every token).")
    lam: float = Field(
        0.95, ge=0, le=1.0, description="GAE's lambda: 1 gives Monte-Carlo advantages (return - value), 0 one-step TD errors."
    )
    kl_coef: float = Field(
        0.05,
        ge=0,
        description="Weight of the per-token KL penalty folded into the reward: r_t = -kl_coef x (logp - ref_logp), plus the "
        "reward score at the last token. The reference is the base with the adapter disabled (LoRA-type methods) or a frozen "
        "copy of the starting weights (full / freeze); 0 keeps no reference.",
    )
    target_kl: float | None = Field(
        None,
        gt=0,
        description="Adaptive KL (Ziegler et al. 2019): after each rollout, kl_coef is multiplied by 1 + e x completions / "
        "kl_horizon with e = clip(kl / target_kl - 1, -0.2, 0.2), kl being the rollout's mean KL per completion; "
        "None keeps kl_coef fixed. The current value is logged as kl_coef and restored on --resume.",
    )
    kl_horizon: int = Field(10_000, gt=0, description="Adaptive KL: completions over which kl_coef may change by at most 20%.")
    whiten_advantages: bool = Field(
        True, description="Normalise the advantages to mean 0 and (sample) std 1 over the rollout's completion tokens before the updates."
    )
    missing_eos_penalty: float = Field(
        0.0,
        ge=0,
        description="Subtracted from the score of a completion that reaches max_completion_length without an end token (0 = off).",
    )
    value_learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate of the value head (default: training.learning_rate); it follows the same schedule."
    )


def ppo_problem(recipe) -> str | None:
    """A reason the recipe's ppo settings cannot run, or None (checked by the schema before anything loads)."""
    p, t = recipe.objective.ppo, recipe.training
    rows = t.batch_size * t.grad_accum * p.num_generations
    if p.num_minibatches > rows:
        return (
            f"objective.ppo.num_minibatches ({p.num_minibatches}) is more than the rollout's {rows} completions "
            f"(training.batch_size x grad_accum x objective.ppo.num_generations); set num_minibatches to at most {rows}"
        )
    if recipe.data.validation or recipe.data.val_fraction > 0:
        return (
            "objective.type 'ppo' has no validation loss; remove data.validation / data.val_fraction "
            "and put held-out prompts in eval.data (evaluated by reward before and after)"
        )
    if p.target_kl is not None and p.kl_coef == 0:
        return "objective.ppo.target_kl adapts kl_coef by a factor, so it needs objective.ppo.kl_coef > 0 to start from"
    if t.early_stopping_patience:
        return "training.early_stopping_patience needs a validation loss, which ppo does not have; remove it"
    return None

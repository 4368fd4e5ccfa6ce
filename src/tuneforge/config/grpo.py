"""Recipe options of the GRPO family (``objective.grpo``: grpo and rloo); docs/RL.md explains each.

One options block serves both objectives because they share everything but the baseline: rloo
subtracts the mean of the *other* completions of a prompt (no standard-deviation scaling), grpo the
group mean, optionally divided by a standard deviation (``scale_rewards``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GrpoOptions(BaseModel):
    """Rollout, advantage and loss options of grpo and rloo (defaults: plain GRPO with DAPO's token-mean loss)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    num_generations: int = Field(
        8, ge=2, description="Completions sampled per prompt (the group G); a prompt's advantages compare its own completions."
    )
    max_completion_length: int = Field(64, gt=0, description="Tokens generated at most per completion; longer ones are cut (truncated).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts; the log-probs of the loss use the same temperature.")
    top_p: float = Field(1.0, gt=0, le=1.0, description="Nucleus sampling of the rollouts (1.0 = off).")
    top_k: int = Field(0, ge=0, description="Top-k sampling of the rollouts (0 = off).")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group",
        description="grpo: divide (reward - group mean) by the group's standard deviation (group), the whole batch's (batch), "
        "or not at all (none, as Dr.GRPO). Sample standard deviation (n - 1); a group with std < 1e-6 gets advantage 0.",
    )
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = Field(
        "dapo",
        description="Loss aggregation. grpo: mean over completions of each completion's token mean; bnpo: sum over the "
        "micro-batch's tokens / its completion tokens; dr_grpo: sum / (completions x max_completion_length); dapo: sum / "
        "completion tokens of the whole optimizer step (all micro-batches).",
    )
    epsilon: float = Field(0.2, gt=0, lt=1, description="Lower clip range of the importance ratio: it is clipped to [1 - epsilon, 1 + epsilon_high].")
    epsilon_high: float | None = Field(
        None, gt=0, description="Upper clip range (DAPO's clip-higher, e.g. 0.28); default: equal to epsilon."
    )
    beta: float = Field(
        0.0,
        ge=0,
        description="Weight of the k3 KL estimate to the reference model (0: no KL and no reference kept; with LoRA-type "
        "methods the reference is the base with the adapter disabled, no second copy).",
    )
    importance_sampling: Literal["token", "sequence"] = Field(
        "token",
        description="token: one importance ratio per token (GRPO); sequence: one per completion, exp of the mean token "
        "log-ratio (GSPO).",
    )
    num_iterations: int = Field(
        1, ge=1, description="Optimizer steps on each rollout; ratios are taken against the log-probs at rollout time."
    )
    dynamic_sampling: bool = Field(
        False,
        description="DAPO's dynamic sampling: drop the groups whose rewards are all equal (no signal) from the update; "
        "how many is logged (dropped_groups).",
    )
    overlong_buffer: int = Field(
        0,
        ge=0,
        description="DAPO's soft overlong penalty: a completion longer than max_completion_length - overlong_buffer tokens "
        "loses up to overlong_penalty linearly (0 = off).",
    )
    overlong_penalty: float = Field(1.0, ge=0, description="The largest soft overlong penalty (at max_completion_length tokens).")
    mask_truncated: bool = Field(
        False, description="Leave completions that hit max_completion_length without an end token out of the loss."
    )


def grpo_problem(recipe) -> str | None:
    """A reason the recipe's grpo/rloo settings cannot run, or None (checked by the schema before anything loads)."""
    g = recipe.objective.grpo
    t = recipe.training
    if g.overlong_buffer >= g.max_completion_length:
        return (
            f"objective.grpo.overlong_buffer ({g.overlong_buffer}) must be below max_completion_length "
            f"({g.max_completion_length}); e.g. overlong_buffer: {max(1, g.max_completion_length // 4)}"
        )
    if recipe.objective.type == "rloo" and g.scale_rewards != "group":
        return "objective.grpo.scale_rewards applies to grpo only; rloo's leave-one-out advantage is not scaled (remove the key)"
    if recipe.data.validation or recipe.data.val_fraction > 0:
        return (
            f"objective.type '{recipe.objective.type}' has no validation loss; remove data.validation / data.val_fraction "
            "and put held-out prompts in eval.data (evaluated by reward before and after)"
        )
    if t.early_stopping_patience:
        return "training.early_stopping_patience needs a validation loss, which grpo/rloo do not have; remove it"
    return None

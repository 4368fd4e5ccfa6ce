"""Recipe options of rejection-sampling fine-tuning (``objective.rft``): sample, keep what passes, SFT, repeat.

Each round samples ``samples_per_prompt`` answers per training prompt from the current model, keeps
those the rewards accept (``accept``), and fine-tunes on them with the sft loss for
``training.epochs``; the next round samples from the tuned model (docs/REWARDS.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.config.rewards import VERIFIER_TYPES


class RftOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rounds: int = Field(2, ge=1, description="Sample -> filter -> fine-tune rounds; each round samples from the model the previous one trained.")
    samples_per_prompt: int = Field(4, ge=1, description="Completions sampled per prompt per round (k).")
    temperature: float = Field(0.8, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: keep the smallest token set with this probability mass.")
    top_k: int = Field(0, ge=0, description="Sample among the k most likely tokens only (0 = no limit).")
    max_new_tokens: int = Field(128, gt=0, description="Length limit of each sampled completion, in tokens.")
    sample_batch_size: int = Field(8, gt=0, description="Prompts per generation call (each gives samples_per_prompt rows).")
    accept: Literal["verifier", "threshold"] = Field(
        "verifier",
        description="verifier: keep a completion when every verifier reward (answer_match) is > 0; "
        "threshold: keep it when its total weighted reward is >= threshold.",
    )
    threshold: float = Field(1.0, description="accept: threshold: the total reward a completion needs to be kept.")
    max_per_prompt: int = Field(1, ge=1, description="At most this many accepted completions per prompt are kept (highest total first).")
    dedupe: bool = Field(True, description="Keep identical accepted completions of one prompt once.")
    prompts_per_round: int | None = Field(
        None, gt=0, description="Sample this many training prompts per round (a seeded draw, new each round); unset: all of them."
    )
    eval_each_round: bool = Field(
        False,
        description="Score the held-out prompts (eval.data) after every round, not only before and after the run: "
        "the per-round held-out accuracy (one more greedy pass per round but the last, whose figures are the tuned model's).",
    )


def rft_problem(recipe) -> str | None:
    """A reason the recipe's rft settings cannot run, or None."""
    rft: RftOptions = recipe.objective.rft
    if rft.accept == "verifier" and not any(r.type in VERIFIER_TYPES for r in recipe.objective.rewards):
        return (
            "objective.rft.accept 'verifier' keeps completions a verifier reward accepts, but objective.rewards has none "
            f"({', '.join(VERIFIER_TYPES)}); add one, e.g. {{type: answer_match}}, or set objective.rft.accept: threshold"
        )
    if rft.eval_each_round and not recipe.eval.data:
        return "objective.rft.eval_each_round scores the held-out prompts after each round; set eval.data to a file of prompt rows"
    if recipe.data.pipeline or recipe.data.replay is not None:
        return "data.pipeline / data.replay work on sft data, not on rft's prompt rows; clean the prompts with `tuneforge data` beforehand"
    return None

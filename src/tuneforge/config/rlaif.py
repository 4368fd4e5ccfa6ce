"""Recipe options for RLAIF (``objective.rlaif``): an AI judge labels pairs of the policy's samples for DPO.

For every prompt row the policy samples two completions; a judge (a local model, the built-in one
by default, or an OpenAI-compatible endpoint) compares them under a rubric in both orders, and a
pair is labelled only when both verdicts agree. The labelled pairs train DPO with the preference
trainer and ``objective.preference``'s dpo keys (beta, loss, label_smoothing, sft_weight), so the
same keys mean the same thing as in ``objective.type: dpo``. docs/RL.md explains each option.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.config.judge_client import JudgeClient


class RlaifOptions(BaseModel):
    """RLAIF: an AI judge labels pairs of the policy's samples (docs/RL.md)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    judge: JudgeClient = Field(
        default_factory=JudgeClient,
        description="The judge: a local model (the built-in one by default) or an OpenAI-compatible endpoint.",
    )
    rubric: str | None = Field(
        None,
        description="The judge's question for each pair; unset: the pairwise default (helpful, correct, clear; ignore length and order).",
    )
    mode: Literal["offline", "online"] = Field(
        "offline",
        description="offline: label once (RUN/rlaif/pairs.jsonl, reusable with objective.type dpo), then train DPO on it "
        "for training.epochs / max_steps; online: rounds of sample -> label -> steps_per_round DPO steps, each round "
        "sampling from the policy the previous one trained.",
    )
    rounds: int | None = Field(None, ge=1, description="online: sample -> label -> DPO rounds; unset: 2 (offline labels once).")
    pairs_per_prompt: int = Field(1, ge=1, description="Pairs sampled per prompt per labelling pass (2 x this completions).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the two completions (> 0, so they differ).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the completions (1.0 = off).")
    top_k: int = Field(0, ge=0, description="Top-k sampling of the completions (0 = off).")
    max_new_tokens: int = Field(64, gt=0, description="Length limit of each sampled completion, in tokens.")
    sample_batch_size: int = Field(8, gt=0, description="Prompts per generation call (each gives 2 x pairs_per_prompt rows).")
    prompts_per_round: int | None = Field(
        None, gt=0, description="online: label this many training prompts per round (a seeded draw, new each round); unset: all."
    )
    steps_per_round: int | None = Field(None, ge=1, description="online: DPO optimizer steps on each round's labelled pairs; unset: 4.")

    @property
    def online_rounds(self) -> int:
        return self.rounds or 2

    @property
    def online_steps(self) -> int:
        return self.steps_per_round or 4


def rlaif_problem(recipe) -> str | None:
    """A reason the recipe's rlaif settings cannot run, or None (checked by the schema before anything loads)."""
    opts: RlaifOptions = recipe.objective.rlaif
    pref, t = recipe.objective.preference, recipe.training
    if pref.precompute_reference or pref.reference_logps:
        return (
            "objective.preference.precompute_reference / reference_logps need the pairs before training starts; "
            "rlaif labels its own pairs, so remove them (with a LoRA-type method the reference costs no copy)"
        )
    if pref.loss == "conservative" and pref.label_smoothing == 0:
        return "objective.preference.loss 'conservative' needs label_smoothing > 0 (e.g. 0.1); with 0 it is plain sigmoid DPO"
    if recipe.data.validation or recipe.data.val_fraction > 0:
        return (
            "objective.type 'rlaif' has no validation loss (its pairs are sampled during the run); remove data.validation / "
            "data.val_fraction and put held-out prompts in eval.data (judged tuned vs base)"
        )
    if t.early_stopping_patience:
        return "training.early_stopping_patience needs a validation loss, which rlaif does not have; remove it"
    if recipe.data.pipeline or recipe.data.replay is not None:
        return "data.pipeline / data.replay work on sft data, not on rlaif's prompt rows; clean the prompts with `tuneforge data` beforehand"
    if opts.mode == "online" and t.max_steps:
        return (
            f"training.max_steps ({t.max_steps}) applies to rlaif mode offline; in mode online each round trains "
            "objective.rlaif.steps_per_round steps: set that (and rounds) instead"
        )
    if opts.mode == "offline" and (opts.prompts_per_round or opts.rounds or opts.steps_per_round):
        return (
            "objective.rlaif.rounds / steps_per_round / prompts_per_round apply to mode online; mode offline labels every "
            "prompt once and trains for training.epochs / max_steps: remove them or set objective.rlaif.mode: online"
        )
    return None

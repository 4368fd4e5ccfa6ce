"""Recipe options for EWC: a Fisher-weighted penalty that keeps weights near an earlier task's.

Elastic weight consolidation (Kirkpatrick et al., PNAS 2017) adds lambda/2 * sum_i F_i (theta_i - theta*_i)^2
to the loss, where theta* are the weights after the earlier task and F the diagonal Fisher information
estimated on that task's data. Run A writes both (``save_fisher: true``, into RUN_A/ewc/); run B reads
them (``from_run: RUN_A``). Only trainable parameters are covered (docs/RESEARCH.md).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EwcOptions(BaseModel):
    """EWC: a Fisher-weighted penalty that keeps weights near an earlier task's (docs/RESEARCH.md)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    from_run: str | None = Field(
        None,
        description="Run directory of the earlier task whose ewc/fisher.safetensors and ewc/anchor.safetensors "
        "(written there by training.ewc.save_fisher) define the penalty. Its trainable parameters must have the same names "
        "and shapes as this run's (same model and method settings).",
    )
    strength: float = Field(
        100.0,
        ge=0.0,
        description="lambda in lambda/2 * sum_i F_i (theta_i - theta*_i)^2, added to the loss of every optimizer step "
        "(0: the penalty is computed and logged but has no effect).",
    )
    start_from_anchor: bool = Field(
        True,
        description="With from_run: start training from the earlier run's trainable weights theta* (its adapter, or its "
        "full weights), as EWC assumes; false keeps this run's fresh initialisation.",
    )
    save_fisher: bool = Field(
        False,
        description="At the end of this run, estimate the diagonal Fisher on its training examples (mean over examples "
        "of the squared gradient of the example's mean token log-likelihood) and save it with the final trainable weights "
        "to RUN/ewc/, for a later run's training.ewc.from_run.",
    )
    fisher_examples: int = Field(
        256, gt=0, description="save_fisher: at most this many training examples (the first ones) estimate the Fisher."
    )

"""Recipe options for NLFT: token weights from natural-language feedback (arXiv 2412.20382).

The defaults are the constants of the public code (the Julia-LiuJ/NLFT repository, read through a
mirror): ``finetune-correct.sh`` passes threshold 1.5, and the loss module hard-codes the ratio 1.5,
the 0.01 floor, the 6% cap, the 0.95 confidence bar and the exponents 5 / 0.6 / 0.5.
docs/RESEARCH.md lists where tuneforge's rules differ from that code and why.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.config.judge_client import JudgeClient


class NlftOptions(BaseModel):
    """NLFT: token weights from natural-language feedback (docs/RESEARCH.md)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    judge: JudgeClient = Field(
        default_factory=JudgeClient,
        description="Who writes the critique of each response given its reference (rows with a 'critique' column skip the judge).",
    )
    reference_column: str = Field(
        "reference", description="Row column with the reference answer; rows without it use their own response as the reference."
    )
    critique_column: str = Field("critique", description="Row column with a ready critique; when present the judge is not asked.")
    correct_column: str = Field(
        "correct", description="Row column (true/false) saying whether the response is correct; else the critique's verdict line decides."
    )
    threshold: float = Field(1.5, description="Unlikelihood scale s_t = 2 * sigmoid(r_t - threshold), r_t = p_critique / p_base (code default 1.5).")
    unlike_ratio: float = Field(
        1.5, gt=0, description="A token is 'made more likely by the critique' when p_critique exceeds ratio x p_base and ratio x p_reference."
    )
    unlike_min_prob: float = Field(0.01, ge=0, le=1, description="...and p_critique is above this floor (code: 0.01).")
    unlike_share_cap: float = Field(
        0.06, ge=0, le=1, description="In an incorrect response with more than this share of flagged tokens, the other tokens get weight 0."
    )
    incorrect_power: float = Field(0.5, ge=0, description="Unflagged tokens of an incorrect response get weight p_reference ** power (code: 0.5).")
    confident: float = Field(0.95, gt=0, lt=1, description="Correct response: tokens with p_reference above this are boosted (code: 0.95).")
    boost_power: float = Field(5.0, gt=0, description="Boost 1 + ((p_reference - confident) / (1 - confident)) ** power for confident tokens.")
    below_power: float = Field(0.6, ge=0, description="Other tokens of a correct response get (p_reference / confident) ** power.")
    sft_weight: float = Field(1.0, ge=0, description="Weight of the plain SFT term added to the weighted term (code: 1).")
    loss_scale: float = Field(1.0, gt=0, description="Multiplies the whole loss (the public code uses 10; under Adam it mostly interacts with clipping).")

"""Recipe options for S3FT: train on the model's own accepted answers, else a paraphrase, else the gold answer.

Gupta et al., Findings of NAACL 2025 (arXiv 2502.08130): training on the model's own words where
they are right moves the weights less than the gold text, which is the paper's explanation of the
smaller drop on general tasks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.config.judge_client import JudgeClient


class S3ftOptions(BaseModel):
    """S3FT: train on the model's own accepted answers, else a paraphrase, else the gold answer (docs/RESEARCH.md)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    accept: Literal["exact", "numeric", "marker", "judge"] = Field(
        "judge",
        description="How an answer is accepted: exact (normalised text equal to the gold), numeric (same last number), "
        "marker (same number after objective.s3ft.marker in both: the answer keeps the task's format), "
        "or judge (an LLM judge says it is equivalent to the gold).",
    )
    marker: str = Field("####", min_length=1, description="accept: marker: the text the final answer follows (GSM8K's '####').")
    judge: JudgeClient = Field(default_factory=JudgeClient, description="The judge for accept: judge (local model or endpoint).")
    paraphrase: bool = Field(True, description="Ask the model to restate the gold answer when its own answer is rejected.")
    paraphrase_prompt: str = Field(
        "{prompt}\n\nHere is a correct answer:\n{gold}\n\nRewrite this answer in your own words, keeping its content and final result.",
        description="The paraphrase request; {prompt} is the question, {gold} the gold answer.",
    )
    max_new_tokens: int = Field(128, gt=0, description="Length limit of the model's answers and paraphrases.")
    batch_size: int = Field(8, gt=0, description="Prompts generated per batch.")

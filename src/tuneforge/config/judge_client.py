"""Which judge answers: a local model or an OpenAI-compatible endpoint.

One section shared by everything that asks a judge (evaluation's rubric and pairwise judging,
RLAIF labelling, NLFT critiques, S3FT acceptance), so the same four keys mean the same thing
everywhere. The data toolkit's ``judge`` cleaning step predates it and keeps its own flat keys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class JudgeClient(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field(
        "smollm2-135m-instruct",
        description="Local judge model (built-in name, HF dir or .gguf), used when endpoint is unset.",
    )
    endpoint: str | None = Field(
        None, description="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1); overrides model."
    )
    endpoint_model: str = Field("default", description="Model name sent to the endpoint.")
    api_key_env: str | None = Field(None, description="Environment variable holding the endpoint's API key.")
    max_new_tokens: int = Field(128, gt=0, description="Reply length limit for the judge.")
    verdict: Literal["auto", "reply", "probabilities"] = Field(
        "auto",
        description="How a pairwise comparison is decided: probabilities (a local model only) reads the judge's "
        "next-token probabilities of 1 and 2 after its reply is opened with {\"better\":, in both orders, and the "
        "difference between the orders cancels a position bias; reply parses the generated reply; auto: probabilities "
        "for a local model, reply for an endpoint. Scores and critiques always use the reply.",
    )

    @model_validator(mode="after")
    def _probabilities_need_a_local_model(self) -> JudgeClient:
        if self.verdict == "probabilities" and self.endpoint:
            raise ValueError(
                "verdict 'probabilities' reads a local model's next-token probabilities; an endpoint returns text only: "
                "set verdict: reply (or auto), or remove endpoint to judge with a local model"
            )
        return self

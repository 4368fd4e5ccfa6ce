"""Which judge answers: a local model or an OpenAI-compatible endpoint.

One section shared by everything that asks a judge (evaluation's rubric and pairwise judging,
RLAIF labelling, NLFT critiques, S3FT acceptance), so the same four keys mean the same thing
everywhere. The data toolkit's ``judge`` cleaning step predates it and keeps its own flat keys.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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

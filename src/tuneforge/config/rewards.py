"""Recipe options of the reward functions (``objective.rewards``): one model per reward ``type``.

``objective.rewards`` is a list; each entry picks its function with ``type`` and carries a ``weight``
(the total a trainer optimises is the weighted sum; a reward's ``None`` = "does not apply" adds 0).
They live apart from ``schema.py`` because the rewards layer (:mod:`tuneforge.rewards`) owns them.
Every function and its options are described in docs/REWARDS.md.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

EXTRACT_HELP = (
    "Where the final answer is read from: marker (the text after the last `marker`, e.g. '#### 42'), "
    "tag (inside the last <tag>...</tag>), or last_number (the last number in the completion)."
)


class _Reward(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    weight: float = Field(1.0, description="Weight of this reward in the total (may be negative or 0 to log it only).")
    name: str | None = Field(
        None, description="Name in logs and metrics (rewards/<name>/mean); defaults to the type (the function's name for type function)."
    )


class _Extracting(_Reward):
    extract: Literal["marker", "tag", "last_number"] = Field("marker", description=EXTRACT_HELP)
    marker: str = Field("####", min_length=1, description="extract: marker: the answer follows the last occurrence of this string.")
    tag: str = Field("answer", min_length=1, pattern=r"^[A-Za-z][\w.-]*$", description="extract: tag: the answer is inside <tag>...</tag>.")


class AnswerMatchReward(_Extracting):
    type: Literal["answer_match"] = "answer_match"
    column: str = Field("answer", min_length=1, description="The row column holding the reference answer (a number or a string).")
    math_verify: bool = Field(
        True,
        description="Compare with math-verify (fractions, LaTeX, 1/2 = 0.5) when the plain numeric comparison cannot decide; "
        "false: numbers compared numerically, anything else as stripped text.",
    )
    tolerance: float = Field(1e-6, ge=0, description="Numbers within this relative tolerance count as equal.")


class FormatReward(_Extracting):
    type: Literal["format"] = "format"
    numeric: bool = Field(True, description="The extracted answer must be a number (e.g. '#### 1,250' or '#### -3.5').")


class IntegerReward(_Extracting):
    type: Literal["integer"] = "integer"


class RegexReward(_Reward):
    type: Literal["regex"] = "regex"
    pattern: str = Field(..., min_length=1, description="A Python regular expression the completion must match.")
    mode: Literal["search", "fullmatch"] = Field("search", description="search: anywhere in the completion; fullmatch: the whole (stripped) completion.")
    multiline: bool = Field(False, description="re.MULTILINE: ^ and $ match at every line.")
    dotall: bool = Field(True, description="re.DOTALL: . matches newlines too.")

    @model_validator(mode="after")
    def _compiles(self) -> RegexReward:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"regex pattern {self.pattern!r} does not compile: {exc}") from None
        return self


class JsonSchemaReward(_Reward):
    type: Literal["json_schema"] = "json_schema"
    json_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="A JSON Schema (inline) the completion's JSON must satisfy; unset: any valid JSON passes."
    )
    schema_file: str | None = Field(None, description="A file holding the JSON Schema (instead of an inline schema).")
    schema_column: str | None = Field(None, description="A row column holding each row's own JSON Schema (object or JSON text).")
    partial: float = Field(0.0, description="Reward for valid JSON that fails the schema (0 = all or nothing).")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> JsonSchemaReward:
        given = [k for k, v in (("schema", self.json_schema), ("schema_file", self.schema_file), ("schema_column", self.schema_column)) if v]
        if len(given) > 1:
            raise ValueError(f"json_schema reward: {' and '.join(given)} are both set; keep one")
        return self


class LengthPenaltyReward(_Reward):
    type: Literal["length_penalty"] = "length_penalty"
    unit: Literal["chars", "words"] = Field("chars", description="What is counted: characters or whitespace-separated words.")
    max_length: int = Field(..., gt=0, description="Completions up to this length get 0; longer ones a penalty.")
    scale: float = Field(1.0, gt=0, description="Penalty per max_length of excess: value = -scale * (length - max_length) / max_length.")
    cap: float = Field(1.0, gt=0, description="The penalty is never below -cap.")


class RewardModelReward(_Reward):
    type: Literal["reward_model"] = "reward_model"
    run: str = Field(..., min_length=1, description="A run directory trained with objective.type: reward; its score is the reward.")
    batch_size: int = Field(8, gt=0, description="Pairs scored per forward pass.")


class JudgeReward(_Reward):
    type: Literal["judge"] = "judge"
    rubric: Literal["quality", "hallucination", "safety"] = Field("quality", description="What the judge rates 1-5 (as tuneforge data clean's judge).")
    instruction: str | None = Field(None, description="Your own rating instruction instead of the rubric (the judge still answers 1-5 as JSON).")
    model: str = Field("smollm2-135m-instruct", description="Local judge model (built-in name, dir, .gguf), used when endpoint is unset.")
    endpoint: str | None = Field(None, description="OpenAI-compatible base URL (e.g. http://localhost:8000/v1); overrides model.")
    endpoint_model: str = Field("default", description="Model name sent to the endpoint.")
    api_key_env: str | None = Field(None, description="Environment variable holding the endpoint's API key.")
    max_new_tokens: int = Field(96, gt=0, description="Reply length limit for the judge.")
    reference_column: str | None = Field(None, description="A row column shown to the judge as the reference answer.")


class FunctionReward(_Reward):
    type: Literal["function"] = "function"
    function: str = Field(
        ...,
        pattern=r"^[^:]+:[A-Za-z_]\w*$",
        description="Your reward function: 'package.module:function' (importable) or 'path/to/file.py:function' "
        "(relative to the working directory); called as f(prompts, completions, **columns) -> list[float | None].",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments passed to the function on every call.")


RewardSpec = Annotated[
    AnswerMatchReward
    | FormatReward
    | IntegerReward
    | RegexReward
    | JsonSchemaReward
    | LengthPenaltyReward
    | RewardModelReward
    | JudgeReward
    | FunctionReward,
    Field(discriminator="type"),
]
REWARD_TYPES = ("answer_match", "format", "integer", "regex", "json_schema", "length_penalty", "reward_model", "judge", "function")
# Verifier rewards: a positive value means the answer is right (rft's default acceptance, eval accuracy).
VERIFIER_TYPES = ("answer_match",)


def reward_spec(data: dict[str, Any]) -> RewardSpec:
    """One reward entry from a dict (what a recipe's list item holds), validated."""
    return _ADAPTER.validate_python(data)


_ADAPTER: TypeAdapter = TypeAdapter(RewardSpec)

"""Recipe models for ``data.pipeline`` steps and ``data.replay``.

Each step of ``tuneforge data clean`` / ``augment`` (and its ``--templates``) / ``convert`` /
``chunk`` has one model here, so a recipe step and a CLI flag set build the same object; the
``step`` key picks the model. They live apart from ``schema.py`` because the data toolkit owns
them and they are many.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NormalizeStep(_Step):
    step: Literal["normalize"] = "normalize"
    nfkc: bool = Field(
        True,
        description="Unicode NFKC (full-width forms, ligatures, compatibility characters).",
    )
    whitespace: bool = Field(
        True,
        description="Strip ends, collapse runs of spaces/tabs, at most one blank line.",
    )
    control: bool = Field(
        True,
        description="Remove control and invisible format characters (keeps newline and tab).",
    )
    lowercase: bool = Field(False, description="Lower-case every text field.")
    punctuation: bool = Field(
        False,
        description="Curly quotes to straight, dashes to '-', repeated !!!/??? to one.",
    )


class DedupStep(_Step):
    step: Literal["dedup"] = "dedup"
    exact: bool = Field(
        True,
        description="Drop rows whose normalised text (case, whitespace, NFKC) was seen before.",
    )
    near: bool = Field(
        False,
        description="Also drop near-duplicates found by MinHash LSH (datasketch).",
    )
    threshold: float = Field(
        0.8,
        gt=0.0,
        lt=1.0,
        description="Estimated Jaccard similarity at or above which rows are near-duplicates.",
    )
    shingle_size: int = Field(
        3,
        ge=1,
        description="Shingle length for near dedup (words, or characters with shingle_unit=char).",
    )
    shingle_unit: Literal["word", "char"] = Field(
        "word", description="Shingles of words or of characters."
    )
    num_perm: int = Field(
        128,
        ge=16,
        le=1024,
        description="MinHash permutations (more: more exact, slower).",
    )
    key: Literal["full", "prompt"] = Field(
        "full", description="Compare the whole example, or only the prompt side."
    )


class SafetyStep(_Step):
    step: Literal["safety"] = "safety"
    blocklist: str | None = Field(
        None,
        description="Extra block-list file (one term or phrase per line) added to the bundled one.",
    )
    allowlist: str | None = Field(
        None,
        description="Extra allow-list file: phrases that are fine even though they contain a blocked term.",
    )
    bundled: bool = Field(True, description="Use the bundled block and allow lists.")
    fields: Literal["all", "prompt", "response"] = Field(
        "all", description="Which side of each example is checked."
    )
    keep_refusals: bool = Field(
        True,
        description="A row whose response is a refusal is checked on the response only, so refusals to harmful requests stay (see the refusals step).",
    )


class PiiStep(_Step):
    step: Literal["pii"] = "pii"
    emails: bool = Field(True, description="Replace e-mail addresses with [EMAIL].")
    phones: bool = Field(True, description="Replace phone numbers with [PHONE].")
    cards: bool = Field(
        True,
        description="Replace card-like numbers (13-19 digits passing the Luhn check) with [CARD].",
    )


class RefusalsStep(_Step):
    step: Literal["refusals"] = "refusals"
    benign: Literal["drop", "flag"] = Field(
        "drop",
        description="Refusals to benign requests: drop them, or keep them and flag them in the trace.",
    )
    patterns: str | None = Field(
        None,
        description="Extra refusal patterns file (one regular expression per line).",
    )


class BalanceStep(_Step):
    step: Literal["balance"] = "balance"
    field: str = Field(..., description="Top-level field holding each row's category.")
    targets: dict[str, float] | Literal["uniform"] = Field(
        "uniform",
        description="Target proportion per category (normalised to sum 1), or 'uniform'.",
    )
    mode: Literal["down", "up"] = Field(
        "down",
        description="down: sample big categories down; up: repeat small ones up.",
    )
    seed: int = Field(0, description="Seed of the sampling.")

    @model_validator(mode="after")
    def _check(self) -> BalanceStep:
        bad = isinstance(self.targets, dict) and (
            not self.targets
            or any(v < 0 for v in self.targets.values())
            or sum(self.targets.values()) <= 0
        )
        if bad:
            raise ValueError(
                "balance.targets needs at least one category with a positive proportion, e.g. {a: 0.5, b: 0.5}"
            )
        return self


class JudgeStep(_Step):
    step: Literal["judge"] = "judge"
    rubric: Literal["quality", "hallucination", "safety"] = Field(
        "quality", description="What the judge scores (1-5)."
    )
    min_score: int = Field(
        3,
        ge=1,
        le=5,
        description="Rows scored below this are removed (the reason is kept).",
    )
    model: str = Field(
        "smollm2-135m-instruct",
        description="Local judge model (built-in name, dir, .gguf), used when endpoint is unset.",
    )
    endpoint: str | None = Field(
        None,
        description="OpenAI-compatible base URL (e.g. http://localhost:8000/v1); overrides model.",
    )
    endpoint_model: str = Field(
        "default", description="Model name sent to the endpoint."
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the endpoint's API key."
    )
    unparsed: Literal["keep", "drop"] = Field(
        "keep",
        description="When the judge's reply has no score: keep (flagged) or drop.",
    )
    max_new_tokens: int = Field(
        96, gt=0, description="Reply length limit for the judge."
    )


class AugmentStep(_Step):
    step: Literal["augment"] = "augment"
    synonyms: int = Field(
        0,
        ge=0,
        description="Synonym-replacement variants per example (bundled lexicon).",
    )
    synonym_rate: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="Share of replaceable words swapped in a synonym variant.",
    )
    paraphrases: int = Field(0, ge=0, description="Model paraphrases per example.")
    back_translations: int = Field(
        0,
        ge=0,
        description="Back-translation variants per example (via pivot_language).",
    )
    pivot_language: str = Field("French", description="Language for back-translation.")
    model: str = Field(
        "smollm2-135m-instruct",
        description="Model for paraphrase and back-translation.",
    )
    max_variants: int = Field(
        3,
        ge=0,
        description="Cap on variants kept per example (after dedup against originals).",
    )
    seed: int = Field(
        0, description="Seed of the synonym choices and generation sampling."
    )
    max_new_tokens: int = Field(
        128, gt=0, description="Generation length limit for model variants."
    )


class TemplatesStep(_Step):
    step: Literal["templates"] = "templates"
    templates: str = Field(
        ...,
        description="File of template rows (any training format) with {slot} placeholders; the filled rows are appended after the input rows.",
    )
    slots: str = Field(
        ..., description="JSON file: an object of slot name -> non-empty list of values."
    )
    limit: int | None = Field(
        None,
        ge=0,
        description="Cap on rows per template (a seeded sample of the slot combinations); default: every combination.",
    )
    seed: int = Field(0, description="Seed of the sample when limit caps the combinations.")


class ConvertStep(_Step):
    step: Literal["convert"] = "convert"
    to: Literal["messages", "sharegpt", "alpaca", "prompt_completion", "text"] = Field(
        ..., description="Target format."
    )


class ChunkStep(_Step):
    step: Literal["chunk"] = "chunk"
    max_tokens: int = Field(512, ge=2, description="Tokens per chunk.")
    overlap: int = Field(0, ge=0, description="Tokens shared by consecutive chunks.")
    tokenizer: str = Field(
        "smollm2-135m-instruct",
        description="Tokenizer (model spec) that counts tokens.",
    )

    @model_validator(mode="after")
    def _check(self) -> ChunkStep:
        if self.overlap >= self.max_tokens:
            raise ValueError(
                f"chunk.overlap {self.overlap} must be smaller than chunk.max_tokens {self.max_tokens}"
            )
        return self


PipelineStep = Annotated[
    NormalizeStep
    | DedupStep
    | SafetyStep
    | PiiStep
    | RefusalsStep
    | BalanceStep
    | JudgeStep
    | AugmentStep
    | TemplatesStep
    | ConvertStep
    | ChunkStep,
    Field(discriminator="step"),
]


class ReplayOptions(_Step):
    file: str = Field(
        ...,
        description="General instruction data mixed into the training set against forgetting.",
    )
    ratio: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="Share of the final training set taken from the replay file.",
    )
    seed: int = Field(0, description="Seed of the replay sample.")

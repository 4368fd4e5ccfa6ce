"""The recipe's ``eval:`` section: one source of truth for the recipe and the ``tuneforge eval`` flags.

``tuneforge eval`` builds its flags into this same model (evaluate/command.py), so a bad
``--metrics`` or ``--regex`` fails with the same ``eval.<key>`` message a recipe would. Metric names
are listed here (not in the evaluate package, which is a higher layer) so the recipe check can
reject a typo before any model loads; tests assert they match the metric registry.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneforge.config.eval_probes import ForgettingOptions, JudgeEvalOptions, SafetyOptions

# Metric name -> the result keys it writes, first the one a report headlines (docs/EVALUATION.md).
# "choice" scores options by log-likelihood with the model itself, so it runs beside the string metrics.
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "exact_match": ("exact_match",),
    "json_fields": ("json_fields", "json_valid", "json_exact"),  # and json_field/<key> per reference key
    "bleu": ("bleu",),  # sacrebleu corpus BLEU, 0-100
    "chrf": ("chrf",),  # sacrebleu corpus chrF2, 0-100
    "rouge": ("rougeL", "rouge1", "rouge2"),  # rouge-score mean F-measure
    "classification": ("macro_f1", "accuracy"),  # and a confusion table
    "json_valid": ("json_valid",),
    "json_schema": ("json_schema_valid",),
    "regex": ("regex_match",),
    "choice": ("choice_accuracy",),
}
METRIC_NAMES = tuple(METRIC_KEYS)


def is_user_metric(name: str) -> bool:
    """``package.module:function`` or ``path/to/file.py:function``: a metric the user wrote."""
    target, sep, function = name.rpartition(":")
    return bool(sep and target and function.isidentifier())


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EvalSection(Section):
    data: str | None = Field(None, description="Held-out file for generation metrics (same formats as training, or multiple-choice rows; docs/EVALUATION.md).")
    before: bool = Field(True, description="Also evaluate the base model, for a before/after report.")
    metrics: list[str] = Field(
        default_factory=lambda: ["exact_match"],
        description="Metrics to compute: " + ", ".join(METRIC_NAMES) + ", or a user metric 'module:function' / 'file.py:function' (docs/EVALUATION.md).",
    )
    task_metric: str | None = Field(None, description="The metric the report headlines (default: the first metric).")
    max_new_tokens: int = Field(128, gt=0, description="Generation length limit for generation metrics.")
    batch_size: int = Field(16, gt=0, description="Prompts generated together.")
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N examples.")
    num_samples: int = Field(5, ge=0, description="Generations shown side by side in the report.")
    labels: list[str] | None = Field(
        None, description="classification: the label set (default: the distinct reference answers); a prediction outside it counts as wrong and shows as '(other)'."
    )
    case_sensitive: bool = Field(False, description="classification: compare labels with case (default: case-insensitive, surrounding whitespace ignored).")
    regex: str | None = Field(None, description="regex: the pattern a whole prediction must match (Python re.fullmatch, after stripping whitespace).")
    json_schema: str | None = Field(None, description="json_schema: path of a JSON Schema file each prediction's JSON must satisfy.")
    choice_normalisation: Literal["none", "tokens", "chars"] = Field(
        "none",
        description="choice: score each option by its summed log-likelihood (none), per token (tokens), or per character (chars, lm-eval's acc_norm).",
    )
    rouge_stemmer: bool = Field(True, description="rouge: Porter-stem words before matching (rouge-score's use_stemmer).")
    price_per_hour: float = Field(
        1.0, ge=0, description="Hardware price per hour (any currency) for the cost per 1,000 requests; the default 1.0 is a placeholder: set your machine's price."
    )
    lm_eval: list[str] = Field(
        default_factory=list, description="lm-eval tasks to run on each evaluated model: a task directory or YAML file (local data, offline), or a task name (needs its data cached)."
    )
    lm_eval_limit: int | None = Field(None, gt=0, description="lm-eval: score only the first N documents of each task.")

    judge: JudgeEvalOptions = Field(default_factory=JudgeEvalOptions, description="LLM-as-judge on the outputs (docs/EVALUATION.md).")
    safety: SafetyOptions = Field(default_factory=SafetyOptions, description="Red-team safety probe (docs/EVALUATION.md).")
    forgetting: ForgettingOptions = Field(default_factory=ForgettingOptions, description="General-capability probe before and after (docs/EVALUATION.md).")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in METRIC_NAMES and not is_user_metric(name):
                raise ValueError(
                    f"unknown metric {name!r}; choose from {', '.join(METRIC_NAMES)}, or name your own as 'module:function' or 'file.py:function'"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"a metric is listed twice in {names}")
        return names

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return pattern

    @model_validator(mode="after")
    def _options_present(self) -> EvalSection:
        """A metric whose option is missing would score nothing; say which key to set."""
        if self.task_metric and self.task_metric not in self.metrics and not any(
            self.task_metric in METRIC_KEYS.get(m, ()) for m in self.metrics
        ):
            raise ValueError(f"eval.task_metric '{self.task_metric}' is not in eval.metrics {self.metrics} nor one of their results; add it there")
        if "regex" in self.metrics and self.regex is None:
            raise ValueError("metric 'regex' needs eval.regex (the pattern a prediction must match)")
        if "json_schema" in self.metrics and self.json_schema is None:
            raise ValueError("metric 'json_schema' needs eval.json_schema (a JSON Schema file)")
        if self.labels is not None and len(set(self.labels)) < 2:
            raise ValueError("eval.labels needs at least two distinct labels")
        return self

    def headline_key(self) -> str | None:
        """The result key the report leads with: task_metric, else the first metric's first result key."""
        name = self.task_metric or (self.metrics[0] if self.metrics else None)
        return METRIC_KEYS[name][0] if name in METRIC_KEYS else name

"""Generation metrics: compare a model's generated strings with reference strings.

Each metric is a function ``(predictions, references, options) -> {name: value}`` so an evaluation
can ask for several by name and merge their results into one flat dict that serialises straight
into ``eval/*.json``; ``options`` is the recipe's ``eval:`` section (label set, regex, schema file...).
One module per family: structured (exact match, JSON fields), text (BLEU, chrF, ROUGE), classify,
validity (JSON, JSON Schema, regex), user (``module:function``). Multiple choice needs the model's
log-probs, not strings: evaluate/choice.py.
"""

from __future__ import annotations

from collections.abc import Callable

from tuneforge.config.eval import METRIC_NAMES, EvalSection, is_user_metric
from tuneforge.errors import ConfigError
from tuneforge.evaluate.metrics.classify import Classification, classification, classify
from tuneforge.evaluate.metrics.structured import check_lengths, exact_match, json_field_accuracy, parse_json_object
from tuneforge.evaluate.metrics.text import bleu, chrf, rouge, sacrebleu_scores
from tuneforge.evaluate.metrics.user import load_metric, run_user_metric
from tuneforge.evaluate.metrics.validity import json_schema_valid, json_valid, load_schema, regex_match

__all__ = [
    "METRICS", "Classification", "classify", "compute_metrics", "exact_match", "json_field_accuracy",
    "parse_json_object", "sacrebleu_scores", "string_metric_names", "check_metrics",
]  # fmt: skip

Metric = Callable[[list[str], list[str], EvalSection], dict[str, float]]

METRICS: dict[str, Metric] = {
    "exact_match": lambda p, r, o: exact_match(p, r),
    "json_fields": lambda p, r, o: json_field_accuracy(p, r),
    "bleu": bleu,
    "chrf": chrf,
    "rouge": rouge,
    "classification": classification,
    "json_valid": json_valid,
    "json_schema": json_schema_valid,
    "regex": regex_match,
}
MODEL_METRICS = ("choice",)  # scored from the model's log-probs (evaluate/choice.py), not from strings


def string_metric_names(names: list[str]) -> list[str]:
    """The names scored from generated strings (all but the model-scored ones)."""
    return [n for n in names if n not in MODEL_METRICS]


def check_metrics(names: list[str], options: EvalSection | None = None) -> None:
    """Fail before any generation: unknown names (with the valid ones), user functions that do not load, a bad schema file."""
    unknown = [n for n in names if n not in METRICS and n not in MODEL_METRICS and not is_user_metric(n)]
    if unknown:
        raise ConfigError(
            f"unknown metric {unknown[0]!r}",
            hint=f"choose from: {', '.join(sorted(METRIC_NAMES))}, or name your own as 'module:function' / 'file.py:function'",
        )
    for name in names:
        if is_user_metric(name) and name not in METRICS:
            load_metric(name)
    if options is not None and "json_schema" in names and options.json_schema:
        load_schema(options.json_schema)


def compute_metrics(names: list[str], predictions: list[str], references: list[str], options: EvalSection | None = None) -> dict[str, float]:
    """Run the named string metrics and merge their results into one flat dict.

    Unknown names are rejected before anything runs, so a typo fails fast with the list of valid
    choices instead of after a long generation pass. Model-scored names ("choice") are skipped here.
    """
    check_metrics(names)
    check_lengths(predictions, references)
    options = options or EvalSection()
    merged: dict[str, float] = {}
    for name in string_metric_names(names):
        if name in METRICS:
            merged.update(METRICS[name](predictions, references, options))
        else:
            merged.update(run_user_metric(name, predictions, references))
    return merged

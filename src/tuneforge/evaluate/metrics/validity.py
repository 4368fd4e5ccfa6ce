"""Format validity: does each prediction parse as JSON, satisfy a JSON Schema, match a regex?

JSON Schema validation is the ``jsonschema`` library's (the reference implementation of the drafts).
A prediction's JSON is found as the json_fields metric finds it (a ```json fence and trailing chatter
are tolerated), so the two metrics agree on what "valid JSON" means.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import jsonschema

from tuneforge.config.eval import EvalSection
from tuneforge.errors import ConfigError
from tuneforge.evaluate.metrics.structured import mean, strip_fence

_MISSING = object()


def parse_json_value(text: str):
    """The first complete JSON value in ``text`` (object, array, number, ...), or ``_MISSING``."""
    try:
        value, _end = json.JSONDecoder().raw_decode(strip_fence(text))
    except json.JSONDecodeError:
        return _MISSING
    return value


def json_valid(predictions: list[str], references: list[str], options: EvalSection) -> dict[str, float]:
    """Fraction of predictions that hold a JSON value (any type)."""
    return {"json_valid": mean([float(parse_json_value(p) is not _MISSING) for p in predictions])}


@functools.lru_cache(maxsize=8)
def load_schema(path: str) -> dict:
    """Read and check eval.json_schema once per file: a bad schema is a recipe error, not a model's."""
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"eval.json_schema: cannot read {path}: {exc}", hint="give the path of a JSON Schema file") from None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"eval.json_schema: {path} is not a valid JSON Schema: {exc.message}", hint="fix the schema") from None
    return schema


def json_schema_valid(predictions: list[str], references: list[str], options: EvalSection) -> dict[str, float]:
    """Fraction of predictions whose JSON satisfies eval.json_schema (unparsable counts as invalid)."""
    if options.json_schema is None:
        raise ConfigError("metric 'json_schema' needs eval.json_schema (a JSON Schema file)", hint="set eval.json_schema, or --json-schema FILE")
    schema = load_schema(options.json_schema)
    validator = jsonschema.validators.validator_for(schema)(schema)
    hits = []
    for prediction in predictions:
        value = parse_json_value(prediction)
        hits.append(float(value is not _MISSING and validator.is_valid(value)))
    return {"json_schema_valid": mean(hits)}


def regex_match(predictions: list[str], references: list[str], options: EvalSection) -> dict[str, float]:
    """Fraction of predictions that eval.regex matches whole (re.fullmatch after stripping whitespace)."""
    if options.regex is None:
        raise ConfigError("metric 'regex' needs eval.regex (the pattern a prediction must match)", hint="set eval.regex, or --regex PATTERN")
    pattern = re.compile(options.regex)
    return {"regex_match": mean([float(pattern.fullmatch(p.strip()) is not None) for p in predictions])}

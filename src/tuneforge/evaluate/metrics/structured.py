"""Exact match and JSON field accuracy: answers compared with their reference strings.

These are pure Python on purpose: the JSON parsing rules here are specific to how small chat models
wrap structured answers (code fences, chatter after the object), which no general library scores the
way we want.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Metric = Callable[[list[str], list[str]], dict[str, float]]

_FENCE = "```"


def check_lengths(predictions: list[str], references: list[str]) -> None:
    """Refuse mismatched inputs: zipping them would silently score the wrong pairs."""
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references; "
            "each prediction must have exactly one reference"
        )


def mean(values: list[float]) -> float:
    """Mean that is 0.0 for no values, so an empty eval set reports zeros instead of crashing."""
    return sum(values) / len(values) if values else 0.0


def exact_match(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Fraction of predictions equal to their reference, ignoring surrounding whitespace.

    Whitespace is stripped because generation often ends with a newline or starts with a space
    that carries no meaning for the answer.
    """
    check_lengths(predictions, references)
    hits = [float(p.strip() == r.strip()) for p, r in zip(predictions, references)]
    return {"exact_match": mean(hits)}


def strip_fence(text: str) -> str:
    """Remove a leading Markdown code fence (```` ``` ```` or ```` ```json ````) and its closer.

    Chat models like to wrap JSON in a fence even when asked not to; the content is still a
    correct answer, so it should score as one.
    """
    text = text.strip()
    if not text.startswith(_FENCE):
        return text
    newline = text.find("\n")
    body = text[newline + 1 :] if newline != -1 else text[len(_FENCE) :]
    closer = body.find(_FENCE)
    return (body[:closer] if closer != -1 else body).strip()


def parse_json_object(text: str) -> dict[str, Any] | None:
    """Parse the first complete top-level JSON object in ``text``, or return None.

    Tolerates surrounding whitespace, a ```json fence, and any text after the object (a model
    that answers correctly and then keeps talking still answered correctly). Anything before the
    object, or a value that is not an object, counts as invalid: nothing fancier, so the metric
    stays predictable.
    """
    body = strip_fence(text)
    try:
        value, _end = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _parse_reference(text: str, index: int) -> dict[str, Any]:
    """Parse a reference strictly: a bad reference is a data bug, not a model mistake."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"reference {index} is not valid JSON ({exc.msg}): {text!r}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"reference {index} is JSON but not an object: {text!r}")
    return value


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: Python's ``True == 1`` would otherwise score ``true`` for ``1``."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _field_hits(got: dict[str, Any] | None, expected: dict[str, Any]) -> dict[str, float]:
    """1.0 per reference key the prediction has with an equal value, else 0.0 (missing counts wrong)."""
    if got is None:
        return {key: 0.0 for key in expected}
    return {key: float(key in got and _same_json(got[key], value)) for key, value in expected.items()}


def json_field_accuracy(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Score structured-extraction answers field by field against JSON-object references.

    Per example, the score is the fraction of the reference's keys whose value the prediction
    has equal (a missing key or an unparsable prediction counts as wrong). Per-field accuracies
    show which field a model has not learned yet, which a single exact-match number hides.

    Returns ``json_valid`` (predictions that parse to an object), ``json_fields`` (mean per-example
    field accuracy), ``json_exact`` (all reference fields equal) and ``json_field/<key>`` for every
    key that appears in any reference, averaged over the references that have that key.
    """
    check_lengths(predictions, references)
    valid: list[float] = []
    field_scores: list[float] = []
    exact: list[float] = []
    per_key: dict[str, list[float]] = {}
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        expected = _parse_reference(reference, index)
        got = parse_json_object(prediction)
        hits = _field_hits(got, expected)
        for key, hit in hits.items():
            per_key.setdefault(key, []).append(hit)
        valid.append(float(got is not None))
        # A reference with no keys has nothing to get wrong: it scores as valid-or-not.
        field_scores.append(mean(list(hits.values())) if hits else valid[-1])
        exact.append(float(got is not None and all(hits.values())))
    result = {
        "json_valid": mean(valid),
        "json_fields": mean(field_scores),
        "json_exact": mean(exact),
    }
    for key in sorted(per_key):
        result[f"json_field/{key}"] = mean(per_key[key])
    return result

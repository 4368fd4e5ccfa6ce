"""Generation metrics on handmade cases with exact expected numbers."""

from __future__ import annotations

import pytest

from tuneforge.config.eval import METRIC_NAMES
from tuneforge.errors import ConfigError
from tuneforge.evaluate.metrics import (
    METRICS,
    compute_metrics,
    exact_match,
    json_field_accuracy,
    parse_json_object,
)

REF_FULL = '{"category": "billing", "priority": "high", "product": "Luma desk lamp", "order_id": "A-48213"}'
REF_NULL = '{"category": "billing", "priority": "high", "product": "Luma desk lamp", "order_id": null}'
REF_MOUSE = '{"category": "refund", "priority": "low", "product": "Glide wireless mouse", "order_id": null}'
REF_QUILL = '{"category": "shipping", "priority": "medium", "product": "Quill e-reader", "order_id": "B-20001"}'


# --- exact_match -----------------------------------------------------------------------------


def test_exact_match_strips_whitespace_only() -> None:
    preds = ["a", " b\n", "c", "D"]
    refs = ["a", "b", "d", "d"]
    assert exact_match(preds, refs) == {"exact_match": 0.5}


def test_exact_match_empty_is_zero() -> None:
    assert exact_match([], []) == {"exact_match": 0.0}


@pytest.mark.parametrize("metric", [exact_match, json_field_accuracy])
def test_length_mismatch_raises(metric) -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metric(["{}", "{}"], ["{}"])


# --- parse_json_object -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('  \n{"a": 1}\n ', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```\n{"a": 1}\n```\nDone.', {"a": 1}),
        ('```json\n{"a": 1}', {"a": 1}),  # unclosed fence, e.g. generation cut off
        ('{"a": 1} I hope this helps! {"b": 2}', {"a": 1}),
        ('{"a": {"b": [1, 2]}}\n\nExplanation: ...', {"a": {"b": [1, 2]}}),
        ('Sure! {"a": 1}', None),  # text before the object is not tolerated
        ('{"a": 1', None),  # truncated
        ("[1, 2]", None),  # valid JSON, not an object
        ('"a"', None),
        ("", None),
    ],
)
def test_parse_json_object(text: str, expected: dict | None) -> None:
    assert parse_json_object(text) == expected


# --- json_field_accuracy ---------------------------------------------------------------------


def test_json_field_accuracy_mixed_batch() -> None:
    preds = [
        # fenced, all four fields right
        '```json\n{"category": "billing", "priority": "high", "product": "Luma desk lamp", '
        '"order_id": "A-48213"}\n```',
        # trailing text; priority wrong; null order_id matches null
        '{"category": "billing", "priority": "low", "product": "Luma desk lamp", "order_id": null}'
        " Hope this helps!",
        # truncated: invalid, scores zero on every field
        '{"category": "refund", "priority": ',
        # valid but missing priority and order_id
        '  {"category": "shipping", "product": "Quill e-reader"}\n',
    ]
    refs = [REF_FULL, REF_NULL, REF_MOUSE, REF_QUILL]
    assert json_field_accuracy(preds, refs) == {
        "json_valid": 0.75,
        "json_fields": (1.0 + 0.75 + 0.0 + 0.5) / 4,
        "json_exact": 0.25,
        "json_field/category": 0.75,
        "json_field/order_id": 0.5,
        "json_field/priority": 0.25,
        "json_field/product": 0.75,
    }


def test_null_is_not_a_missing_key_or_string() -> None:
    refs = [REF_NULL] * 3
    preds = [
        '{"category": "billing", "priority": "high", "product": "Luma desk lamp"}',
        '{"category": "billing", "priority": "high", "product": "Luma desk lamp", "order_id": "null"}',
        '{"category": "billing", "priority": "high", "product": "Luma desk lamp", "order_id": null}',
    ]
    result = json_field_accuracy(preds, refs)
    assert result["json_field/order_id"] == pytest.approx(1 / 3)
    assert result["json_exact"] == pytest.approx(1 / 3)
    assert result["json_fields"] == pytest.approx((0.75 + 0.75 + 1.0) / 3)


def test_extra_predicted_keys_do_not_count_against() -> None:
    pred = '{"category": "billing", "priority": "high", "product": "Luma desk lamp", "order_id": "A-48213", "x": 1}'
    assert json_field_accuracy([pred], [REF_FULL])["json_exact"] == 1.0


def test_json_types_must_match() -> None:
    # Python says True == 1 and "1" != 1; as JSON answers, true, 1 and "1" are all different.
    refs = ['{"n": 1}', '{"n": 1}', '{"n": true}']
    preds = ['{"n": true}', '{"n": "1"}', '{"n": 1}']
    assert json_field_accuracy(preds, refs)["json_fields"] == 0.0


def test_per_field_accuracy_only_over_references_with_that_key() -> None:
    refs = ['{"a": 1}', '{"a": 1, "b": 2}']
    preds = ['{"a": 1, "b": 3}', '{"a": 0, "b": 2}']
    result = json_field_accuracy(preds, refs)
    assert result["json_field/a"] == 0.5
    assert result["json_field/b"] == 1.0  # the first example has no "b" in its reference
    assert result["json_fields"] == (1.0 + 0.5) / 2
    assert result["json_exact"] == 0.5


def test_nested_values_compare_regardless_of_key_order() -> None:
    result = json_field_accuracy(['{"a": {"y": 2, "x": 1}}'], ['{"a": {"x": 1, "y": 2}}'])
    assert result["json_exact"] == 1.0


@pytest.mark.parametrize(("bad", "message"), [("[1, 2]", "not an object"), ("oops", "not valid JSON")])
def test_bad_reference_names_its_index(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=rf"reference 1 .*{message}"):
        json_field_accuracy(['{"a": 1}', '{"a": 1}'], ['{"a": 1}', bad])


def test_empty_inputs_score_zero() -> None:
    assert json_field_accuracy([], []) == {"json_valid": 0.0, "json_fields": 0.0, "json_exact": 0.0}


# --- registry --------------------------------------------------------------------------------


def test_registry_names_match_the_config_list() -> None:
    # config/eval.py lists the names so a recipe typo fails at load time; the two lists must agree
    assert set(METRICS) | {"choice"} == set(METRIC_NAMES)


def test_compute_metrics_merges_results() -> None:
    preds = [REF_FULL, "not json"]
    refs = [REF_FULL, REF_MOUSE]
    result = compute_metrics(["exact_match", "json_fields"], preds, refs)
    assert result["exact_match"] == 0.5
    assert result["json_valid"] == 0.5
    assert result["json_fields"] == 0.5
    assert result["json_field/product"] == 0.5
    assert set(result) == {"exact_match", "json_valid", "json_fields", "json_exact"} | {
        f"json_field/{key}" for key in ("category", "priority", "product", "order_id")
    }


def test_compute_metrics_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        compute_metrics(["exact_match", "blue"], ["a"], ["a"])
    text = str(info.value)
    assert "'blue'" in text
    assert "exact_match" in text and "json_fields" in text and "rouge" in text

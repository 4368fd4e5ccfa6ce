"""Every built-in reward on hand-made completions, against the value worked out by hand."""

from __future__ import annotations

import pytest

from tuneforge.config.rewards import reward_spec
from tuneforge.errors import ConfigError
from tuneforge.rewards.build import build_reward
from tuneforge.rewards.extract import extract_answer


def values(spec: dict, completions: list[str], **columns) -> list:
    reward = build_reward(reward_spec(spec), "r")
    return reward.fn(["p"] * len(completions), completions, **columns)


def test_extract_answer_marker_tag_last_number():
    assert extract_answer("x #### 1 then\n#### 42 apples\nbye", "marker") == "42 apples"
    assert extract_answer("no marker 7", "marker") is None
    assert extract_answer("####   \n", "marker") is None
    assert extract_answer("<answer>3</answer> and <answer> 5 </answer>", "tag") == "5"
    assert extract_answer("<answer>3", "tag") is None
    assert extract_answer("2 and 3.5 then -4", "last_number") == "-4"
    assert extract_answer("<ans>9</ans>", "tag", tag="ans") == "9"


def test_answer_match_numbers_text_and_missing_reference():
    completions = ["so #### 12", "#### 12.0", "#### 1,200", "#### 13", "no answer", "#### 12 apples", "#### $12."]
    assert values({"type": "answer_match"}, completions, answer=["12", "12", "1200", "12", "12", "12", 12]) == [1, 1, 1, 0, 0, 1, 1]
    # no reference in the row: does not apply
    assert values({"type": "answer_match"}, ["#### 1", "#### 1"], answer=[None, ""]) == [None, None]
    assert values({"type": "answer_match"}, ["#### 1"]) == [None]  # no such column at all
    assert values({"type": "answer_match", "column": "gold"}, ["#### Paris", "#### paris ", "#### Rome"], gold=["Paris"] * 3) == [1, 1, 0]


def test_answer_match_tolerance_tag_and_math_verify():
    assert values({"type": "answer_match", "tolerance": 0.01}, ["#### 100.5", "#### 102"], answer=["100", "100"]) == [1, 0]
    assert values({"type": "answer_match", "extract": "tag"}, ["<answer>7</answer>", "7"], answer=["7", "7"]) == [1, 0]
    assert values({"type": "answer_match"}, ["#### 1/2", "#### \\frac{1}{2}", "#### 1/3"], answer=["0.5"] * 3) == [1, 1, 0]
    assert values({"type": "answer_match", "math_verify": False}, ["#### 1/2"], answer=["0.5"]) == [0]


def test_format_and_integer():
    completions = ["#### 12", "#### 12.5", "#### twelve", "12", "#### -3", "#### 1,000"]
    assert values({"type": "format"}, completions) == [1, 1, 0, 0, 1, 1]
    assert values({"type": "format", "numeric": False}, completions) == [1, 1, 1, 0, 1, 1]
    assert values({"type": "integer"}, completions) == [1, 0, 0, 0, 1, 1]
    assert values({"type": "integer", "extract": "last_number"}, ["a 3 b 4.5", "x 7"]) == [0, 1]


def test_regex():
    spec = {"type": "regex", "pattern": r"^<think>.*</think>\s*<answer>.*</answer>$", "mode": "fullmatch"}
    assert values(spec, ["<think>a\nb</think> <answer>1</answer>", "<answer>1</answer>", " <think>x</think><answer>2</answer>\n"]) == [1, 0, 1]
    assert values({"type": "regex", "pattern": "####"}, ["a #### 1", "none"]) == [1, 0]
    with pytest.raises(ValueError, match="does not compile"):
        reward_spec({"type": "regex", "pattern": "(unclosed"})


def test_length_penalty_closed_form():
    spec = {"type": "length_penalty", "max_length": 10, "scale": 2.0, "cap": 1.5}
    # excess 0, 5 (-> -2*0.5 = -1.0), 20 (-> -4 capped at -1.5)
    assert values(spec, ["x" * 10, "x" * 15, "x" * 30]) == [0, -1.0, -1.5]
    assert values({"type": "length_penalty", "unit": "words", "max_length": 2}, ["a b", "a b c d"]) == [0, -1.0]


def test_json_schema_validity_without_schema():
    out = values({"type": "json_schema"}, ['{"a": 1}', "```json\n[1, 2]\n```", "{bad", "text"])
    assert out == [1, 1, 0, 0]


def test_json_schema_with_schema():
    pytest.importorskip("jsonschema")
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    out = values({"type": "json_schema", "schema": schema, "partial": 0.25}, ['{"a": 1}', '{"a": "x"}', "nope"])
    assert out == [1, 0.25, 0]
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        values({"type": "json_schema", "schema": {"type": 5}}, ["{}"])


def test_json_schema_sources_are_exclusive():
    with pytest.raises(ValueError, match="keep one"):
        reward_spec({"type": "json_schema", "schema": {"type": "object"}, "schema_column": "s"})


def test_json_schema_field_name_round_trips():
    dumped = reward_spec({"type": "json_schema", "schema": {"type": "object"}}).model_dump(mode="json")
    assert reward_spec(dumped).json_schema == {"type": "object"}  # a resolved recipe.yaml re-loads

"""Format validity (JSON, JSON Schema, regex), user metrics from a temp module, and the eval: options' errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tuneforge.config.eval import EvalSection
from tuneforge.config.load import load_recipe
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.evaluate.command import eval_options
from tuneforge.evaluate.metrics import compute_metrics

SCHEMA = {
    "type": "object",
    "properties": {"priority": {"enum": ["low", "high"]}, "n": {"type": "integer"}},
    "required": ["priority"],
}


def test_json_valid_accepts_any_json_value_and_fences() -> None:
    preds = ['{"a": 1}', "[1, 2]", '```json\n{"a": 1}\n```', "{not json", "Sure: {}"]
    assert compute_metrics(["json_valid"], preds, [""] * 5) == {"json_valid": pytest.approx(3 / 5)}


def test_json_schema_validity(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    preds = [
        '{"priority": "high", "n": 3}',  # valid
        '{"priority": "urgent"}',  # enum violated
        '{"n": 3}',  # required key missing
        '{"priority": "low", "n": "3"}',  # wrong type
        "not json",
    ]
    options = EvalSection(metrics=["json_schema"], json_schema=str(schema))
    assert compute_metrics(["json_schema"], preds, [""] * 5, options) == {"json_schema_valid": pytest.approx(1 / 5)}


def test_bad_schema_file_is_a_config_error(tmp_path: Path) -> None:
    schema = tmp_path / "bad.json"
    schema.write_text('{"type": "no-such-type"}')
    with pytest.raises(ConfigError, match="eval.json_schema: .*not a valid JSON Schema"):
        compute_metrics(["json_schema"], ["{}"], [""], EvalSection(metrics=["json_schema"], json_schema=str(schema)))


def test_regex_must_match_the_whole_answer() -> None:
    options = EvalSection(metrics=["regex"], regex=r"[A-Z]-\d{5}")
    preds = ["A-12345", "  B-00001\n", "order A-12345", "A-1234"]
    assert compute_metrics(["regex"], preds, [""] * 4, options) == {"regex_match": 0.5}


def test_user_metric_from_a_file_and_a_module(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "my_metrics.py").write_text(
        "def length_ratio(predictions, references):\n"
        "    return {'length_ratio': sum(len(p) for p in predictions) / sum(len(r) for r in references)}\n"
        "def hits(predictions, references):\n"
        "    return sum(p == r for p, r in zip(predictions, references)) / len(predictions)\n"
    )
    by_file = compute_metrics([f"{tmp_path / 'my_metrics.py'}:length_ratio"], ["ab", "c"], ["abc", "def"])
    assert by_file == {"length_ratio": pytest.approx(3 / 6)}
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_metrics", None)
    assert compute_metrics(["my_metrics:hits"], ["a", "b"], ["a", "c"]) == {"hits": 0.5}  # a float is named after the function


def test_user_metric_errors(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("def bad(predictions, references):\n    return 'high'\n")
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        compute_metrics([f"{tmp_path / 'm.py'}:nope"], ["a"], ["a"])
    with pytest.raises(ConfigError, match="does not exist"):
        compute_metrics([f"{tmp_path / 'missing.py'}:f"], ["a"], ["a"])
    with pytest.raises(TuneforgeError, match="returned str"):
        compute_metrics([f"{tmp_path / 'm.py'}:bad"], ["a"], ["a"])


@pytest.mark.parametrize(
    ("eval_section", "message"),
    [
        ({"metrics": ["blue"]}, "eval.metrics: unknown metric 'blue'"),
        ({"metrics": ["regex"]}, "metric 'regex' needs eval.regex"),
        ({"metrics": ["json_schema"]}, "needs eval.json_schema"),
        ({"metrics": ["regex"], "regex": "(unclosed"}, "eval.regex: not a valid regular expression"),
        ({"choice_normalisation": "bytes"}, "eval.choice_normalisation"),
        ({"metrics": ["exact_match"], "task_metric": "json_fields"}, "not in eval.metrics"),
        ({"labels": ["only"]}, "at least two distinct labels"),
    ],
)
def test_recipe_and_flags_give_the_same_key_path_errors(eval_section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_recipe(base={"data": {"train": "t.jsonl"}, "eval": eval_section})
    with pytest.raises(ConfigError, match=message):
        eval_options(EvalSection(), eval_section)


def test_task_metric_may_name_a_result_key() -> None:
    assert EvalSection(metrics=["rouge"], task_metric="rouge1").headline_key() == "rouge1"
    assert EvalSection(metrics=["rouge"]).headline_key() == "rougeL"
    assert EvalSection(metrics=["my.py:score"]).headline_key() == "my.py:score"


def test_flags_override_the_runs_section() -> None:
    base = EvalSection(metrics=["classification"], labels=["a", "b"], price_per_hour=2.0)
    got = eval_options(base, {"price_per_hour": 3.5, "regex": None, "metrics": ["classification", "regex"], "labels": None} | {"regex": "a|b"})
    assert got.price_per_hour == 3.5 and got.labels == ["a", "b"] and got.regex == "a|b"


def test_probe_flags_merge_into_the_runs_probe_sections() -> None:
    from tuneforge.evaluate.command import probe_flags

    base = EvalSection.model_validate({"judge": {"client": {"model": "my-judge"}, "limit": 5}, "forgetting": {"max_drop": 0.2}})
    got = eval_options(base, probe_flags(safety=True, forgetting=True, judge=True, pairwise=None, judge_limit=None))
    assert got.safety.enabled and got.forgetting.enabled and got.judge.enabled
    assert got.judge.client.model == "my-judge" and got.judge.limit == 5 and got.forgetting.max_drop == 0.2
    assert not got.judge.pairwise
    untouched = eval_options(base, probe_flags(safety=None, forgetting=None, judge=None, pairwise=None, judge_limit=None))
    assert untouched == base
    with pytest.raises(ConfigError, match="eval.judge.limit"):
        eval_options(base, probe_flags(safety=None, forgetting=None, judge=True, pairwise=None, judge_limit=0))

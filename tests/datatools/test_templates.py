"""The ``templates`` step: the same filled rows from a recipe's data.pipeline and from `tuneforge data augment`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.datatools.conftest import read_jsonl, write_jsonl
from tuneforge.cli.main import app
from tuneforge.config import load_recipe
from tuneforge.config.pipeline import TemplatesStep
from tuneforge.datatools.pipeline import prepare_training_file, run_pipeline
from tuneforge.datatools.templates import fill_templates
from tuneforge.errors import ConfigError, DataError

runner = CliRunner()

TEMPLATE = {"instruction": "Weather in {city} on {day}?", "output": "Sunny in {city}."}
SLOTS = {"city": ["Paris", "Rome"], "day": ["Monday", "Tuesday"]}
FILLED = [
    "Weather in Paris on Monday?",
    "Weather in Paris on Tuesday?",
    "Weather in Rome on Monday?",
    "Weather in Rome on Tuesday?",
]
ORIGINALS = [{"instruction": "Hello", "output": "Hi"}, {"instruction": "Bye", "output": "See you"}]


@pytest.fixture
def files(tmp_path):
    """(data, templates, slots, bad templates) files; the bad template fills into a list-valued output."""
    (tmp_path / "slots.json").write_text(json.dumps(SLOTS), encoding="utf-8")
    return (
        write_jsonl(tmp_path / "data.jsonl", ORIGINALS),
        write_jsonl(tmp_path / "tpl.jsonl", [TEMPLATE]),
        tmp_path / "slots.json",
        write_jsonl(tmp_path / "bad_tpl.jsonl", [{"instruction": "Weather in {city}?", "output": ["{city}"]}]),
    )


def test_fill_templates(tmp_path):
    tpl = write_jsonl(tmp_path / "t.jsonl", [TEMPLATE])
    slots = tmp_path / "s.json"
    slots.write_text(json.dumps(SLOTS))
    rows = list(fill_templates(tpl, slots))
    assert [r["instruction"] for r in rows] == FILLED
    assert rows[3]["output"] == "Sunny in Rome."
    assert len(list(fill_templates(tpl, slots, limit=3))) == 3
    slots.write_text(json.dumps({"city": ["Paris"]}))
    with pytest.raises(DataError, match="unknown slot"):
        list(fill_templates(tpl, slots))


def test_step_appends_filled_rows_after_the_input_and_traces_each(tmp_path, files):
    data, tpl, slots, _ = files
    step = TemplatesStep(templates=str(tpl), slots=str(slots))
    result = run_pipeline(data, tmp_path / "o.jsonl", [step], report_dir=tmp_path / "r")
    rows = read_jsonl(tmp_path / "o.jsonl")
    assert rows[:2] == ORIGINALS and [r["instruction"] for r in rows[2:]] == FILLED
    assert result.counts == {"templates": {"added": 4}}
    trace = read_jsonl(tmp_path / "r" / "trace.jsonl")
    assert [t["source"] for t in trace] == [f"{tpl} (filled {i})" for i in range(1, 5)]
    assert {t["reason"] for t in trace} == {"template filled"}


def test_limit_samples_combinations_with_the_seed(tmp_path, files):
    data, tpl, slots, _ = files

    def filled(seed: int) -> list[str]:
        step = TemplatesStep(templates=str(tpl), slots=str(slots), limit=2, seed=seed)
        run_pipeline(data, tmp_path / "o.jsonl", [step], report_dir=tmp_path / "r")
        return [r["instruction"] for r in read_jsonl(tmp_path / "o.jsonl")[2:]]

    assert len(filled(0)) == 2 and set(filled(0)) <= set(FILLED)
    assert filled(0) == filled(0)


def _recipe(data, pipeline: list[dict]):
    return load_recipe(base={"data": {"train": str(data), "pipeline": pipeline}}, overrides=[])


def test_recipe_pipeline_fills_templates_for_training(tmp_path, files):
    data, tpl, slots, _ = files
    # The filled rows go through the later steps like any other: dedup drops the repeated template.
    twice = write_jsonl(tmp_path / "twice.jsonl", [TEMPLATE, TEMPLATE])
    recipe = _recipe(
        data,
        [
            {"step": "templates", "templates": str(twice), "slots": str(slots)},
            {"step": "dedup"},
        ],
    )
    path = prepare_training_file(recipe, tmp_path / "run")
    assert path == str(tmp_path / "run" / "data_pipeline" / "train.jsonl")
    rows = read_jsonl(path)
    assert rows[:2] == ORIGINALS and [r["instruction"] for r in rows[2:]] == FILLED
    steps = {(t["step"], t["action"]) for t in read_jsonl(tmp_path / "run" / "data_pipeline" / "trace.jsonl")}
    assert steps == {("templates", "added"), ("dedup", "removed")}


def test_recipe_bad_filled_row_names_the_template_file(tmp_path, files):
    data, _, slots, bad = files
    recipe = _recipe(data, [{"step": "templates", "templates": str(bad), "slots": str(slots)}])
    with pytest.raises(DataError) as exc:
        prepare_training_file(recipe, tmp_path / "run")
    assert exc.value.message == (
        f"{bad}: filled template 1 is not a valid alpaca row: field 'output' must be a string, got list"
    )


def test_recipe_templates_step_needs_both_files(files):
    data, tpl, _, _ = files
    with pytest.raises(ConfigError, match="slots"):
        _recipe(data, [{"step": "templates", "templates": str(tpl)}])


def test_cli_augment_templates_is_the_same_step(tmp_path, files):
    data, tpl, slots, _ = files
    res = runner.invoke(
        app,
        ["data", "augment", str(data), "-o", str(tmp_path / "a.jsonl"), "--templates", str(tpl), "--slots", str(slots)],
    )
    assert res.exit_code == 0, res.output
    recipe = _recipe(data, [{"step": "augment"}, {"step": "templates", "templates": str(tpl), "slots": str(slots)}])
    assert read_jsonl(tmp_path / "a.jsonl") == read_jsonl(prepare_training_file(recipe, tmp_path / "run"))
    assert "templates: 4 added" in res.output
    res = runner.invoke(
        app,
        ["data", "augment", str(data), "-o", str(tmp_path / "b.jsonl"), "--templates", str(tpl),
         "--slots", str(slots), "--template-limit", "1"],
    )
    assert res.exit_code == 0 and len(read_jsonl(tmp_path / "b.jsonl")) == 3


def test_cli_bad_filled_row_exits_2_naming_the_template_file(tmp_path, files):
    data, _, slots, bad = files
    res = runner.invoke(
        app,
        ["data", "augment", str(data), "-o", str(tmp_path / "a.jsonl"), "--templates", str(bad), "--slots", str(slots)],
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"error: {bad}: filled template 1 is not a valid alpaca row: field 'output'" in res.output


def test_cli_templates_and_slots_go_together(tmp_path, files):
    data, tpl, _, _ = files
    res = runner.invoke(app, ["data", "augment", str(data), "-o", str(tmp_path / "a.jsonl"), "--templates", str(tpl)])
    assert res.exit_code == 2 and "--templates and --slots go together" in res.output
    res = runner.invoke(
        app,
        ["data", "augment", str(data), "-o", str(tmp_path / "a.jsonl"), "--templates", str(tpl),
         "--slots", str(tmp_path / "slots.json"), "--template-limit", "-1"],
    )
    assert res.exit_code == 2 and "--template-limit" in res.output and "Traceback" not in res.output

"""The recipe form generated from the schema: fields, defaults, help texts, round trips and field errors."""

from __future__ import annotations

import yaml

from tuneforge.config.schema import Recipe, TrainingSection
from tuneforge.ui.form import choice_label, field_errors, form_fields, from_recipe_dict, recipe_value, to_recipe_dict, widget_value

FIELDS = form_fields()
BY_KEY = {f.key: f for f in FIELDS}


def test_every_scalar_option_has_a_field_with_the_schema_default_and_help():
    lr = BY_KEY["training.learning_rate"]
    assert lr.kind == "float" and lr.default == 2e-4
    assert lr.help == TrainingSection.model_fields["learning_rate"].description
    assert BY_KEY["method.lora.r"].kind == "int"
    assert BY_KEY["training.max_steps"].optional and BY_KEY["training.max_steps"].default is None
    assert BY_KEY["data.train"].required
    assert BY_KEY["method.type"].kind == "choice" and "lora" in BY_KEY["method.type"].choices
    assert BY_KEY["training.report_to"].kind == "multichoice"
    # every training option with a scalar type is in the form (the schema is the only source)
    scalar = [k for k, f in TrainingSection.model_fields.items() if k not in ("ewc",)]
    assert all(f"training.{k}" in BY_KEY for k in scalar)
    # structured options are YAML-only: no widget for pipeline steps, rewards or the optional replay section
    assert "data.pipeline" not in BY_KEY and "objective.rewards" not in BY_KEY
    assert not any(k.startswith("data.replay") for k in BY_KEY)


def test_defaults_give_a_minimal_yaml_and_changes_show_up():
    values, extra = from_recipe_dict(FIELDS, {"data": {"train": "t.jsonl"}})
    assert to_recipe_dict(FIELDS, values, extra) == {"data": {"train": "t.jsonl"}}
    values[list(BY_KEY).index("training.epochs")] = 1
    values[list(BY_KEY).index("method.type")] = "dora"
    assert to_recipe_dict(FIELDS, values, extra) == {"method": {"type": "dora"}, "data": {"train": "t.jsonl"}, "training": {"epochs": 1}}


def test_round_trip_keeps_yaml_only_keys_and_every_value():
    recipe = {
        "model": {"name": "m"},
        "data": {"train": "t.jsonl", "pipeline": [{"step": "dedup"}], "max_length": 64},
        "training": {"compile": True, "report_to": ["tensorboard"], "max_steps": 5, "threads": None},
        "eval": {"metrics": ["exact_match", "json_fields"]},
    }
    values, extra = from_recipe_dict(FIELDS, recipe)
    assert extra == {"data": {"pipeline": [{"step": "dedup"}]}}
    back = to_recipe_dict(FIELDS, values, extra)
    assert Recipe.model_validate(back) == Recipe.model_validate(recipe)
    assert back["data"]["pipeline"] == [{"step": "dedup"}] and back["training"]["compile"] is True


def test_widget_values_convert_back():
    compile_field = BY_KEY["training.compile"]
    assert choice_label(True) == "true" and widget_value(compile_field, True) == "true"
    assert recipe_value(compile_field, "true") is True and recipe_value(compile_field, "auto") == "auto"
    assert recipe_value(BY_KEY["training.max_steps"], 4.0) == 4
    assert recipe_value(BY_KEY["training.max_steps"], "") is None and recipe_value(BY_KEY["training.max_steps"], "12") == 12
    assert widget_value(BY_KEY["training.max_steps"], None) == ""  # an optional number is a text box
    assert recipe_value(BY_KEY["training.neftune_alpha"], "1e-1") == 0.1 and recipe_value(BY_KEY["training.max_steps"], "x") == "x"
    assert recipe_value(BY_KEY["data.validation"], "  ") is None  # an empty optional text is "not set"
    free = [f for f in FIELDS if f.kind == "multichoice" and not f.choices][0]
    assert recipe_value(free, "a, b,") == ["a", "b"] and widget_value(free, ["a", "b"]) == "a, b"


def test_errors_land_on_their_field():
    on_field, general = field_errors(FIELDS, {"data": {"train": "t.jsonl"}, "training": {"batch_size": 0}})
    assert list(on_field) == ["training.batch_size"] and "greater than 0" in on_field["training.batch_size"]
    assert not general
    on_field, _ = field_errors(FIELDS, {})
    assert "required" in on_field["data.train"]
    # a cross-section rule has no location: it goes to the first form key its message names
    on_field, general = field_errors(FIELDS, {"data": {"train": "t.jsonl", "format": "text"}, "objective": {"type": "sft"}})
    assert "objective.type" in on_field and "data.format" in on_field["objective.type"] and not general
    assert field_errors(FIELDS, {"data": {"train": "t.jsonl"}}) == ({}, [])


def test_the_yaml_is_a_recipe_load_recipe_accepts(tmp_path):
    from tuneforge.config import load_recipe
    from tuneforge.ui.form import recipe_yaml

    values, extra = from_recipe_dict(FIELDS, {"data": {"train": "t.jsonl"}, "training": {"epochs": 2}})
    path = tmp_path / "r.yaml"
    path.write_text(recipe_yaml(to_recipe_dict(FIELDS, values, extra)))
    assert load_recipe(path).training.epochs == 2
    assert yaml.safe_load(path.read_text()) == {"data": {"train": "t.jsonl"}, "training": {"epochs": 2}}

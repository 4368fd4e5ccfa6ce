"""The method table is the one list of methods: the schema's allowed values, option sub-sections and
help come from it, and its LoRA presets are what the LoRA builder trains."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from tuneforge.config import dump_recipe, load_recipe
from tuneforge.config.method_table import (
    METHOD_TABLE,
    METHOD_TYPES,
    lora_options,
    method_spec,
    types_reading,
    types_where,
    uses_dora,
)
from tuneforge.config.schema import MethodSection


def option_sections() -> set[str]:
    """The sub-sections of ``method`` (every field whose type is an options model)."""
    return {
        name
        for name, field in MethodSection.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def test_schema_allows_exactly_the_table_in_its_order():
    allowed = typing.get_args(MethodSection.model_fields["type"].annotation)
    assert allowed == METHOD_TYPES == tuple(METHOD_TABLE)
    assert METHOD_TYPES[:4] == ("full", "freeze", "moe", "lora")  # the order error messages list


def test_every_option_section_is_read_by_a_method_and_every_read_section_exists():
    read = {name for spec in METHOD_TABLE.values() for name in spec.options}
    assert read == option_sections()


@pytest.mark.parametrize("section", sorted(option_sections()))
def test_option_section_help_names_the_methods_that_read_it(section):
    description = MethodSection.model_fields[section].description
    assert description.split(":")[0].rstrip(".") == ", ".join(types_reading(section))


def test_type_help_has_one_line_per_table_entry():
    description = MethodSection.model_fields["type"].description
    for name, spec in METHOD_TABLE.items():
        assert f"{name}: {spec.summary}" in description


def test_flags_hold_together():
    for name, spec in METHOD_TABLE.items():
        assert not (spec.prompt_learning and spec.mergeable), name  # virtual tokens are no weight delta
        assert not (spec.prompt_learning and spec.compiles), name  # measured eager only
        assert not (spec.lora_preset or spec.loraplus_default_ratio) or "lora" in spec.options, name
        assert not spec.reward_model or spec.family in ("full", "freeze", "lora"), name
    assert types_where("saves", "model") == ("full", "freeze", "moe")
    assert types_where("needs_total_steps") == ("adalora",)
    assert types_where("quantized_base") == ("qlora",)


@pytest.mark.parametrize(
    ("method_type", "option", "value"),
    [("rslora", "use_rslora", True), ("dora", "use_dora", True), ("pissa", "init", "pissa"), ("loraplus", "loraplus_lr_ratio", 16.0)],
)
def test_lora_types_switch_their_option_on(method_type, option, value):
    assert getattr(lora_options(MethodSection(type=method_type)), option) == value
    assert getattr(lora_options(MethodSection(type="lora")), option) != value
    assert getattr(MethodSection(type=method_type).lora, option) != value  # a copy: the recipe is unchanged


def test_loraplus_keeps_a_ratio_the_recipe_gives():
    assert lora_options(MethodSection(type="loraplus", lora={"loraplus_lr_ratio": 4})).loraplus_lr_ratio == 4


def test_dora_is_the_type_or_the_option_of_a_lora_type():
    assert uses_dora(MethodSection(type="dora"))
    assert uses_dora(MethodSection(type="lora", lora={"use_dora": True}))
    assert uses_dora(MethodSection(type="qlora", lora={"use_dora": True}))
    assert not uses_dora(MethodSection(type="lora"))
    assert not uses_dora(MethodSection(type="ia3", lora={"use_dora": True}))  # ia3 never reads method.lora


@pytest.mark.parametrize("method_type", METHOD_TYPES)
def test_resolved_recipe_of_every_method_round_trips(tmp_path, method_type):
    """A run's recipe.yaml holds every sub-section at its value; it must validate again as it is."""
    recipe = load_recipe(base={"data": {"train": "t.jsonl"}, "method": {"type": method_type}})
    dump_recipe(recipe, tmp_path / "recipe.yaml")
    assert load_recipe(tmp_path / "recipe.yaml") == recipe
    assert method_spec(recipe.method.type) is METHOD_TABLE[method_type]

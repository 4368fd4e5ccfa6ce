from pathlib import Path

import pytest

from tuneforge.config import dump_recipe, load_recipe
from tuneforge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    r = load_recipe(write(tmp_path, "data:\n  train: t.jsonl\n"), ["method.lora.r=4", "training.learning_rate=1e-4", "eval.metrics=[exact_match, json_fields]"])
    assert r.method.type == "lora" and r.method.lora.r == 4
    assert r.training.learning_rate == pytest.approx(1e-4)
    assert r.eval.metrics == ["exact_match", "json_fields"]


def test_unknown_key_names_path_and_suggests(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_recipe(write(tmp_path, "data:\n  train: t.jsonl\ntraining:\n  batchsize: 4\n"))
    msg = str(e.value)
    assert "training.batchsize: unknown key" in msg and "did you mean 'training.batch_size'" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_recipe(write(tmp_path, "data:\n  train: t.jsonl\n"), ["training.batch_size=many"])
    assert "training.batch_size" in str(e.value) and "'many'" in str(e.value)


def test_bad_literal_lists_choices(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_recipe(write(tmp_path, "data:\n  train: t.jsonl\nmethod:\n  type: lora2\n"))
    assert "method.type" in str(e.value) and "'full', 'freeze', 'moe', 'lora'" in str(e.value) and "(got 'lora2')" in str(e.value)


def test_missing_required_section(tmp_path):
    with pytest.raises(ConfigError, match="data: required"):
        load_recipe(write(tmp_path, "model:\n  name: x\n"))


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ("objective:\n  type: pretrain\ndata:\n  train: t.jsonl\n  format: alpaca\n", "set data.format: text"),
        ("data:\n  train: t.jsonl\n  format: text\n", "objective.type: pretrain"),
        ("data:\n  train: t.jsonl\n  validation: v.jsonl\n  val_fraction: 0.1\n", "both set"),
        ("data:\n  train: t.jsonl\neval:\n  metrics: [exact_match]\n  task_metric: json_fields\n", "not in eval.metrics"),
        ("data:\n  train: t.jsonl\ntraining:\n  early_stopping_patience: 2\n", "needs validation data"),
    ],
)
def test_impossible_combinations(tmp_path, extra, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_recipe(write(tmp_path, extra))


def test_bad_yaml_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"r.yaml:2"):
        load_recipe(write(tmp_path, "data:\n\ttrain: x\n"))


def test_override_without_equals():
    with pytest.raises(ConfigError, match="has no '='"):
        load_recipe(base={"data": {"train": "x"}}, overrides=["training.epochs"])


def test_override_into_value_is_rejected():
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_recipe(base={"data": {"train": "x"}}, overrides=["data.train.x=1"])


def test_resolved_recipe_round_trips(tmp_path):
    r = load_recipe(write(tmp_path, "data:\n  train: t.jsonl\n"), ["method.lora.r=4"])
    out = tmp_path / "resolved.yaml"
    dump_recipe(r, out)
    assert load_recipe(out) == r


def test_recipe_reference_is_up_to_date():
    from tuneforge.config.reference import recipe_reference

    doc = Path(__file__).resolve().parents[2] / "docs" / "RECIPES.md"
    assert doc.read_text().strip() == recipe_reference().strip(), "run: python -m tuneforge.config.reference > docs/RECIPES.md"


def test_example_recipes_validate():
    root = Path(__file__).resolve().parents[2]
    for recipe in (root / "examples").rglob("recipe*.yaml"):
        load_recipe(recipe)


def test_unknown_key_inside_list_and_optional_sections_is_suggested(tmp_path):
    # Typos inside a pipeline step (a tagged union in a list) and an optional section get the same help.
    base = {"data": {"train": "x.jsonl", "pipeline": [{"step": "dedup", "threshhold": 0.5}], "replay": {"file": "g.jsonl", "ratoi": 0.1}}}
    with pytest.raises(ConfigError) as exc:
        load_recipe(base=base)
    text = exc.value.message
    assert "data.pipeline.0.dedup.threshhold: unknown key; did you mean 'data.pipeline.0.dedup.threshold'?" in text
    assert "data.replay.ratoi: unknown key; did you mean 'data.replay.ratio'?" in text

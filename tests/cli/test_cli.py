import json

import pytest
from typer.testing import CliRunner

from tuneforge.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "eval", "chat", "export"])
def test_every_command_has_help_with_examples(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_bad_override_is_a_clean_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  train: t.jsonl\n")
    result = runner.invoke(app, ["train", str(recipe), "training.batchsize=3"])
    assert result.exit_code == 2
    assert "training.batchsize: unknown key" in result.output and "Traceback" not in result.output


def test_bad_data_is_a_clean_error_naming_the_line(tmp_path):
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n" + json.dumps({"instruction": "a"}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model:\n  name: /nonexistent\ndata:\n  train: {data}\noutput:\n  dir: {tmp_path / 'run'}\n")
    result = runner.invoke(app, ["train", str(recipe)])
    assert result.exit_code == 2
    assert f"{data}:2 field 'output': missing" in result.output.replace("\n", "")


def test_missing_recipe_file(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "recipe file not found" in result.output


def test_export_on_a_non_run(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path), "--merge", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not a tuneforge run directory" in result.output

"""Staged pipelines: each stage's output the next one's base, a stage table, finished stages skipped, half-done ones resumed."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from transformers import TrainerCallback
from typer.testing import CliRunner

from tuneforge.cli.main import app
from tuneforge.config.stages import deep_merge, load_pipeline, stage_recipes
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.recipes.stages import run_pipeline

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


class CountTraining(TrainerCallback):
    def __init__(self):
        self.runs = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.runs += 1


def write_pipeline(tmp_path: Path, model_dir: Path, **changes) -> Path:
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"instruction": f"Say {w}", "output": w}) + "\n" for w in WORDS))
    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps({"text": f"The word {w} is a Greek letter name."}) + "\n" for w in WORDS))
    pipeline = {
        "output_dir": str(tmp_path / "pipe"),
        "defaults": {
            "model": {"name": str(model_dir)},
            "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
            "training": {"max_steps": 2, "save_steps": 1, "batch_size": 4, "learning_rate": 1e-2, "precision": "fp32", "compile": False},
            "data": {"max_length": 64},
        },
        "probes": {"chat": str(chat), "text": str(text)},
        "stages": [
            {"name": "general", "data": {"train": str(chat)}, "eval": {"data": str(chat), "limit": 2, "max_new_tokens": 4, "before": False}},
            {"name": "domain", "objective": {"type": "pretrain"}, "data": {"train": str(text), "format": "text"}},
        ],
    }
    pipeline = deep_merge(pipeline, changes)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    return path


def test_stage_recipes_chain_the_bases_and_check_every_stage(tmp_path, tiny_model_dir):
    pipeline = load_pipeline(write_pipeline(tmp_path, tiny_model_dir))
    first, second = stage_recipes(pipeline)
    assert first.model.name == str(tiny_model_dir) and first.output.dir == str(tmp_path / "pipe" / "01-general")
    assert second.model.name == str(tmp_path / "pipe" / "01-general" / "merged")
    assert second.method.lora.r == 4 and second.objective.type == "pretrain"  # defaults under the stage's own keys
    bad = load_pipeline(write_pipeline(tmp_path, tiny_model_dir))
    bad.stages[1].objective = {"type": "sft"}  # sft on text data: the second stage is invalid
    with pytest.raises(ConfigError, match=r"stages\[1\] \(domain\)"):
        stage_recipes(bad)
    pipeline.stages[1].model = {"name": "x"}
    with pytest.raises(ConfigError, match="previous stage's output"):
        stage_recipes(pipeline)


def test_pipeline_runs_writes_the_table_skips_finished_and_resumes(tmp_path, tiny_model_dir):
    path = write_pipeline(tmp_path, tiny_model_dir)
    counter = CountTraining()
    rows = run_pipeline(load_pipeline(path), callbacks=[counter])
    assert counter.runs == 2 and [r.stage for r in rows] == ["base", "general", "domain"]
    out = tmp_path / "pipe"
    table = json.loads((out / "stages.json").read_text())
    assert "probe text loss" in table["columns"] and "eval eval_loss" in table["columns"]
    assert table["stages"][1]["values"]["steps"] == 2
    md = (out / "stages.md").read_text()
    assert "| general |" in md and "| domain |" in md
    assert (out / "01-general" / "merged" / "model.safetensors").is_file()
    # the domain stage trained on the text: its text-probe loss fell below the base's
    assert table["stages"][2]["values"]["probe text loss"] < table["stages"][0]["values"]["probe text loss"]

    counter = CountTraining()
    rows = run_pipeline(load_pipeline(path), callbacks=[counter])  # a rerun: both stages finished
    assert counter.runs == 0 and all(r.skipped for r in rows[1:])

    # a half-done last stage: its checkpoints remain, its final weights and summary do not
    shutil.rmtree(out / "02-domain" / "adapter")
    (out / "02-domain" / "summary.json").unlink()
    shutil.rmtree(out / "02-domain" / "checkpoints" / "checkpoint-2")
    with pytest.raises(TuneforgeError, match="--resume"):
        run_pipeline(load_pipeline(path))
    counter = CountTraining()
    rows = run_pipeline(load_pipeline(path), resume=True, callbacks=[counter])
    assert counter.runs == 1 and rows[1].skipped and not rows[2].skipped
    assert json.loads((out / "02-domain" / "summary.json").read_text())["steps"] == 2

    with pytest.raises(TuneforgeError, match="another recipe"):
        run_pipeline(load_pipeline(path, ["defaults.training.learning_rate=0.5"]))


def test_cli_detects_a_stages_file(tmp_path, tiny_model_dir):
    result = CliRunner().invoke(app, ["train", str(write_pipeline(tmp_path, tiny_model_dir)), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "stage 2: domain" in result.output and "pipeline of 2 stage(s)" in result.output

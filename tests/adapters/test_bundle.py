"""Adapter bundles on a tiny model: selection equals the single run, weighted mixes equal peft's definition."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from tuneforge.adapters import (
    add_weighted,
    load_bundle,
    parse_weights,
    read_bundle,
    select_adapter,
    write_bundle,
)
from tuneforge.adapters.bundle import parse_named_runs
from tuneforge.cli.main import app
from tuneforge.config import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.targets import load_run, load_target
from tuneforge.recipes import train

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _train_run(
    root: Path, model_dir: Path, name: str, task: str, r: int, seed: int
) -> Path:
    rows = [{"instruction": task, "input": w, "output": f"{task}: {w}"} for w in WORDS]
    data = _write(root / f"{name}.jsonl", rows)
    recipe = load_recipe(
        base={
            "model": {"name": str(model_dir)},
            "method": {
                "type": "lora",
                "lora": {
                    "r": r,
                    "alpha": 2 * r,
                    "dropout": 0.0,
                    "target_modules": ["q_proj", "v_proj", "down_proj"],
                },
            },
            "data": {"train": str(data), "max_length": 64},
            "training": {
                "max_steps": 3,
                "batch_size": 4,
                "learning_rate": 3e-2,
                "precision": "fp32",
                "seed": seed,
                "logging_steps": 1,
            },
            "output": {"dir": str(root / name)},
        }
    )
    return train(recipe).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two LoRA runs on one tiny base, different tasks and ranks (4 and 8), plus the base directory."""
    from tests.helpers.tiny import tiny_llama, tiny_tokenizer

    root = tmp_path_factory.mktemp("adapter-runs")
    model_dir = root / "base"
    tok = tiny_tokenizer()
    tiny_llama(len(tok)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    a = _train_run(root, model_dir, "upper", "Shout the word", r=4, seed=1)
    b = _train_run(root, model_dir, "count", "Count the letters", r=8, seed=2)
    return {"root": root, "base": model_dir, "upper": a, "count": b}


@pytest.fixture(scope="module")
def bundle_dir(runs):
    out = runs["root"] / "bundle"
    write_bundle({"upper": runs["upper"], "count": runs["count"]}, out)
    return out


def _ids() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.randint(3, 300, (2, 12))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def _logits(model) -> torch.Tensor:
    return model(**_ids()).logits


def _manual_merge(base_dir: Path, adapters: dict[Path, float]) -> torch.nn.Module:
    """The base with W + sum_i w_i * (alpha_i / r_i) * B_i @ A_i added by hand, from the saved adapter files."""
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    modules = dict(model.named_modules())
    for adapter_dir, weight in adapters.items():
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
        scale = config["lora_alpha"] / config["r"]
        tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
        for key, a in tensors.items():
            if not key.endswith("lora_A.weight"):
                continue
            b = tensors[key.replace("lora_A", "lora_B")]
            module = modules[
                key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            ]
            with torch.no_grad():
                module.weight += weight * scale * (b @ a)
    return model


def test_bundle_records_base_and_adapters(bundle_dir, runs):
    info = read_bundle(bundle_dir)
    assert info.names == ["upper", "count"] and info.default == "upper"
    assert info.base_model == str(runs["base"].resolve())
    assert info.adapters["count"]["peft_type"] == "LORA"
    assert (bundle_dir / "adapters/count/adapter_model.safetensors").is_file()
    assert (bundle_dir / "adapters/count/recipe.yaml").is_file()


def test_selected_adapter_gives_the_single_runs_logits(bundle_dir, runs):
    loaded = load_target(str(bundle_dir), adapter="count")
    assert (
        loaded.adapter == "count"
        and loaded.adapters == ("upper", "count")
        and loaded.is_adapter
    )
    single = {name: _logits(load_run(runs[name]).model) for name in ("upper", "count")}
    assert not torch.allclose(
        single["upper"], single["count"], atol=1e-3
    )  # the two tasks really differ
    torch.testing.assert_close(
        _logits(loaded.model), single["count"], rtol=0, atol=1e-5
    )
    select_adapter(loaded.model, "upper")  # switch per call, same loaded model
    torch.testing.assert_close(
        _logits(loaded.model), single["upper"], rtol=0, atol=1e-5
    )
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_weighted_single_adapter_with_weight_one_equals_it(bundle_dir, runs):
    loaded = load_bundle(bundle_dir, weights={"count": 1.0})
    assert loaded.adapter == "weighted"
    torch.testing.assert_close(
        _logits(loaded.model), _logits(load_run(runs["count"]).model), rtol=0, atol=1e-5
    )


def test_two_adapter_mix_equals_weighted_sum_of_deltas(bundle_dir, runs, tmp_path):
    weights = {"upper": 0.7, "count": -0.3}
    loaded = load_bundle(bundle_dir, weights=weights)
    manual = _manual_merge(
        runs["base"], {runs["upper"] / "adapter": 0.7, runs["count"] / "adapter": -0.3}
    )
    expected = _logits(manual)
    torch.testing.assert_close(_logits(loaded.model), expected, rtol=0, atol=1e-4)
    # and it is neither adapter alone nor their plain average
    assert not torch.allclose(
        expected, _logits(load_run(runs["upper"]).model), atol=1e-3
    )
    # a new mix replaces the old one instead of being ignored
    add_weighted(loaded.model, {"upper": 1.0})
    torch.testing.assert_close(
        _logits(loaded.model), _logits(load_run(runs["upper"]).model), rtol=0, atol=1e-5
    )


def test_cli_bundle_chat_and_weighted_export(runs, tmp_path):
    cli = CliRunner()
    out = tmp_path / "desk"
    result = cli.invoke(
        app,
        [
            "adapters",
            "bundle",
            f"upper={runs['upper']}",
            f"count={runs['count']}",
            "-o",
            str(out),
            "--default",
            "count",
        ],
    )
    assert result.exit_code == 0, result.output
    shown = cli.invoke(app, ["adapters", "show", str(out)])
    assert "count (default): lora (LORA)" in shown.output
    chat = cli.invoke(
        app,
        [
            "chat",
            str(out),
            "--adapter",
            "upper",
            "--prompt",
            "hello",
            "--max-new-tokens",
            "3",
        ],
    )
    assert chat.exit_code == 0, chat.output
    assert "adapter: upper" in chat.output
    test_file = _write(
        tmp_path / "test.jsonl",
        [
            {
                "instruction": "Count the letters",
                "input": w,
                "output": f"Count the letters: {w}",
            }
            for w in WORDS[:2]
        ],
    )
    result = cli.invoke(
        app,
        [
            "eval",
            str(out),
            "--adapter",
            "count",
            "--data",
            str(test_file),
            "--max-new-tokens",
            "2",
            "--base",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "eval-count" / "results.json").read_text())["models"]
    assert (
        set(scores) == {"base", "tuned"}
        and scores["base"]["eval_loss"] != scores["tuned"]["eval_loss"]
    )
    merged_dir = tmp_path / "merged"
    result = cli.invoke(
        app,
        [
            "export",
            str(out),
            "--weights",
            "upper=0.5,count=0.5",
            "--merge",
            str(merged_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(
        merged_dir, dtype=torch.float32
    ).eval()
    manual = _manual_merge(
        runs["base"], {runs["upper"] / "adapter": 0.5, runs["count"] / "adapter": 0.5}
    )
    torch.testing.assert_close(_logits(merged), _logits(manual), rtol=0, atol=1e-4)
    # the default adapter merges when none is named
    result = cli.invoke(
        app, ["export", str(out), "--merge", str(tmp_path / "merged-count")]
    )
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(
        tmp_path / "merged-count", dtype=torch.float32
    ).eval()
    torch.testing.assert_close(
        _logits(merged), _logits(load_run(runs["count"]).model), rtol=0, atol=1e-4
    )


def test_cli_errors_are_clean(runs, bundle_dir):
    cli = CliRunner()
    result = cli.invoke(
        app, ["chat", str(bundle_dir), "--adapter", "nope", "--prompt", "x"]
    )
    assert (
        result.exit_code == 2
        and "has no adapter 'nope'" in result.output
        and "upper, count" in result.output
    )
    result = cli.invoke(
        app, ["chat", str(runs["upper"]), "--adapter", "upper", "--prompt", "x"]
    )
    assert result.exit_code == 2 and "is not one" in result.output
    result = cli.invoke(
        app,
        [
            "adapters",
            "bundle",
            f"x={runs['root'] / 'missing'}",
            "-o",
            str(runs["root"] / "b2"),
        ],
    )
    assert result.exit_code == 2 and "not a tuneforge run directory" in result.output


def test_runs_with_another_base_are_refused(runs, tmp_path):
    other = tmp_path / "other-run"
    shutil.copytree(runs["count"], other)
    other_base = tmp_path / "other-base"
    shutil.copytree(runs["base"], other_base)
    recipe = (other / "recipe.yaml").read_text()
    (other / "recipe.yaml").write_text(
        recipe.replace(str(runs["base"]), str(other_base))
    )
    with pytest.raises(TuneforgeError, match="do not share one base model"):
        write_bundle({"upper": runs["upper"], "other": other}, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_runs_with_another_tokenizer_are_refused(runs, tmp_path):
    from tuneforge.models.load import load_tokenizer

    other = tmp_path / "other-run"
    shutil.copytree(runs["count"], other)
    tok = load_tokenizer(str(other / "adapter"))
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok.save_pretrained(other / "adapter")
    with pytest.raises(TuneforgeError, match="do not share one tokenizer"):
        write_bundle({"upper": runs["upper"], "other": other}, tmp_path / "b")


def test_full_runs_and_bad_specs_are_refused(runs, tmp_path):
    full = tmp_path / "full-run"
    full.mkdir()
    shutil.copy(runs["upper"] / "recipe.yaml", full / "recipe.yaml")
    (full / "model").mkdir()
    with pytest.raises(TuneforgeError, match="holds a whole model, not an adapter"):
        write_bundle({"full": full}, tmp_path / "b")
    with pytest.raises(TuneforgeError, match="is not NAME=RUN"):
        parse_named_runs(["runs/a"])
    with pytest.raises(TuneforgeError, match="given twice"):
        parse_named_runs(["a=x", "a=y"])
    with pytest.raises(TuneforgeError, match="not allowed"):
        parse_named_runs(["1a=x"])
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "f").write_text("x")
    with pytest.raises(TuneforgeError, match="not empty and is not an adapter bundle"):
        write_bundle({"upper": runs["upper"]}, tmp_path / "occupied")


def test_parse_weights():
    assert parse_weights("a=0.7, b=-0.3") == {"a": 0.7, "b": -0.3}
    for bad in ["a", "a=x", "a=1,a=2", "", "a=nan"]:
        with pytest.raises(TuneforgeError):
            parse_weights(bad)


def test_weighted_mix_rejects_unknown_and_non_lora(bundle_dir):
    loaded = load_bundle(bundle_dir)
    with pytest.raises(TuneforgeError, match="not loaded"):
        add_weighted(loaded.model, {"nope": 1.0})
    with pytest.raises(TuneforgeError, match="not one of"):
        add_weighted(loaded.model, {"upper": 1.0}, combination="ties")
    with pytest.raises(TuneforgeError, match="not both"):
        load_bundle(bundle_dir, adapter="upper", weights={"count": 1.0})

"""The whole run on a tiny local model: run-directory contract, bad-row policy, resume, eval, chat, export."""

import json
from pathlib import Path

import pytest
import torch

from tuneforge.config import load_recipe
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.recipes import train

ROWS = [
    {"instruction": "Repeat the word", "input": w, "output": json.dumps({"word": w})}
    for w in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def recipe_for(tmp_path: Path, model_dir: Path, *overrides: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    train_file = write_jsonl(tmp_path / "train.jsonl", ROWS)
    test_file = write_jsonl(tmp_path / "test.jsonl", ROWS[:4])
    base = {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(train_file), "val_fraction": 0.25, "max_length": 128},
        "training": {"epochs": 2, "batch_size": 3, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32"},
        "eval": {"data": str(test_file), "metrics": ["exact_match", "json_fields"], "task_metric": "json_fields", "max_new_tokens": 8, "num_samples": 2},
        "output": {"dir": str(tmp_path / "run")},
    }
    return load_recipe(base=base, overrides=list(overrides))


def test_run_directory_contract(tmp_path, tiny_model_dir):
    result = train(recipe_for(tmp_path, tiny_model_dir))
    run = result.run_dir
    for rel in ["recipe.yaml", "adapter/adapter_model.safetensors", "metrics.jsonl", "data_report.json", "summary.json",
                "plots/loss.png", "eval/base.json", "eval/tuned.json", "eval/results.json", "eval/report.md", "eval/report.html"]:
        assert (run / rel).is_file(), rel
    assert not list(run.glob("adapter/*.bin"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r and "tokens_per_s" in r for r in rows)
    assert any("eval_loss" in r for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["precision"] == "fp32"  # 9 train examples / 3 per batch * 2 epochs
    assert summary["train_tokens_seen"] > 0
    # the resolved recipe re-runs as is
    assert load_recipe(run / "recipe.yaml").model.name == str(tiny_model_dir)
    # checkpoints carry commit markers
    assert list((run / "checkpoints").glob("checkpoint-*/tuneforge-commit.json"))


def test_bad_rows_stop_before_model_load(tmp_path, tiny_model_dir):
    recipe = recipe_for(tmp_path, tiny_model_dir, "model.name=/does/not/exist")
    write_jsonl(tmp_path / "train.jsonl", ROWS + ['{"instruction": "x"'])
    with pytest.raises(DataError, match=r"train.jsonl:13: invalid JSON"):
        train(recipe)  # the missing model would fail later; bad data must fail first


def test_skip_policy_writes_skipped_rows(tmp_path, tiny_model_dir):
    recipe = recipe_for(tmp_path, tiny_model_dir, "data.on_bad_rows=skip", "training.epochs=1", "eval.data=null")
    write_jsonl(tmp_path / "train.jsonl", ROWS + [{"instruction": "x", "output": 5}])
    result = train(recipe)
    skipped = [json.loads(line) for line in (result.run_dir / "skipped_rows.jsonl").read_text().splitlines()]
    assert skipped == [{"source": f"{tmp_path / 'train.jsonl'}:13", "field": "output", "reason": "must be a string, got int", "row": {"instruction": "x", "output": 5}}]


def test_finished_run_is_not_overwritten(tmp_path, tiny_model_dir):
    recipe = recipe_for(tmp_path, tiny_model_dir, "training.max_steps=1", "eval.data=null")
    train(recipe)
    with pytest.raises(TuneforgeError, match="already holds a finished run"):
        train(recipe)


@pytest.mark.parametrize("sampling", [[], ["training.group_by_length=true"]], ids=["random", "group_by_length"])
def test_resume_continues_to_the_same_end(tmp_path, tiny_model_dir, sampling):
    """Stopping after step 2 and resuming gives the same final adapter as an uninterrupted run."""
    full = train(recipe_for(tmp_path / "a", tiny_model_dir, "eval.data=null", "training.save_steps=2", "data.val_fraction=0", *sampling))
    part_recipe = recipe_for(tmp_path / "b", tiny_model_dir, "eval.data=null", "training.save_steps=2", "data.val_fraction=0", *sampling)
    # Simulate an interruption: train to step 2 with the same schedule, then drop the final weights.
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                control.should_training_stop = True
                control.should_save = True

    train(part_recipe, callbacks=[Stop()])
    run_b = tmp_path / "b" / "run"
    import shutil

    shutil.rmtree(run_b / "adapter")
    (run_b / "summary.json").unlink()
    resumed = train(load_recipe(run_b / "recipe.yaml"), resume=True)
    assert resumed.summary["steps"] == full.summary["steps"] == 8  # 12 examples / 3 per batch * 2 epochs
    # It continued rather than restarted: each step was logged exactly once across both sessions.
    steps = [json.loads(line)["step"] for line in (run_b / "metrics.jsonl").read_text().splitlines() if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
    from safetensors.torch import load_file

    a = load_file(str(full.run_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(run_b / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_eval_chat_export_on_a_run(tmp_path, tiny_model_dir, capsys):
    from transformers import AutoModelForCausalLM

    from tuneforge.evaluate.command import evaluate_target
    from tuneforge.export.merge import save_merged
    from tuneforge.targets import load_run
    from tuneforge.serve.session import chat_loop

    result = train(recipe_for(tmp_path, tiny_model_dir, "training.max_steps=2", "eval.data=null", "training.learning_rate=0.05", "eval.batch_size=3"))
    res = evaluate_target(str(result.run_dir), tmp_path / "test.jsonl", with_base=True, max_new_tokens=6)
    assert set(res["models"]) == {"base", "tuned"} and res["n_examples"] == 4
    assert len(set(res["latencies"]["tuned"])) == 2  # the run's eval.batch_size (3) batched the 4 prompts, not the flag's old default 16
    assert (result.run_dir / "eval" / "report.html").is_file()

    chat_loop(str(result.run_dir), prompt="Repeat the word\n\nalpha", max_new_tokens=5)
    assert capsys.readouterr().out.endswith("\n")  # the streamed reply is terminated (a random tiny model may say nothing)

    loaded = load_run(result.run_dir)
    ids = torch.randint(3, 300, (1, 10))
    with torch.no_grad():
        expected = loaded.model(input_ids=ids).logits
    out = save_merged(loaded.model, loaded.tokenizer, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-4)


def test_never_deletes_a_directory_it_did_not_write(tmp_path, tiny_model_dir):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    recipe = recipe_for(tmp_path, tiny_model_dir, f"output.dir={precious}", "output.overwrite=true", "eval.data=null")
    with pytest.raises(TuneforgeError, match="not a tuneforge run directory"):
        train(recipe)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_bf16_run_applies_the_speed_plan_and_evaluates_after_it(tmp_path, tiny_model_dir):
    """Under bf16 the run trains with eager attention and bf16 frozen weights (train/speed_plan.py),
    then evaluates the in-memory model under the same autocast; the saved adapter is unchanged fp32."""
    result = train(recipe_for(tmp_path, tiny_model_dir, "training.precision=bf16", "training.epochs=1"))
    summary = result.summary
    assert "attention eager" in summary["speed_plan"] and "frozen weights bfloat16" in summary["speed_plan"]
    tuned = summary["eval"]["tuned"]
    assert tuned["eval_loss"] == tuned["eval_loss"] and tuned["eval_loss"] < 50  # finite, evaluated
    from safetensors.torch import load_file

    adapter = load_file(str(result.run_dir / "adapter" / "adapter_model.safetensors"))
    assert adapter and all(t.dtype == torch.float32 for t in adapter.values())


def test_fp32_run_keeps_frozen_weights_as_loaded(tmp_path, tiny_model_dir):
    summary = train(recipe_for(tmp_path, tiny_model_dir, "training.epochs=1")).summary
    assert "frozen weights as loaded" in summary["speed_plan"]

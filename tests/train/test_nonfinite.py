"""training.nonfinite: NaN/inf in the loss or a gradient is caught at its step, through the real training path.

Faults are injected with public torch hooks from a ``TrainerCallback`` passed to ``recipes.train``:
a forward hook on the input embeddings that turns the embeddings of the rows mentioning "theta" to NaN
(a non-finite loss, and the batch it happened in is known from the data), or a tensor hook on one
LoRA parameter that turns its gradient to NaN at one step (a finite loss with a non-finite gradient).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, TrainerCallback

from tuneforge.config import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.recipes import train
from tuneforge.train.nonfinite import ROWS_KEY, RowTaggingCollator, Tagged

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
THETA_LINE = WORDS.index("theta") + 1  # the file:line of the row the embedding fault poisons
ALPACA = [{"instruction": "Repeat the word", "input": w, "output": json.dumps({"word": w})} for w in WORDS]
PAIRS = [{"prompt": f"Say {w}", "chosen": f"{w}, friend.", "rejected": f"No {w} today"} for w in WORDS]


def recipe_for(tmp_path: Path, model_dir: Path, rows: list[dict], *overrides: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(data), "max_length": 64, "val_fraction": 0.0},
        "training": {"max_steps": 5, "batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32",
                     "threads": 1, "save_steps": 1, "save_total_limit": 10},
        "eval": {"before": False},
        "output": {"dir": str(tmp_path / "run")},
    }  # fmt: skip
    return load_recipe(base=base, overrides=list(overrides))


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class PoisonRowsMentioning(TrainerCallback):
    """NaN embeddings for every row whose text contains ``word``: the loss of that micro-batch is NaN."""

    def __init__(self, tokenizer, word: str) -> None:
        self.tokenizer, self.word = tokenizer, word
        self.steps: list[int] = []  # the 1-based optimizer steps whose batch held the word
        self._step = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._step = state.global_step + 1

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model.get_input_embeddings().register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if not module.training:
            return output
        hit = [self.word in self.tokenizer.decode(row) for row in inputs[0]]
        if not any(hit):
            return output
        self.steps.append(self._step)
        output = output.clone()
        output[torch.tensor(hit)] = float("nan")
        return output


class NanGradientAt(TrainerCallback):
    """At optimizer step ``step``, the gradient of one LoRA B matrix becomes NaN (the loss stays finite).

    Also snapshots the trainable weights before and after every step, to compare a skipped step's weights.
    """

    def __init__(self, step: int, name_part: str = "lora_B") -> None:
        self.step, self.name_part = step, name_part
        self.name: str | None = None
        self._handle = None
        self.before: dict[int, dict] = {}
        self.after: dict[int, dict] = {}

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        current = state.global_step + 1
        self.before[current] = trainable(model)
        if current == self.step:
            self.name, param = next((n, p) for n, p in model.named_parameters() if self.name_part in n and p.requires_grad)
            self._handle = param.register_hook(lambda g: g * float("nan"))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after[state.global_step] = trainable(model)
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def committed_checkpoints(run_dir: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*/tuneforge-commit.json"))


def assert_stopped_cleanly(run_dir: Path, step: int) -> dict:
    """No final weights, checkpoints only before the bad step (the last one loadable and finite), the fault recorded."""
    assert not (run_dir / "adapter").exists()
    assert committed_checkpoints(run_dir) == list(range(1, step))
    last = load_file(run_dir / "checkpoints" / f"checkpoint-{step - 1}" / "adapter_model.safetensors")
    assert last and all(torch.isfinite(t).all() for t in last.values())
    rows = [r for r in metrics(run_dir) if "nonfinite" in r]
    assert len(rows) == 1 and rows[0]["step"] == step and rows[0]["action"] == "stop"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"step {step}" in summary["error"] and summary["nonfinite"]["nonfinite_step"] == step
    return rows[0]


def test_stop_on_nonfinite_loss_names_step_and_rows(tmp_path, tiny_model_dir):
    poison = PoisonRowsMentioning(AutoTokenizer.from_pretrained(tiny_model_dir), "theta")
    recipe = recipe_for(tmp_path, tiny_model_dir, ALPACA, "training.max_steps=6")
    with pytest.raises(TuneforgeError) as err:
        train(recipe, callbacks=[poison])
    step = poison.steps[0]
    assert f"non-finite loss at step {step}" in err.value.message
    assert f"train.jsonl:{THETA_LINE}" in err.value.message
    row = assert_stopped_cleanly(tmp_path / "run", step)
    assert row["nonfinite"] == "loss" and len(row["rows"]) == 2 and f"train.jsonl:{THETA_LINE}" in " ".join(row["rows"])


def test_stop_on_nonfinite_gradient_names_the_parameter(tmp_path, tiny_model_dir):
    fault = NanGradientAt(step=3)
    with pytest.raises(TuneforgeError) as err:
        train(recipe_for(tmp_path, tiny_model_dir, ALPACA), callbacks=[fault])
    assert f"non-finite gradient of {fault.name} at step 3" in err.value.message
    assert "train.jsonl:" in err.value.message
    assert assert_stopped_cleanly(tmp_path / "run", 3)["nonfinite"] == f"gradient of {fault.name}"


def test_skip_leaves_weights_unchanged_and_trains_on(tmp_path, tiny_model_dir):
    fault = NanGradientAt(step=3)
    result = train(recipe_for(tmp_path, tiny_model_dir, ALPACA, "training.nonfinite=skip"), callbacks=[fault])
    for step in (2, 3, 4, 5):
        same = all(torch.equal(fault.before[step][n], fault.after[step][n]) for n in fault.before[step])
        assert same == (step == 3), step  # the skipped step changed nothing; the others trained
    assert all(torch.isfinite(t).all() for t in fault.after[5].values())
    assert result.summary["steps"] == 5 and result.summary["nonfinite_skipped"] == 1
    assert result.summary["nonfinite_skipped_steps"] == [3]
    rows = [r for r in metrics(result.run_dir) if "nonfinite" in r]
    assert [(r["step"], r["action"], r["nonfinite_skipped"]) for r in rows] == [(3, "skip", 1)]
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("objective", ["reward", "dpo"])
def test_preference_trainer_stops_and_skips(tmp_path, tiny_model_dir, objective):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    poison = PoisonRowsMentioning(tok, "theta")
    with pytest.raises(TuneforgeError) as err:
        train(recipe_for(tmp_path / "stop", tiny_model_dir, PAIRS, f"objective.type={objective}", "training.max_steps=6"), callbacks=[poison])
    step = poison.steps[0]
    assert f"non-finite loss at step {step}" in err.value.message and f"train.jsonl:{THETA_LINE}" in err.value.message
    assert_stopped_cleanly(tmp_path / "stop" / "run", step)

    # skip: two epochs of 6 steps, the theta batch is skipped once per epoch and the rest trains
    poison = PoisonRowsMentioning(tok, "theta")
    fault = NanGradientAt(step=99)  # snapshots only
    recipe = recipe_for(tmp_path / "skip", tiny_model_dir, PAIRS, f"objective.type={objective}", "training.nonfinite=skip",
                        "training.max_steps=12", "training.save_steps=100")  # fmt: skip
    result = train(recipe, callbacks=[poison, fault])
    bad = sorted(set(poison.steps))
    assert len(bad) == 2 and result.summary["nonfinite_skipped_steps"] == bad and result.summary["nonfinite_skipped"] == 2
    for step in range(1, 13):
        same = all(torch.equal(fault.before[step][n], fault.after[step][n]) for n in fault.before[step])
        assert same == (step in bad), step
    assert all(torch.isfinite(t).all() for t in fault.after[12].values())


def test_row_tagging_collator_strips_the_index():
    seen: list = []

    def collate(features):
        seen.extend(features)
        return {"n": torch.tensor(len(features))}

    wrapped = RowTaggingCollator(collate)
    batch = wrapped([{"input_ids": [1], ROWS_KEY: 4}, {"input_ids": [2], ROWS_KEY: 0}])
    assert batch[ROWS_KEY].tolist() == [4, 0] and all(ROWS_KEY not in f for f in seen)
    assert wrapped([Tagged(3, "x")])[ROWS_KEY].tolist() == [3] and seen[-1] == "x"
    assert ROWS_KEY not in wrapped([{"input_ids": [1]}])  # validation features carry no index


def test_nonfinite_setting_is_validated(tmp_path, tiny_model_dir):
    assert recipe_for(tmp_path, tiny_model_dir, ALPACA).training.nonfinite == "stop"
    with pytest.raises(TuneforgeError, match="nonfinite"):
        recipe_for(tmp_path, tiny_model_dir, ALPACA, "training.nonfinite=ignore")

"""kill -9 a real training process at chosen and random points, resume with the real CLI, and get the
uninterrupted run exactly: the same final weights (bitwise) and every logged loss (fp32, one thread).

The recipes carry what makes exact resume hard: LoRA dropout (RNG), gradient accumulation, warmup,
a validation split with periodic evaluation and early stopping, several checkpoints; dpo also keeps a
reference model. Kill points: mid-step, inside the second evaluation (the first checkpoint is complete), right after a checkpoint commit, and at
seeded random times (which land in checkpoint writes too: save_steps=1). A checkpoint whose write a
kill cut short has no commit marker; that state is also made by hand (marker removed) and resume must
take the previous complete checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tests.recipes.test_pinned_curves import ROWS
from tuneforge.config.load import dump_recipe, load_recipe

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
COMMON = {
    "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.1}},
    "training": {"max_steps": 8, "batch_size": 2, "grad_accum": 2, "learning_rate": 5e-3, "warmup_ratio": 0.2, "logging_steps": 1,
                 "eval_steps": 2, "save_steps": 2, "save_total_limit": 3, "early_stopping_patience": 3, "precision": "fp32", "threads": 1},
    "eval": {"data": None},
}  # fmt: skip


def _recipe_file(work: Path, model_dir: Path, kind: str, objective: str, save_steps: int = 2) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[kind] * 2))
    base = json.loads(json.dumps(COMMON))
    base["training"]["save_steps"] = save_steps
    base["training"]["eval_steps"] = save_steps
    base.update(model={"name": str(model_dir)}, objective={"type": objective}, output={"dir": str(work / "run")},
                data={"train": str(data), "val_fraction": 0.25, "max_length": 64})
    path = work / "recipe.yaml"
    dump_recipe(load_recipe(base=base), path)
    return path


def _train(recipe: Path, *extra: str, kill: tuple[str, int] | None = None, after_s: float | None = None) -> int:
    if kill:
        cmd = [sys.executable, "-m", "tests.train.kill_driver", str(recipe), kill[0], str(kill[1]), *extra]
    else:
        cmd = [sys.executable, "-m", "tuneforge.cli.main", "train", str(recipe), *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=after_s) if after_s else proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL, as `kill -9`
        proc.communicate()
        return -9
    if proc.returncode not in (0, -9):
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{err[-3000:]}")
    return proc.returncode


def _outcome(run: Path) -> tuple[dict, list]:
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [(r["step"], k, r[k]) for r in rows for k in ("loss", "eval_loss", "grad_norm", "learning_rate") if k in r]
    return weights, logged


def _assert_same(reference: Path, resumed: Path) -> None:
    ref_w, ref_log = _outcome(reference)
    got_w, got_log = _outcome(resumed)
    assert got_log == ref_log  # every logged value, bitwise, each step once
    assert ref_w.keys() == got_w.keys()
    for name in ref_w:
        assert ref_w[name].equal(got_w[name]), name


def _resume_until_done(recipe: Path) -> None:
    assert _train(recipe, "--resume") == 0


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random Llama of tests/conftest.py, once for the whole module (the references share it)."""
    path = tmp_path_factory.mktemp("kill-model")
    tok = tiny_tokenizer()
    tiny_llama(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def references(tmp_path_factory, tiny_model_dir):
    """One uninterrupted run per objective, the runs every kill test must reproduce."""
    refs = {}
    for objective, kind in (("sft", "alpaca"), ("dpo", "preference")):
        work = tmp_path_factory.mktemp(f"ref-{objective}")
        recipe = _recipe_file(work, tiny_model_dir, kind, objective)
        assert _train(recipe) == 0
        refs[objective] = (work / "run", kind)
    return refs


@pytest.mark.parametrize("objective", ["sft", "dpo"])
@pytest.mark.parametrize("kill", [("on_step_end", 3), ("on_prediction_step", 5), ("on_save", 2)], ids=["mid-step", "in-eval", "after-commit"])
def test_kill_at_a_chosen_point_then_resume(tmp_path, tiny_model_dir, references, objective, kill):
    reference, kind = references[objective]
    recipe = _recipe_file(tmp_path, tiny_model_dir, kind, objective)
    assert _train(recipe, kill=kill) == -9
    assert not (tmp_path / "run" / "adapter").exists()
    _resume_until_done(recipe)
    _assert_same(reference, tmp_path / "run")


def test_kill_at_random_times_then_resume(tmp_path, tiny_model_dir, references):
    """Three seeded random kills in a row (each resumed run killed again), then a resume to the end."""
    reference, kind = references["sft"]
    recipe = _recipe_file(tmp_path, tiny_model_dir, kind, "sft")
    rng = random.Random(1234)
    started = False
    for _ in range(3):
        after = rng.uniform(6.0, 14.0)  # start-up is ~5 s; a whole run ~15-20 s on 2 busy cores
        code = _train(recipe, *(["--resume"] if started and (tmp_path / "run" / "checkpoints").exists() else []), after_s=after)
        if code == 0:
            break
        started = True
    if not (tmp_path / "run" / "adapter").exists():
        if (tmp_path / "run" / "checkpoints").exists() and list((tmp_path / "run" / "checkpoints").glob("*/tuneforge-commit.json")):
            _resume_until_done(recipe)
        else:  # killed before the first checkpoint: nothing to resume, start again
            assert _train(recipe, "output.overwrite=true") == 0
    _assert_same(reference, tmp_path / "run")


def test_checkpoint_without_commit_marker_is_skipped(tmp_path, tiny_model_dir, references):
    """What a kill during a checkpoint write leaves (files, no marker): resume takes the previous checkpoint."""
    reference, kind = references["sft"]
    recipe = _recipe_file(tmp_path, tiny_model_dir, kind, "sft")
    assert _train(recipe, kill=("on_step_end", 5)) == -9
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in checkpoints][-1] == "checkpoint-4"
    (checkpoints[-1] / "tuneforge-commit.json").unlink()  # as if the kill hit before the marker was written
    (checkpoints[-1] / "optimizer.pt").write_bytes(b"truncated")  # and a file was cut short
    _resume_until_done(recipe)
    _assert_same(reference, tmp_path / "run")

"""Pinned loss curves: the per-step training losses of small fixed runs, recorded once and compared at 1e-6.

In the style of torchtune's recipe regression tests. A tiny random Llama (seed 0), fp32, one thread,
six optimizer steps, every objective family and one run per method family, plus a resumed run. Any
refactor of the recipes, trainers, collators or methods must leave these numbers as they are; a
deliberate behaviour change re-records them with

    python -m tests.recipes.test_pinned_curves --record

and says why in its commit message.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config import load_recipe

PINNED = Path(__file__).with_name("pinned_curves.json")
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
ROWS = {
    "alpaca": [{"instruction": "Repeat the word", "input": w, "output": json.dumps({"word": w})} for w in WORDS],
    "text": [{"text": f"The word {w} is a Greek letter and {w} is spelled {' '.join(w)}."} for w in WORDS],
    "preference": [{"prompt": f"Say {w}", "chosen": f"{w}, friend.", "rejected": f"No {w} today"} for w in WORDS],
    "kto": [{"prompt": f"Say {w}", "completion": f"{w}, friend." if i % 2 == 0 else f"No {w}", "label": i % 2 == 0}
            for i, w in enumerate(WORDS)],
}  # fmt: skip

LORA = ["method.type=lora", "method.lora.r=4", "method.lora.alpha=8", "method.lora.dropout=0.0"]
CASES: dict[str, tuple[str, list[str]]] = {
    # objective families (LoRA)
    "sft": ("alpaca", LORA),
    "pretrain": ("text", [*LORA, "objective.type=pretrain", "data.max_length=16"]),
    "dpo": ("preference", [*LORA, "objective.type=dpo"]),
    "orpo": ("preference", [*LORA, "objective.type=orpo"]),
    "simpo": ("preference", [*LORA, "objective.type=simpo"]),
    "kto": ("kto", [*LORA, "objective.type=kto"]),
    "reward": ("preference", [*LORA, "objective.type=reward"]),
    # method families (SFT)
    "dora": ("alpaca", ["method.type=dora", "method.lora.r=4", "method.lora.dropout=0.0"]),
    "ia3": ("alpaca", ["method.type=ia3"]),
    "prefix_tuning": ("alpaca", ["method.type=prefix_tuning"]),
    "bottleneck": ("alpaca", ["method.type=bottleneck"]),
    "freeze": ("alpaca", ["method.type=freeze", "training.learning_rate=1e-3"]),
    "full": ("alpaca", ["method.type=full", "training.learning_rate=1e-3"]),
}


def _recipe(work: Path, model_dir: Path, kind: str, overrides: list[str], out: str = "run"):
    data = work / f"{kind}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[kind]))
    base = {
        "model": {"name": str(model_dir)},
        "data": {"train": str(data), "max_length": 64},
        "training": {"max_steps": 6, "batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32",
                     "threads": 1, "lr_scheduler": "cosine", "seed": 7},
        "output": {"dir": str(work / out)},
    }  # fmt: skip
    return load_recipe(base=base, overrides=overrides)


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _model_dir(work: Path) -> Path:
    path = work / "tiny-model"
    if not path.is_dir():
        tok = tiny_tokenizer()
        tiny_llama(len(tok), seed=0).save_pretrained(path)
        tok.save_pretrained(path)
    return path


def run_case(work: Path, name: str) -> list[float]:
    """Train one pinned case in ``work`` and return its per-step losses."""
    from tuneforge.recipes import train

    kind, overrides = CASES[name]
    work.mkdir(parents=True, exist_ok=True)
    return _losses(train(_recipe(work, _model_dir(work), kind, overrides)).run_dir)


def run_resumed(work: Path) -> list[float]:
    """Three steps with a checkpoint, then ``--resume`` to six: the losses of steps 4-6 are pinned.

    A constant schedule, so the first session's shorter max_steps does not change the LR of the second;
    the longer max_steps is a deliberate change, so the resume passes ``allow_changes``.
    """
    from tuneforge.recipes import train

    work.mkdir(parents=True, exist_ok=True)
    common = [*LORA, "training.lr_scheduler=constant", "training.save_steps=3"]
    first = train(_recipe(work, _model_dir(work), "alpaca", [*common, "training.max_steps=3"])).run_dir
    resumed = load_recipe(first / "recipe.yaml", overrides=["training.max_steps=6"])
    return _losses(train(resumed, resume=True, allow_changes=True).run_dir)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pinned_curve(tmp_path, name):
    expected = json.loads(PINNED.read_text())[name]
    assert run_case(tmp_path, name) == pytest.approx(expected, abs=1e-6)


def test_pinned_resumed_curve(tmp_path):
    expected = json.loads(PINNED.read_text())["resumed"]
    losses = run_resumed(tmp_path)
    assert len(losses) == 6  # three logged before the interruption, three after
    assert losses == pytest.approx(expected, abs=1e-6)


def _record() -> None:
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(CASES):
            curves[name] = run_case(Path(tmp) / name, name)
        curves["resumed"] = run_resumed(Path(tmp) / "resumed")
    PINNED.write_text(json.dumps(curves, indent=1) + "\n")
    print(json.dumps(curves, indent=1))


if __name__ == "__main__" and "--record" in sys.argv:
    _record()

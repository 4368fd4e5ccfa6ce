"""lm-eval on the bundled tiny task, offline, on a tiny local model, through the runner's entry point."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

import torch

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.errors import ConfigError
from tuneforge.evaluate.lm_eval_run import BUNDLED, run_lm_eval, task_specs


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _acc_by_hand(model, tok, rows: list[dict]) -> float:
    """lm-eval's acc: argmax of the summed log-likelihood of ' ' + choice after 'Question: ...\\nAnswer:'."""
    hits = 0
    for row in rows:
        context = f"Question: {row['question']}\nAnswer:"
        scores = []
        for choice in row["choices"]:
            ctx = tok(context, add_special_tokens=False)["input_ids"]
            whole = tok(context + " " + choice, add_special_tokens=False)["input_ids"]
            cont = whole[len(ctx):] if whole[: len(ctx)] == ctx else tok(" " + choice, add_special_tokens=False)["input_ids"]
            ids = (whole[: len(whole) - len(cont)] + cont)
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
            start = len(ids) - len(cont)
            scores.append(sum(float(logp[start - 1 + j, t]) for j, t in enumerate(cont)))
        hits += max(range(len(scores)), key=scores.__getitem__) == row["answer"]
    return hits / len(rows)


def test_bundled_task_runs_offline_on_a_tiny_model() -> None:
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok), seed=5)
    got = run_lm_eval(model, tok, ["tuneforge_arith"], batch_size=8)
    scores = got["tuneforge_arith"]
    assert scores["n"] == 20
    assert 0.0 <= scores["acc"] <= 1.0 and 0.0 <= scores["acc_norm"] <= 1.0 and all(math.isfinite(v) for v in scores.values())
    rows = [json.loads(line) for line in (BUNDLED / "tuneforge_arith" / "test.jsonl").read_text().splitlines()]
    assert scores["acc"] == pytest.approx(_acc_by_hand(model, tok, rows))  # our model object was the one scored


def test_after_bf16_training_lm_eval_runs_under_the_evaluations_autocast() -> None:
    """A bf16 run stores its frozen linears in bf16 (train/speed_plan.py); lm-eval calls the model without
    autocast, so the runner passes the evaluation's autocast: the scores are those of the fp32 weights
    under the same autocast (the cast is the same rounding), and without it the call fails."""
    from peft import LoraConfig, get_peft_model  # lazy: only this test builds an adapter

    from tuneforge.train.speed_plan import store_frozen_linears  # lazy: as above

    tok = tiny_tokenizer()

    def adapted():
        return get_peft_model(tiny_llama(len(tok), seed=5), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))

    reference = run_lm_eval(adapted(), tok, ["tuneforge_arith"], batch_size=8, autocast_dtype=torch.bfloat16)
    stored = adapted()
    assert store_frozen_linears(stored, torch.bfloat16) > 0
    assert run_lm_eval(stored, tok, ["tuneforge_arith"], batch_size=8, autocast_dtype=torch.bfloat16) == reference
    with pytest.raises(RuntimeError, match="dtype"):
        run_lm_eval(stored, tok, ["tuneforge_arith"], batch_size=8)


def test_task_files_resolve_their_data_next_to_the_yaml(tmp_path: Path) -> None:
    (spec,) = task_specs(str(BUNDLED / "tuneforge_arith" / "tuneforge_arith.yaml"))
    assert spec["task"] == "tuneforge_arith"
    assert Path(spec["dataset_kwargs"]["data_files"]["test"]) == BUNDLED / "tuneforge_arith" / "test.jsonl"
    assert task_specs("hellaswag") == ["hellaswag"]  # a name is passed to lm-eval as is


def test_bad_task_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no task YAML"):
        task_specs(str(tmp_path))
    (tmp_path / "x.yaml").write_text("dataset_path: json\n")
    with pytest.raises(ConfigError, match="has no 'task' key"):
        task_specs(str(tmp_path / "x.yaml"))

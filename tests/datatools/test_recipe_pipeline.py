"""The recipe's data.pipeline and data.replay run inside `tuneforge train`, before examples are built."""

from __future__ import annotations

import json

import pytest

from tests.datatools.conftest import read_jsonl, write_jsonl
from tuneforge.config import load_recipe
from tuneforge.errors import ConfigError
from tuneforge.recipes import train

ROWS = [
    {"instruction": f"Repeat {w}", "output": w, "category": "a" if i < 6 else "b"}
    for i, w in enumerate(
        ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    )
]


def test_recipe_pipeline_runs_before_training(tmp_path, tiny_model_dir):
    train_file = write_jsonl(
        tmp_path / "train.jsonl",
        ROWS
        + [
            ROWS[0],
            {"instruction": "Repeat  alpha", "output": "alpha", "category": "a"},
        ],
    )
    general = write_jsonl(
        tmp_path / "general.jsonl",
        [{"instruction": f"g{i}", "output": "x"} for i in range(5)],
    )
    recipe = load_recipe(
        base={
            "model": {"name": str(tiny_model_dir)},
            "method": {"type": "lora", "lora": {"r": 2, "alpha": 4}},
            "data": {
                "train": str(train_file),
                "max_length": 64,
                "pipeline": [
                    {"step": "normalize"},
                    {"step": "dedup"},
                    {"step": "balance", "field": "category", "seed": 1},
                ],
                "replay": {"file": str(general), "ratio": 0.2},
            },
            "training": {"max_steps": 1, "batch_size": 2, "precision": "fp32"},
            "eval": {"before": False},
            "output": {"dir": str(tmp_path / "run")},
        },
        overrides=[],
    )
    result = train(recipe)
    pipe = result.run_dir / "data_pipeline"
    rows = read_jsonl(pipe / "train.jsonl")
    # 10 rows -> 2 duplicates removed -> balance a:6, b:2 down to 2 + 2 -> replay adds 1 (20% of 5)
    assert len(rows) == 5 and sum(r["instruction"].startswith("g") for r in rows) == 1
    assert sorted(r.get("category") for r in rows if "category" in r) == [
        "a",
        "a",
        "b",
        "b",
    ]
    for name in (
        "report.md",
        "report.html",
        "lengths.png",
        "balance.png",
        "trace.jsonl",
    ):
        assert (pipe / name).is_file()
    trace = read_jsonl(pipe / "trace.jsonl")
    assert (
        sum(t["step"] == "dedup" for t in trace) == 2
        and sum(t["step"] == "balance" for t in trace) == 4
    )
    assert (
        json.loads((result.run_dir / "data_report.json").read_text())["train"][
            "records"
        ]
        == 5
    )


def test_unknown_step_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="pipeline"):
        load_recipe(
            base={"data": {"train": "x.jsonl", "pipeline": [{"step": "shuffle"}]}},
            overrides=[],
        )
    with pytest.raises(ConfigError, match="overlap"):
        load_recipe(
            base={
                "data": {
                    "train": "x.jsonl",
                    "pipeline": [{"step": "chunk", "max_tokens": 8, "overlap": 8}],
                }
            },
            overrides=[],
        )

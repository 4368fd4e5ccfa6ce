"""The committed quickstart data is exactly what its generator produces, and is well formed.

If this fails after editing make_data.py, regenerate with ``python examples/quickstart/make_data.py``
and commit the new files together with the script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
FILES = ("train.jsonl", "test.jsonl")
KEYS = ["category", "priority", "product", "order_id"]


def read_rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict[str, str]]]:
    return {name: read_rows(QUICKSTART / name) for name in FILES}


def test_committed_files_match_generator(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(QUICKSTART / "make_data.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (QUICKSTART / name).read_bytes(), f"{name} is stale"


def test_sizes(rows: dict[str, list[dict[str, str]]]) -> None:
    assert len(rows["train.jsonl"]) == 400
    assert len(rows["test.jsonl"]) == 100


def test_train_and_test_share_no_ticket(rows: dict[str, list[dict[str, str]]]) -> None:
    train = {row["input"] for row in rows["train.jsonl"]}
    test = {row["input"] for row in rows["test.jsonl"]}
    assert len(train) == 400 and len(test) == 100  # no duplicates within a split either
    assert not train & test


@pytest.mark.parametrize("name", FILES)
def test_rows_are_alpaca_with_four_key_json_output(rows: dict[str, list[dict[str, str]]], name: str) -> None:
    instructions = {row["instruction"] for row in rows[name]}
    assert instructions == {"Extract the support ticket into JSON with keys category, priority, product, order_id."}
    for row in rows[name]:
        assert list(row) == ["instruction", "input", "output"]
        output = json.loads(row["output"])
        assert list(output) == KEYS
        assert output["category"] in {"billing", "shipping", "account", "technical", "refund"}
        assert output["priority"] in {"low", "medium", "high"}
        assert output["product"] in row["input"]  # copied, so learnable
        assert output["order_id"] is None or output["order_id"] in row["input"]
        assert 20 <= len(row["input"].split()) <= 60


def test_labels_are_balanced_enough_to_learn(rows: dict[str, list[dict[str, str]]]) -> None:
    outputs = [json.loads(row["output"]) for row in rows["train.jsonl"]]
    for key, n_values in (("category", 5), ("priority", 3)):
        counts = {value: sum(o[key] == value for o in outputs) for value in {o[key] for o in outputs}}
        assert len(counts) == n_values
        assert min(counts.values()) >= 0.6 * len(outputs) / n_values, counts
    with_order = sum(o["order_id"] is not None for o in outputs)
    assert 0.5 * len(outputs) < with_order < 0.9 * len(outputs)

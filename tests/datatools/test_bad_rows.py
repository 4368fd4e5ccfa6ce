"""Every bad-row kind of the foundation gives the same file:line, field and reason in the toolkit."""

from __future__ import annotations

import json

import pytest

from tuneforge.data.formats import load_records
from tuneforge.datatools.pipeline import run_pipeline
from tuneforge.datatools.validate import validate_file
from tuneforge.errors import DataError

MESSAGES = [
    {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ]
    },
    {
        "messages": [
            {"role": "robot", "content": "x"},
            {"role": "assistant", "content": "y"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "system", "content": "late"},
            {"role": "assistant", "content": "y"},
        ]
    },
    {"messages": [{"role": "user", "content": "only a question"}]},
    {"messages": "not a list"},
    {"messages": []},
    {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}]},
    {"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]},
]


def _write(tmp_path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


CASES = {
    "messages.jsonl": (
        "messages",
        "\n".join(json.dumps(r) for r in MESSAGES).encode() + b"\n",
    ),
    "bytes.jsonl": (
        "alpaca",
        b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff", "output": "b"}\nnot json\n',
    ),
    "cells.csv": ("alpaca", b"instruction,output\nq,a\nq,a,extra\n,a\n"),
    "text.jsonl": ("text", b'{"text": "fine"}\n{"text": 5}\n{"body": "x"}\n'),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_matches_the_foundation(tmp_path, name):
    fmt, content = CASES[name]
    path = _write(tmp_path, name, content)
    foundation = load_records(path, fmt, on_bad_rows="skip").bad_rows
    ours = validate_file(path, fmt).bad
    assert [b.describe() for b in ours] == [b.describe() for b in foundation]
    assert len(ours) >= 2
    # clean stops on the first of them with the same description
    with pytest.raises(DataError) as exc:
        run_pipeline(path, tmp_path / "o.jsonl", [], fmt=fmt, report_dir=tmp_path / "r")
    assert foundation[0].describe() in exc.value.message

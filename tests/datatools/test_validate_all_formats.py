"""`tuneforge data validate` checks every format `tuneforge train` reads, with training's messages,
accepts a BOM, and warns (exit 0) about control characters and over-long fields; so does inspect."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tuneforge.cli.main import app
from tuneforge.data.preference import load_preference_records
from tuneforge.datatools.inspect import inspect_file
from tuneforge.datatools.rows import OVERLONG_CHARS
from tuneforge.errors import DataError

runner = CliRunner()

PREFERENCE = [
    {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."},
    {"prompt": "Hi?", "chosen": "Same", "rejected": "Same"},
    {"prompt": "Hi?", "chosen": "Hello!"},
    {"prompt": [{"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"},
]
KTO = [
    {"prompt": "Hi?", "completion": "Hello!", "label": True},
    {"prompt": "Hi?", "completion": "Hello!", "label": "maybe"},
    {"prompt": "Hi?", "label": False},
]


def _validate(path, *args: str) -> tuple[int, dict]:
    res = runner.invoke(app, ["data", "validate", str(path), *args, "--json"])
    return res.exit_code, json.loads(res.stdout)


def _lines(report: dict) -> list[str]:
    return [
        f"{b['source']}" + (f" field '{b['field']}'" if b["field"] else "") + f": {b['reason']}"
        for b in report["bad_rows"]
    ]


def _training_message(path, fmt: str) -> str:
    with pytest.raises(DataError) as info:
        load_preference_records(path, fmt)
    return str(info.value)


@pytest.mark.parametrize(("rows", "fmt", "bad_lines"), [(PREFERENCE, "preference", ["2", "3", "4"]), (KTO, "kto", ["2", "3"])])
@pytest.mark.parametrize("given", ["explicit", "auto"])
def test_validate_preference_and_kto_with_trainings_messages(jsonl, rows, fmt, bad_lines, given):
    path = jsonl(rows)
    code, report = _validate(path, "--format", fmt if given == "explicit" else "auto")
    assert code == 1 and report["format"] == fmt
    assert (report["rows"], report["good"], report["bad"]) == (len(rows), 1, len(bad_lines))
    assert [b["source"].rsplit(":", 1)[1] for b in report["bad_rows"]] == bad_lines
    training = _training_message(path, fmt)
    for line in _lines(report):
        assert line in training  # word for word what `tuneforge train` stops on


def test_validate_knows_every_training_format_and_names_them_for_an_unknown_one(jsonl):
    rows = {
        "alpaca": {"instruction": "q", "output": "a"},
        "messages": {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        "prompt_completion": {"prompt": "q", "completion": "a"},
        "text": {"text": "t"},
        "preference": PREFERENCE[0],
        "kto": KTO[0],
    }
    for fmt, row in rows.items():
        path = jsonl([row], name=f"{fmt}.jsonl")
        assert _validate(path, "--format", fmt) == (0, _validate(path)[1])  # auto agrees with the explicit format
        assert _validate(path)[1]["format"] == fmt
    code, report = _validate(path, "--format", "dpo")
    assert code == 2 and "unknown data format 'dpo'" in report["error"] and "kto" in report["hint"]


def test_auto_refuses_a_row_mixing_preference_and_sft_keys(jsonl):
    code, report = _validate(jsonl([{"messages": [], "chosen": "a", "rejected": "b"}]))
    assert code == 2 and "ambiguous" in report["error"] and "--format" in report["hint"]


def test_validate_accepts_a_bom_and_keeps_line_numbers(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(PREFERENCE[0]).encode() + b"\n" + json.dumps(PREFERENCE[2]).encode() + b"\n")
    code, report = _validate(p)
    assert code == 1 and report["format"] == "preference" and report["good"] == 1
    assert _lines(report) == [f"{p}:2 field 'rejected': missing"]


def test_validate_warns_about_control_characters_and_overlong_fields_but_exits_0(jsonl):
    long = "y" * (OVERLONG_CHARS + 1)
    path = jsonl([
        {"instruction": "fine", "output": "fine"},
        {"instruction": "nul\x00 and escape\x1b", "output": "tab\tnewline\ncr\r are fine"},
        {"instruction": "q", "output": long},
        {"instruction": "x" * OVERLONG_CHARS, "output": "exactly at the limit is fine"},
    ])
    code, report = _validate(path)
    assert code == 0 and report["bad"] == 0
    by_where = {(w["source"].rsplit(":", 1)[1], w["field"]): w["reason"] for w in report["warnings"]}
    assert set(by_where) == {("2", "instruction"), ("3", "output")}
    assert "U+0000" in by_where[("2", "instruction")] and "U+001B" in by_where[("2", "instruction")]
    assert "tokenised" in by_where[("2", "instruction")]
    assert f"{OVERLONG_CHARS + 1:,} characters" in by_where[("3", "output")]
    assert "data.max_length" in by_where[("3", "output")] and "data.overlong" in by_where[("3", "output")]


def test_warnings_name_nested_fields_of_messages_and_preference_rows(jsonl):
    chat = jsonl([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a\x07"}]}], name="c.jsonl")
    assert [w["field"] for w in _validate(chat)[1]["warnings"]] == ["messages[1].content"]
    pref = jsonl([{"prompt": [{"role": "user", "content": "q\x00"}], "chosen": "a", "rejected": "b\x7f"}], name="p.jsonl")
    code, report = _validate(pref)
    assert code == 0 and [w["field"] for w in report["warnings"]] == ["prompt[0].content", "rejected"]


def test_inspect_warns_about_the_same_rows(jsonl):
    path = jsonl([
        {"instruction": "ok", "output": "ok"},
        {"instruction": "q", "output": "a\x00"},
        {"instruction": "q", "output": "z" * (OVERLONG_CHARS + 5)},
    ])
    stats = inspect_file(path, tokenizer=None, lang_sample=0)
    assert stats["rows"] == 3 and stats["warnings"]["count"] == 2
    got = [(w["source"].rsplit(":", 1)[1], w["field"]) for w in stats["warnings"]["examples"]]
    assert got == [("2", "output"), ("3", "output")]
    res = runner.invoke(app, ["data", "inspect", str(path), "--tokenizer", "none", "--lang-sample", "0", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["warnings"] == stats["warnings"]

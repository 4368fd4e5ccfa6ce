"""Prompt rows (data.format: prompt): parsing, file:line bad rows, auto detection, data validate."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tuneforge.cli.main import app
from tuneforge.data.formats import detect_format, load_records
from tuneforge.data.prompts import load_prompts
from tuneforge.data.records import Message
from tuneforge.datatools.validate import detect_any_format, validate_file
from tuneforge.errors import DataError


def write(tmp_path, rows, name="p.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_string_and_message_prompts_keep_columns(tmp_path):
    path = write(tmp_path, [
        {"prompt": "2+2?", "answer": "4", "level": 1},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "3+3?"}], "answer": 6},
        {"prompt": "x", "system": "S"},
    ])  # fmt: skip
    loaded = load_prompts(path, system_prompt="DEFAULT")
    a, b, c = loaded.records
    assert loaded.format == "prompt"
    assert a.messages == (Message("system", "DEFAULT"), Message("user", "2+2?")) and a.columns == {"answer": "4", "level": 1}
    assert [m.role for m in b.messages] == ["system", "user", "assistant", "user"] and b.columns == {"answer": 6}
    assert c.messages[0] == Message("system", "S") and c.columns == {}
    assert a.source == f"{path}:1" and c.source == f"{path}:3"


def test_bad_rows_name_file_line_and_field(tmp_path):
    path = write(tmp_path, [
        {"prompt": "ok"},
        {"answer": "1"},
        {"prompt": "  "},
        {"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"prompt": 5},
        "{not json",
        {"prompt": [{"role": "robot", "content": "q"}]},
    ])  # fmt: skip
    with pytest.raises(DataError) as err:
        load_prompts(path, "prompt")
    text = err.value.message
    for line, piece in [(2, "field 'prompt': missing"), (3, "field 'prompt': is empty"), (4, "must end with a user message"),
                        (5, "must be a string or a list of messages, got int"), (6, ""), (7, "unknown role 'robot'")]:  # fmt: skip
        assert f"{path}:{line}" in text and piece in text
    skipped = load_prompts(path, "prompt", on_bad_rows="skip")
    assert len(skipped.records) == 1 and len(skipped.bad_rows) == 6


def test_auto_detection_rule_leaves_other_formats_alone():
    assert detect_format({"prompt": "q", "answer": "4"}, "f", prompt_ok=True) == "prompt"
    assert detect_format({"prompt": "q", "completion": "a"}, "f", prompt_ok=True) == "prompt_completion"
    assert detect_format({"prompt": "q", "text": "t"}, "f", prompt_ok=True) == "text"  # as before
    assert detect_format({"instruction": "i", "output": "o", "prompt": "p"}, "f", prompt_ok=True) == "alpaca"
    assert detect_any_format({"prompt": "q", "chosen": "a", "rejected": "b"}, "f") == "preference"
    assert detect_any_format({"prompt": "q", "completion": "a", "label": True}, "f") == "kto"
    assert detect_any_format({"prompt": "q", "answer": "4"}, "f") == "prompt"
    for row in ({"prompt": "q", "response": "r"}, {"prompt": "q", "output": "o"}):
        with pytest.raises(DataError, match="cannot tell"):
            detect_format(row, "f", prompt_ok=True)


def test_sft_reader_says_what_a_prompt_file_is(tmp_path):
    path = write(tmp_path, [{"prompt": "q", "answer": "4"}])
    with pytest.raises(DataError, match="prompt data for online RL") as err:
        load_records(path)
    assert "grpo, rloo or rft" in err.value.hint


def test_prompt_reader_refuses_other_formats(tmp_path):
    path = write(tmp_path, [{"prompt": "q", "completion": "a"}])
    with pytest.raises(DataError, match="is prompt_completion data, not prompt data"):
        load_prompts(path)
    with pytest.raises(DataError, match="not prompt data"):
        load_prompts(path, "alpaca")


def test_data_validate_checks_prompt_files(tmp_path):
    path = write(tmp_path, [{"prompt": "q", "answer": "4"}, {"prompt": ""}, {"prompt": "r"}])
    for fmt in ("prompt", "auto"):
        result = validate_file(path, fmt)
        assert (result.format, result.rows, result.good) == ("prompt", 3, 2)
        assert [(b.source, b.field) for b in result.bad] == [(f"{path}:2", "prompt")]


def test_cli_validate_format_prompt(tmp_path):
    path = write(tmp_path, [{"prompt": "q", "answer": "4"}, {"prompt": 3}])
    out = CliRunner().invoke(app, ["data", "validate", str(path), "--format", "prompt", "--json"])
    report = json.loads(out.stdout)
    assert report["format"] == "prompt" and report["good"] == 1 and report["bad_rows"][0]["source"] == f"{path}:2"

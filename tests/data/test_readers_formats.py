"""Every kind of bad input gives a message naming the file, line/record and field."""

import json

import pytest

from tuneforge.data.formats import load_records
from tuneforge.data.records import ChatRecord, TextRecord
from tuneforge.errors import DataError


def jsonl(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


GOOD = {"instruction": "Say hi", "input": "", "output": "hi"}


def test_alpaca_to_messages(tmp_path):
    p = jsonl(tmp_path, [GOOD, {"instruction": "Add", "input": "2 and 3", "output": "5", "system": "be terse"}])
    loaded = load_records(p)
    assert loaded.format == "alpaca"
    a, b = loaded.records
    assert [(m.role, m.content) for m in a.messages] == [("user", "Say hi"), ("assistant", "hi")]
    assert [(m.role, m.content) for m in b.messages] == [("system", "be terse"), ("user", "Add\n\n2 and 3"), ("assistant", "5")]
    assert a.source.endswith("d.jsonl:1") and b.source.endswith("d.jsonl:2")


def test_sharegpt_and_openai_messages(tmp_path):
    p = jsonl(tmp_path, [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
    ])
    recs = load_records(p, "messages").records
    assert [m.role for m in recs[0].messages] == ["user", "assistant"]
    assert [m.role for m in recs[1].messages] == ["system", "user", "assistant"]


@pytest.mark.parametrize(
    "row, fragment",
    [
        ('{"instruction": "x", "output": ', ":2: invalid JSON"),
        ({"instruction": "x"}, ":2 field 'output': missing"),
        ({"instruction": "  ", "output": "y"}, ":2 field 'instruction': is empty"),
        ({"instruction": 3, "output": "y"}, ":2 field 'instruction': must be a string, got int"),
        ([1, 2], ":2: must be a JSON object, got list"),
    ],
)
def test_bad_alpaca_rows(tmp_path, row, fragment):
    p = jsonl(tmp_path, [GOOD, row, GOOD])
    with pytest.raises(DataError) as e:
        load_records(p, "alpaca")
    assert f"{p}{fragment}" in str(e.value)
    assert "1 bad row" in str(e.value) and "on_bad_rows=skip" in str(e.value)


@pytest.mark.parametrize(
    "row, fragment",
    [
        ({"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}, "field 'messages[0].role': unknown role 'wizard'"),
        ({"messages": [{"role": "user", "content": "x"}]}, "has no assistant message"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}, "field 'messages[1].content': is empty"),
        ({"messages": "hello"}, "field 'messages': must be a list"),
        ({"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}, "field 'messages[0].content': missing"),
        ({"conversations": [{"from": "robot", "value": "x"}]}, "unknown role 'robot'"),
    ],
)
def test_bad_message_rows(tmp_path, row, fragment):
    p = jsonl(tmp_path, [row])
    with pytest.raises(DataError, match="bad row") as e:
        load_records(p, "messages")
    assert fragment in str(e.value) and f"{p}:1" in str(e.value)


def test_undecodable_bytes_named_by_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"instruction": "\xff\xfe", "output": "y"}\n')
    with pytest.raises(DataError) as e:
        load_records(p)
    assert f"{p}:2: undecodable bytes" in str(e.value)


def test_skip_policy_keeps_good_rows_and_reports_bad(tmp_path):
    p = jsonl(tmp_path, [GOOD, {"instruction": "x"}, "not json", GOOD])
    loaded = load_records(p, on_bad_rows="skip")
    assert len(loaded.records) == 2
    assert [(b.source.split(":")[-1], b.field) for b in loaded.bad_rows] == [("2", "output"), ("3", None)]


def test_csv_rows_and_line_numbers(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('instruction,input,output\nSay hi,,hi\n"multi\nline",x,\n')
    with pytest.raises(DataError) as e:
        load_records(p)
    assert f"{p}:3 field 'output': is empty" in str(e.value)


def test_json_array_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pj = tmp_path / "d.json"
    pj.write_text(json.dumps([{"text": "one"}, {"text": 5}]))
    with pytest.raises(DataError, match=r"d.json:record 2 field 'text': must be a string"):
        load_records(pj)
    pp = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["alpha", "beta"]}), pp)
    recs = load_records(pp).records
    assert [r.text for r in recs] == ["alpha", "beta"] and isinstance(recs[0], TextRecord)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_records(tmp_path / "nope.jsonl")
    p = tmp_path / "d.txt"
    p.write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_records(p)


def test_undetectable_format(tmp_path):
    with pytest.raises(DataError, match="cannot tell the data format.*keys: question"):
        load_records(jsonl(tmp_path, [{"question": "q"}]))


def test_system_prompt_added_when_missing(tmp_path):
    rec = load_records(jsonl(tmp_path, [GOOD]), system_prompt="S").records[0]
    assert isinstance(rec, ChatRecord) and rec.messages[0].role == "system" and rec.messages[0].content == "S"

"""A UTF-8 byte-order mark is accepted by every text reader, line numbers stay right, and reader
failures beyond JSONDecodeError (huge integers, deep nesting, csv errors, long CSV fields) become
DataError / BadRow messages naming the file."""

from __future__ import annotations

import json

import pytest

from tuneforge.data.formats import load_records
from tuneforge.data.readers import read_rows
from tuneforge.data.records import BadRow, RawRow
from tuneforge.errors import DataError

BOM = b"\xef\xbb\xbf"
ROW = {"instruction": "Say hi", "output": "hi"}


def test_jsonl_with_bom_reads_first_row_and_keeps_line_numbers(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(BOM + json.dumps(ROW).encode() + b"\n\n" + b'{"instruction": "x"}\n')
    rows = list(read_rows(p))
    assert isinstance(rows[0], RawRow) and rows[0].data == ROW and rows[0].source == f"{p}:1"
    loaded = load_records(p, on_bad_rows="skip")
    assert len(loaded.records) == 1
    assert [b.describe() for b in loaded.bad_rows] == [f"{p}:3 field 'output': missing"]


def test_bom_only_stripped_on_the_first_jsonl_line(tmp_path):
    """A BOM in the middle of a file is not a byte-order mark but junk, and stays an error on its own line."""
    p = tmp_path / "d.jsonl"
    p.write_bytes(json.dumps(ROW).encode() + b"\n" + BOM + json.dumps(ROW).encode() + b"\n")
    first, second = read_rows(p)
    assert isinstance(first, RawRow)
    assert isinstance(second, BadRow) and second.source == f"{p}:2" and "invalid JSON" in second.reason


def test_json_with_bom_reads_and_errors_keep_line_numbers(tmp_path):
    p = tmp_path / "d.json"
    p.write_bytes(BOM + json.dumps([ROW, ROW]).encode())
    assert [r.data for r in read_rows(p)] == [ROW, ROW]
    broken = tmp_path / "broken.json"
    broken.write_bytes(BOM + b"[\n{}\n,,\n]")
    with pytest.raises(DataError, match=r"broken\.json:3: invalid JSON"):
        list(read_rows(broken))


def test_csv_with_bom_has_clean_header_and_line_numbers(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(BOM + b'instruction,output\nSay hi,hi\n"two\nlines",\nq,\n')
    loaded = load_records(p, on_bad_rows="skip")
    assert loaded.records[0].messages[0].content == "Say hi"  # header is 'instruction', not '\ufeffinstruction'
    assert [b.describe() for b in loaded.bad_rows] == [f"{p}:3 field 'output': is empty", f"{p}:5 field 'output': is empty"]


def test_csv_field_over_the_csv_module_limit_is_read(tmp_path):
    """csv refuses fields over 131,072 characters by default; a long answer is a warning, not a crash."""
    p = tmp_path / "d.csv"
    long = "x" * 200_000
    p.write_text(f"instruction,output\nq,{long}\n", encoding="utf-8")
    (row,) = read_rows(p)
    assert isinstance(row, RawRow) and row.data["output"] == long


def test_unterminated_csv_quote_is_a_data_error(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b'a,b\n"x\x00\n')
    try:
        rows = list(read_rows(p))
    except DataError as exc:
        assert str(p) in exc.message
    else:  # the csv module reads it as one unterminated field: then it must be a row of this file
        assert all(str(p) in r.source for r in rows)


def test_huge_integer_and_deep_nesting_are_bad_rows_not_tracebacks(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": ' + "9" * 5000 + "}\n" + "[" * 100_000 + "\n", encoding="utf-8")
    first, second = read_rows(p)
    assert isinstance(first, BadRow) and first.source == f"{p}:1" and "digits" in first.reason
    assert isinstance(second, BadRow) and second.source == f"{p}:2" and "nested too deeply" in second.reason
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(DataError, match=r"deep\.json: invalid JSON: nested too deeply"):
        list(read_rows(deep))

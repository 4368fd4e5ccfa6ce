"""Reading data files into raw rows, each tagged with where it came from.

JSONL, JSON and CSV are read with the standard library rather than ``datasets``: ``datasets`` casts
every file to one Arrow schema, which turns a wrong-typed field into a whole-file cast error (or
silently into a string) and forgets line numbers, and our contract is to name the file, the line
and the field of every bad row. Parquet is columnar and typed already, so it goes through
``datasets`` and rows are numbered by position.

A UTF-8 byte-order mark at the start of a JSONL, JSON or CSV file is dropped: editors on Windows
(Notepad, Excel's "CSV UTF-8") write one, and ``json`` refuses it. Only the first line of a JSONL
file can carry it, so line numbers are unchanged.

Nothing a file holds may escape as anything but a :class:`DataError` or a :class:`BadRow`:
``json`` also raises ``ValueError`` (an integer over Python's 4300-digit limit) and
``RecursionError`` (nesting deeper than the interpreter's stack), and ``csv`` raises ``csv.Error``;
each is turned into a message naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from tuneforge.data.records import BadRow, RawRow
from tuneforge.errors import DataError

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
BOM = "\ufeff"
# csv's default field limit (131,072 characters) would refuse a long answer outright with
# "field larger than field limit"; a long field is the validator's warning and the trainer's
# truncate/drop decision, not an unreadable file, so the limit is lifted (the whole file is in
# memory already, so the limit protects nothing here).
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


def _json_value(text: str) -> tuple[object, str | None, int | None]:
    """``json.loads`` that reports every failure as (None, reason, line) instead of raising."""
    try:
        return json.loads(text), None, None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at column {exc.colno}", exc.lineno
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        return None, f"invalid JSON: {exc}", None
    except RecursionError:
        return None, "invalid JSON: nested too deeply to read", None


def read_rows(path: str | Path) -> Iterator[RawRow | BadRow]:
    """Yield every row of a data file, or a BadRow for a line that cannot even be parsed."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}", hint="check the path (relative paths are resolved from the current directory)")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(p)
    elif suffix == ".json":
        yield from _read_json(p)
    elif suffix == ".csv":
        yield from _read_csv(p)
    elif suffix == ".parquet":
        yield from _read_parquet(p)
    else:
        raise DataError(
            f"{p}: unsupported file type '{suffix or '(none)'}'",
            hint=f"use one of {', '.join(SUPPORTED_SUFFIXES)}",
        )


def _read_jsonl(p: Path) -> Iterator[RawRow | BadRow]:
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{p}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRow(where, None, f"undecodable bytes at column {exc.start + 1} (the file must be UTF-8)", None)
                continue
            if lineno == 1:
                line = line.removeprefix(BOM)
            if not line.strip():
                continue
            value, reason, _ = _json_value(line)
            if reason is None:
                yield RawRow(where, value)
            else:
                yield BadRow(where, None, reason, line.rstrip("\n")[:200])


def _read_json(p: Path) -> Iterator[RawRow | BadRow]:
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: undecodable bytes at byte {exc.start} (the file must be UTF-8)") from None
    data, reason, lineno = _json_value(text)
    if reason is not None:
        raise DataError(f"{p}:{lineno}: {reason}" if lineno else f"{p}: {reason}")
    if not isinstance(data, list):
        raise DataError(
            f"{p}: a .json data file must hold a list of records, got {type(data).__name__}",
            hint="use a JSON array of objects, or JSON Lines (.jsonl) with one object per line",
        )
    for i, row in enumerate(data, start=1):
        yield RawRow(f"{p}:record {i}", row)


def _read_csv(p: Path) -> Iterator[RawRow | BadRow]:
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: undecodable bytes at byte {exc.start} (the file must be UTF-8)") from None
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if reader.fieldnames is None:
            return
        start = 2  # line of the first data row (line 1 is the header)
        for row in reader:
            where = f"{p}:{start}"
            start = reader.line_num + 1
            if None in row:  # more cells than header columns
                yield BadRow(where, None, f"{len(reader.fieldnames) + len(row[None])} cells for {len(reader.fieldnames)} header columns", None)
                continue
            yield RawRow(where, {k: v for k, v in row.items()})
    except csv.Error as exc:  # e.g. an unterminated quote at the end of the file
        raise DataError(f"{p}:{reader.line_num}: unreadable CSV: {exc}") from None


def _read_parquet(p: Path) -> Iterator[RawRow | BadRow]:
    # lazy: `import datasets` costs 1.4 s (measured), and only .parquet files need it
    from datasets import Dataset

    try:
        ds = Dataset.from_parquet(str(p))
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DataError(f"{p}: cannot read Parquet ({exc})") from None
    for i, row in enumerate(ds, start=1):
        yield RawRow(f"{p}:row {i}", row)

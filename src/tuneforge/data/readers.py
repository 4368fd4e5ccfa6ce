"""Reading data files into raw rows, each tagged with where it came from.

JSONL, JSON and CSV are read with the standard library rather than ``datasets``: ``datasets`` casts
every file to one Arrow schema, which turns a wrong-typed field into a whole-file cast error (or
silently into a string) and forgets line numbers, and our contract is to name the file, the line
and the field of every bad row. Parquet is columnar and typed already, so it goes through
``datasets`` and rows are numbered by position.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from tuneforge.data.records import BadRow, RawRow
from tuneforge.errors import DataError

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


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
            if not line.strip():
                continue
            try:
                yield RawRow(where, json.loads(line))
            except json.JSONDecodeError as exc:
                yield BadRow(where, None, f"invalid JSON: {exc.msg} at column {exc.colno}", line.rstrip("\n")[:200])


def _read_json(p: Path) -> Iterator[RawRow | BadRow]:
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: undecodable bytes at byte {exc.start} (the file must be UTF-8)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}:{exc.lineno}: invalid JSON: {exc.msg} at column {exc.colno}") from None
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
    reader = csv.DictReader(io.StringIO(text, newline=""))
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


def _read_parquet(p: Path) -> Iterator[RawRow | BadRow]:
    # lazy: `import datasets` costs 1.4 s (measured), and only .parquet files need it
    from datasets import Dataset

    try:
        ds = Dataset.from_parquet(str(p))
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DataError(f"{p}: cannot read Parquet ({exc})") from None
    for i, row in enumerate(ds, start=1):
        yield RawRow(f"{p}:row {i}", row)

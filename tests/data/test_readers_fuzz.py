"""Property-based: whatever a data file holds, readers and parsers answer with a DataError or a BadRow
naming the file and line, never a traceback.

The budget is small (200 examples a property, no deadline: the first example pays for imports) so
the fast suite stays fast; a failure prints the shrunk file, which belongs in
tests/data/test_bom_and_reader_errors.py as a plain regression test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneforge.data.formats import FORMATS, PARSERS, ParsedRow, ParsedStream, RowError
from tuneforge.data.preference import PARSERS as PREFERENCE_PARSERS
from tuneforge.data.preference import detect_preference_format
from tuneforge.data.prompts import PARSERS as PROMPT_PARSERS
from tuneforge.data.readers import read_rows
from tuneforge.data.records import BadRow, RawRow
from tuneforge.datatools.inspect import inspect_file
from tuneforge.datatools.validate import ALL_FORMATS, validate_file
from tuneforge.errors import DataError

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # the shared checkout's .hypothesis/ is not ours to fill
)
ALL_PARSERS = {**PARSERS, **PREFERENCE_PARSERS, **PROMPT_PARSERS}
SOURCE = re.compile(r":(\d+|record \d+)$")

# Keys every format looks at, so generated rows reach deep into the parsers instead of failing on "missing".
KEYS = st.sampled_from([
    "instruction", "input", "output", "system", "messages", "conversations", "role", "content", "from",
    "value", "text", "prompt", "completion", "chosen", "rejected", "label",
])
ROLES = st.sampled_from(["user", "assistant", "system", "human", "gpt", "tool", " User ", ""])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8) | ROLES
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=3), inner, max_size=5),
    max_leaves=20,
)
TURN = st.fixed_dictionaries({}, optional={"role": ROLES | JSON, "content": st.text(max_size=5) | JSON,
                                           "from": ROLES, "value": st.text(max_size=5)})
ROWS = st.dictionaries(KEYS, JSON | st.lists(TURN, max_size=4) | st.text(max_size=5), max_size=6) | JSON
# Files built from runs of JSON/CSV fragments: random bytes almost never nest 1,000 deep, write a
# 4,300-digit integer or a 131,072-character CSV field, and each of those crashed a reader.
FRAGMENT = st.sampled_from([
    b"[", b"{", b"}", b"]", b"9", b'"', b",", b":", b"\n", b"\r", b"\xef\xbb\xbf", b"\x00", b"x" * 100, b'"text"', b"\xff",
])
RUNS = st.lists(st.tuples(FRAGMENT, st.integers(1, 3000)).map(lambda t: t[0] * t[1]), max_size=6).map(b"".join)
BYTES = st.binary(max_size=300) | st.text(max_size=200).map(lambda t: ("\ufeff" + t).encode("utf-8", "surrogatepass")) | RUNS


def _fresh(tmp_path_factory, suffix: str) -> Path:
    return tmp_path_factory.mktemp("fuzz") / f"data{suffix}"


def _check_items(items, path: Path) -> None:
    for item in items:
        assert isinstance(item, (BadRow, ParsedRow, RawRow))
        source = item.source if not isinstance(item, ParsedRow) else item.raw.source
        assert source.startswith(f"{path}:") and SOURCE.search(source), source


def _consume(fn, path: Path):
    """Run fn; a DataError must name the file (the only exception allowed)."""
    try:
        return fn()
    except DataError as exc:
        assert str(path) in exc.message
        return None


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@FUZZ
@given(content=BYTES)
def test_arbitrary_bytes_never_crash_the_readers(tmp_path_factory, suffix, content):
    path = _fresh(tmp_path_factory, suffix)
    path.write_bytes(content)
    _consume(lambda: _check_items(list(read_rows(path)), path), path)
    for fmt in ("auto", *ALL_FORMATS):
        result = _consume(lambda fmt=fmt: validate_file(path, fmt), path)
        if result is not None:
            assert result.rows == result.good + len(result.bad)
            _check_items(result.bad, path)


@FUZZ
@given(lines=st.lists(st.one_of(ROWS.map(json.dumps), st.text(max_size=20)), max_size=6))
def test_arbitrary_json_rows_give_bad_rows_with_file_and_line(tmp_path_factory, lines):
    path = _fresh(tmp_path_factory, ".jsonl")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    for fmt in ("auto", *ALL_FORMATS):
        result = _consume(lambda fmt=fmt: validate_file(path, fmt), path)
        if result is not None:
            _check_items(result.bad, path)
            assert all(w.source.startswith(f"{path}:") for w in result.warnings)
    stats = _consume(lambda: inspect_file(path, tokenizer=None, lang_sample=0), path)
    if stats is not None:
        assert stats["rows"] + stats["bad_rows"] >= 0


@FUZZ
@given(row=ROWS)
def test_every_parser_returns_a_record_or_a_row_error(row):
    if not isinstance(row, dict):
        row = {"value": row}
    for parser in ALL_PARSERS.values():
        try:
            record = parser(row, "f.jsonl:7", None)
        except RowError as exc:
            assert exc.reason
            continue
        assert record.source == "f.jsonl:7"


@FUZZ
@given(rows=st.lists(ROWS, max_size=5))
def test_streams_tag_every_bad_row_with_its_source(rows):
    raw = [RawRow(f"f.jsonl:{i}", r) for i, r in enumerate(rows, start=1)]
    streams = [ParsedStream(raw, fmt, "f.jsonl") for fmt in ("auto", *FORMATS)] + [
        ParsedStream(raw, fmt, "f.jsonl", parsers=PREFERENCE_PARSERS, detect=detect_preference_format)
        for fmt in ("auto", "preference", "kto")
    ]
    for stream in streams:
        try:
            items = list(stream)
        except DataError as exc:  # only 'auto' may refuse, on a first row whose format it cannot tell
            assert stream.format == "auto" and "f.jsonl" in exc.message
            continue
        assert [i.source if isinstance(i, BadRow) else i.raw.source for i in items] == [r.source for r in raw]

"""Reading eval.data: chat rows (any training format) or multiple-choice rows, with their category.

Chat rows are parsed by the data formats' own parsers; the raw row's ``category`` (a string) is kept
for the per-category breakdown. A file whose first row has ``options`` is multiple-choice data::

    {"prompt": "2 + 2 =", "options": ["3", "4", "5"], "answer": 1, "category": "arithmetic", "system": "..."}

``answer`` is the gold option's index (0-based) or its exact text. Each choice row is also a chat
record (user: prompt, assistant: the gold option), so loss, perplexity and generation metrics still
apply; the ``choice`` metric scores the options by log-likelihood (evaluate/choice.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.formats import FORMATS, ParsedRow, RowError, bad_rows_error, iter_parsed
from tuneforge.data.readers import read_rows
from tuneforge.data.records import BadRow, ChatRecord, LoadedData, Message
from tuneforge.errors import DataError


@dataclass(frozen=True)
class EvalRecord(ChatRecord):
    """A chat record plus what evaluation reads beside it: its category and, for choice rows, the options."""

    category: str | None = None
    options: tuple[str, ...] = ()
    answer_index: int | None = None


def _category(row: dict) -> str | None:
    value = row.get("category")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RowError("category", f"must be a non-empty string, got {value!r}")
    return value.strip()


def _answer_index(row: dict, options: tuple[str, ...]) -> int:
    answer = row.get("answer")
    if isinstance(answer, bool) or answer is None:
        raise RowError("answer", "missing: give the gold option's index (0-based) or its text")
    if isinstance(answer, int):
        if not 0 <= answer < len(options):
            raise RowError("answer", f"index {answer} is outside the {len(options)} options (0-based)")
        return answer
    if isinstance(answer, str):
        if answer not in options:
            raise RowError("answer", f"{answer!r} is not one of the options {list(options)}")
        return options.index(answer)
    raise RowError("answer", f"must be an index or an option's text, got {type(answer).__name__}")


def parse_choice(row: dict, source: str, system_prompt: str | None = None) -> EvalRecord:
    """One multiple-choice row; RowError names the field that is wrong."""
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RowError("prompt", "missing or not a non-empty string")
    options = row.get("options")
    if not isinstance(options, list) or len(options) < 2:
        raise RowError("options", "must be a list of at least two strings")
    if not all(isinstance(o, str) and o.strip() for o in options):
        raise RowError("options", "every option must be a non-empty string")
    if len(set(options)) != len(options):
        raise RowError("options", "options must be distinct")
    opts = tuple(options)
    gold = _answer_index(row, opts)
    system = row.get("system", system_prompt)
    if system is not None and not isinstance(system, str):
        raise RowError("system", "must be a string")
    messages = ((Message("system", system),) if system else ()) + (Message("user", prompt), Message("assistant", opts[gold]))
    return EvalRecord(messages, source, category=_category(row), options=opts, answer_index=gold)


def _with_category(parsed: ParsedRow) -> EvalRecord | Any:
    record = parsed.record
    if not isinstance(record, ChatRecord):
        return record  # raw text: eval_records_from says generation metrics need chat data
    category = _category(parsed.raw.data)
    return EvalRecord(record.messages, record.source, record.completion_start, category=category)


def _first_row(path: str | Path) -> Any:
    for row in read_rows(path):
        return None if isinstance(row, BadRow) else row.data
    return None


def load_eval_data(path: str | Path, fmt: str = "auto", *, on_bad_rows: str = "error", system_prompt: str | None = None) -> LoadedData:
    """eval.data as :class:`EvalRecord` rows; with on_bad_rows='error' any bad row stops here with all of them listed."""
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"unknown data format '{fmt}'", hint=f"use one of {', '.join(FORMATS)} or auto")
    first = _first_row(path)
    choice = isinstance(first, dict) and "options" in first
    loaded = LoadedData(path=str(path), format="choice" if choice else fmt)
    items = read_rows(path) if choice else iter_parsed(path, fmt, system_prompt)
    for item in items:
        if isinstance(item, BadRow):
            loaded.bad_rows.append(item)
            continue
        try:
            if choice:
                if not isinstance(item.data, dict):
                    raise RowError(None, f"must be a JSON object, got {type(item.data).__name__}")
                loaded.records.append(parse_choice(item.data, item.source, system_prompt))
            else:
                loaded.records.append(_with_category(item))
        except RowError as exc:
            raw = item.data if choice else item.raw.data
            loaded.bad_rows.append(BadRow(item.source, exc.field, exc.reason, raw))
    if not choice and loaded.format == "auto":
        loaded.format = items.format  # the format the stream resolved from the first row
    if loaded.bad_rows and on_bad_rows == "error":
        raise bad_rows_error(loaded)
    if not loaded.records:
        raise DataError(f"{path}: no usable rows", hint="the file is empty or every row is bad")
    return loaded

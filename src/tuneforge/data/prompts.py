"""Prompt data for online RL (``data.format: prompt``): the model writes the answers, rewards score them.

Accepted rows (JSONL/JSON/CSV/Parquet, as every other format):

- ``{"prompt": "What is 2 + 3?", "answer": "5"}``: a string prompt is one user turn;
- ``{"prompt": [{"role": "system", ...}, {"role": "user", ...}, ...], ...}``: a message list, which
  must end with a user turn (the turn the model answers);
- an optional ``system`` string adds a system turn (``data.system_prompt`` when the row has none).

Every other key (``answer``, a JSON schema, a category...) is kept, untouched, in
:attr:`PromptRecord.columns`: reward functions receive each column by name, as TRL passes dataset
columns, so a verifier reads the reference answer from the row. Bad rows become :class:`BadRow`
with file:line, field and reason through the same :class:`ParsedStream` the other formats use.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from tuneforge.data.formats import ParsedStream, RowError, _turns, bad_rows_error, detect_format
from tuneforge.data.readers import read_rows
from tuneforge.data.records import BadRow, LoadedData, Message, PromptRecord, RawRow
from tuneforge.errors import DataError

PROMPT_FORMATS = ("prompt",)
_CONSUMED = ("prompt", "system")  # keys that become turns; the rest are columns


def parse_prompt(row: dict, source: str, system_prompt: str | None = None) -> PromptRecord:
    """One prompt row as a :class:`PromptRecord` (raises :class:`RowError` naming the field)."""
    value = row.get("prompt")
    if value is None:
        raise RowError("prompt", "missing")
    if isinstance(value, str):
        if not value.strip():
            raise RowError("prompt", "is empty")
        messages = [Message("user", value)]
    elif isinstance(value, list):
        messages = _turns(value, "prompt")
        if messages[-1].role != "user":
            raise RowError("prompt", f"must end with a user message (the turn the model answers), ends with {messages[-1].role}")
    else:
        raise RowError("prompt", f"must be a string or a list of messages, got {type(value).__name__}")
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        raise RowError("system", f"must be a string, got {type(system).__name__}")
    system = system if system and system.strip() else system_prompt
    if system and messages[0].role != "system":
        messages.insert(0, Message("system", system))
    columns = {k: v for k, v in row.items() if k not in _CONSUMED}
    return PromptRecord(tuple(messages), source, columns)


PARSERS = {"prompt": parse_prompt}
# 'auto' on a prompt reader: the shared rule, which says what a file of another format is.
detect_prompt_format = partial(detect_format, prompt_ok=True)


def _check_format(fmt: str) -> None:
    if fmt not in ("auto", *PROMPT_FORMATS):
        raise DataError(f"data format '{fmt}' is not prompt data", hint="use data.format prompt or auto for grpo, rloo and rft")


def _detect(row: Any, path: str) -> str:
    fmt = detect_prompt_format(row, path)
    if fmt != "prompt":
        raise DataError(
            f"{path}: the first row is {fmt} data, not prompt data (rows with a 'prompt' and no answer)",
            hint="online RL (grpo, rloo, rft) samples its own answers: give rows like "
            '{"prompt": "...", "answer": "..."} with the columns the rewards read',
        )
    return fmt


def iter_prompts_parsed(path: str | Path, fmt: str = "auto", system_prompt: str | None = None) -> ParsedStream:
    """Stream a prompt file as parsed rows (what ``tuneforge data validate --format prompt`` checks)."""
    _check_format(fmt)
    return ParsedStream(read_rows(path), fmt, str(path), system_prompt, parsers=PARSERS, detect=_detect)


def parse_prompt_rows(rows: Iterable[RawRow | BadRow], fmt: str, path: str, system_prompt: str | None = None) -> LoadedData:
    """Every row as a PromptRecord or a BadRow; nothing is dropped silently."""
    stream = ParsedStream(rows, fmt, path, system_prompt, parsers=PARSERS, detect=_detect)
    loaded = LoadedData(path=path, format="prompt")
    for item in stream:
        if isinstance(item, BadRow):
            loaded.bad_rows.append(item)
        else:
            loaded.records.append(item.record)  # type: ignore[arg-type]
    return loaded


def load_prompts(path: str | Path, fmt: str = "auto", *, on_bad_rows: str = "error", system_prompt: str | None = None) -> LoadedData:
    """Read a prompt file; with on_bad_rows='error' every bad row is listed (file:line) and the run stops."""
    _check_format(fmt)
    loaded = parse_prompt_rows(read_rows(path), fmt, str(path), system_prompt)
    if loaded.bad_rows and on_bad_rows == "error":
        raise bad_rows_error(loaded)
    if not loaded.records:
        raise DataError(f"{path}: no usable rows", hint="the file is empty or every row is bad; run with data.on_bad_rows=skip to see them all")
    return loaded

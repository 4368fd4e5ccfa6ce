"""Preference data: paired (prompt, chosen, rejected) rows and unpaired (prompt, completion, label) rows.

Accepted shapes (one JSON object per row; CSV and Parquet work for the plain-string forms):

- paired, plain strings:   {"prompt": "...", "chosen": "...", "rejected": "...", "system"?: "..."}
- paired, messages:        {"prompt": [{"role", "content"}, ...], "chosen": [{"role": "assistant", ...}], "rejected": [...]}
- paired, implicit prompt: {"chosen": [user, ..., assistant], "rejected": [user, ..., assistant]} where both lists
                           share every message but the last (the shared prompt)
- unpaired (KTO):          {"prompt": str | messages, "completion": str | [assistant message], "label": true/false}
                           (label may also be 1/0 or "desirable"/"undesirable")

Rows are read by :mod:`tuneforge.data.readers` and bad rows become :class:`BadRow` with file:line,
field and reason, exactly like the SFT formats; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.formats import ROLES, ParsedStream, RowError, bad_rows_error
from tuneforge.data.readers import read_rows
from tuneforge.data.records import BadRow, LoadedData, Message, RawRow
from tuneforge.errors import DataError

PREFERENCE_FORMATS = ("preference", "kto")
_LABELS = {
    "desirable": True,
    "undesirable": False,
    "true": True,
    "false": False,
    "good": True,
    "bad": False,
}


@dataclass(frozen=True)
class PreferenceRecord:
    """A prompt (messages ending with a user turn) and two assistant answers, chosen preferred over rejected."""

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    source: str

    def prompt_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.prompt]


@dataclass(frozen=True)
class UnpairedRecord:
    """A prompt and one assistant answer labelled desirable (True) or undesirable (False), for KTO."""

    prompt: tuple[Message, ...]
    completion: str
    label: bool
    source: str

    def prompt_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.prompt]


def _messages(value: Any, field: str) -> list[Message]:
    if not isinstance(value, list):
        raise RowError(
            field, f"must be a string or a list of messages, got {type(value).__name__}"
        )
    if not value:
        raise RowError(field, "is empty")
    out: list[Message] = []
    for i, turn in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            raise RowError(
                where,
                f"must be an object with role and content, got {type(turn).__name__}",
            )
        role, content = turn.get("role"), turn.get("content")
        if not isinstance(role, str) or role not in ROLES:
            raise RowError(
                f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}"
            )
        if not isinstance(content, str):
            raise RowError(
                f"{where}.content",
                "missing"
                if content is None
                else f"must be a string, got {type(content).__name__}",
            )
        if not content.strip():
            raise RowError(f"{where}.content", "is empty")
        if role == "system" and i != 0:
            raise RowError(f"{where}.role", "a system message may only come first")
        out.append(Message(role, content))
    return out


def _prompt(row: dict, system_prompt: str | None) -> list[Message]:
    value = row.get("prompt")
    if value is None:
        raise RowError("prompt", "missing")
    if isinstance(value, str):
        if not value.strip():
            raise RowError("prompt", "is empty")
        messages = [Message("user", value)]
    else:
        messages = _messages(value, "prompt")
        if messages[-1].role != "user":
            raise RowError(
                "prompt", f"must end with a user message, ends with {messages[-1].role}"
            )
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        raise RowError("system", f"must be a string, got {type(system).__name__}")
    system = system if system and system.strip() else system_prompt
    if system and messages[0].role != "system":
        messages.insert(0, Message("system", system))
    return messages


def _answer(value: Any, field: str) -> str:
    """An answer: a string, or a list holding one assistant message."""
    if value is None:
        raise RowError(field, "missing")
    if isinstance(value, str):
        if not value.strip():
            raise RowError(field, "is empty")
        return value
    messages = _messages(value, field)
    if len(messages) != 1 or messages[0].role != "assistant":
        raise RowError(
            field,
            "must be a string or a list with exactly one assistant message (put the conversation in 'prompt')",
        )
    return messages[0].content


def parse_preference(
    row: dict, source: str, system_prompt: str | None = None
) -> PreferenceRecord:
    if "chosen" not in row:
        raise RowError("chosen", "missing")
    if "rejected" not in row:
        raise RowError("rejected", "missing")
    if "prompt" in row:
        prompt = _prompt(row, system_prompt)
        chosen, rejected = (
            _answer(row["chosen"], "chosen"),
            _answer(row["rejected"], "rejected"),
        )
    else:
        # Implicit prompt: two whole conversations that differ only in their last (assistant) turn.
        c = (
            _messages(row["chosen"], "chosen")
            if not isinstance(row["chosen"], str)
            else None
        )
        r = (
            _messages(row["rejected"], "rejected")
            if not isinstance(row["rejected"], str)
            else None
        )
        if c is None or r is None:
            raise RowError(
                "prompt", "missing (plain-string chosen/rejected need a 'prompt' field)"
            )
        for name, conv in (("chosen", c), ("rejected", r)):
            if len(conv) < 2 or conv[-1].role != "assistant":
                raise RowError(
                    name,
                    "must be a conversation ending with an assistant message when there is no 'prompt' field",
                )
        if c[:-1] != r[:-1]:
            raise RowError(
                "rejected",
                "shares no prompt with 'chosen': every message but the last must be the same",
            )
        prompt = list(c[:-1])
        if system_prompt and prompt[0].role != "system":
            prompt.insert(0, Message("system", system_prompt))
        chosen, rejected = c[-1].content, r[-1].content
    if chosen.strip() == rejected.strip():
        raise RowError(
            "rejected",
            "is identical to 'chosen', so the pair says nothing about preference",
        )
    return PreferenceRecord(tuple(prompt), chosen, rejected, source)


def _label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABELS | {
        "1": True,
        "0": False,
    }:
        return (_LABELS | {"1": True, "0": False})[value.strip().lower()]
    if value is None:
        raise RowError("label", "missing")
    raise RowError(
        "label", f"must be true/false (or 1/0, desirable/undesirable), got {value!r}"
    )


def parse_unpaired(
    row: dict, source: str, system_prompt: str | None = None
) -> UnpairedRecord:
    prompt = _prompt(row, system_prompt)
    completion = _answer(row.get("completion"), "completion")
    return UnpairedRecord(tuple(prompt), completion, _label(row.get("label")), source)


PARSERS = {"preference": parse_preference, "kto": parse_unpaired}


def detect_preference_format(row: Any, path: str) -> str:
    if isinstance(row, dict):
        if "chosen" in row or "rejected" in row:
            return "preference"
        if "completion" in row and "label" in row:
            return "kto"
        keys = ", ".join(sorted(map(str, row))) or "(none)"
    else:
        keys = f"a {type(row).__name__}, not an object"
    raise DataError(
        f"{path}: the first row is not preference data (keys: {keys})",
        hint="preference rows need prompt/chosen/rejected; KTO rows need prompt/completion/label",
    )


def iter_preference_parsed(
    path: str | Path, fmt: str = "auto", system_prompt: str | None = None
) -> ParsedStream:
    """Stream a preference or KTO file as parsed rows (what ``tuneforge data validate`` checks).

    It is the same :class:`ParsedStream` training reads through (:func:`parse_preference_rows`), so
    a row's BadRow here is word for word the one ``tuneforge train`` stops on.
    """
    _check_format(fmt)
    return ParsedStream(
        read_rows(path), fmt, str(path), system_prompt, parsers=PARSERS, detect=detect_preference_format
    )


def _check_format(fmt: str) -> None:
    if fmt not in ("auto", *PREFERENCE_FORMATS):
        raise DataError(
            f"data format '{fmt}' is not preference data",
            hint="use data.format preference, kto or auto",
        )


def parse_preference_rows(
    rows: Iterable[RawRow | BadRow],
    fmt: str,
    path: str,
    system_prompt: str | None = None,
) -> LoadedData:
    """Every row as a record or a BadRow; 'auto' is resolved from the first readable row."""
    stream = ParsedStream(rows, fmt, path, system_prompt, parsers=PARSERS, detect=detect_preference_format)
    loaded = LoadedData(path=path, format=fmt)
    for item in stream:
        if isinstance(item, BadRow):
            loaded.bad_rows.append(item)
        else:
            loaded.records.append(item.record)  # type: ignore[arg-type]
    loaded.format = "preference" if stream.format == "auto" else stream.format
    return loaded


def load_preference_records(
    path: str | Path,
    fmt: str = "auto",
    *,
    on_bad_rows: str = "error",
    system_prompt: str | None = None,
) -> LoadedData:
    """Read and parse a preference or KTO file; with on_bad_rows='error' every bad row is listed and the run stops."""
    _check_format(fmt)
    loaded = parse_preference_rows(read_rows(path), fmt, str(path), system_prompt)
    if loaded.bad_rows and on_bad_rows == "error":
        raise bad_rows_error(loaded)
    if not loaded.records:
        raise DataError(
            f"{path}: no usable rows",
            hint="the file is empty or every row is bad; run with data.on_bad_rows=skip to see them all",
        )
    return loaded


def as_unpaired(
    records: Iterable[PreferenceRecord | UnpairedRecord],
) -> list[UnpairedRecord]:
    """KTO from paired data: each pair gives one desirable and one undesirable example."""
    out: list[UnpairedRecord] = []
    for r in records:
        if isinstance(r, UnpairedRecord):
            out.append(r)
        else:
            out.append(UnpairedRecord(r.prompt, r.chosen, True, r.source))
            out.append(UnpairedRecord(r.prompt, r.rejected, False, r.source))
    return out

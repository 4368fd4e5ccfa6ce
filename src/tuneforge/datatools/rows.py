"""Rows as the toolkit sees them: the user's raw dict (extra keys kept) plus its format and source.

Steps edit the raw dict rather than the parsed record so that cleaned output keeps the user's
format and any extra fields (a category, an id). The helpers below say where the text of each
format lives, so a step can be written once for alpaca, messages, ShareGPT, prompt-completion and
text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.formats import PARSERS, RowError, iter_parsed
from tuneforge.data.records import BadRow
from tuneforge.errors import DataError

Path_ = tuple[Any, ...]  # a key path into the raw dict, e.g. ("messages", 2, "content")


@dataclass
class Row:
    source: str
    data: dict
    format: str


def _turns(data: dict) -> tuple[str, str, str, list] | None:
    if isinstance(data.get("messages"), list):
        return "messages", "role", "content", data["messages"]
    if isinstance(data.get("conversations"), list):
        return "conversations", "from", "value", data["conversations"]
    return None


def _role(raw: Any) -> str:
    r = str(raw).strip().lower()
    return {"human": "user", "gpt": "assistant"}.get(r, r)


def _pc_slots(data: dict, side: str) -> list[Path_]:
    """Text fields of a prompt-completion row: the prompt side is ``system`` and the whole prompt
    (assistant turns inside a conversational prompt are context, not answers), the response side is
    the completion, because that is the part training learns."""
    out: list[Path_] = []
    for key in ("prompt", "completion"):
        if side != "all" and (side == "response") != (key == "completion"):
            continue
        if key == "prompt" and isinstance(data.get("system"), str):
            out.append(("system",))
        value = data.get(key)
        if isinstance(value, str):
            out.append((key,))
        elif isinstance(value, list):
            out.extend(
                (key, i, "content")
                for i, turn in enumerate(value)
                if isinstance(turn, dict) and isinstance(turn.get("content"), str)
            )
    return out


def text_slots(data: dict, fmt: str, side: str = "all") -> list[Path_]:
    """Key paths of the text fields of a row; side is all, prompt (user/system/instruction) or response."""
    if fmt == "text":
        return [("text",)] if side in ("all", "response") else []
    if fmt == "alpaca":
        keys = {
            "prompt": ("system", "instruction", "input"),
            "response": ("output",),
        }.get(side, ("system", "instruction", "input", "output"))
        return [(k,) for k in keys if isinstance(data.get(k), str)]
    if fmt == "prompt_completion":
        return _pc_slots(data, side)
    turns = _turns(data)
    if turns is None:
        return []
    key, role_key, content_key, items = turns
    out = []
    for i, turn in enumerate(items):
        if not isinstance(turn, dict) or not isinstance(turn.get(content_key), str):
            continue
        is_resp = _role(turn.get(role_key)) == "assistant"
        if side == "all" or (side == "response") == is_resp:
            out.append((key, i, content_key))
    return out


def _last_user(key: str, items: Any, role_key: str, content_key: str) -> Path_ | None:
    if not isinstance(items, list):
        return None
    users = [
        (key, i, content_key)
        for i, t in enumerate(items)
        if isinstance(t, dict)
        and _role(t.get(role_key)) == "user"
        and isinstance(t.get(content_key), str)
    ]
    return users[-1] if users else None


def request_path(row: Row) -> Path_ | None:
    """Where the one request text of a row lives (what augment rewrites, dedup ``key: prompt`` compares):
    the instruction, a string prompt, the last user turn of a conversational prompt or of a chat, or
    the text itself; None when the row has none."""
    if row.format == "alpaca":
        return ("instruction",)
    if row.format == "text":
        return ("text",)
    if row.format == "prompt_completion":
        prompt = row.data.get("prompt")
        return ("prompt",) if isinstance(prompt, str) else _last_user("prompt", prompt, "role", "content")
    turns = _turns(row.data)
    if turns is None:
        return None
    key, role_key, content_key, items = turns
    return _last_user(key, items, role_key, content_key)


def get_at(data: Any, path: Path_) -> Any:
    for k in path:
        data = data[k]
    return data


def set_at(data: Any, path: Path_, value: Any) -> None:
    for k in path[:-1]:
        data = data[k]
    data[path[-1]] = value


def path_name(path: Path_) -> str:
    """'messages[2].content' style name, as the foundation's bad-row messages write fields."""
    out = str(path[0])
    for k in path[1:]:
        out += f"[{k}]" if isinstance(k, int) else f".{k}"
    return out


def side_text(row: Row, side: str = "all") -> str:
    return "\n".join(
        get_at(row.data, p) for p in text_slots(row.data, row.format, side)
    )


def prompt_text(row: Row) -> str:
    """The request side: the instruction (+ input), else the text at :func:`request_path`; "" for text
    rows, which have no request."""
    if row.format == "alpaca":
        parts = [row.data.get("instruction") or "", row.data.get("input") or ""]
        return "\n\n".join(p for p in parts if p.strip())
    if row.format == "text":
        return ""
    path = request_path(row)
    return get_at(row.data, path) if path is not None else ""


def response_text(row: Row) -> str:
    """The answer side: output, the last assistant turn (of the completion), or the text."""
    slots = text_slots(row.data, row.format, "response")
    return get_at(row.data, slots[-1]) if slots else ""


def map_text(
    row: Row, fn: Callable[[str], str], side: str = "all"
) -> list[tuple[str, str]]:
    """Apply fn to every text field in place; return (field, old value) for the fields that changed."""
    changed = []
    for path in text_slots(row.data, row.format, side):
        old = get_at(row.data, path)
        new = fn(old)
        if new != old:
            set_at(row.data, path, new)
            changed.append((path_name(path), old))
    return changed


def check_row(row: Row) -> RowError | None:
    """Re-run the foundation's parser: a step must not leave a row the trainer would reject."""
    try:
        PARSERS[row.format](row.data, row.source, None)
    except RowError as exc:
        return exc
    return None


# C0 controls but tab, newline and carriage return, DEL, and the C1 controls: nothing a person types,
# usually a bad export (a NUL from a C string, a stray escape code from a terminal log).
CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# 100,000 characters is about 25,000 tokens at the usual ~4 characters a token: far past any
# data.max_length a fine-tune can afford (default 512), so such a field is certainly cut, while
# real answers, even long code or documents, are rarely a tenth of it. Below it a warning would
# be noise; data inspect --max-length counts the merely too-long examples in tokens.
OVERLONG_CHARS = 100_000
CONTROL_REASON = "kept as is and tokenised by training (remove them if they are not meant to be learnt)"
OVERLONG_REASON = (
    "training truncates the example to data.max_length tokens, or drops it with data.overlong: drop "
    "(an example left with no trained token is dropped either way)"
)


@dataclass(frozen=True)
class RowWarning:
    """Something in a usable row that training accepts but the user probably did not mean."""

    source: str
    field: str
    reason: str

    def describe(self) -> str:
        return f"{self.source} field '{self.field}': {self.reason}"

    def as_json(self) -> dict[str, str]:
        return {"source": self.source, "field": self.field, "reason": self.reason}


def _strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    """Every string in a raw row with its key path (iterative: a row may nest deeper than the stack)."""
    stack: list[tuple[Path_, Any]] = [(path, value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            yield where, v
        elif isinstance(v, dict):
            stack.extend(((*where, k), x) for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend(((*where, i), x) for i, x in reversed(list(enumerate(v))))


def row_warnings(source: str, data: Any) -> list[RowWarning]:
    """Control characters and over-long fields in a row, each naming the field (``messages[1].content``)."""
    out: list[RowWarning] = []
    for path, text in _strings(data, ()):
        name = path_name(path) if path else "(row)"
        found = sorted({f"U+{ord(c):04X}" for c in CONTROL_CHARS.findall(text)})
        if found:
            out.append(RowWarning(source, name, f"holds control character(s) {', '.join(found[:5])}: {CONTROL_REASON}"))
        if len(text) > OVERLONG_CHARS:
            out.append(RowWarning(source, name, f"is {len(text):,} characters long (over {OVERLONG_CHARS:,}): {OVERLONG_REASON}"))
    return out


def read_dataset(
    path: str | Path, fmt: str = "auto", on_bad: Callable[[BadRow], None] | None = None
) -> Iterator[Row]:
    """Stream a data file as Rows; bad rows go to ``on_bad`` (or stop here with the foundation's message)."""
    for item in iter_parsed(path, fmt):
        if isinstance(item, BadRow):
            if on_bad is None:
                raise DataError(
                    f"{path}: bad row: {item.describe()}",
                    hint="run `tuneforge data validate` to list every bad row, or pass --skip-bad",
                )
            on_bad(item)
            continue
        yield Row(item.raw.source, item.raw.data, item.format)


def detect_file_format(path: str | Path, fmt: str = "auto") -> str:
    """The format of a file (resolving 'auto' from its first usable row)."""
    if fmt != "auto":
        return fmt
    stream = iter_parsed(path, fmt)
    for item in stream:
        if not isinstance(item, BadRow):
            return item.format
    return "alpaca" if stream.format == "auto" else stream.format


class JsonlWriter:
    """Writes rows as JSON Lines (UTF-8, one object per line), creating the parent directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".jsonl":
            raise DataError(
                f"{self.path}: output files are written as JSON Lines",
                hint="give the output a .jsonl name",
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8")
        self.count = 0

    def write(self, obj: Any) -> None:
        self._fh.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlWriter:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

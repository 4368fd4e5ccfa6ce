"""Data formats: parse raw rows into typed records, or say exactly what is wrong with a row.

- alpaca:   {"instruction", "input"?, "output", "system"?}
- messages: {"messages": [{"role", "content"}, ...]} (OpenAI) or
            {"conversations": [{"from", "value"}, ...]} (ShareGPT: human/gpt/system)
- text:     {"text"}
- prompt_completion: TRL's prompt-completion rows, {"prompt": str, "completion": str} (the prompt is the
            user turn, the completion the assistant's answer) or {"prompt": [messages], "completion":
            [assistant messages]} (conversational); "system"? as in KTO rows. Only the completion is
            trained, as in TRL: assistant turns inside the prompt are context. A "label" key makes a
            row KTO data (data/preference.py), never SFT data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.readers import read_rows
from tuneforge.data.records import (
    BadRow,
    ChatRecord,
    LoadedData,
    Message,
    RawRow,
    Record,
    TextRecord,
)
from tuneforge.errors import DataError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
OPENAI_ROLES = {r: r for r in ROLES}
FORMATS = ("alpaca", "messages", "text", "prompt_completion")


class RowError(Exception):
    """Raised inside a parser; turned into a BadRow carrying the field and reason."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _text_field(row: dict, key: str, *, required: bool = True, allow_empty: bool = False) -> str | None:
    if key not in row or row[key] is None:
        if required:
            raise RowError(key, "missing")
        return None
    value = row[key]
    if not isinstance(value, str):
        raise RowError(key, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        if required:
            raise RowError(key, "is empty")
        return None
    return value


def parse_alpaca(row: dict, source: str, system_prompt: str | None = None) -> ChatRecord:
    instruction = _text_field(row, "instruction")
    extra = _text_field(row, "input", required=False, allow_empty=True)
    output = _text_field(row, "output")
    system = _text_field(row, "system", required=False) or system_prompt
    user = instruction if not extra or not extra.strip() else f"{instruction}\n\n{extra}"
    messages = [Message("user", user), Message("assistant", output)]
    if system:
        messages.insert(0, Message("system", system))
    return ChatRecord(tuple(messages), source)


def _turns(
    turns: Any, key: str, role_key: str = "role", content_key: str = "content", role_map: dict[str, str] = OPENAI_ROLES
) -> list[Message]:
    """A list of chat turns, each checked (role known, content a non-empty string, system only first)."""
    if not isinstance(turns, list):
        raise RowError(key, f"must be a list of messages, got {type(turns).__name__}")
    if not turns:
        raise RowError(key, "is empty")
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise RowError(where, f"must be an object, got {type(turn).__name__}")
        raw_role = turn.get(role_key)
        if not isinstance(raw_role, str):
            raise RowError(f"{where}.{role_key}", "missing" if raw_role is None else f"must be a string, got {type(raw_role).__name__}")
        role = role_map.get(raw_role.strip().lower())
        if role is None:
            raise RowError(f"{where}.{role_key}", f"unknown role '{raw_role}' (allowed: {', '.join(sorted(role_map))})")
        content = turn.get(content_key)
        if not isinstance(content, str):
            raise RowError(f"{where}.{content_key}", "missing" if content is None else f"must be a string, got {type(content).__name__}")
        if not content.strip():
            raise RowError(f"{where}.{content_key}", "is empty")
        if role == "system" and i != 0:
            raise RowError(f"{where}.{role_key}", "a system message may only come first")
        messages.append(Message(role, content))
    return messages


def parse_messages(row: dict, source: str, system_prompt: str | None = None) -> ChatRecord:
    if "messages" in row:
        key, role_key, content_key, role_map = "messages", "role", "content", OPENAI_ROLES
    elif "conversations" in row:
        key, role_key, content_key, role_map = "conversations", "from", "value", SHAREGPT_ROLES
    else:
        raise RowError("messages", "missing (expected 'messages' with role/content, or ShareGPT 'conversations' with from/value)")
    messages = _turns(row[key], key, role_key, content_key, role_map)
    if not any(m.role == "assistant" for m in messages):
        raise RowError(key, "has no assistant message, so there is nothing to train on")
    if messages[0].role != "system" and system_prompt:
        messages.insert(0, Message("system", system_prompt))
    return ChatRecord(tuple(messages), source)


def parse_text(row: dict, source: str, system_prompt: str | None = None) -> TextRecord:
    return TextRecord(_text_field(row, "text"), source)  # type: ignore[arg-type]


KTO_LABEL_REASON = (
    "marks a KTO row (prompt/completion/label is unpaired preference data): train it with objective.type: kto, "
    "or remove 'label' to train every completion with sft"
)


def parse_prompt_completion(row: dict, source: str, system_prompt: str | None = None) -> ChatRecord:
    """TRL's prompt-completion row as a conversation whose trained part starts at the completion.

    A row with a ``label`` is refused rather than read without it: its label may say the completion
    is undesirable, and SFT would then teach exactly that answer.
    """
    if "label" in row:
        raise RowError("label", KTO_LABEL_REASON)
    prompt, completion = row.get("prompt"), row.get("completion")
    if prompt is None:
        raise RowError("prompt", "missing")
    if completion is None:
        raise RowError("completion", "missing")
    if isinstance(prompt, str):
        if not isinstance(completion, str):
            raise RowError("completion", f"must be a string like 'prompt' (both strings, or both lists of messages), got {type(completion).__name__}")
        for key, value in (("prompt", prompt), ("completion", completion)):
            if not value.strip():
                raise RowError(key, "is empty")
        context, answer = [Message("user", prompt)], [Message("assistant", completion)]
    elif isinstance(prompt, list):
        if not isinstance(completion, list):
            raise RowError(
                "completion", f"must be a list of messages like 'prompt' (both strings, or both lists of messages), got {type(completion).__name__}"
            )
        context = _turns(prompt, "prompt")
        if context[-1].role != "user":
            raise RowError("prompt", f"must end with a user message (the turn the completion answers), ends with {context[-1].role}")
        answer = _turns(completion, "completion")
        for i, message in enumerate(answer):
            if message.role != "assistant":
                raise RowError(
                    f"completion[{i}].role",
                    f"must be assistant, got '{message.role}': the completion is the answer that is trained (earlier turns go in 'prompt')",
                )
    else:
        raise RowError("prompt", f"must be a string or a list of messages, got {type(prompt).__name__}")
    system = _text_field(row, "system", required=False) or system_prompt
    if system and context[0].role != "system":
        context.insert(0, Message("system", system))
    return ChatRecord((*context, *answer), source, completion_start=len(context))


PARSERS: dict[str, Callable[[dict, str, str | None], Record]] = {
    "alpaca": parse_alpaca,
    "messages": parse_messages,
    "text": parse_text,
    "prompt_completion": parse_prompt_completion,
}


# A row with one of these keys carries an answer, so a bare ``prompt`` beside it is not prompt data.
ANSWER_KEYS = ("completion", "chosen", "rejected", "label", "response", "output")


def detect_format(row: Any, path: str, *, prompt_ok: bool = False) -> str:
    """Infer the format from the keys of the first row.

    A row with ``prompt`` and none of :data:`ANSWER_KEYS` (checked after every older rule, so no file
    detected before changes format) is prompt data for online RL. Only readers that take it pass
    ``prompt_ok`` (:mod:`tuneforge.data.prompts`, ``data validate``); the SFT readers get a DataError
    that says what the file is instead of a format they have no parser for.
    """
    if isinstance(row, dict):
        if "messages" in row or "conversations" in row:
            return "messages"
        if "instruction" in row and "output" in row:
            return "alpaca"
        if "prompt" in row and "completion" in row:
            if "label" in row:  # TRL's unpaired preference rows: the label decides, never the SFT reader
                raise DataError(
                    f"{path}: the first row has prompt/completion/label, which is KTO (unpaired preference) data, not sft data",
                    hint="train it with objective.type: kto, or remove 'label' from every row to train the completions with sft",
                )
            return "prompt_completion"
        if "text" in row:
            return "text"
        if "prompt" in row and not any(k in row for k in ANSWER_KEYS):
            if prompt_ok:
                return "prompt"
            raise DataError(
                f"{path}: the first row has a 'prompt' and no answer, which is prompt data for online RL, not sft data",
                hint="train it with objective.type grpo, rloo or rft (data.format: prompt), or add a 'completion' to every row for sft",
            )
        keys = ", ".join(sorted(map(str, row))) or "(none)"
    else:
        keys = f"a {type(row).__name__}, not an object"
    raise DataError(
        f"{path}: cannot tell the data format from the first row (keys: {keys})",
        hint="set data.format to alpaca (instruction/input/output), messages (messages or conversations), "
        "prompt_completion (prompt/completion) or text (text); prompt-only rows are data.format prompt (grpo, rloo, rft)",
    )


@dataclass(frozen=True)
class ParsedRow:
    """A raw row together with the record it parses to (the raw dict keeps extra keys such as a category)."""

    raw: RawRow
    record: Record
    format: str


class ParsedStream:
    """Parse rows one at a time (streaming), for files larger than memory.

    Iterating yields a :class:`ParsedRow` or a :class:`BadRow` per row; ``format`` is the resolved
    format ('auto' is resolved from the first row, as :func:`parse_rows` does).

    ``parsers`` and ``detect`` default to the SFT formats'; :mod:`tuneforge.data.preference` passes
    its own, so preference and KTO files stream through the same loop and give the same BadRows.
    """

    def __init__(
        self,
        rows: Iterable[RawRow | BadRow],
        fmt: str,
        path: str,
        system_prompt: str | None = None,
        *,
        parsers: Mapping[str, Callable[[dict, str, str | None], Any]] | None = None,
        detect: Callable[[Any, str], str] | None = None,
    ) -> None:
        self.rows, self.format, self.path, self.system_prompt = rows, fmt, path, system_prompt
        self.parsers = PARSERS if parsers is None else parsers
        self.detect = detect_format if detect is None else detect

    def __iter__(self) -> Iterator[ParsedRow | BadRow]:
        parser = self.parsers[self.format] if self.format != "auto" else None
        for row in self.rows:
            if isinstance(row, BadRow):
                yield row
                continue
            if parser is None:
                self.format = self.detect(row.data, self.path)
                parser = self.parsers[self.format]
            if not isinstance(row.data, dict):
                yield BadRow(row.source, None, f"must be a JSON object, got {type(row.data).__name__}", row.data)
                continue
            try:
                yield ParsedRow(row, parser(row.data, row.source, self.system_prompt), self.format)
            except RowError as exc:
                yield BadRow(row.source, exc.field, exc.reason, row.data)


def iter_parsed(path: str | Path, fmt: str = "auto", system_prompt: str | None = None) -> ParsedStream:
    """Stream a data file as parsed rows; see :class:`ParsedStream`."""
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"unknown data format '{fmt}'", hint=f"use one of {', '.join(FORMATS)} or auto")
    return ParsedStream(read_rows(path), fmt, str(path), system_prompt)


def parse_rows(rows: Iterable[RawRow | BadRow], fmt: str, path: str, system_prompt: str | None = None) -> LoadedData:
    """Turn raw rows into records; every row that fails becomes a BadRow (nothing is dropped silently)."""
    stream = ParsedStream(rows, fmt, path, system_prompt)
    loaded = LoadedData(path=path, format=fmt)
    for item in stream:
        if isinstance(item, BadRow):
            loaded.bad_rows.append(item)
        else:
            loaded.records.append(item.record)
    loaded.format = "alpaca" if stream.format == "auto" else stream.format
    return loaded


def load_records(path: str | Path, fmt: str = "auto", *, on_bad_rows: str = "error", system_prompt: str | None = None) -> LoadedData:
    """Read and parse a data file. With on_bad_rows='error', any bad row stops here with all of them listed."""
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"unknown data format '{fmt}'", hint=f"use one of {', '.join(FORMATS)} or auto")
    loaded = parse_rows(read_rows(path), fmt, str(path), system_prompt)
    if loaded.bad_rows and on_bad_rows == "error":
        raise bad_rows_error(loaded)
    if not loaded.records:
        raise DataError(f"{path}: no usable rows", hint="the file is empty or every row is bad; run with data.on_bad_rows=skip to see them all")
    return loaded


def bad_rows_error(loaded: LoadedData, show: int = 10) -> DataError:
    lines = [b.describe() for b in loaded.bad_rows[:show]]
    more = len(loaded.bad_rows) - show
    if more > 0:
        lines.append(f"... and {more} more")
    return DataError(
        f"{loaded.path}: {len(loaded.bad_rows)} bad row(s) in {loaded.format} data:\n  " + "\n  ".join(lines),
        hint="fix these rows, or set data.on_bad_rows=skip to leave them out (they are then written to skipped_rows.jsonl in the run directory)",
    )

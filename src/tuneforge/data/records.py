"""Typed records: what every data format is normalised to before templating.

Each record keeps ``source`` ("file:line" or "file:row N") so that anything reported later (an
over-long example, a skipped row) can be traced back to the user's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class ChatRecord:
    """A conversation; assistant turns are what SFT trains on.

    ``completion_start`` is the index of the first message that may be trained. It is 0 for alpaca
    and messages rows (every assistant turn is trained) and the prompt's length for prompt-completion
    rows, whose prompt may hold earlier assistant turns that are context only, as TRL trains them.
    """

    messages: tuple[Message, ...]
    source: str
    completion_start: int = 0

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


@dataclass(frozen=True)
class TextRecord:
    """Raw text for continued pretraining; every token is trained."""

    text: str
    source: str


@dataclass(frozen=True)
class RawRow:
    """One row as read from a file, before format parsing."""

    source: str
    data: Any


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be used, and why. Written to skipped_rows.jsonl when skipping is allowed."""

    source: str
    field: str | None
    reason: str
    row: Any = None

    def describe(self) -> str:
        where = f"{self.source}" + (f" field '{self.field}'" if self.field else "")
        return f"{where}: {self.reason}"

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "field": self.field, "reason": self.reason, "row": self.row}


@dataclass(frozen=True)
class PromptRecord:
    """A prompt for online RL (``data.format: prompt``): the model writes the answer, rewards score it.

    ``messages`` are the prompt turns (an optional system turn, then user and earlier assistant turns,
    ending with a user turn); ``columns`` holds the row's other fields (e.g. ``answer``), passed by name
    to reward functions so a verifier can read the reference.
    """

    messages: tuple[Message, ...]
    source: str
    columns: dict[str, Any] = field(default_factory=dict)

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


Record = ChatRecord | TextRecord


@dataclass
class LoadedData:
    """Records parsed from one file plus everything that was left out."""

    path: str
    format: str
    records: list[Record] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)

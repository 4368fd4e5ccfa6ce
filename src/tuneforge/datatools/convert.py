"""Format conversion between alpaca, messages (OpenAI), ShareGPT and text.

Conversion goes through the foundation's parsed record, so every source format is read exactly as
training reads it; keys that are not part of the format (a category, an id) are carried over. A row
that cannot be expressed in the target (a multi-turn chat as alpaca) is removed with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

from tuneforge.config.pipeline import ConvertStep
from tuneforge.data.formats import PARSERS
from tuneforge.data.records import ChatRecord, TextRecord
from tuneforge.datatools.rows import Row
from tuneforge.datatools.trace import Trace

FORMAT_KEYS = {
    "instruction",
    "input",
    "output",
    "system",
    "messages",
    "conversations",
    "text",
}
SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


def convert_data(
    data: dict, fmt: str, to: str, source: str = ""
) -> tuple[dict | None, str | None]:
    """(converted row, None) or (None, why it cannot be converted)."""
    record = PARSERS[fmt](data, source, None)
    extra = {k: v for k, v in data.items() if k not in FORMAT_KEYS}
    if isinstance(record, TextRecord):
        if to == "text":
            return {"text": record.text, **extra}, None
        return None, "text rows have no prompt/response to convert to chat formats"
    assert isinstance(record, ChatRecord)
    msgs = record.as_dicts()
    if to == "messages":
        return {"messages": msgs, **extra}, None
    if to == "sharegpt":
        return {
            "conversations": [
                {"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in msgs
            ],
            **extra,
        }, None
    if to == "text":
        return {"text": "\n\n".join(m["content"] for m in msgs), **extra}, None
    system = msgs[0]["content"] if msgs[0]["role"] == "system" else None
    turns = msgs[1:] if system is not None else msgs
    if len(turns) != 2 or turns[0]["role"] != "user" or turns[1]["role"] != "assistant":
        return (
            None,
            f"a {len(turns)}-turn conversation cannot be written as alpaca (one user turn and one answer)",
        )
    out = {
        "instruction": turns[0]["content"],
        "input": "",
        "output": turns[1]["content"],
    }
    if system is not None:
        out["system"] = system
    return {**out, **extra}, None


class Convert:
    name = "convert"

    def __init__(self, cfg: ConvertStep) -> None:
        self.cfg = cfg
        self.target_format = {"sharegpt": "messages"}.get(cfg.to, cfg.to)

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        for row in rows:
            new, why = convert_data(row.data, row.format, self.cfg.to, row.source)
            if new is None:
                trace.log(
                    self.name,
                    "removed",
                    row,
                    why or "cannot convert",
                    kind=f"not convertible to {self.cfg.to}",
                )
                continue
            yield Row(row.source, new, self.target_format)

"""Format conversion between alpaca, messages (OpenAI), ShareGPT, prompt-completion and text.

Conversion goes through the foundation's parsed record, so every source format is read exactly as
training reads it; keys that are not part of the format (a category, an id) are carried over. A row
that cannot be expressed in the target (a multi-turn chat as alpaca) is removed with the reason.

Conversions to and from prompt-completion must keep what is *trained*, not only the text: every
assistant turn of an alpaca or messages row is trained, but only the completion of a
prompt-completion row is. So a prompt holding assistant turns (context) cannot become messages, and
a chat with an assistant turn before its last user turn cannot become prompt-completion; either is
refused with the turn that would change from context to trained (or back).
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
    "prompt",
    "completion",
}
SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}

Converted = tuple[dict | None, str | None]


def _context_answer_error(data: dict, to: str) -> str | None:
    """Why a prompt-completion row cannot become ``to``, a format that trains every assistant turn, or None."""
    prompt = data.get("prompt")
    if not isinstance(prompt, list):
        return None
    for i, turn in enumerate(prompt):
        if isinstance(turn, dict) and str(turn.get("role", "")).strip().lower() == "assistant":
            return (
                f"prompt[{i}] is an assistant turn, which prompt_completion keeps as context; "
                f"every assistant turn of a {to} row is trained, so converting would train it"
            )
    return None


def _to_prompt_completion(record: ChatRecord, data: dict, fmt: str) -> Converted:
    """A chat as prompt-completion: the trailing assistant turns are the completion, the rest the prompt.

    Alpaca rows become string rows (``system`` kept as a key), other chats conversational rows, so
    the roles stay explicit. An assistant turn before the last user turn would be trained in the
    source but only context in the target, so such a row is refused.
    """
    msgs = record.as_dicts()
    start = len(msgs)
    while start > 0 and msgs[start - 1]["role"] == "assistant":
        start -= 1
    prompt, completion = msgs[:start], msgs[start:]
    if not completion:
        return None, f"the last turn is {msgs[-1]['role']}, so there is no answer to write as the completion"
    if not prompt or prompt[-1]["role"] != "user":
        return None, "there is no user turn before the answer for the prompt to end with"
    earlier = [i for i, m in enumerate(prompt) if m["role"] == "assistant"]
    if earlier:
        key = "conversations" if "conversations" in data and "messages" not in data else "messages"
        return None, (
            f"{key}[{earlier[0]}] is an answer before the last user turn: it is trained here, "
            "but a prompt-completion prompt is context only, so converting would stop training it"
        )
    system = prompt[0]["content"] if prompt[0]["role"] == "system" else None
    turns = prompt[1:] if system is not None else prompt
    if fmt == "alpaca" and len(turns) == 1 and len(completion) == 1:
        out: dict = {"prompt": turns[0]["content"], "completion": completion[0]["content"]}
        if system is not None:
            out["system"] = system
        return out, None
    return {"prompt": prompt, "completion": completion}, None


def _to_alpaca(msgs: list[dict[str, str]]) -> Converted:
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
    return out, None


def _convert_chat(record: ChatRecord, data: dict, fmt: str, to: str) -> Converted:
    msgs = record.as_dicts()
    if to == "text":
        return {"text": "\n\n".join(m["content"] for m in msgs)}, None
    if to == "prompt_completion":
        if fmt == "prompt_completion":
            return {k: data[k] for k in ("prompt", "completion", "system") if k in data}, None
        return _to_prompt_completion(record, data, fmt)
    if to == "alpaca":
        return _to_alpaca(msgs)
    why = _context_answer_error(data, to) if fmt == "prompt_completion" else None
    if why is not None:
        return None, why
    if to == "messages":
        return {"messages": msgs}, None
    if to == "sharegpt":
        return {"conversations": [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in msgs]}, None
    raise ValueError(f"unknown target format {to!r}")


def convert_data(data: dict, fmt: str, to: str, source: str = "") -> Converted:
    """(converted row, None) or (None, why it cannot be converted)."""
    record = PARSERS[fmt](data, source, None)
    extra = {k: v for k, v in data.items() if k not in FORMAT_KEYS}
    if isinstance(record, TextRecord):
        if to == "text":
            return {"text": record.text, **extra}, None
        return None, "text rows have no prompt/response to convert to chat formats"
    assert isinstance(record, ChatRecord)
    out, why = _convert_chat(record, data, fmt, to)
    return ({**out, **extra}, None) if out is not None else (None, why)


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

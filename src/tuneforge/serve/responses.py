"""Response bodies and stream chunks in OpenAI's shapes (``chat.completion``, ``text_completion``, SSE)."""

from __future__ import annotations

import json
from typing import Any


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def chat_response(cid: str, created: int, model: str, text: str, finish_reason: str, use: dict[str, int]) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish_reason}],
        "usage": use,
    }


def completion_response(cid: str, created: int, model: str, text: str, finish_reason: str, use: dict[str, int]) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": use,
    }


def chunk(kind: str, cid: str, created: int, model: str, text: str | None, finish_reason: str | None, *, first: bool = False) -> dict[str, Any]:
    """One streamed piece; a chat stream's first chunk carries the assistant role (as OpenAI's does)."""
    if kind == "chat":
        delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else ({"content": text} if text else {})
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [choice]}
    choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
    return {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [choice]}


def usage_chunk(kind: str, cid: str, created: int, model: str, use: dict[str, int]) -> dict[str, Any]:
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    return {"id": cid, "object": obj, "created": created, "model": model, "choices": [], "usage": use}


def sse(obj: dict[str, Any] | str) -> str:
    """One server-sent event; the stream ends with ``data: [DONE]`` like OpenAI's."""
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"

"""Request bodies of the OpenAI-compatible API, as pydantic models.

Field names, defaults and bounds follow OpenAI's API reference (temperature defaults to 1, completions'
``max_tokens`` to 16, ``n`` is 1), so a client written for OpenAI behaves the same here. Unknown
fields are refused (``extra="forbid"``) rather than ignored: a ``logprobs`` or ``frequency_penalty``
this server does not implement gets a 400 that names it instead of an answer that silently differs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    model: str = Field(max_length=200)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=1)


class FeedbackRequest(_Strict):
    id: str = Field(min_length=1, max_length=100, description="the id of a completion this server returned")
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=4000)

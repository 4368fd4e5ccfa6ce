"""One generation request inside the engine: its prompt, its limits and the text it has produced so far.

The engine decodes a whole batch at once, but every request has its own end: its ``max_tokens``, an
end-of-turn token, one of its stop sequences, or its client going away. A :class:`Job` keeps that
per-request state and turns new token ids into text deltas for its client. Text is re-decoded from
all generated ids each step (not token by token) because a byte-level tokenizer splits one UTF-8
character over several tokens; a trailing U+FFFD means "incomplete character", so it is held back.
Text that might be the start of a stop sequence is held back too, so a client never receives the
first half of a stop sequence that is then cut.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; requests share a batch only when these are equal (``generate`` takes one set)."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Delta:
    text: str


@dataclass
class Finished:
    finish_reason: str  # "stop" (end of turn or a stop sequence) or "length" (max_tokens)
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failed:
    message: str


Event = Delta | Finished | Failed


@dataclass
class Job:
    """A request as the engine sees it. ``sink`` receives its events, from the engine's thread."""

    id: str
    model: str  # the served model name (metrics label)
    adapter: str | None  # the peft adapter to activate, None for the model as loaded
    prompt_ids: list[int]
    max_tokens: int
    sampling: Sampling
    stop: tuple[str, ...]
    sink: Callable[[Event], None]
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    first_token_at: float | None = None
    done: bool = False
    shadow: bool = False  # a shadow adapter's copy of a client request (serve/shadow.py): no client waits for it
    _sent: int = 0  # characters of the reply already delivered

    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one batch (one adapter, one set of sampling settings).

        A seeded request samples alone: its output must depend on its seed only, not on which other
        requests happened to arrive in the same few milliseconds.
        """
        seed_key = self.id if (self.sampling.seed is not None and not self.sampling.greedy) else None
        sampling = None if self.sampling.greedy else (self.sampling.temperature, self.sampling.top_p)
        return (self.adapter, sampling, seed_key)

    def add_token(self, token: int, eos_ids: set[int], decode: Callable[[list[int]], str]) -> None:
        """Take the next generated token: finish on end-of-turn, a stop sequence or max_tokens."""
        if self.done:
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.generated.append(token)
        if token in eos_ids:
            self.finish("stop", decode)
            return
        text = decode(self.generated)
        cut = self._stop_index(text)
        if cut is not None:
            self._emit(text[:cut])
            self._finished("stop", text[:cut])
            return
        if len(self.generated) >= self.max_tokens:
            self.finish("length", decode)
            return
        self._emit(text[: self._safe_end(text)])

    def finish(self, reason: str, decode: Callable[[list[int]], str]) -> None:
        """End the reply with ``reason``, delivering whatever text is still held back."""
        if self.done:
            return
        text = decode(self.generated)
        cut = self._stop_index(text)
        if cut is not None:
            text, reason = text[:cut], "stop"
        self._emit(text)
        self._finished(reason, text)

    def fail(self, message: str) -> None:
        if not self.done:
            self.done = True
            self.sink(Failed(message))

    def _finished(self, reason: str, text: str) -> None:
        self.done = True
        self.sink(Finished(reason, text, len(self.prompt_ids), len(self.generated)))

    def _emit(self, upto: str) -> None:
        if len(upto) > self._sent:
            self.sink(Delta(upto[self._sent :]))
            self._sent = len(upto)

    def _stop_index(self, text: str) -> int | None:
        found = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _safe_end(self, text: str) -> int:
        """How much of ``text`` can be sent now: not an incomplete character, not a stop sequence's start."""
        end = len(text.rstrip("\ufffd"))
        for s in self.stop:
            for k in range(min(len(s) - 1, end), 0, -1):
                if text[:end].endswith(s[:k]):
                    end = min(end, len(text[:end]) - k)
                    break
        return end

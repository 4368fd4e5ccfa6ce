"""User feedback on served answers, and the optional prompt log: append-only JSON Lines files.

Feedback names a completion by the ``id`` the server returned with it, so the log records which
model (adapter) answered; ids are remembered for the last ``remember`` completions only, and
feedback on any other id is refused (404) rather than logged against nothing. ``tuneforge monitor``
reads both files: thumbs-up share for satisfaction, logged prompts for input drift. The prompt log is
off unless asked for (``--prompt-log``), because it stores what users typed.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any


class JsonlLog:
    """Appends one JSON object per line; safe to call from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)


class RecentCompletions:
    """completion id -> served model name, for the last ``remember`` completions."""

    def __init__(self, remember: int = 100_000) -> None:
        self.remember = remember
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, completion_id: str, model: str) -> None:
        with self._lock:
            self._ids[completion_id] = model
            while len(self._ids) > self.remember:
                self._ids.popitem(last=False)

    def model_of(self, completion_id: str) -> str | None:
        with self._lock:
            return self._ids.get(completion_id)


def feedback_record(completion_id: str, model: str, rating: str, comment: str | None) -> dict[str, Any]:
    return {"time": time.time(), "id": completion_id, "model": model, "rating": rating, "comment": comment}


def prompt_record(completion_id: str, model: str, prompt: str, prompt_tokens: int) -> dict[str, Any]:
    return {"time": time.time(), "id": completion_id, "model": model, "prompt": prompt, "prompt_tokens": prompt_tokens}

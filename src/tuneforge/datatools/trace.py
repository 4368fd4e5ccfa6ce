"""The trace: every row a step removes, changes, adds or flags, with the step and the reason.

This is the "nothing disappears without a trace" contract of the data toolkit: a JSONL file the user
can grep, plus counters the report turns into a table. Rows are written as they happen, so the trace
of a larger-than-memory file does not sit in memory either.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tuneforge.datatools.rows import Row

ACTIONS = ("removed", "changed", "added", "flagged")
TRACE_FILE = "trace.jsonl"  # its name inside a report directory


class Trace:
    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._fh = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
        self.counts: Counter[tuple[str, str]] = Counter()
        self.reasons: Counter[tuple[str, str, str]] = Counter()
        self.entries: list[dict] | None = (
            [] if self.path is None else None
        )  # kept in memory only without a file

    def log(
        self,
        step: str,
        action: str,
        row: Row | None,
        reason: str,
        *,
        kind: str | None = None,
        source: str | None = None,
        **extra: Any,
    ) -> None:
        """Record one event. ``kind`` is a short reason class for the report's table (default: the reason)."""
        assert action in ACTIONS, action
        self.counts[(step, action)] += 1
        self.reasons[(step, action, kind or reason)] += 1
        entry = {
            "step": step,
            "action": action,
            "source": source or (row.source if row else None),
            "reason": reason,
            **extra,
        }
        if row is not None and "row" not in extra:
            entry["row"] = row.data
        if self._fh is not None:
            self._fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        elif self.entries is not None:
            self.entries.append(entry)

    def count(self, step: str, action: str) -> int:
        return self.counts[(step, action)]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

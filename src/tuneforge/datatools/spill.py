"""A temporary JSON Lines spill for steps that need two passes (balance, mix), so they stay streaming."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from tuneforge.datatools.rows import Row


class Spill:
    def __init__(self, rows: Iterable[Row]) -> None:
        self._tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - written in full just below
            "w",
            suffix=".jsonl",
            prefix="tuneforge-spill-",
            delete=False,
            encoding="utf-8",
        )
        self.path = Path(self._tmp.name)
        self.count = 0
        with self._tmp as fh:
            for row in rows:
                fh.write(
                    json.dumps([row.source, row.format, row.data], ensure_ascii=False)
                    + "\n"
                )
                self.count += 1

    def __iter__(self) -> Iterator[Row]:
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                source, fmt, data = json.loads(line)
                yield Row(source, data, fmt)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)

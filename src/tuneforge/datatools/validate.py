"""Validation: every bad row of a file with file:line, field and reason (the foundation's messages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.data.formats import iter_parsed
from tuneforge.data.records import BadRow


@dataclass
class ValidationResult:
    path: str
    format: str
    rows: int = 0
    good: int = 0
    bad: list[BadRow] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "file": self.path,
            "format": self.format,
            "rows": self.rows,
            "good": self.good,
            "bad": len(self.bad),
            "bad_rows": [
                {"source": b.source, "field": b.field, "reason": b.reason}
                for b in self.bad
            ],
        }


def validate_file(path: str | Path, fmt: str = "auto") -> ValidationResult:
    stream = iter_parsed(path, fmt)
    result = ValidationResult(str(path), fmt)
    for item in stream:
        result.rows += 1
        if isinstance(item, BadRow):
            result.bad.append(item)
        else:
            result.good += 1
    result.format = "alpaca" if stream.format == "auto" else stream.format
    return result

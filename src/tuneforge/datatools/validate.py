"""Validation: every bad row of a file with file:line, field and reason (the foundation's messages).

Every format ``tuneforge train`` reads is checked here with the parser training uses, through the
same :class:`~tuneforge.data.formats.ParsedStream`, so a bad row reads the same in both places:
the SFT formats (:mod:`tuneforge.data.formats`), preference / KTO (:mod:`tuneforge.data.preference`)
and prompt rows for online RL (:mod:`tuneforge.data.prompts`).
Usable rows may still carry warnings (control characters, a field over
:data:`~tuneforge.datatools.rows.OVERLONG_CHARS` characters); they are listed but do not make the file bad.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.data.formats import FORMATS, PARSERS, ParsedStream, detect_format, iter_parsed
from tuneforge.data.preference import PARSERS as PREFERENCE_PARSERS
from tuneforge.data.preference import PREFERENCE_FORMATS, iter_preference_parsed
from tuneforge.data.prompts import PARSERS as PROMPT_PARSERS
from tuneforge.data.prompts import PROMPT_FORMATS, iter_prompts_parsed
from tuneforge.data.readers import read_rows
from tuneforge.data.records import BadRow
from tuneforge.datatools.rows import RowWarning, row_warnings
from tuneforge.errors import DataError

ALL_FORMATS = (*FORMATS, *PREFERENCE_FORMATS, *PROMPT_FORMATS)
# Keys that belong to an SFT format; a row holding one of them and chosen/rejected is ambiguous.
_SFT_KEYS = ("messages", "conversations", "instruction", "text", "completion", "label")
_ALL_HINT = (
    "pass --format: alpaca (instruction/input/output), messages (messages or conversations), "
    "prompt_completion (prompt/completion), text (text), preference (prompt/chosen/rejected), "
    "kto (prompt/completion/label) or prompt (prompt only, for grpo/rloo/rft)"
)


@dataclass
class ValidationResult:
    path: str
    format: str
    rows: int = 0
    good: int = 0
    bad: list[BadRow] = field(default_factory=list)
    warnings: list[RowWarning] = field(default_factory=list)

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
            "warnings": [w.as_json() for w in self.warnings],
        }


def detect_any_format(row: Any, path: str) -> str:
    """The format of a first row among all seven training formats.

    chosen/rejected only occur in preference rows and prompt/completion/label only in KTO rows,
    so those are told apart from the SFT formats by their keys; a row that mixes preference keys
    with SFT ones is refused rather than guessed.
    """
    if isinstance(row, dict):
        if "chosen" in row or "rejected" in row:
            clash = [k for k in _SFT_KEYS if k in row]
            if clash:
                raise DataError(
                    f"{path}: the first row has chosen/rejected (preference) and {', '.join(clash)}, "
                    "so its format is ambiguous",
                    hint=_ALL_HINT,
                )
            return "preference"
        sft_first = "messages" in row or "conversations" in row or ("instruction" in row and "output" in row)
        if "prompt" in row and "completion" in row and "label" in row and not sft_first:
            return "kto"
    try:
        return detect_format(row, path, prompt_ok=True)
    except DataError as exc:
        raise DataError(exc.message, hint=_ALL_HINT) from None


def _stream(path: str | Path, fmt: str) -> ParsedStream:
    if fmt in PREFERENCE_FORMATS:
        return iter_preference_parsed(path, fmt)
    if fmt in FORMATS:
        return iter_parsed(path, fmt)
    if fmt in PROMPT_FORMATS:
        return iter_prompts_parsed(path, fmt)
    if fmt != "auto":
        raise DataError(f"unknown data format '{fmt}'", hint=f"use one of {', '.join(ALL_FORMATS)} or auto")
    return ParsedStream(
        read_rows(path), "auto", str(path), parsers={**PARSERS, **PREFERENCE_PARSERS, **PROMPT_PARSERS}, detect=detect_any_format
    )


def validate_file(path: str | Path, fmt: str = "auto") -> ValidationResult:
    """Check every row of a file as training would read it (``fmt``: one of :data:`ALL_FORMATS` or auto)."""
    stream = _stream(path, fmt)
    result = ValidationResult(str(path), fmt)
    for item in stream:
        result.rows += 1
        if isinstance(item, BadRow):
            result.bad.append(item)
        else:
            result.good += 1
            result.warnings.extend(row_warnings(item.raw.source, item.raw.data))
    result.format = "alpaca" if stream.format == "auto" else stream.format
    return result

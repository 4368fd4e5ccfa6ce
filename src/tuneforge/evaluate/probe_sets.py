"""Reading the probes' JSONL sets (the bundled ones or a user's) into validated rows.

The red-team set and the forgetting probe share this reader so a bad row in either names the file
and line and says what is wrong, the way the training data readers do.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tuneforge.errors import DataError

Item = TypeVar("Item", bound=BaseModel)


def bundled_text(*parts: str) -> tuple[str, str]:
    """(text, shown name) of a bundled resource under ``evaluate/resources``."""
    res = resources.files("tuneforge.evaluate").joinpath("resources", *parts)
    return res.read_text(encoding="utf-8"), "bundled " + "/".join(parts)


def read_set(path: str | None, bundled: tuple[str, ...], model: type[Item]) -> tuple[list[Item], str]:
    """The rows of a user's file (when ``path`` is set) or of the bundled set, and the name errors use."""
    if path is None:
        text, origin = bundled_text(*bundled)
    else:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"probe set not found: {p}", hint="give a JSONL file in the bundled set's row format (docs/EVALUATION.md)")
        try:
            text = p.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{p}: cannot be read as UTF-8 text: {exc}") from None
        origin = str(p)
    return parse_set(text, origin, model), origin


def parse_set(text: str, origin: str, model: type[Item]) -> list[Item]:
    """Validate every non-blank line; all bad lines are reported together, each as ``origin:line: why``."""
    items: list[Item] = []
    bad: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = model.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            bad.append(f"{origin}:{lineno}: not valid JSON ({exc.msg})")
            continue
        except ValidationError as exc:
            why = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors())
            bad.append(f"{origin}:{lineno}: {why}")
            continue
        key = getattr(item, "id", None)
        if key is not None and key in seen:
            bad.append(f"{origin}:{lineno}: id {key!r} already used on line {seen[key]}")
            continue
        if key is not None:
            seen[key] = lineno
        items.append(item)
    if bad:
        shown = bad[:10] + ([f"... and {len(bad) - 10} more"] if len(bad) > 10 else [])
        raise DataError(f"{origin}: {len(bad)} bad row(s):\n  " + "\n  ".join(shown), hint="fix these rows (the format is in docs/EVALUATION.md)")
    if not items:
        raise DataError(f"{origin}: no rows", hint="the probe set is empty")
    return items

"""Normalisation: Unicode NFKC, whitespace, control characters, optional case and punctuation rules.

Every changed field is traced with its old value; a row that a rule empties (so the trainer would
reject it) is removed with the parser's own reason rather than written out broken.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Iterator

from tuneforge.config.pipeline import NormalizeStep
from tuneforge.datatools.rows import Row, check_row, map_text
from tuneforge.datatools.trace import Trace

_SPACES = re.compile(
    r"[^\S\n]{2,}|[^\S\n ]"
)  # runs of whitespace other than newline, or a tab/odd space
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")
_SPACE_AROUND_NL = re.compile(r" *\n *")
_KEEP_CONTROL = {"\n", "\t"}
_KEEP_FORMAT = {"\u200d"}  # zero-width joiner builds emoji sequences; keep it
_PUNCT = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
    }
)
_REPEATED = re.compile(r"([!?])\1+")


@functools.cache
def _control_regex() -> re.Pattern:
    """One character class of every control, format, private-use and surrogate code point we strip.

    Built once (a scan of the code space, ~0.3 s) so the per-row work is a single regex pass.
    """
    keep = _KEEP_CONTROL | _KEEP_FORMAT
    ranges: list[tuple[int, int]] = []
    # Cc/Cf only occur in planes 0-1 and 14; surrogates (Cs) and private use (Co) are fixed ranges.
    for cp in itertools.chain(range(0x20000), range(0xE0000, 0xE1000)):
        ch = chr(cp)
        if ch not in keep and unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    ranges = sorted(
        {*ranges, (0xD800, 0xDFFF), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD)}
    )
    cls = "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in ranges
    )
    return re.compile(f"[{cls}]+")


def strip_control(text: str) -> str:
    return _control_regex().sub("", text)


def normalize_text(text: str, cfg: NormalizeStep) -> str:
    if cfg.nfkc and not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    if cfg.control:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if (
            not text.isprintable()
        ):  # cheap C test: printable text has no control or format characters
            text = strip_control(text)
    if cfg.punctuation:
        text = _REPEATED.sub(r"\1", text.translate(_PUNCT))
    if cfg.lowercase:
        text = text.lower()
    if cfg.whitespace:
        if "  " in text or not text.isprintable():
            text = _SPACES.sub(" ", text)
        if "\n" in text:
            text = _SPACE_AROUND_NL.sub("\n", text)
        text = _BLANK_LINES.sub("\n\n", text).strip()
    return text


class Normalize:
    name = "normalize"

    def __init__(self, cfg: NormalizeStep) -> None:
        self.cfg = cfg

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        for row in rows:
            changed = map_text(row, lambda t: normalize_text(t, self.cfg))
            if not changed:
                yield row
                continue
            err = check_row(row)
            if err is not None:
                trace.log(
                    self.name,
                    "removed",
                    row,
                    f"field '{err.field}' {err.reason} after normalisation",
                    kind="empty after normalisation",
                )
                continue
            trace.log(
                self.name,
                "changed",
                row,
                "normalised " + ", ".join(f for f, _ in changed),
                kind="normalised",
                before={f: old for f, old in changed},
            )
            yield row

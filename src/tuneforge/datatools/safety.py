"""Unsafe-content filter (block and allow lists) and PII scrubbing.

The list filter is deliberately simple and explainable: a row is removed when a block-list term
occurs on word boundaries after allow-list phrases are blanked out, and the trace names the term
(the lists and their matching are in ``blocklist.py``, which the refusal detector shares).
For judgement calls a list cannot make, add a ``judge`` step with ``rubric: safety`` (an LLM judge).

PII: e-mail addresses, phone numbers and card-like numbers (13-19 digits that pass the Luhn check,
so order ids and timestamps are not mangled) are replaced by placeholders. The trace records which
kinds were replaced and how often, never the values themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tuneforge.config.pipeline import PiiStep, SafetyStep
from tuneforge.datatools.blocklist import BlockList
from tuneforge.datatools.refusals import RefusalDetector
from tuneforge.datatools.rows import Row, map_text, response_text, side_text
from tuneforge.datatools.trace import Trace


class Safety:
    name = "safety"

    def __init__(self, cfg: SafetyStep) -> None:
        self.cfg = cfg
        self.lists = BlockList.from_config(cfg)
        self.refusals = RefusalDetector() if cfg.keep_refusals else None

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        for row in rows:
            side = self.cfg.fields
            if (
                self.refusals is not None
                and side != "response"
                and row.format != "text"
                and self.refusals.is_refusal(response_text(row))
            ):
                side = "response"
            term = self.lists.find(side_text(row, side))
            if term is not None:
                trace.log(
                    self.name,
                    "removed",
                    row,
                    f"blocked term '{term}'",
                    kind="blocked term",
                    term=term,
                )
                continue
            yield row


EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
PHONE = re.compile(
    r"(?<![\w+])(\+\d{1,3}[ .-]?)?(\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}(?!\w)"
)


_NO_DIGITS = str.maketrans("", "", "0123456789")


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def scrub_pii(text: str, cfg: PiiStep, counts: dict[str, int] | None = None) -> str:
    counts = counts if counts is not None else {}

    def card(m: re.Match) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            counts["card"] = counts.get("card", 0) + 1
            return "[CARD]"
        return m.group(0)

    def sub(kind: str, placeholder: str):
        def fn(m: re.Match) -> str:
            counts[kind] = counts.get(kind, 0) + 1
            return placeholder

        return fn

    if cfg.emails and "@" in text:
        text = EMAIL.sub(sub("email", "[EMAIL]"), text)
    # Count digits in C (delete them and compare lengths): most texts hold too few to need the regexes.
    digits = len(text) - len(text.translate(_NO_DIGITS))
    if cfg.cards and digits >= 13:
        text = CARD.sub(card, text)
    if cfg.phones and digits >= 8:
        text = PHONE.sub(sub("phone", "[PHONE]"), text)
    return text


class Pii:
    name = "pii"

    def __init__(self, cfg: PiiStep) -> None:
        self.cfg = cfg

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        for row in rows:
            counts: dict[str, int] = {}
            changed = map_text(row, lambda t, c=counts: scrub_pii(t, self.cfg, c))
            if changed:
                kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                # The trace keeps the scrubbed row only: writing the old values would leak the PII.
                trace.log(
                    self.name,
                    "changed",
                    row,
                    f"scrubbed {kinds} in {', '.join(f for f, _ in changed)}",
                    kind="PII scrubbed",
                    pii=counts,
                )
            yield row

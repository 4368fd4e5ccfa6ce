"""Refusal handling: keep refusals to harmful requests, drop (or flag) refusals to benign ones.

A response is a refusal when it matches one of the bundled (or user) refusal patterns; a request is
harmful when it matches the harmful-request patterns or the safety block list. Both outcomes are
traced, so the report shows how many refusals were kept and how many were over-refusals.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tuneforge.config.pipeline import RefusalsStep, SafetyStep
from tuneforge.datatools.blocklist import BlockList, read_list
from tuneforge.datatools.rows import Row, prompt_text, response_text
from tuneforge.datatools.trace import Trace
from tuneforge.errors import DataError


def _compile(patterns: list[str], origin: str) -> list[str]:
    """Check each pattern on its own (so an error names it); they are joined into one regex later."""
    for p in patterns:
        try:
            re.compile(p, re.IGNORECASE)
        except re.error as exc:
            raise DataError(f"{origin}: bad regular expression {p!r}: {exc}") from None
    return patterns


def _joined(patterns: list[str]) -> re.Pattern:
    # One alternation scans each text once instead of once per pattern.
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


# Substrings at least one of which every *bundled* pattern needs (keep in step with the resource
# files). Python's regex engine cannot skip ahead on alternations that start with \b, so a cheap
# substring test on the lower-cased text first makes the common no-match case ~20x faster.
REFUSAL_GATE = (
    "sorry",
    "afraid",
    "can't",
    "cant",
    "cannot",
    "won't",
    "wont",
    "will not",
    "unable",
    "decline",
    "as an ai",
    "not able",
    "this request",
)
HARMFUL_GATE = (
    "bomb",
    "explosive",
    "weapon",
    "meth",
    "sarin",
    "ricin",
    "nerve agent",
    "hack",
    "steal",
    "malware",
    "ransomware",
    "keylogger",
    "botnet",
    "kill",
    "poison",
    "launder",
    "phishing",
    "self-harm",
    "self harm",
)


def _gated(low: str, gate: tuple[str, ...] | None) -> bool:
    return gate is None or any(g in low for g in gate)


class RefusalDetector:
    def __init__(self, extra_patterns: str | None = None) -> None:
        self.refusal = _compile(
            read_list(bundled="refusal_patterns.txt"), "bundled refusal_patterns.txt"
        )
        self._refusal_gate: tuple[str, ...] | None = REFUSAL_GATE
        if extra_patterns:
            self.refusal += _compile(read_list(extra_patterns), extra_patterns)
            self._refusal_gate = None  # user patterns: no gate
        self.harmful = _compile(
            read_list(bundled="harmful_requests.txt"), "bundled harmful_requests.txt"
        )
        self.blocklist = BlockList.from_config(SafetyStep(keep_refusals=False))
        self._refusal, self._harmful = _joined(self.refusal), _joined(self.harmful)

    def is_refusal(self, response: str) -> bool:
        return (
            _gated(response.lower(), self._refusal_gate)
            and self._refusal.search(response) is not None
        )

    def is_harmful(self, request: str) -> bool:
        return (
            _gated(request.lower(), HARMFUL_GATE)
            and self._harmful.search(request) is not None
        ) or self.blocklist.find(request) is not None


class Refusals:
    name = "refusals"

    def __init__(self, cfg: RefusalsStep) -> None:
        self.cfg = cfg
        self.detector = RefusalDetector(cfg.patterns)

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        for row in rows:
            if row.format == "text" or not self.detector.is_refusal(response_text(row)):
                yield row
                continue
            if self.detector.is_harmful(prompt_text(row)):
                trace.log(
                    self.name,
                    "flagged",
                    row,
                    "refusal to a harmful request: kept",
                    kind="refusal kept (harmful request)",
                )
                yield row
            elif self.cfg.benign == "flag":
                trace.log(
                    self.name,
                    "flagged",
                    row,
                    "refusal to a benign request: kept (benign=flag)",
                    kind="refusal to benign request",
                )
                yield row
            else:
                trace.log(
                    self.name,
                    "removed",
                    row,
                    "refusal to a benign request",
                    kind="refusal to benign request",
                )

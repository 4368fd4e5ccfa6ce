"""Block and allow lists: the term lists the safety step and the refusal detector both match.

A row is blocked when a block-list term occurs on word boundaries (case-insensitive, any whitespace
between the words of a phrase) after allow-list phrases ("bath bomb") are blanked out; the match
names the term, so the trace can say why. The bundled lists are ``resources/*.txt``; a user's files
are added to them. Its own module because two steps use it: ``safety`` (the filter) and
``refusals`` (a request that hits the block list counts as harmful).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from tuneforge.config.pipeline import SafetyStep
from tuneforge.errors import DataError


def read_list(path: str | Path | None = None, bundled: str | None = None) -> list[str]:
    """Lines of a list file (a user file or a bundled resource), comments and blanks skipped."""
    if bundled is not None:
        text = (
            resources.files("tuneforge.datatools")
            .joinpath("resources", bundled)
            .read_text(encoding="utf-8")
        )
    else:
        p = Path(path)  # type: ignore[arg-type]
        if not p.is_file():
            raise DataError(
                f"list file not found: {p}",
                hint="give a text file with one entry per line",
            )
        text = p.read_text(encoding="utf-8")
    return [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]


def _phrase_regex(terms: list[str]) -> re.Pattern | None:
    if not terms:
        return None
    alts = sorted(
        {re.escape(t.lower()).replace(r"\ ", r"\s+") for t in terms},
        key=len,
        reverse=True,
    )
    return re.compile(r"(?<!\w)(" + "|".join(alts) + r")(?!\w)", re.IGNORECASE)


class BlockList:
    """Compiled block and allow lists; :meth:`find` names the first blocked term of a text."""

    def __init__(self, block: list[str], allow: list[str]) -> None:
        self.block = _phrase_regex(block)
        self.allow = _phrase_regex(allow)
        # A term can only match when its longest word occurs in the lower-cased text: a substring
        # test per term is far cheaper than the case-insensitive alternation on every row.
        self.gate = tuple(
            {max(re.findall(r"\w+", t.lower()) or [t.lower()], key=len) for t in block}
        )

    @classmethod
    def from_config(cls, cfg: SafetyStep) -> BlockList:
        block = read_list(bundled="blocklist.txt") if cfg.bundled else []
        allow = read_list(bundled="allowlist.txt") if cfg.bundled else []
        if cfg.blocklist:
            block += read_list(cfg.blocklist)
        if cfg.allowlist:
            allow += read_list(cfg.allowlist)
        return cls(block, allow)

    def find(self, text: str) -> str | None:
        """The first blocked term in text (after allow-listed phrases are blanked), or None."""
        if self.block is None:
            return None
        low = text.lower()
        if not any(g in low for g in self.gate) or self.block.search(text) is None:
            return None
        if self.allow is not None:
            text = self.allow.sub(" ", text)
        m = self.block.search(text)
        return m.group(0).lower() if m else None

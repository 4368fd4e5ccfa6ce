"""Long-text chunking for continued pretraining / CFT material: windows of N tokens, M shared.

Token windows are cut with the tokenizer's offsets and the chunk text is sliced from the original
string, so chunks are exact substrings (no decode round-trip changes the text).
"""

from __future__ import annotations

from collections.abc import Iterator

from tuneforge.config.pipeline import ChunkStep
from tuneforge.datatools.convert import FORMAT_KEYS
from tuneforge.datatools.rows import Row, side_text
from tuneforge.datatools.trace import Trace


def chunk_text(text: str, tokenizer, max_tokens: int, overlap: int) -> list[str]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) <= max_tokens:
        return [text]
    stride = max_tokens - overlap
    chunks = []
    for start in range(0, len(offsets), stride):
        window = offsets[start : start + max_tokens]
        end = (
            offsets[start + max_tokens][0]
            if start + max_tokens < len(offsets)
            else len(text)
        )
        chunks.append(text[window[0][0] : end])
        if start + max_tokens >= len(offsets):
            break
    return chunks


class Chunk:
    name = "chunk"

    def __init__(self, cfg: ChunkStep, tokenizer=None) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        if self.tokenizer is None:
            # lazy: models.load (torch, transformers) adds 3.7 s to importing datatools.pipeline; only chunking needs it, measured
            from tuneforge.models.load import load_tokenizer

            self.tokenizer = load_tokenizer(self.cfg.tokenizer)
        for row in rows:
            text = side_text(row)
            pieces = chunk_text(
                text, self.tokenizer, self.cfg.max_tokens, self.cfg.overlap
            )
            if len(pieces) == 1 and row.format == "text":
                yield row
                continue
            # Every format's keys go, not only this row's: a chunk keeping "prompt" and "completion"
            # would be read back as a prompt-completion row.
            extra = {k: v for k, v in row.data.items() if k not in FORMAT_KEYS}
            trace.log(
                self.name,
                "changed",
                row,
                f"split into {len(pieces)} chunk(s) of <= {self.cfg.max_tokens} tokens",
                kind="chunked",
                chunks=len(pieces),
            )
            for i, piece in enumerate(pieces, 1):
                yield Row(f"{row.source} (chunk {i})", {"text": piece, **extra}, "text")

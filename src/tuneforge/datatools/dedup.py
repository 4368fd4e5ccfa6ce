"""Exact and near-duplicate removal, keeping the first row of every duplicate cluster.

Exact: a 64-bit BLAKE2 hash of the normalised text (NFKC, case-folded, whitespace collapsed); about
20 bytes of memory per unique row (hash + row id + source offset), not the text.

Near: ``datasketch`` MinHash signatures of word or character shingles, banded for LSH with the
band/row split ``datasketch.MinHashLSH`` chooses for the threshold. LSH only proposes candidates; a
candidate counts as a duplicate when the estimated Jaccard similarity of the two signatures reaches
the threshold. The band index is our own compact one (see ``_KeyIndex``): datasketch's in-memory
index costs about 3 KB per row (3 GB for a million rows), its other backends need Redis/Cassandra.
Signatures and sources are appended to temporary files and read back by offset.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from array import array
from collections.abc import Iterator

import numpy as np
import xxhash

from tuneforge.config.pipeline import DedupStep
from tuneforge.datatools.rows import Row, prompt_text, side_text
from tuneforge.datatools.trace import Trace

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def canonical(text: str) -> str:
    """The text exact dedup compares: NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_hash(text: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(canonical(text).encode("utf-8"), digest_size=8).digest(),
        "little",
    )


def shingles(text: str, size: int = 3, unit: str = "word") -> set[str]:
    """Word n-grams (of \\w+ tokens, case-folded) or character n-grams; short texts give one shingle."""
    if unit == "char":
        t = canonical(text)
        return {t[i : i + size] for i in range(max(1, len(t) - size + 1))}
    words = _WORD.findall(canonical(text))
    return {" ".join(words[i : i + size]) for i in range(max(1, len(words) - size + 1))}


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity; the reference the MinHash estimate is tested against."""
    return len(a & b) / len(a | b) if a or b else 1.0


def _key_text(row: Row, key: str) -> str:
    return (
        prompt_text(row) if key == "prompt" and row.format != "text" else side_text(row)
    )


class Dedup:
    name = "dedup"

    def __init__(self, cfg: DedupStep) -> None:
        self.cfg = cfg

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        cfg = self.cfg
        sources = _SourceStore()
        seen = _KeyIndex()
        near = _NearIndex(cfg, sources) if cfg.near else None
        try:
            for row in rows:
                text = _key_text(row, cfg.key)
                if cfg.exact:
                    h = text_hash(text)
                    first = seen.get(h)
                    if first:
                        src = sources[first[0]]
                        trace.log(
                            self.name,
                            "removed",
                            row,
                            f"exact duplicate of {src}",
                            kind="exact duplicate",
                            duplicate_of=src,
                        )
                        continue
                if near is not None:
                    match = near.match(text)
                    if match is not None:
                        src, sim = sources[match[0]], match[1]
                        trace.log(
                            self.name,
                            "removed",
                            row,
                            f"near duplicate of {src} (estimated Jaccard {sim:.2f})",
                            kind="near duplicate",
                            duplicate_of=src,
                            similarity=round(sim, 4),
                        )
                        continue
                rid = sources.add(row.source)
                if cfg.exact:
                    seen.put(h, rid)
                if near is not None:
                    near.insert(rid)
                yield row
        finally:
            sources.close()
            if near is not None:
                near.close()


class _SourceStore:
    """Row sources ("file:line") in a temporary file, 8 bytes of memory per row for the offsets."""

    def __init__(self) -> None:
        self._fh = tempfile.TemporaryFile(prefix="tuneforge-sources-")  # noqa: SIM115 - closed in close()
        self._fd = self._fh.fileno()
        self._offsets = array("q", [0])

    def add(self, source: str) -> int:
        data = source.encode("utf-8")
        os.pwrite(self._fd, data, self._offsets[-1])
        self._offsets.append(self._offsets[-1] + len(data))
        return len(self._offsets) - 2

    def __getitem__(self, i: int) -> str:
        start, end = self._offsets[i], self._offsets[i + 1]
        return os.pread(self._fd, end - start, start).decode("utf-8")

    def close(self) -> None:
        self._fh.close()


class _KeyIndex:
    """A compact multimap from 64-bit keys to row ids (ours, because a dict of a million Python ints
    costs ~100 bytes an entry and datasketch's in-memory LSH ~3 KB a row).

    New keys go to a small dict; when it fills, it is merged into sorted numpy arrays (12 bytes an
    entry) that are searched with ``searchsorted``.
    """

    def __init__(self, buffer_limit: int = 1 << 18) -> None:
        self.keys = np.empty(0, dtype=np.uint64)
        self.ids = np.empty(0, dtype=np.uint32)
        self.buf: dict[int, list[int]] = {}
        self.limit = buffer_limit

    def get(self, key: int) -> list[int]:
        out = list(self.buf.get(key, ()))
        if self.keys.size:
            k = np.uint64(key)
            lo = int(np.searchsorted(self.keys, k, "left"))
            if lo < self.keys.size and self.keys[lo] == k:
                hi = int(np.searchsorted(self.keys, k, "right"))
                out += self.ids[lo:hi].tolist()
        return out

    def put(self, key: int, rid: int) -> None:
        self.buf.setdefault(key, []).append(rid)
        if len(self.buf) >= self.limit:
            self._merge()

    def _merge(self) -> None:
        n = sum(len(v) for v in self.buf.values())
        keys = np.fromiter(
            (k for k, v in self.buf.items() for _ in v), dtype=np.uint64, count=n
        )
        ids = np.fromiter(
            (i for v in self.buf.values() for i in v), dtype=np.uint32, count=n
        )
        keys, ids = np.concatenate([self.keys, keys]), np.concatenate([self.ids, ids])
        order = np.argsort(keys, kind="stable")
        self.keys, self.ids = keys[order], ids[order]
        self.buf.clear()


class _NearIndex:
    """MinHash (datasketch) signatures + LSH banding with the band/row split datasketch picks for the threshold."""

    def __init__(self, cfg: DedupStep, sources: _SourceStore) -> None:
        # lazy: datasketch (scipy) adds 0.44 s to importing datatools.pipeline; only near dedup needs it, measured
        from datasketch import MinHash, MinHashLSH

        self.cfg = cfg
        params = MinHashLSH(
            threshold=cfg.threshold, num_perm=cfg.num_perm
        )  # only for its (bands, rows) choice
        self.b, self.r = params.b, params.r
        # datasketch's default SHA-1 per shingle dominated the run time; xxh32 is a fast, well-mixed 32-bit hash.
        proto = MinHash(num_perm=cfg.num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest)
        self._MinHash = MinHash
        self._perms, self._scheme = (
            proto.permutations,
            proto.scheme,
        )  # reused: generating them per row is slow
        self._dtype = np.asarray(proto.hashvalues).dtype
        self._width = cfg.num_perm * self._dtype.itemsize
        self._fh = tempfile.TemporaryFile(prefix="tuneforge-minhash-")  # noqa: SIM115 - closed in close()
        self._fd = self._fh.fileno()
        self.bands = _KeyIndex()
        self._pending: tuple[np.ndarray, list[int]] | None = None

    def match(self, text: str) -> tuple[int, float] | None:
        """(row id, estimated Jaccard) of the most similar kept row at or above the threshold, else None."""
        m = self._MinHash(
            num_perm=self.cfg.num_perm,
            seed=1,
            permutations=self._perms,
            scheme=self._scheme,
            hashfunc=xxhash.xxh32_intdigest,
        )
        m.update_batch(
            [
                s.encode("utf-8")
                for s in shingles(text, self.cfg.shingle_size, self.cfg.shingle_unit)
            ]
        )
        sig = np.asarray(m.hashvalues, dtype=self._dtype)
        keys = [
            xxhash.xxh64_intdigest(sig[i * self.r : (i + 1) * self.r].tobytes(), seed=i)
            for i in range(self.b)
        ]
        self._pending = (sig, keys)
        best: tuple[int, float] | None = None
        for rid in {rid for k in keys for rid in self.bands.get(k)}:
            other = np.frombuffer(
                os.pread(self._fd, self._width, rid * self._width), dtype=self._dtype
            )
            sim = float(np.mean(other == sig))
            if sim >= self.cfg.threshold and (
                best is None or sim > best[1] or (sim == best[1] and rid < best[0])
            ):
                best = (rid, sim)
        return best

    def insert(self, rid: int) -> None:
        """Index the signature computed by the last ``match`` under row id ``rid``."""
        assert self._pending is not None
        sig, keys = self._pending
        os.pwrite(self._fd, sig.tobytes(), rid * self._width)
        for k in keys:
            self.bands.put(k, rid)
        self._pending = None

    def close(self) -> None:
        self._fh.close()

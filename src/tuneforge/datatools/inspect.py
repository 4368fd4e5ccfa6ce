"""Inspection: counts, token lengths, duplicates, field completeness, categories, languages, over-length.

Read-only and streaming; language identification (``langdetect``, seeded for reproducible results)
runs on the first ``lang_sample`` rows only, because it costs milliseconds per row.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

from langdetect import DetectorFactory, detect
from langdetect.lang_detect_exception import LangDetectException

from tuneforge.data.records import BadRow
from tuneforge.datatools.dedup import text_hash
from tuneforge.datatools.rows import RowWarning, read_dataset, row_warnings, side_text

HIST_EDGES = (0, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Warnings listed in full in the statistics; the count covers all of them (validate lists every one).
WARNING_EXAMPLES = 20


def detect_language(text: str) -> str:
    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return "unknown"


def _bucket(n: int) -> str:
    for lo, hi in itertools.pairwise(HIST_EDGES):
        if n < hi:
            return f"{lo}-{hi - 1}"
    return f"{HIST_EDGES[-1]}+"


def inspect_file(
    path: str | Path,
    fmt: str = "auto",
    tokenizer=None,
    max_length: int | None = None,
    category_field: str | None = None,
    lang_sample: int = 500,
) -> dict:
    """A dict of statistics (also what ``tuneforge data inspect --json`` prints)."""
    bad: list[BadRow] = []
    rows = 0
    fmt_seen = fmt
    hashes: set[int] = set()
    duplicates = 0
    fields: Counter = Counter()
    filled: Counter = Counter()
    categories: Counter = Counter()
    languages: Counter = Counter()
    lengths: list[int] = []
    hist: Counter = Counter()
    overlong: list[str] = []
    warnings: list[RowWarning] = []
    for row in read_dataset(path, fmt, on_bad=bad.append):
        rows += 1
        warnings.extend(row_warnings(row.source, row.data))
        fmt_seen = row.format
        text = side_text(row)
        h = text_hash(text)
        if h in hashes:
            duplicates += 1
        hashes.add(h)
        for k, v in row.data.items():
            fields[k] += 1
            if v not in (None, "", [], {}):
                filled[k] += 1
        if category_field:
            value = row.data.get(category_field)
            categories["(missing)" if value is None else str(value)] += 1
        if rows <= lang_sample:
            languages[detect_language(text)] += 1
        n = (
            len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if tokenizer is not None
            else len(text.split())
        )
        lengths.append(n)
        hist[_bucket(n)] += 1
        if max_length is not None and n > max_length:
            overlong.append(row.source)
    lengths.sort()
    unit = "tokens" if tokenizer is not None else "words"
    out = {
        "file": str(path),
        "format": fmt_seen,
        "rows": rows,
        "bad_rows": len(bad),
        "exact_duplicates": duplicates,
        "length_unit": unit,
        "length": {
            "min": lengths[0] if lengths else 0,
            "median": lengths[len(lengths) // 2] if lengths else 0,
            "p95": lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
            if lengths
            else 0,
            "max": lengths[-1] if lengths else 0,
            "mean": round(sum(lengths) / len(lengths), 1) if lengths else 0,
        },
        "length_histogram": {
            b: hist[b] for b in [_bucket(e) for e in HIST_EDGES] if hist[b]
        },
        "field_completeness": {k: round(filled[k] / rows, 4) for k in sorted(fields)}
        if rows
        else {},
        "languages": dict(languages.most_common()),
        "languages_sampled": min(rows, lang_sample),
        "warnings": {
            "count": len(warnings),
            "examples": [w.as_json() for w in warnings[:WARNING_EXAMPLES]],
        },
    }
    if category_field:
        out["categories"] = dict(sorted(categories.items()))
    if max_length is not None:
        out["overlong"] = {
            "max_length": max_length,
            "count": len(overlong),
            "examples": overlong[:10],
        }
    return out

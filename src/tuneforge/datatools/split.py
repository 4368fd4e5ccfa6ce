"""Train/validation split, optionally stratified by a field, seeded and streaming (two passes)."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from tuneforge.datatools.rows import JsonlWriter, read_dataset
from tuneforge.errors import DataError


def split_file(
    path: str | Path,
    out_dir: str | Path,
    val: float,
    stratify: str | None = None,
    seed: int = 0,
    fmt: str = "auto",
) -> dict:
    """Write train.jsonl and val.jsonl; each stratum gives round(n * val) rows to validation."""
    if not 0 < val < 1:
        raise DataError(f"--val {val} must be between 0 and 1", hint="e.g. --val 0.1")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(read_dataset(path, fmt)):
        key = "" if stratify is None else str(row.data.get(stratify, "(missing)"))
        groups[key].append(i)
    rng = random.Random(seed)
    val_idx: set[int] = set()
    for key in sorted(groups):
        idx = groups[key]
        val_idx.update(rng.sample(idx, round(len(idx) * val)))
    n = sum(len(v) for v in groups.values())
    if not val_idx or len(val_idx) == n:
        raise DataError(
            f"{path}: --val {val} of {n} rows leaves an empty train or validation set",
            hint="change --val",
        )
    out = Path(out_dir)
    with JsonlWriter(out / "train.jsonl") as tw, JsonlWriter(out / "val.jsonl") as vw:
        for i, row in enumerate(read_dataset(path, fmt)):
            (vw if i in val_idx else tw).write(row.data)
    result = {
        "train": tw.count,
        "val": vw.count,
        "train_file": str(tw.path),
        "val_file": str(vw.path),
    }
    if stratify:
        result["strata"] = {k: len(v) for k, v in sorted(groups.items())}
    return result

"""Write examples/grpo/train.jsonl (400 rows) and test.jsonl (50 held-out rows): the arithmetic set.

Deterministic (EXAMPLE_SPLIT in tuneforge.datatools.arithmetic: seed, level, sizes): running it again rewrites the committed files byte for byte.
    .venv/bin/python examples/grpo/make_data.py
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.datatools.arithmetic import EXAMPLE_SPLIT, make_split, write_jsonl

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    train, test = make_split(**EXAMPLE_SPLIT)
    write_jsonl(train, HERE / "train.jsonl")
    write_jsonl(test, HERE / "test.jsonl")
    print(f"wrote {len(train)} train and {len(test)} test rows to {HERE}")

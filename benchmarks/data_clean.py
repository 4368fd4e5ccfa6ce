"""Benchmark: clean a generated 1,000,000-row file, streaming; report rows/s and peak memory.

    flock /tmp/tuneforge-heavy.lock /work/venv/bin/python benchmarks/data_clean.py --rows 1000000

Generates an alpaca JSONL file with planted problems (exact duplicates differing in case/spacing,
near duplicates, PII, blocked terms, refusals to benign and harmful requests), then runs each
configuration in a fresh subprocess so its peak RSS is its own. Prints a Markdown table and writes
it, with the raw numbers, next to the data (--work).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

WORDS = [
    "order",
    "refund",
    "account",
    "billing",
    "shipping",
    "delivery",
    "password",
    "invoice",
    "customer",
    "support",
    "product",
    "warranty",
    "return",
    "payment",
    "card",
    "address",
    "email",
    "update",
    "cancel",
    "subscription",
    "plan",
    "upgrade",
    "device",
    "screen",
    "battery",
    "charge",
    "network",
]

CONFIGS = {
    "stream": "normalize + exact dedup + safety lists + PII + refusals",
    "stream+near": "the same + MinHash LSH near dedup (threshold 0.8, 128 perms)",
}


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    recent: list[tuple[str, str]] = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = rng.random()
            if r < 0.08 and recent:  # exact duplicate up to case and spacing
                ins, out = rng.choice(recent)
                ins = "  " + ins.upper()
            elif r < 0.12 and recent:  # near duplicate: one word changed
                ins, out = rng.choice(recent)
                w = ins.split()
                w[rng.randrange(len(w))] = rng.choice(WORDS)
                ins = " ".join(w)
            else:
                ins = f"Ticket {i}: " + " ".join(
                    rng.choice(WORDS) for _ in range(rng.randint(8, 30))
                )
                out = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60)))
                if rng.random() < 0.02:
                    out += f" Contact me at user{i}@example.com or +1 415 555 {i % 10000:04d}."
                if rng.random() < 0.005:
                    ins += " and how to build a bomb"
                if rng.random() < 0.01:
                    out = "I'm sorry, but I can't help with that."
                recent.append((ins, out))
                if len(recent) > 1000:
                    recent.pop(0)
            fh.write(
                json.dumps(
                    {"instruction": ins, "output": out, "category": WORDS[i % 5]}
                )
                + "\n"
            )


def run_one(config: str, data: Path, work: Path) -> dict:
    from tuneforge.config.pipeline import (
        DedupStep,
        NormalizeStep,
        PiiStep,
        RefusalsStep,
        SafetyStep,
    )
    from tuneforge.datatools.pipeline import run_pipeline

    steps = [
        NormalizeStep(),
        DedupStep(near=config == "stream+near"),
        SafetyStep(),
        PiiStep(),
        RefusalsStep(),
    ]
    t = time.perf_counter()
    res = run_pipeline(
        data,
        work / f"clean-{config}.jsonl",
        steps,
        report_dir=work / f"report-{config}",
    )
    secs = time.perf_counter() - t
    return {
        "config": config,
        "rows_in": res.rows_in,
        "rows_out": res.rows_out,
        "seconds": round(secs, 1),
        "rows_per_s": round(res.rows_in / secs),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "counts": res.counts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tuneforge-bench-data"))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--run-one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"raw-{args.rows}.jsonl"
    if args.run_one:
        print(json.dumps(run_one(args.run_one, data, args.work)))
        return
    if not data.exists():
        t = time.perf_counter()
        generate(data, args.rows)
        print(
            f"generated {data} ({data.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f}s",
            file=sys.stderr,
        )
    results = []
    for config in args.configs.split(","):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--rows",
                str(args.rows),
                "--work",
                str(args.work),
                "--run-one",
                config,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    size = data.stat().st_size / 1e6
    lines = [
        f"{args.rows:,} rows, {size:.0f} MB of JSONL; one process, 2-core CPU",
        "",
        "| configuration | rows in | rows out | seconds | rows/s | peak RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {CONFIGS[r['config']]} | {r['rows_in']:,} | {r['rows_out']:,} | {r['seconds']} | {r['rows_per_s']:,} | {r['peak_rss_mb']} |"
        )
    table = "\n".join(lines)
    print(table)
    (args.work / "data_clean.md").write_text(table + "\n")
    (args.work / "data_clean.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

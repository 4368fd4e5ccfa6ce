"""Speed levers of the tuneforge LoRA job, one at a time against the current defaults.

Each lever changes exactly one setting of the job in benchmarks/speed.py (same model, data, LoRA
r=8 q/k/v/o, batch 4, max length 256, seed) and runs in its own subprocess. Predictions are written
in docs/SPEED.md before the numbers. Usage (under the heavy-job lock):

    flock /tmp/tuneforge-heavy.lock python benchmarks/levers.py [--steps 12] [--only name,name]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speed import spawn  # benchmarks/ is the script's directory

LEVERS: dict[str, dict] = {
    "defaults": {},
    "fp32": {"training": {"precision": "fp32"}},
    "head-outside-autocast": {"head_fp32": True},  # the code before the autocast fix
    "full-logits-head": {"full_logits": True},
    "padding": {"training": {"packing": False}},
    "chunked-head-ce": {"training": {"head_chunk_rows": 256}},
    "sdpa-attention": {"training": {"attention": "sdpa"}},
    "eager-attention": {"training": {"attention": "eager"}},
    "fp32-frozen-weights": {"frozen_fp32": True},
    "activation-checkpointing": {"training": {"activation_checkpointing": True}},
    "trl-schedule": {"training": {"lr_scheduler": "linear", "warmup_ratio": 0.0}},
    "no-warmup": {"training": {"warmup_ratio": 0.0}},
    "warmup-5pct": {"training": {"warmup_ratio": 0.05}},
    "seed-43": {"training": {"seed": 43}},
    "seed-44": {"training": {"seed": 44}},
    "threads-1": {"training": {"threads": 1}},
    "compile": {"training": {"compile": True}},
    "compile+checkpointing": {"training": {"compile": True, "activation_checkpointing": True}},
    "lean": {"training": {"compile": True, "activation_checkpointing": True, "head_chunk_rows": 256}},
    "dataloader-worker": {"workers": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--only", default=None, help="comma-separated lever names")
    parser.add_argument("--out", default="runs/bench-levers")
    ns = parser.parse_args()
    out = Path(ns.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = ns.only.split(",") if ns.only else list(LEVERS)
    rows = []
    for name in names:
        lever = LEVERS[name]
        print(f"{name}: {json.dumps(lever)} ...", flush=True)
        res = spawn(
            [
                "--worker",
                "tuneforge",
                "--job",
                "lora",
                "--steps",
                str(ns.steps),
                "--lever",
                json.dumps(lever),
            ],
            out / f"{name}.json",
            out / f"{name}.log",
        )
        losses = [x for x in res["train_losses"] if x is not None]
        rows.append(
            (
                name,
                res["tokens_per_s"],
                res["peak_rss_mb"],
                res["final_heldout_loss"],
                losses[-1] if losses else float("nan"),
            )
        )
        print(
            f"  {res['tokens_per_s']:.1f} tok/s, peak RSS {res['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    base = {r[0]: r[1] for r in rows}.get("defaults")
    lines = [
        "| lever | train tok/s | vs defaults | peak RSS MB | held-out loss after run | last train loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, tps, rss, held, last in rows:
        ratio = f"{tps / base:.2f}x" if base else "-"
        lines.append(
            f"| {name} | {tps:.1f} | {ratio} | {rss:.0f} | {held:.4f} | {last:.4f} |"
        )
    text = (
        f"Command: `python benchmarks/levers.py --steps {ns.steps}"
        + (f" --only {ns.only}" if ns.only else "")
        + "`\n\n"
        + "\n".join(lines)
        + "\n"
    )
    (out / "levers.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()

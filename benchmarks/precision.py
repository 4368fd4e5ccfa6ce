"""Training throughput of the quickstart LoRA job at fp32 and at the `auto` precision, side by side.

Runs the same recipe (built-in model, quickstart data, LoRA r=16, batch 8) for a fixed number of
steps once per precision, in one process one after the other, and prints a table of train tokens/s
(non-padding tokens), peak RSS and final loss, plus the ratio. Usage:

    python benchmarks/precision.py [--steps 12] [--out runs/bench-precision]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tuneforge.config import load_recipe
from tuneforge.recipes import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", default="runs/bench-precision")
    args = parser.parse_args()
    rows = []
    for precision in ("fp32", "auto"):
        recipe = load_recipe(
            "examples/quickstart/recipe.yaml",
            [f"training.max_steps={args.steps}", f"training.precision={precision}", "eval.data=null",
             "data.val_fraction=0", f"output.dir={args.out}/{precision}", "output.overwrite=true", "training.logging_steps=1"],
        )
        s = train(recipe).summary
        metrics = [json.loads(line) for line in (Path(args.out) / precision / "metrics.jsonl").read_text().splitlines()]
        last_loss = [m["loss"] for m in metrics if "loss" in m][-1]
        rows.append((precision, s["precision"], s["train_tokens_per_s"], s["peak_rss_mb"], last_loss))
    print(f"\n{'requested':<10}{'used':<6}{'train tok/s':>12}{'peak RSS MB':>13}{'last loss':>11}")
    for r in rows:
        print(f"{r[0]:<10}{r[1]:<6}{r[2]:>12.1f}{r[3]:>13.0f}{r[4]:>11.4f}")
    print(f"auto / fp32 tokens/s: {rows[1][2] / rows[0][2]:.2f}x")


if __name__ == "__main__":
    main()

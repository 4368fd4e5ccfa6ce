"""What QLoRA's 4-bit base saves on the built-in model, and whether it still trains, on this machine.

Runs the quickstart recipe (built-in SmolLM2-135M-Instruct, LoRA r=16 on all linear layers, batch 8)
for a fixed number of steps as plain LoRA on the fp32 base and as QLoRA (NF4, double quantisation)
with fp32 and bf16 compute, each in its own process so peak memory is not shared. Prints one table:
weights in memory (``get_memory_footprint`` of the base), peak RSS of the training process, train
tokens/s, first and last training loss. Usage (heavy: take the lock on a shared machine):

    flock /tmp/tuneforge-heavy.lock python benchmarks/qlora_memory.py [--steps 8] [--out runs/bench-qlora]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "lora-fp32": ["method.type=lora"],
    "qlora-nf4-fp32": ["method.type=qlora", "method.qlora.compute_dtype=fp32"],
    "qlora-nf4-bf16": ["method.type=qlora", "method.qlora.compute_dtype=bf16"],
}


def worker(name: str, steps: int, out: Path) -> None:
    import torch

    from tuneforge.config import load_recipe
    from tuneforge.methods import apply_method, load_base_model
    from tuneforge.recipes import train

    overrides = [*VARIANTS[name], f"training.max_steps={steps}", "training.precision=fp32", "eval.data=null", "data.val_fraction=0",
                 f"output.dir={out / name}", "output.overwrite=true", "training.logging_steps=1", "method.lora.dropout=0"]  # fmt: skip
    recipe = load_recipe("examples/quickstart/recipe.yaml", overrides)
    summary = train(recipe).summary
    # Weights resident for training, measured on a fresh copy (train() does not hand its model back).
    model = apply_method(
        load_base_model(recipe.model.name, recipe.method, dtype=torch.float32),
        recipe.method,
    )
    weights_mb = model.get_base_model().get_memory_footprint() / 2**20
    losses = [
        json.loads(line)["loss"]
        for line in (out / name / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    row = {"variant": name, "weights_mb": round(weights_mb, 1), "peak_rss_mb": summary["peak_rss_mb"],
           "tokens_per_s": summary["train_tokens_per_s"], "first_loss": losses[0], "last_loss": losses[-1]}  # fmt: skip
    (out / f"{name}.json").write_text(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default="runs/bench-qlora")
    parser.add_argument("--worker")
    args = parser.parse_args()
    out = Path(args.out)
    if args.worker:
        worker(args.worker, args.steps, out)
        return
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in VARIANTS:
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--steps",
                str(args.steps),
                "--out",
                str(out),
            ],
            check=True,
        )
        rows.append(json.loads((out / f"{name}.json").read_text()))
    print(
        f"\n| variant | weights in memory (MB) | peak RSS (MB) | train tokens/s | loss step 1 | loss step {args.steps} |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['variant']} | {r['weights_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['tokens_per_s']:.0f} | {r['first_loss']:.3f} | {r['last_loss']:.3f} |"
        )
    (out / "table.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

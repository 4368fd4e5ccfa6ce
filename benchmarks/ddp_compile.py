"""Compiled vs eager decoder blocks under DDP: `tuneforge train` launched by torchrun, one after the other.

``training.compile: auto`` compiles only in a single process until this is measured; this harness is
that measurement. Both runs use the same recipe (the speed benchmark's LoRA job: built-in
SmolLM2-135M-Instruct, examples/quickstart/train.jsonl, LoRA r=8 alpha 16 on q/k/v/o, max length
256, lr 2e-4, seed 42, no validation or generation eval), launched exactly as a user would:

    torchrun --standalone --nproc_per_node N --no-python tuneforge train recipe.yaml

with the machine's cores split evenly between the processes (OMP_NUM_THREADS). Reported per run,
from rank 0's metrics.jsonl: the first step's time (compile included), train tokens/s over steps
2..N (every rank's non-padding tokens: the Trainer gathers the count), rank 0's peak RSS and final
train loss, and the compiled/eager ratio.

    python benchmarks/ddp_compile.py [--nproc 2] [--steps 16] [--batch-size 2] [--out runs/bench-ddp-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from speed import (  # benchmarks/ is the script's directory
    JOB,
    LORA,
    LR,
    MODEL,
    REPO,
    TRAIN,
)


def recipe(out_dir: Path, steps: int, batch_size: int, compile_blocks: bool) -> dict:
    """The speed benchmark's LoRA job (benchmarks/speed.py) as a recipe file for `tuneforge train`."""
    return {
        "model": {"name": MODEL},
        "method": {
            "type": "lora",
            "lora": {
                "r": LORA["r"],
                "alpha": LORA["alpha"],
                "dropout": LORA["dropout"],
                "target_modules": LORA["targets"],
            },
        },
        "data": {
            "train": str(TRAIN),
            "format": "alpaca",
            "val_fraction": 0.0,
            "max_length": JOB["max_length"],
        },
        "training": {
            "max_steps": steps,
            "batch_size": batch_size,
            "learning_rate": LR["lora"],
            "seed": JOB["seed"],
            "logging_steps": 1,
            "save_steps": 10**6,
            "compile": compile_blocks,
        },
        "eval": {"data": None},
        "output": {"dir": str(out_dir), "overwrite": True},
    }


def run(
    out: Path, nproc: int, steps: int, batch_size: int, compile_blocks: bool
) -> dict:
    name = "compiled" if compile_blocks else "eager"
    run_dir = out / name
    spec = out / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(recipe(run_dir, steps, batch_size, compile_blocks)))
    exe = Path(sys.executable).parent / "tuneforge"
    threads = max(1, (os.cpu_count() or nproc) // nproc)
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=str(threads),
    )
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "--no-python", str(exe), "train", str(spec),
    ]  # fmt: skip
    log = out / f"{name}.log"
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(
            cmd, check=False, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"{name} run failed (exit {proc.returncode}); log {log}:\n{log.read_text()[-3000:]}"
        )
    rows = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    rows = [r for r in rows if "loss" in r and "num_input_tokens_seen" in r]
    first, last = rows[0], rows[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "run": name,
        "threads_per_process": threads,
        # the first logged interval is step 1 alone: its tokens over its tokens/s is its duration
        "first_step_s": first["num_input_tokens_seen"] / first["tokens_per_s"],
        "tokens_per_s": (last["num_input_tokens_seen"] - first["num_input_tokens_seen"])
        / (last["elapsed_s"] - first["elapsed_s"]),
        "final_loss": last["loss"],
        "peak_rss_mb_rank0": summary["peak_rss_mb"],
        "speed_plan": summary.get("speed_plan"),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument(
        "--batch-size", type=int, default=2, help="micro-batch per process"
    )
    parser.add_argument("--out", default="runs/bench-ddp-compile")
    ns = parser.parse_args()
    out = Path(ns.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    results = [run(out, ns.nproc, ns.steps, ns.batch_size, c) for c in (False, True)]
    print(
        f"{ns.nproc} processes x batch {ns.batch_size}, {ns.steps} steps, LoRA r=8 q/k/v/o, built-in model\n\n"
        "| run | threads/process | first step s | train tok/s (steps 2..N) | final train loss | rank-0 peak RSS MB | wall s |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for r in results:
        print(
            f"| {r['run']} | {r['threads_per_process']} | {r['first_step_s']:.1f} | {r['tokens_per_s']:.1f} | "
            f"{r['final_loss']:.4f} | {r['peak_rss_mb_rank0']:.0f} | {r['wall_s']:.0f} |"
        )
    eager, compiled = results
    print(
        f"\ncompiled / eager tokens/s: {compiled['tokens_per_s'] / eager['tokens_per_s']:.2f}x"
    )
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

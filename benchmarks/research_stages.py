"""Direction experiment: the three-stage pipeline of examples/stages (general -> domain -> sub-domain).

Runs ``examples/stages/pipeline.yaml`` (each stage 20 LoRA steps on the built-in model, merged into
the next stage's base) and copies its stage table, with the probe losses after every stage, into
benchmarks/results/research_stages.md. Finished stages are skipped on a rerun (pass --fresh to start over).

Run (about ten minutes on a 2-core CPU), under the shared heavy-job lock:
    flock /tmp/tuneforge-heavy.lock python benchmarks/research_stages.py
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from research_common import ROOT, write_result

from tuneforge.config.stages import load_pipeline
from tuneforge.recipes.stages import run_pipeline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/research-stages")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--fresh", action="store_true", help="delete earlier stage runs first")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    pipeline = load_pipeline(ROOT / "examples" / "stages" / "pipeline.yaml", [f"output_dir={args.out}", f"defaults.training.max_steps={args.steps}"])
    rows = run_pipeline(pipeline)
    table = [{"stage": r.stage, **{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.values.items()}} for r in rows]
    columns = list(dict.fromkeys(k for row in table for k in row))
    print(write_result("research_stages", [{c: row.get(c, "-") for c in columns} for row in table], {"steps": args.steps}))


if __name__ == "__main__":
    main()

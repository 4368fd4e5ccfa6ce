"""Direction experiment: CFT vs plain continued pretraining on the bundled made-up domain (examples/cft).

Both arms train the same LoRA on SmolLM2-135M-Instruct over corpus.jsonl (40 short paragraphs) for
the same number of steps; CFT puts one of the bundled learning prompts before each chunk. Measured
without any prompt, as the model is used:

- heldout loss: loss on heldout.jsonl (8 paragraphs restating the corpus's facts in other words);
- question acc: 20 multiple-choice questions (answer vs three distractors, by per-token likelihood).

Run (a few minutes on a 2-core CPU), under the shared heavy-job lock:
    flock /tmp/tuneforge-heavy.lock python benchmarks/research_cft.py --steps 30
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from research_common import CFT, MODEL, base_recipe, file_loss, question_accuracy, write_result

from tuneforge.config import load_recipe
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.recipes import train
from tuneforge.targets import load_run


def measure(name: str, model, tokenizer, seconds: float | None) -> dict:
    return {
        "arm": name,
        "heldout loss": file_loss(model, tokenizer, CFT / "heldout.jsonl"),
        "question acc": question_accuracy(model, tokenizer),
        "train s": round(seconds, 1) if seconds is not None else "-",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", default="runs/research-cft")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per arm (the prompt choice and data order)")
    args = parser.parse_args()
    tokenizer = load_tokenizer(MODEL)
    rows = [measure("base (untrained)", load_model(MODEL), tokenizer, None)]
    print(rows[-1], flush=True)
    for seed in range(args.seeds):
        for arm in ("pretrain", "cft"):
            recipe = base_recipe(
                Path(args.out) / f"{arm}-{seed}",
                data={"train": str(CFT / "corpus.jsonl"), "format": "text", "max_length": args.max_length},
                objective={"type": arm, **({"cft": {"seed": seed}} if arm == "cft" else {})},
                training={"max_steps": args.steps, "seed": seed},
            )
            started = time.perf_counter()
            result = train(load_recipe(base=recipe))
            seconds = time.perf_counter() - started
            loaded = load_run(result.run_dir)
            rows.append(measure(f"{arm} (seed {seed})", loaded.model, loaded.tokenizer, seconds))
            print(rows[-1], flush=True)
    print(write_result("research_cft", rows, {"steps": args.steps, "seeds": args.seeds, "max_length": args.max_length}))


if __name__ == "__main__":
    main()

"""Direction experiment: S3FT vs SFT on the arithmetic set, and the drop on the general probe.

Every arm trains the same LoRA on SmolLM2-135M-Instruct over the first --train rows of
examples/grpo/train.jsonl (prompt -> worked solution) for the same steps. S3FT maps each row's target
first (the base model's own answer when accepted, else its accepted restatement of the solution, else
the solution), once with ``accept: numeric`` (the last number matches) and once with ``accept: marker``
(the number after '####' matches, so the accepted text keeps the task's format). Measured, greedy:

- task accuracy: the right number after '####' on the first --eval rows of examples/grpo/test.jsonl;
- general probe: the bundled forgetting probe (evaluate/resources/forgetting), before and after.

Run (CPU, minutes), under the shared heavy-job lock:
    flock /tmp/tuneforge-heavy.lock python benchmarks/research_s3ft.py --train 40 --eval 50 --steps 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from research_common import MODEL, base_recipe, write_result
from research_nlft import GRPO, accuracy, answers, rows

from tuneforge.config import load_recipe
from tuneforge.evaluate.forgetting import load_probe, score_forgetting
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.recipes import train
from tuneforge.targets import load_run


def probe_score(model, tokenizer) -> float:
    items = load_probe()
    section, _ = score_forgetting(items, answers(model, tokenizer, [it.prompt for it in items], max_new_tokens=48))
    return round(section["score"], 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--eval", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="runs/research-s3ft")
    parser.add_argument("--arms", nargs="+", default=["sft", "s3ft:numeric", "s3ft:marker"], help="sft, or s3ft:<accept rule>")
    args = parser.parse_args()
    out, tokenizer = Path(args.out), load_tokenizer(MODEL)
    out.mkdir(parents=True, exist_ok=True)
    test = rows(GRPO / "test.jsonl", args.eval)
    data = out / "train.jsonl"
    data.write_text("".join(json.dumps({"instruction": r["prompt"], "output": r["solution"]}) + "\n" for r in rows(GRPO / "train.jsonl", args.train)))
    base = load_model(MODEL)
    results = [{"arm": "base (untrained)", "task accuracy": accuracy(base, tokenizer, test), "general probe": probe_score(base, tokenizer), "shares": "-"}]
    print(results[-1], flush=True)
    for arm in args.arms:
        kind, _, rule = arm.partition(":")
        recipe = base_recipe(
            out / arm.replace(":", "-"), data={"train": str(data), "format": "alpaca", "max_length": 384, "val_fraction": 0.0},
            objective={"type": kind, **({"s3ft": {"accept": rule or "numeric", "max_new_tokens": 64}} if kind == "s3ft" else {})},
            training={"max_steps": args.steps},
        )  # fmt: skip
        started = time.perf_counter()
        result = train(load_recipe(base=recipe))
        loaded = load_run(result.run_dir)
        shares = result.summary.get("s3ft_shares", "-")
        results.append({
            "arm": arm, "task accuracy": accuracy(loaded.model, loaded.tokenizer, test), "general probe": probe_score(loaded.model, loaded.tokenizer),
            "shares": shares if isinstance(shares, str) else " / ".join(f"{k} {v:.2f}" for k, v in shares.items()),
            "train s": round(time.perf_counter() - started, 1),
        })  # fmt: skip
        print(results[-1], flush=True)
    print(write_result("research_s3ft", results, {"train rows": args.train, "eval rows": args.eval, "steps": args.steps, "model": MODEL}))


if __name__ == "__main__":
    main()

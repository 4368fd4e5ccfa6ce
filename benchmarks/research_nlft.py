"""Direction experiment: NLFT vs SFT with a few dozen examples of the arithmetic set (examples/grpo).

Data: the first --train rows of examples/grpo/train.jsonl. The base SmolLM2-135M-Instruct answers each
prompt greedily; that answer is NLFT's response y, the row's worked solution its reference, and the
critique comes from a rule judge (the right number after '####' or not, with the correct working)
because the 135M model cannot critique arithmetic. SFT trains the same prompts on the gold solutions.
Both arms train the same LoRA for the same steps; accuracy is the right number after '####' on the
first --eval rows of examples/grpo/test.jsonl, greedy.

Run (CPU, minutes), under the shared heavy-job lock:
    flock /tmp/tuneforge-heavy.lock python benchmarks/research_nlft.py --train 30 --eval 50 --steps 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from research_common import MODEL, ROOT, base_recipe, write_result

from tuneforge.config import load_recipe
from tuneforge.data.render import render_prompt
from tuneforge.evaluate.generate import generate_batch
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.recipes import train
from tuneforge.recipes.nlft import train_nlft
from tuneforge.rewards.extract import extract_answer, parse_number
from tuneforge.targets import load_run

GRPO = ROOT / "examples" / "grpo"


def rows(path: Path, n: int) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()[:n]]


def answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 64) -> list[str]:
    texts = [render_prompt(tokenizer, [{"role": "user", "content": p}]) for p in prompts]
    return generate_batch(model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=16)


def right(reply: str, answer: str) -> bool:
    found = extract_answer(reply, "marker")
    return found is not None and parse_number(found) == parse_number(answer)


def accuracy(model, tokenizer, test: list[dict]) -> float:
    replies = answers(model, tokenizer, [r["prompt"] for r in test])
    return round(sum(right(y, r["answer"]) for y, r in zip(replies, test)) / len(test), 3)


def rule_critique(reply: str, row: dict) -> tuple[str, bool]:
    """What a careful grader would write: the wrong final number and the right working, or that it is right."""
    if right(reply, row["answer"]):
        return "The working and the final answer are right.\nVerdict: correct", True
    found = extract_answer(reply, "marker") or "missing"
    return f"The final answer after '####' is {found}, which is wrong: {row['solution'].splitlines()[0]}, so it is {row['answer']}.\nVerdict: incorrect", False


def feedback_file(out: Path, train_rows: list[dict], replies: list[str]) -> tuple[Path, Path, int]:
    out.mkdir(parents=True, exist_ok=True)
    nlft, sft, correct = out / "nlft.jsonl", out / "sft.jsonl", 0
    with nlft.open("w") as f, sft.open("w") as g:
        for row, y in zip(train_rows, replies):
            critique, ok = rule_critique(y, row)
            correct += ok
            f.write(json.dumps({"instruction": row["prompt"], "output": y or "####", "reference": row["solution"], "critique": critique, "correct": ok}) + "\n")
            g.write(json.dumps({"instruction": row["prompt"], "output": row["solution"]}) + "\n")
    return nlft, sft, correct


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=30)
    parser.add_argument("--eval", type=int, default=50)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--out", default="runs/research-nlft")
    args = parser.parse_args()
    out, tokenizer = Path(args.out), load_tokenizer(MODEL)
    train_rows, test = rows(GRPO / "train.jsonl", args.train), rows(GRPO / "test.jsonl", args.eval)
    base = load_model(MODEL)
    replies = answers(base, tokenizer, [r["prompt"] for r in train_rows])
    nlft_data, sft_data, correct = feedback_file(out, train_rows, replies)
    results = [{"arm": "base (untrained)", "accuracy": accuracy(base, tokenizer, test), "train s": "-"}]
    print(results[-1], f"base right on {correct}/{len(train_rows)} training prompts", flush=True)
    for arm, data, run in (("sft (gold solutions)", sft_data, train), ("nlft (own answers + critiques)", nlft_data, train_nlft)):
        recipe = base_recipe(
            out / arm.split()[0], data={"train": str(data), "format": "alpaca", "max_length": 384, "val_fraction": 0.0},
            objective={"type": arm.split()[0]}, training={"max_steps": args.steps},
        )  # fmt: skip
        started = time.perf_counter()
        result = run(load_recipe(base=recipe))
        loaded = load_run(result.run_dir)
        results.append({"arm": arm, "accuracy": accuracy(loaded.model, loaded.tokenizer, test), "train s": round(time.perf_counter() - started, 1)})
        print(results[-1], flush=True)
    meta = {"train rows": args.train, "base right on train": correct, "eval rows": args.eval, "steps": args.steps, "model": MODEL}
    print(write_result("research_nlft", results, meta))


if __name__ == "__main__":
    main()

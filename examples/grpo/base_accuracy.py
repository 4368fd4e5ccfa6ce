"""How often the built-in model answers the arithmetic set right: greedy and sampled (pass@1 per sample).

    .venv/bin/python examples/grpo/base_accuracy.py [--file examples/grpo/test.jsonl] [--samples 4] [--threads 1]

Scores with the seeds' math rewards (answer_match x 2, format, integer) through tuneforge.rewards,
exactly as a grpo/rft run scores, and prints one JSON line per decoding.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from tuneforge.config.rewards import reward_spec
from tuneforge.config.rft import RftOptions
from tuneforge.data.prompts import load_prompts
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.rewards import build_scorer
from tuneforge.rewards.evaluate import evaluate_prompts
from tuneforge.rewards.rejection import sample_completions

REWARDS = [{"type": "answer_match", "weight": 2.0}, {"type": "format", "weight": 0.5}, {"type": "integer", "weight": 0.5}]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", default="examples/grpo/test.jsonl")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); 1 on a shared CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    records = load_prompts(args.file).records
    tokenizer, model = load_tokenizer(args.model), load_model(args.model, dtype=torch.float32)
    scorer = build_scorer([reward_spec(r) for r in REWARDS], tokenizer=tokenizer)
    started = time.perf_counter()
    greedy = evaluate_prompts(model, tokenizer, records, scorer, max_new_tokens=args.max_new_tokens, batch_size=16)
    print(json.dumps({"decoding": "greedy", "prompts": len(records), "accuracy": greedy["accuracy"], "rewards": greedy["rewards"],
                      "seconds": round(time.perf_counter() - started, 1), "sample": greedy["samples"][0]["completion"]}))
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    options = RftOptions(samples_per_prompt=args.samples, temperature=args.temperature, max_new_tokens=args.max_new_tokens, sample_batch_size=8)
    completions = sample_completions(model, tokenizer, records, options)
    repeated = [r for r in records for _ in range(args.samples)]
    scores = scorer(repeated, completions)
    right = [v or 0.0 for v in scores.per_reward["answer_match"]]
    solved = sum(any(right[j * args.samples : (j + 1) * args.samples]) for j in range(len(records)))
    print(json.dumps({"decoding": f"sampled t={args.temperature} k={args.samples}", "accuracy": sum(right) / len(right),
                      "prompts_solved_at_k": solved / len(records), "format": sum(v or 0 for v in scores.per_reward["format"]) / len(right),
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()

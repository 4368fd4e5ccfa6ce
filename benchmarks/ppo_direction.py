"""Direction experiment for objective.type ppo: does the mean reward rise, with the KL to the reference bounded?

A tiny random Llama (tests/helpers/tiny.py: 2 layers, hidden 64, a 320-token byte-level BPE) is
trained with PPO on a reward that favours one letter: 10 x the share of the completion's characters
that are ``e`` (dense, so every rollout carries a signal; the random model starts near the share of
``e`` in its vocabulary, about 0.05). The default is full fine-tuning: with LoRA (``--method lora``) the
random model's tied embeddings (std 0.02) and untrained RMSNorm weights bound every logit to about
+-1.3, so no adapter can sharpen the output much (measured: 0.41 -> 0.45 in 20 rollouts at lr 2e-2). The run goes through ``tuneforge.recipes.train``
exactly as ``tuneforge train`` would; the script reads the run's metrics.jsonl and prints the reward and
KL per rollout, the mean reward of the first and last five rollouts, and writes ``ppo_direction.md``/
``.json`` (and ``ppo_direction.png`` when matplotlib is there) to ``--out``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ppo_direction.py --steps 20 --out /tmp/ppo-direction

``--rlhf`` runs the issue's experiment instead: a reward model (objective.type reward, 40 steps) on
examples/preference, then PPO on the built-in model against it (``--steps`` rollouts of 4 prompts x 2
completions, 2 updates each), with held-out prompts scored before and after:

    .venv/bin/python benchmarks/ppo_direction.py --rlhf --steps 15 --out /tmp/ppo-rlhf
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speed import cpu_name  # benchmarks/ is the script's directory

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config import load_recipe
from tuneforge.recipes import train

REWARD_CODE = '''
def share_of_e(prompts, completions, **columns):
    """The share of the completion's characters that are the letter e (0 for an empty completion)."""
    return [c.count("e") / len(c) if c else 0.0 for c in completions]
'''
TOPICS = ["fox", "dog", "cat", "owl", "bee", "elk", "ant", "yak"]


def build(out: Path, steps: int, kl_coef: float, seed: int, weight: float, lr: float, method: str = "full"):
    model_dir = out / "tiny-model"
    tok = tiny_tokenizer()
    tiny_llama(len(tok), seed=seed).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    (out / "train.jsonl").write_text("".join(json.dumps({"prompt": f"Say something about the {w}"}) + "\n" for w in TOPICS))
    (out / "rewards.py").write_text(REWARD_CODE)
    return load_recipe(base={
        "model": {"name": str(model_dir)},
        "method": {"type": method, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        "data": {"train": str(out / "train.jsonl"), "format": "prompt"},
        "objective": {
            "type": "ppo",
            "rewards": [{"type": "function", "function": f"{out / 'rewards.py'}:share_of_e", "weight": weight}],
            "ppo": {"num_generations": 4, "max_completion_length": 16, "ppo_epochs": 2, "num_minibatches": 2, "kl_coef": kl_coef,
                    "value_learning_rate": 1e-2},
        },
        "training": {"max_steps": steps * 4, "batch_size": 4, "learning_rate": lr, "lr_scheduler": "constant", "logging_steps": 1,
                     "precision": "fp32", "save_steps": steps * 4, "seed": seed, "threads": 1},
        "output": {"dir": str(out / "run"), "overwrite": True},
    })  # fmt: skip


def rlhf_recipes(out: Path, rollouts: int, kl_coef: float, seed: int, rm_steps: int = 40, eval_limit: int = 20):
    """The issue's RLHF experiment: a reward model on examples/preference (chosen answers open with
    "Certainly!"), then PPO on the built-in model against it; a weight-0 regex reward logs the rule's share."""
    data = ROOT / "examples" / "preference"
    rm = load_recipe(base={
        "model": {"name": "smollm2-135m-instruct"}, "method": {"type": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0}},
        "data": {"train": str(data / "train.jsonl"), "max_length": 96}, "objective": {"type": "reward"},
        "training": {"max_steps": rm_steps, "batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.1, "logging_steps": 5, "seed": seed,
                     "save_steps": 10_000},
        "output": {"dir": str(out / "rm"), "overwrite": True},
    })  # fmt: skip
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()]
        (out / f"{split}_prompts.jsonl").write_text("".join(json.dumps({"prompt": r["prompt"]}) + "\n" for r in rows))
    ppo = load_recipe(base={
        "model": {"name": "smollm2-135m-instruct"}, "method": {"type": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0}},
        "data": {"train": str(out / "train_prompts.jsonl"), "format": "prompt"},
        "objective": {
            "type": "ppo",
            "rewards": [{"type": "reward_model", "run": str(out / "rm")},
                        {"type": "regex", "pattern": r"^\s*Certainly!", "weight": 0.0, "name": "certainly"}],
            "ppo": {"num_generations": 2, "max_completion_length": 24, "ppo_epochs": 2, "kl_coef": kl_coef},
        },
        "training": {"max_steps": rollouts * 2, "batch_size": 4, "learning_rate": 3e-4, "lr_scheduler": "constant", "logging_steps": 1,
                     "seed": seed, "save_steps": 10_000},
        "eval": {"data": str(out / "test_prompts.jsonl"), "limit": eval_limit, "max_new_tokens": 24},
        "output": {"dir": str(out / "ppo"), "overwrite": True},
    })  # fmt: skip
    return rm, ppo


def rlhf(args) -> None:
    rm, ppo = rlhf_recipes(args.out, args.steps, args.kl_coef, args.seed, args.rm_steps, args.eval_limit)
    started = time.perf_counter()
    train(rm)
    rm_seconds = time.perf_counter() - started
    result = train(ppo)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    rollouts = [r for r in rows if "reward/mean" in r]
    rewards, kls = [r["reward/mean"] for r in rollouts], [r.get("kl", 0.0) for r in rollouts]
    summary = {
        "cpu": cpu_name(), "rm_seconds": round(rm_seconds, 1), "ppo_seconds": result.summary["wall_seconds"], "kl_coef": args.kl_coef,
        "rewards": rewards, "kls": kls, "certainly": [r.get("reward/certainly/mean") for r in rollouts], "eval": result.summary.get("eval"),
    }  # fmt: skip
    (args.out / "ppo_rlhf.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    plot(args.out / "ppo_rlhf.png", rewards, kls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="rollouts (each serves ppo_epochs x num_minibatches = 4 optimizer steps)")
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reward-weight", type=float, default=10.0, help="weight of the reward (its scale against the KL penalty)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--method", default="full", help="full (default) or lora; see the module docstring for why full")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ppo-direction"))
    parser.add_argument("--rlhf", action="store_true", help="the built-in model against a reward model instead (--steps = rollouts)")
    parser.add_argument("--rm-steps", type=int, default=40, help="--rlhf: reward-model training steps")
    parser.add_argument("--eval-limit", type=int, default=20, help="--rlhf: held-out prompts scored before and after")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.rlhf:
        return rlhf(args)
    started = time.perf_counter()
    result = train(build(args.out, args.steps, args.kl_coef, args.seed, args.reward_weight, args.lr, args.method))
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    rollouts = [r for r in rows if "reward/mean" in r]
    rewards, kls = [r["reward/mean"] for r in rollouts], [r.get("kl", 0.0) for r in rollouts]  # no kl logged at kl_coef 0
    first, last = sum(rewards[:5]) / len(rewards[:5]), sum(rewards[-5:]) / len(rewards[-5:])
    summary = {
        "cpu": cpu_name(), "rollouts": len(rollouts), "optimizer_steps": result.summary["steps"], "seconds": round(seconds, 1),
        "kl_coef": args.kl_coef, "seed": args.seed, "reward_weight": args.reward_weight, "lr": args.lr, "method": args.method, "reward_first5": first, "reward_last5": last,
        "kl_max": max(kls), "kl_last": kls[-1], "rewards": rewards, "kls": kls,
    }  # fmt: skip
    (args.out / "ppo_direction.json").write_text(json.dumps(summary, indent=2))
    lines = [
        f"# PPO direction: tiny random Llama, reward = share of 'e' ({cpu_name()}, {seconds:.0f} s)", "",
        "| rollout | reward/mean | kl (per completion) |", "| --- | --- | --- |",
        *(f"| {i + 1} | {r:.4f} | {k:.4f} |" for i, (r, k) in enumerate(zip(rewards, kls))), "",
        f"mean reward of the first 5 rollouts {first:.4f}, of the last 5 {last:.4f}; largest KL {max(kls):.4f}",
    ]  # fmt: skip
    (args.out / "ppo_direction.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(args.out / "ppo_direction.png", rewards, kls)


def plot(path: Path, rewards: list[float], kls: list[float]) -> None:
    try:
        import matplotlib  # lazy: optional, only for the figure

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: optional, only for the figure
    except ImportError:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(range(1, len(rewards) + 1), rewards)
    a.set(xlabel="rollout", ylabel="mean reward", title="reward")
    b.plot(range(1, len(kls) + 1), kls, color="tab:orange")
    b.set(xlabel="rollout", ylabel="KL to the reference", title="KL (sum of k1 per completion)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()

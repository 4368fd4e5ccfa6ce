"""Direction experiment: do DPO, SimPO, ORPO, KTO (and RM + best-of-n) move the built-in model towards
the rule of the bundled preference set, compared with the SFT baseline?

Data: examples/preference (rule: a chosen answer opens with "Certainly!"; rejected answers do not).
Each method trains a LoRA adapter on SmolLM2-135M-Instruct for a few dozen steps on train.jsonl and
is measured on the 40 held-out pairs of test.jsonl:

- pref acc / margin: implicit-reward accuracy and mean margin against the untuned model,
  ``[log pi(c) - log pi0(c)] - [log pi(r) - log pi0(r)]`` (summed answer log-probs), so every method is
  scored on the same scale; for the reward model, its own score accuracy and margin;
- avg-logp acc: fraction of held-out pairs whose chosen answer has the higher per-token log-prob;
- rule (sampled): fraction of held-out prompts whose sampled reply (temperature 0.7, seed 0) follows
  the rule; rule (greedy) the same for greedy decoding;
- RM + best-of-n: n replies sampled from the baseline, the reward model picks one.

Run (about 15-20 minutes on a 2-core CPU), under the shared heavy-job lock:
    flock /tmp/tuneforge-heavy.lock python benchmarks/preference_direction.py --steps 40
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.preference.make_data import follows_rule
from tuneforge.config import load_recipe
from tuneforge.data.preference import load_preference_records
from tuneforge.data.render import render_prompt
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.data.preference_examples import build_pair_examples
from tuneforge.objectives.preference import sequence_logps
from tuneforge.objectives.reward import reward_scores
from tuneforge.targets import load_run
from tuneforge.data.preference_collate import pad_sides
from tuneforge.recipes import train

DATA = ROOT / "examples" / "preference"
MODEL = "smollm2-135m-instruct"

# Per-method recipe sections (LoRA on every linear layer, short sequences).
METHODS: dict[str, dict] = {
    "sft": {"objective": {"type": "sft"}, "training": {"learning_rate": 5e-4}},
    "dpo": {
        "objective": {"type": "dpo", "preference": {"beta": 0.1}},
        "training": {"learning_rate": 5e-4},
    },
    "simpo": {
        "objective": {"type": "simpo", "preference": {"beta": 2.0, "gamma": 1.0}},
        "training": {"learning_rate": 5e-4},
    },
    "orpo": {
        "objective": {"type": "orpo", "preference": {"orpo_lambda": 0.5}},
        "training": {"learning_rate": 5e-4},
    },
    "kto": {
        "objective": {"type": "kto", "preference": {"beta": 0.1}},
        "training": {"learning_rate": 5e-4},
    },
    "reward": {"objective": {"type": "reward"}, "training": {"learning_rate": 1e-3}},
}


def recipe(name: str, steps: int, out: Path, model: str = MODEL, batch_size: int = 8):
    train_file = DATA / "train.jsonl"
    if name == "sft":
        train_file = (
            out / "sft_train.jsonl"
        )  # SFT baseline: the chosen answers as plain instruction data
        rows = [
            json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines()
        ]
        train_file.write_text(
            "".join(
                json.dumps({"instruction": r["prompt"], "output": r["chosen"]}) + "\n"
                for r in rows
            )
        )
    base = {
        "model": {"name": model},
        "method": {"type": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0}},
        "data": {"train": str(train_file), "max_length": 96},
        "training": {
            "max_steps": steps,
            "batch_size": batch_size,
            "logging_steps": 5,
            "warmup_ratio": 0.1,
            "seed": 0,
            "save_steps": 10_000,
        },
        "output": {"dir": str(out / name), "overwrite": True},
        "eval": {"data": None},
    }
    for section, values in METHODS[name].items():
        base.setdefault(section, {}).update(values)
    return load_recipe(base=base, overrides=[])


@torch.no_grad()
def pair_logps(
    model, examples, pad_id: int, batch: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed answer log-probs and token counts of chosen and rejected for every held-out pair."""
    cs, rs, cn, rn = [], [], [], []
    for i in range(0, len(examples), batch):
        part = examples[i : i + batch]
        b = pad_sides([e.chosen for e in part] + [e.rejected for e in part], pad_id)
        logps, counts = sequence_logps(
            model, b["input_ids"], b["attention_mask"], b["labels"]
        )
        n = len(part)
        (
            cs.append(logps[:n]),
            rs.append(logps[n:]),
            cn.append(counts[:n]),
            rn.append(counts[n:]),
        )
    return torch.cat(cs), torch.cat(rs), torch.cat(cn).float(), torch.cat(rn).float()


@torch.no_grad()
def rm_scores(
    model, examples, pad_id: int, batch: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    cs, rs = [], []
    for i in range(0, len(examples), batch):
        part = examples[i : i + batch]
        b = pad_sides([e.chosen for e in part] + [e.rejected for e in part], pad_id)
        s = reward_scores(model, b["input_ids"], b["attention_mask"])
        cs.append(s[: len(part)]), rs.append(s[len(part) :])
    return torch.cat(cs), torch.cat(rs)


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[str],
    *,
    n: int = 1,
    temperature: float = 0.7,
    max_new_tokens: int = 24,
    seed: int = 0,
) -> list[list[str]]:
    """n replies per prompt; temperature 0 = greedy."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    model.eval()
    out: list[list[str]] = []
    for i in range(0, len(prompts), 20):
        enc = tokenizer(
            prompts[i : i + 20],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        kwargs = (
            {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
            if temperature > 0
            else {"do_sample": False}
        )
        gen = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
            **kwargs,
        )
        texts = tokenizer.batch_decode(
            gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        out.extend(
            [t.strip() for t in texts[j * n : (j + 1) * n]]
            for j in range(len(texts) // n)
        )
    tokenizer.padding_side = "right"
    return out


def rule_rate(replies: list[list[str]]) -> float:
    return sum(follows_rule(r[0]) for r in replies) / len(replies)


def answer_key(chosen: str) -> str:
    """The fact a reply must state: the last word of the reference answer ("44", "Paris", "cold")."""
    return chosen.rstrip(".").split()[-1].strip("'\"").lower()


def content_rate(replies: list[list[str]], keys: list[str]) -> float:
    """Fraction of replies that still state the right fact (rule-following must not break the content)."""
    return sum(k in r[0].lower() for r, k in zip(replies, keys)) / len(replies)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument(
        "--model",
        default=MODEL,
        help="Model spec (a tiny local model for a smoke run).",
    )
    ap.add_argument("--methods", default="sft,dpo,simpo,orpo,kto,reward")
    ap.add_argument("--batch-size", type=int, default=8, help="Pairs per step.")
    ap.add_argument(
        "--max-new-tokens",
        type=int,
        default=24,
        help="Reply length (the rule is about the opening words).",
    )
    ap.add_argument("--best-of", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-preference")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    tokenizer = load_tokenizer(args.model)
    test = load_preference_records(DATA / "test.jsonl").records
    examples, _ = build_pair_examples(test, tokenizer, 96, "truncate")
    prompts = [render_prompt(tokenizer, r.prompt_dicts()) for r in test]
    keys = [answer_key(r.chosen) for r in test]
    base = load_model(args.model).eval()
    base_c, base_r, cn, rn = pair_logps(base, examples, tokenizer.pad_token_id)
    rows: list[dict] = []

    def policy_row(name: str, model, seconds: float | None) -> dict:
        c, r, _, _ = pair_logps(model, examples, tokenizer.pad_token_id)
        margin = (c - base_c) - (r - base_r)
        greedy = sample(
            model,
            tokenizer,
            prompts,
            temperature=0.0,
            max_new_tokens=args.max_new_tokens,
        )
        sampled = sample(
            model,
            tokenizer,
            prompts,
            temperature=0.7,
            seed=0,
            max_new_tokens=args.max_new_tokens,
        )
        return {
            "method": name,
            "pref_acc": float((margin > 0).float().mean())
            if name != "baseline (no tuning)"
            else None,
            "margin": float(margin.mean()) if name != "baseline (no tuning)" else None,
            "avg_logp_acc": float((c / cn > r / rn).float().mean()),
            "rule_sampled": rule_rate(sampled),
            "rule_greedy": rule_rate(greedy),
            "content_greedy": content_rate(greedy, keys),
            "train_s": seconds,
            "example": greedy[0][0],
            "greedy": [g[0] for g in greedy],
            "sampled": [g[0] for g in sampled],
        }

    rows.append(policy_row("baseline (no tuning)", base, None))
    print(json.dumps(rows[-1]), flush=True)
    for name in args.methods.split(","):
        t0 = time.perf_counter()
        result = train(recipe(name, args.steps, args.out, args.model, args.batch_size))
        seconds = round(time.perf_counter() - t0, 1)
        loaded = load_run(result.run_dir)
        if name == "reward":
            sc, sr = rm_scores(loaded.model, examples, tokenizer.pad_token_id)
            candidates = sample(
                base,
                tokenizer,
                prompts,
                n=args.best_of,
                temperature=0.7,
                seed=1,
                max_new_tokens=args.max_new_tokens,
            )
            from tuneforge.serve.score import score_responses

            picked = []
            for r, cands in zip(test, candidates):
                scores = score_responses(
                    loaded.model, tokenizer, [(r.prompt_dicts(), c) for c in cands]
                )
                picked.append([cands[max(range(len(cands)), key=lambda k: scores[k])]])
            rows.append(
                {
                    "method": f"reward model (acc on pairs) + best-of-{args.best_of}",
                    "pref_acc": float((sc > sr).float().mean()),
                    "margin": float((sc - sr).mean()),
                    "avg_logp_acc": None,
                    "rule_sampled": rule_rate(picked),
                    "rule_greedy": None,
                    "content_greedy": None,
                    "content_sampled": content_rate(picked, keys),
                    "picked": [x[0] for x in picked],
                    "train_s": seconds,
                    "example": picked[0][0],
                    "first_of_n_rule": rule_rate([[c[0]] for c in candidates]),
                }
            )
        else:
            rows.append(policy_row(name, loaded.model, seconds))
        print(json.dumps(rows[-1]), flush=True)
        del loaded

    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    fmt = lambda v: (
        "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    )
    lines = [
        "| method | held-out pref acc | reward margin | avg-logp acc | rule (sampled) | rule (greedy) | right fact (greedy) | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {fmt(r['pref_acc'])} | {fmt(r['margin'])} | {fmt(r['avg_logp_acc'])} | "
            f"{fmt(r['rule_sampled'])} | {fmt(r['rule_greedy'])} | {fmt(r['content_greedy'])} | {fmt(r['train_s'])} |"
        )
    table = "\n".join(lines)
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    for r in rows:
        print(f"{r['method']}: {r['example']!r}")


if __name__ == "__main__":
    main()

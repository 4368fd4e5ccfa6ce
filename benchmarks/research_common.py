"""Shared parts of the research direction experiments (benchmarks/research_*.py, docs/RESEARCH.md).

The bundled domain is made up (examples/cft: tidal glass of the town of Brinmoor), so the built-in
model cannot know it beforehand: what it knows after training it learned from the corpus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.speed import cpu_name  # noqa: E402
from tuneforge.data.formats import load_records  # noqa: E402
from tuneforge.evaluate.loss import evaluate_loss  # noqa: E402
from tuneforge.objectives import build_examples  # noqa: E402

MODEL = "smollm2-135m-instruct"
CFT = ROOT / "examples" / "cft"
LORA = {"type": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}}


def base_recipe(out: Path, **sections) -> dict:
    """A short LoRA run on the built-in model; ``sections`` are merged one level deep."""
    recipe = {
        "model": {"name": MODEL},
        "method": LORA,
        "training": {"batch_size": 4, "learning_rate": 5e-4, "lr_scheduler": "constant", "logging_steps": 5, "precision": "fp32", "seed": 0},
        "output": {"dir": str(out), "overwrite": True},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value}
    return recipe


def file_loss(model, tokenizer, path: Path, max_length: int = 256) -> float:
    """Held-out loss of a text file (every token) or a chat file (the answers), no prompts."""
    loaded = load_records(str(path), "auto")
    objective = "pretrain" if loaded.format == "text" else "sft"
    examples, _ = build_examples(objective, loaded.records, tokenizer, max_length, "truncate", data_format=loaded.format)
    return round(evaluate_loss(model, examples, tokenizer.pad_token_id)["eval_loss"], 4)


@torch.inference_mode()
def options_logp(model, tokenizer, pairs: list[tuple[str, str]], batch: int = 40) -> list[float]:
    """Mean log-prob per token of each option after its prompt, padded batches (raw text, as the domain was trained)."""
    seqs = []
    for prompt, option in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        o = tokenizer(" " + option, add_special_tokens=False)["input_ids"]
        seqs.append((p + o, len(p)))
    scores = []
    for start in range(0, len(seqs), batch):
        chunk = seqs[start : start + batch]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in chunk])
        mask = torch.tensor([[1] * len(ids_) + [0] * (width - len(ids_)) for ids_, _ in chunk])
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
        for row, (seq, n_prompt) in enumerate(chunk):
            targets = torch.tensor(seq[n_prompt:])
            picked = logp[row, n_prompt - 1 : len(seq) - 1].gather(1, targets.unsqueeze(1)).squeeze(1)
            scores.append(float(picked.mean()))
    return scores


def question_accuracy(model, tokenizer, path: Path = CFT / "questions.jsonl") -> float:
    """Multiple choice by likelihood: the right answer must score above its three distractors."""
    model.eval()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    pairs = []
    for row in rows:
        prompt = f"Question about Brinmoor tidal glass: {row['question']}\nAnswer:"
        pairs += [(prompt, o) for o in [row["answer"], *row["distractors"]]]
    scores = options_logp(model, tokenizer, pairs)
    right = sum(scores[4 * i] > max(scores[4 * i + 1 : 4 * i + 4]) for i in range(len(rows)))
    return round(right / len(rows), 3)


def md_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_result(name: str, rows: list[dict], meta: dict) -> str:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": {"cpu": cpu_name(), **meta}, "rows": rows}, indent=2))
    text = f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}\n\n" + md_table(rows)
    (out / f"{name}.md").write_text(text + "\n")
    return text

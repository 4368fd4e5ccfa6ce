"""GRPO step time: tuneforge's grpo recipe against TRL's GRPOTrainer on the same job, side by side.

Each configuration runs in its own subprocess, one after the other:

  (a) trl        TRL GRPOTrainer + PEFT LoRA, GRPOConfig defaults except the precision
                 (so gradient checkpointing on, TRL's default)
  (b) trl-nogc   the same with gradient_checkpointing=False (TRL's fastest setting here)
  (c) tuneforge  ``tuneforge.recipes.train`` with objective.type grpo and its speed plan
  (d) tuneforge-noshare  the same with training.share_prefix=false: every completion row runs its
                 prompt again in the update (the lever of train/group_prompt.py, measured alone)

``--precision`` (default ``auto``: bf16 where the CPU has it natively, else fp32, as tuneforge's
``precision: auto`` chooses) is the same for every configuration: TRL's ``bf16`` flag, tuneforge's
``training.precision``.

Job: the built-in SmolLM2-135M-Instruct, LoRA r=8 alpha 16 dropout 0 on q/k/v/o, one prompt per
step with G = 8 completions of at most 48 tokens (temperature 1, top_p 1, top_k off), beta 0, one
update per rollout, DAPO loss (TRL's default), lr 1e-5, a fixed number of steps, seed 42. The prompts
are arithmetic word problems written by this script (same rows for all); the reward is the
deterministic :func:`reward` below, called by both tools the same way (TRL's reward-function
convention, which tuneforge's ``type: function`` reward follows).

Reported: median step time over steps 2..N (step 1 is warm-up), the mean completion length (both
tools log it; sampling differs between tools, so lengths differ a little), step time per generated
token, and the ratio c / a and c / b.

--together starts the configurations at the same time instead of one after the other: on a machine
shared with other work, whose load changes from minute to minute, that gives each the same
conditions (each then has a share of the cores, so absolute step times are longer; the ratios are
what such a run measures).

    python benchmarks/grpo_speed.py [--steps 6] [--configs trl,trl-nogc,tuneforge] [--together] [--out runs/bench-grpo]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from speed import cpu_name  # benchmarks/ is the script's directory

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
CONFIGS = ("trl", "trl-nogc", "tuneforge", "tuneforge-noshare")
DEFAULT_CONFIGS = ("trl", "trl-nogc", "tuneforge")
LABELS = {
    "trl": "(a) TRL GRPOTrainer, defaults (gradient checkpointing)", "trl-nogc": "(b) TRL, no gradient checkpointing",
    "tuneforge": "(c) tuneforge grpo", "tuneforge-noshare": "(d) tuneforge grpo, training.share_prefix=false",
}  # fmt: skip
JOB = {"G": 8, "max_completion_length": 48, "lr": 1e-5, "seed": 42, "r": 8, "alpha": 16, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
INSTRUCTION = "Solve the problem, then write the final answer after '####', e.g. '#### 12'.\n\n"


def reward(prompts, completions, **columns) -> list[float]:
    """1 for the right number after '####', 0.2 for any '####' answer, else 0 (deterministic, cheap)."""
    out = []
    for completion, answer in zip(completions, columns["answer"]):
        text = completion if isinstance(completion, str) else completion[-1]["content"]  # TRL passes messages for chat data
        tail = text.rsplit("####", 1)[-1].strip().split()[:1] if "####" in text else None
        out.append(1.0 if tail and tail[0].strip(".") == str(answer) else 0.2 if tail is not None else 0.0)
    return out


def write_prompts(path: Path, n: int = 32) -> Path:
    """n small word problems with integer answers (a fixed pattern, so every run sees the same rows)."""
    rows = []
    for i in range(n):
        a, b = 3 + (7 * i) % 17, 2 + (5 * i) % 11
        rows.append({"prompt": INSTRUCTION + f"Sam has {a} apples and buys {b} more. How many apples does Sam have now?", "answer": str(a + b)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.lengths: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self._t)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                for key in ("completions/mean_length", "completion_length"):
                    if key in logs:
                        self.lengths.append(float(logs[key]))

    return StepTimer()


def run_trl(steps: int, data: Path, out_dir: Path, checkpointing: bool, precision: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from tuneforge.models.load import load_model, load_tokenizer

    tokenizer = load_tokenizer(MODEL)
    model = load_model(MODEL, dtype=torch.float32)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]} for r in rows])
    args = GRPOConfig(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=JOB["G"], num_generations=JOB["G"],
        max_completion_length=JOB["max_completion_length"], learning_rate=JOB["lr"], seed=JOB["seed"], logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, bf16=precision == "bf16", gradient_checkpointing=checkpointing, disable_tqdm=True,
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, num_iterations=1,
    )  # fmt: skip
    peft_config = LoraConfig(r=JOB["r"], lora_alpha=JOB["alpha"], lora_dropout=0.0, target_modules=JOB["targets"], task_type="CAUSAL_LM")
    timer = step_timer()
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config, callbacks=[timer]
    )
    trainer.train()
    return {"step_s": timer.times, "lengths": timer.lengths, "loss_type": args.loss_type, "gradient_checkpointing": args.gradient_checkpointing}


def run_tuneforge(steps: int, data: Path, out_dir: Path, precision: str, share_prefix: str | bool = "auto") -> dict:
    from tuneforge.config import load_recipe
    from tuneforge.recipes import train

    recipe = load_recipe(base={
        "model": {"name": MODEL},
        "method": {"type": "lora", "lora": {"r": JOB["r"], "alpha": JOB["alpha"], "dropout": 0.0, "target_modules": JOB["targets"]}},
        "data": {"train": str(data), "format": "prompt"},
        "objective": {
            "type": "grpo",
            "rewards": [{"type": "function", "function": f"{Path(__file__).resolve()}:reward"}],
            "grpo": {"num_generations": JOB["G"], "max_completion_length": JOB["max_completion_length"], "temperature": 1.0, "top_p": 1.0, "top_k": 0},
        },
        "training": {"max_steps": steps, "batch_size": 1, "learning_rate": JOB["lr"], "seed": JOB["seed"], "logging_steps": 1,
                     "precision": precision, "lr_scheduler": "linear", "save_steps": 10_000, "share_prefix": share_prefix},
        "output": {"dir": str(out_dir), "overwrite": True},
    })  # fmt: skip
    timer = step_timer()
    result = train(recipe, callbacks=[timer])
    return {"step_s": timer.times, "lengths": timer.lengths, "speed_plan": result.summary.get("speed_plan")}


def worker(ns) -> None:
    if ns.threads:
        import torch

        torch.set_num_threads(ns.threads)
    out = Path(ns.result)
    data = Path(ns.data)
    if ns.worker.startswith("tuneforge"):
        share = False if ns.worker == "tuneforge-noshare" else "auto"
        res = run_tuneforge(ns.steps, data, out.parent / f"{ns.worker}-run", ns.precision, share)
    else:
        res = run_trl(ns.steps, data, out.parent / f"{ns.worker}-run", checkpointing=ns.worker == "trl", precision=ns.precision)
    out.write_text(json.dumps(res, indent=2))


def start(args: list[str], result: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args, "--result", str(result)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=REPO)


def collect(proc: subprocess.Popen, result: Path, log: Path) -> dict:
    if proc.wait() != 0:
        raise SystemExit(f"worker failed (exit {proc.returncode}); log {log}:\n{log.read_text()[-3000:]}")
    return json.loads(result.read_text())



def table(results: dict[str, dict]) -> str:
    lines = ["| configuration | median step s (2..N) | mean completion tokens | ms per completion token | vs (a) | vs (b) |", "| --- | --- | --- | --- | --- | --- |"]
    med = {k: statistics.median(v["step_s"][1:] or v["step_s"]) for k, v in results.items()}
    for k, v in results.items():
        length = statistics.mean(v["lengths"][1:] or v["lengths"]) if v["lengths"] else float("nan")
        per_token = 1000 * med[k] / (length * JOB["G"]) if length == length and length > 0 else float("nan")
        ratio = {r: f"{med[k] / med[r]:.2f}x" if r in med else "-" for r in ("trl", "trl-nogc")}
        lines.append(f"| {LABELS[k]} | {med[k]:.2f} | {length:.1f} | {per_token:.1f} | {ratio['trl']} | {ratio['trl-nogc']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per configuration")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="auto: bf16 where the CPU has it natively")
    parser.add_argument("--out", default="runs/bench-grpo")
    parser.add_argument("--together", action="store_true", help="start all configurations at once (same load for each)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: torch's choice)")
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.worker:
        return worker(ns)
    out = Path(ns.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = write_prompts(out / "prompts.jsonl")
    if ns.precision == "auto":
        from tuneforge.models.precision import choose_precision  # lazy: only the parent decides, before the workers start

        ns.precision = choose_precision("auto", "cpu").name
    results, running = {}, {}
    for config in ns.configs.split(","):
        print(f"running {config} ({ns.steps} steps)...", flush=True)
        files = (out / f"{config}.json", out / f"{config}.log")
        threads = ["--threads", str(ns.threads)] if ns.threads else []
        args = ["--worker", config, "--steps", str(ns.steps), "--data", str(data), "--precision", ns.precision, *threads]
        running[config] = (start(args, *files), *files)
        if not ns.together:
            results[config] = collect(*running.pop(config))
            print(f"  step times: {[round(t, 2) for t in results[config]['step_s']]}", flush=True)
    for config, job in running.items():
        results[config] = collect(*job)
        print(f"{config} step times: {[round(t, 2) for t in results[config]['step_s']]}", flush=True)
    import torch

    mode = "started together" if ns.together else "one after the other"
    md = f"CPU: {cpu_name()}, torch threads {ns.threads or torch.get_num_threads()}, {ns.precision}, {ns.steps} steps each, {mode}\n\n{table(results)}\n"
    (out / "grpo_speed.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

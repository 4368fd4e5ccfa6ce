"""Side-by-side training speed: TRL defaults, TRL packed, tuneforge defaults; LoRA and full fine-tuning.

One command, one process tree, one configuration after the other, each in its own subprocess so
peak RSS is that configuration's alone:

  (a) trl         TRL SFTTrainer + PEFT LoRA, SFTConfig defaults
  (b) trl-packed  the same with ``packing=True`` (TRL's best-fit packing, padding-free rows)
  (t) trl-best    TRL configured for this machine: no gradient checkpointing, and bf16 autocast only
                  where the CPU has native bf16 (fp32 elsewhere: emulated bf16 matmuls ran at 0.27
                  GFLOP/s against 113 fp32 on an AVX2-only EPYC, so TRL's bf16 default is unusable there)
  (c) tuneforge   tuneforge's training path with its recipe defaults
  (d) tuneforge-compiled  the same with ``training.compile: true`` (what ``auto`` picks for runs of
                  >= 100k tokens; this short job is below that, so (c) runs uncompiled)

Job: the built-in SmolLM2-135M-Instruct, examples/quickstart/train.jsonl, LoRA r=8 alpha 16 dropout 0
on q/k/v/o (full variant: every weight, lr 2e-5), micro-batch 4 (TRL packed: 4 packed rows), max
length 256, lr 2e-4, a fixed number of optimizer steps, seed 42. Everything not named here is each
tool's own default (TRL: bf16 autocast, gradient checkpointing, linear decay, no warmup; tuneforge:
``precision: auto``, cosine decay, no warmup).

Reported per configuration: train tokens/s (non-padding input tokens, steps 2..N, i.e. without the
first step's warm-up, whose time, compile included, has its own column), peak RSS of the worker process during training (the benchmark's own held-out
evaluations excluded, see TrainingPeak), held-out loss at the same number of tokens
seen (see below), MFU against the fastest matmul peak of this CPU (bf16 where native, else fp32)
measured in the same run, and the ratios of each tuneforge configuration to each TRL one, and to the
fastest TRL configuration of the run.

Loss at equal tokens: the first configuration runs first; its final count of non-padding tokens T
becomes the budget. Every configuration computes the same held-out loss (tuneforge's assistant-only
loss on the first 48 examples of examples/quickstart/test.jsonl, full logits, under the precision
``precision: auto`` picks on this CPU) at the first step where
its tokens seen reach T, and that is the "loss @T" column. Evaluation time is excluded from timing.

MFU counts the job's model FLOPs per non-padding token: 2*N forward (N = matmul weights incl. the
head, plus causal attention at the mean example length), x3 for full fine-tuning (forward + input
grads + weight grads), x2 for LoRA (the frozen base needs no weight gradients). Work skipped by an
implementation (e.g. the head on untrained positions) is not counted as done: MFU is of the job.

    python benchmarks/speed.py [--steps 30] [--full-steps 10] [--jobs lora,full] [--configs trl-best,tuneforge] [--md runs/bench-speed/speed.md]

On a CPU without native bf16, leave (a) and (b) out (``--configs trl-best,tuneforge,tuneforge-compiled``):
their bf16 default would take hours there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "examples/quickstart/train.jsonl"
HELDOUT = REPO / "examples/quickstart/test.jsonl"
MODEL = "smollm2-135m-instruct"
CONFIGS = ("trl", "trl-packed", "trl-best", "tuneforge", "tuneforge-compiled")
TRL_CONFIGS = ("trl", "trl-packed", "trl-best")
LABELS = {
    "trl": "(a) TRL defaults",
    "trl-packed": "(b) TRL packing",
    "trl-best": "(t) TRL tuned for this CPU",
    "tuneforge": "(c) tuneforge defaults",
    "tuneforge-compiled": "(d) tuneforge, compile: true",
}
LETTERS = {"trl": "a", "trl-packed": "b", "trl-best": "t", "tuneforge": "c", "tuneforge-compiled": "d"}
LORA = {
    "r": 8,
    "alpha": 16,
    "dropout": 0.0,
    "targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
JOB = {"batch_size": 4, "max_length": 256, "seed": 42}
LR = {"lora": 2e-4, "full": 2e-5}
HELDOUT_N = 48


def peak_rss_mb() -> float:
    """This worker's own peak (VmHWM), not the driver's folded in at exec."""
    from tuneforge.observe.memory import peak_rss_mb as own_peak

    return own_peak()


class TrainingPeak:
    """Peak RSS of training alone: the benchmark's own held-out evaluations are left out.

    The held-out loss computes full-vocabulary logits for 8 rows at a time, which can need more
    memory than a training step; counted in, it would set every configuration's peak and hide the
    differences. Before each evaluation the peak so far is recorded; after it, Linux's peak counter
    (VmHWM) is reset to the current RSS by writing 5 to /proc/self/clear_refs, so the next reading is
    training's again. Where the reset is not possible, the peak includes the evaluations (flagged).
    """

    def __init__(self) -> None:
        self.segments: list[float] = []
        self.exact = True

    def pause(self) -> None:
        self.segments.append(peak_rss_mb())

    def resume(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.exact = False

    def value(self) -> float:
        return max(self.segments + [peak_rss_mb()])


# ---------------------------------------------------------------------------------------------- peak


def matmul_peak(dtype_name: str, n: int = 2048, seconds: float = 4.0) -> float:
    """Best sustained TFLOP/s of an n x n x n matmul in ``dtype_name`` over a few seconds."""
    import torch

    from tuneforge.models.precision import cpu_bf16_flags

    dtype = getattr(torch, dtype_name)
    if dtype == torch.bfloat16 and not cpu_bf16_flags():
        n = 512  # emulated bf16 (~0.3 GFLOP/s): a 2048^3 matmul would take a minute
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e12)
    return best


# -------------------------------------------------------------------------------------------- shared


def job_examples(tokenizer, path: Path, limit: int | None = None):
    """Quickstart rows tokenised by tuneforge (chat template, assistant-only labels)."""
    from tuneforge.data.formats import load_records
    from tuneforge.objectives import build_examples

    data = load_records(str(path), "alpaca", on_bad_rows="error", system_prompt=None)
    records = data.records[:limit] if limit else data.records
    examples, _ = build_examples(
        "sft",
        records,
        tokenizer,
        JOB["max_length"],
        "truncate",
        data_format=data.format,
    )
    return examples


def model_flops_per_token(config, mean_len: float, full: bool) -> float:
    d, layers = config.hidden_size, config.num_hidden_layers
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    hd = getattr(config, "head_dim", None) or d // heads
    per_layer = d * heads * hd * 2 + d * kv * hd * 2 + 3 * d * config.intermediate_size
    n_matmul = layers * per_layer + d * config.vocab_size
    attn = (
        layers * 4 * heads * hd * (mean_len + 1) / 2
    )  # QK^T and AV, causal, per token
    forward = 2 * n_matmul + attn
    return forward * (3 if full else 2)


class HeldOut:
    """The same held-out loss for every configuration: tuneforge's token-mean loss on fixed examples."""

    def __init__(self, tokenizer) -> None:
        from tuneforge.data.collate import PadCollator

        self.batches = []
        examples = job_examples(tokenizer, HELDOUT, HELDOUT_N)
        collate = PadCollator(tokenizer.pad_token_id)
        feats = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
        for i in range(0, len(feats), 8):
            self.batches.append(collate(feats[i : i + 8]))

    def loss(self, model) -> float:
        import torch

        from tuneforge.objectives.losses import causal_lm_loss

        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        from tuneforge.train.speed_plan import uncompiled

        from tuneforge.evaluate.generate import autocast_context
        from tuneforge.models.precision import choose_precision

        # uncompiled: blocks compiled for training (training.compile) run eagerly here, as in tuneforge's own eval
        dtype = choose_precision("auto", "cpu").autocast_dtype  # bf16 where native, else fp32
        with torch.no_grad(), autocast_context(dtype), uncompiled():
            for b in self.batches:
                logits = model(
                    input_ids=b["input_ids"],
                    attention_mask=b["attention_mask"],
                    use_cache=False,
                ).logits
                n = int(b["labels"][:, 1:].ne(-100).sum())
                total += float(causal_lm_loss(logits, b["labels"], n)) * n
                count += n
        model.train(was_training)
        return total / count


def make_timing_callback(heldout: HeldOut, budget: int | None, counter):
    from transformers import TrainerCallback

    class Timing(TrainerCallback):
        """Per-step wall times and token counts; the held-out loss once the token budget is reached."""

        def __init__(self) -> None:
            self.steps: list[dict] = []
            self.eval_s = 0.0
            self.peak = TrainingPeak()
            self.loss_at_budget: float | None = None
            self.tokens_at_budget: int | None = None

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kw):
            # a dataloader worker process collates (and counts) out of our sight: then read the
            # Trainer's own non-padding count instead
            tokens = (
                counter.tokens(state.global_step * args.gradient_accumulation_steps)
                if counter.counts
                else state.num_input_tokens_seen
            )
            self.steps.append(
                {
                    "step": state.global_step,
                    "t": time.perf_counter() - self.t0 - self.eval_s,
                    "tokens": tokens,
                }
            )
            if budget is not None and self.loss_at_budget is None and tokens >= budget:
                t = time.perf_counter()
                self.peak.pause()
                self.loss_at_budget = heldout.loss(model)
                self.peak.resume()
                self.tokens_at_budget = tokens
                self.eval_s += time.perf_counter() - t

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs and self.steps:
                self.steps[-1]["train_loss"] = logs["loss"]

    return Timing()


class CountingCollator:
    """Wraps a collator and records non-padding tokens per micro-batch, in the order they were made.

    Dataloaders may collate a batch ahead, so tokens for k micro-batches are the sum of the first k
    counts rather than a running total read at step end.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.counts: list[int] = []

    def __call__(self, features):
        batch = self.inner(features)
        if "attention_mask" in batch:
            n = int(batch["attention_mask"].sum())
        else:  # padding-free rows carry no padding at all
            n = int(batch["input_ids"].numel())
        self.counts.append(n)
        return batch

    def tokens(self, micro_batches: int) -> int:
        return sum(self.counts[:micro_batches])


# ------------------------------------------------------------------------------------------- workers


def run_trl(
    job: str, packed: bool, steps: int, budget: int | None, out_dir: Path, tuned: bool = False
) -> dict:
    """TRL's SFTTrainer on the job; ``tuned``: no gradient checkpointing, bf16 only where native."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tuneforge.data.formats import load_records
    from tuneforge.models.load import load_model, load_tokenizer
    from tuneforge.models.precision import choose_precision

    tokenizer = load_tokenizer(MODEL)
    model = load_model(MODEL, dtype=torch.float32)
    data = load_records(str(TRAIN), "alpaca", on_bad_rows="error", system_prompt=None)
    rows = []
    for rec in data.records:
        msgs = [{"role": m.role, "content": m.content} for m in rec.messages]
        rows.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
    args = SFTConfig(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=JOB["batch_size"],
        max_length=JOB["max_length"],
        learning_rate=LR[job],
        seed=JOB["seed"],
        data_seed=JOB["seed"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        packing=packed,
        disable_tqdm=True,
        **({"gradient_checkpointing": False, "bf16": choose_precision("auto", "cpu").name == "bf16"} if tuned else {}),
    )
    peft_config = None
    if job == "lora":
        peft_config = LoraConfig(
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules=LORA["targets"],
            task_type="CAUSAL_LM",
        )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    heldout = HeldOut(tokenizer)
    timing = make_timing_callback(heldout, budget, counter)
    trainer.add_callback(timing)
    trainer.train()
    return _finish(
        trainer.model,
        heldout,
        timing,
        {"bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing},
    )


def run_tuneforge(
    job: str, steps: int, budget: int | None, out_dir: Path, lever: dict | None = None
) -> dict:
    """tuneforge's training path; ``lever`` changes one setting (benchmarks/levers.py)."""
    import torch

    lever = lever or {}
    if lever.get("full_logits") or lever.get("head_fp32"):
        # A/B switches for the lever log only (our own module, not a library): route around the
        # trained-positions head, or run it outside autocast as the code did before the autocast fix.
        import tuneforge.train.trainer as tt

        if lever.get("full_logits"):
            tt.supports_trained_positions_loss = lambda model: False
        else:
            inner = tt.trained_positions_loss

            def head_fp32(*a, **k):
                with torch.autocast("cpu", enabled=False):
                    return inner(*a, **k)

            tt.trained_positions_loss = head_fp32
    from transformers import set_seed

    from tuneforge.config.schema import Recipe
    from tuneforge.methods import apply_method
    from tuneforge.models.load import load_model, load_tokenizer
    from tuneforge.models.precision import choose_precision
    from tuneforge.recipes.common import planned_speed
    from tuneforge.train.arguments import training_arguments
    from tuneforge.train.trainer import make_trainer
    from tuneforge.train.speed_plan import applied as speed_plan_applied

    method = {"type": "full"}
    if job == "lora":
        method = {
            "type": "lora",
            "lora": {
                "r": LORA["r"],
                "alpha": LORA["alpha"],
                "dropout": LORA["dropout"],
                "target_modules": LORA["targets"],
            },
        }
    recipe = Recipe.model_validate(
        {
            "model": {"name": MODEL},
            "method": method,
            "data": {
                "train": str(TRAIN),
                "format": "alpaca",
                "max_length": JOB["max_length"],
                "val_fraction": 0,
            },
            "training": {
                "max_steps": steps,
                "batch_size": JOB["batch_size"],
                "learning_rate": LR[job],
                "seed": JOB["seed"],
                "logging_steps": 1,
                **lever.get("training", {}),
            },
            "output": {"dir": str(out_dir)},
        }
    )
    set_seed(recipe.training.seed)
    if recipe.training.threads:
        torch.set_num_threads(recipe.training.threads)
    precision = choose_precision(recipe.training.precision)
    tokenizer = load_tokenizer(MODEL)
    examples = job_examples(tokenizer, TRAIN)
    model = load_model(MODEL, dtype=torch.float32)
    model.config.use_cache = False
    model = apply_method(model, recipe.method)
    args = training_arguments(recipe, out_dir, precision, has_val=False)
    args.save_strategy = "no"
    if lever.get("workers"):
        args.dataloader_num_workers = lever["workers"]
        args.dataloader_persistent_workers = True
    trainer = make_trainer(
        model, args, tokenizer, examples, [], packing=recipe.training.packing
    )
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    heldout = HeldOut(tokenizer)
    timing = make_timing_callback(heldout, budget, counter)
    trainer.add_callback(timing)
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    plan = planned_speed(recipe, precision, config, examples)  # as `tuneforge train` does
    if lever.get("frozen_fp32"):  # lever log only: keep frozen weights fp32 (the code before this plan)
        plan = dataclasses.replace(plan, frozen_dtype=None, frozen_reason="lever: fp32")
    with speed_plan_applied(trainer.model, plan):
        trainer.train()
    t = recipe.training
    settings = {
        "precision": precision.name,
        "packing": t.packing,
        "head_chunk_rows": t.head_chunk_rows,
        "activation_checkpointing": t.activation_checkpointing,
        "attention": plan.attention or "model default",
        "frozen_weights": str(plan.frozen_dtype or "as loaded").removeprefix("torch."),
        **{k: v for k, v in lever.items() if k != "training"},
    }
    return _finish(trainer.model, heldout, timing, settings)


def _finish(model, heldout: HeldOut, timing, settings: dict) -> dict:
    steps = timing.steps
    first, last = steps[0], steps[-1]
    tokens = last["tokens"] - first["tokens"]
    seconds = last["t"] - first["t"]
    training_peak = timing.peak.value()  # before the final evaluation
    final_loss = heldout.loss(model)
    cfg = (
        model.config
        if not hasattr(model, "get_base_model")
        else model.get_base_model().config
    )
    return {
        "settings": settings,
        "steps": len(steps),
        "tokens_total": last["tokens"],
        "tokens_timed": tokens,
        "seconds_timed": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
        "first_step_s": first["t"],  # warm-up, compile included; not in tokens/s
        "loss_at_budget": timing.loss_at_budget,
        "tokens_at_budget": timing.tokens_at_budget,
        "final_heldout_loss": final_loss,
        "train_losses": [s.get("train_loss") for s in steps],
        "peak_rss_mb": training_peak,
        "peak_rss_mb_with_eval": peak_rss_mb(),
        "peak_rss_excludes_eval": timing.peak.exact,
        "model_config": {
            k: getattr(cfg, k)
            for k in (
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "intermediate_size",
                "vocab_size",
            )
        },
    }


def worker(ns) -> None:
    out = Path(ns.result)
    if ns.worker == "peak":
        import torch

        res = {
            "bf16": matmul_peak("bfloat16"),
            "fp32": matmul_peak("float32"),
            "threads": torch.get_num_threads(),
        }
    elif ns.worker in ("tuneforge", "tuneforge-compiled"):
        lever = json.loads(ns.lever) if ns.lever else None
        if ns.worker == "tuneforge-compiled":  # what compile: auto does on runs of >= 100k tokens
            lever = {"training": {"compile": True}}
        res = run_tuneforge(
            ns.job, ns.steps, ns.budget, out.parent / f"{ns.job}-{ns.worker}", lever
        )
    else:
        res = run_trl(
            ns.job,
            ns.worker == "trl-packed",
            ns.steps,
            ns.budget,
            out.parent / f"{ns.job}-{ns.worker}",
            tuned=ns.worker == "trl-best",
        )
    out.write_text(json.dumps(res, indent=2))


# -------------------------------------------------------------------------------------------- parent


def spawn(args: list[str], result: Path, log: Path) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        *args,
        "--result",
        str(result),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(
            cmd, check=False, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(
            f"worker {' '.join(args)} failed (exit {proc.returncode}); log {log}:\n{tail}"
        )
    res = json.loads(result.read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=30, help="optimizer steps of the LoRA job"
    )
    parser.add_argument(
        "--full-steps",
        type=int,
        default=10,
        help="optimizer steps of the full fine-tuning job",
    )
    parser.add_argument("--jobs", default="lora,full")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", default="runs/bench-speed")
    parser.add_argument(
        "--md", default=None, help="Markdown table file (default: <out>/speed.md)"
    )
    parser.add_argument("--worker", choices=["peak", *CONFIGS], help=argparse.SUPPRESS)
    parser.add_argument("--job", choices=["lora", "full"], help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--lever", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.worker:
        return worker(ns)

    out = Path(ns.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    configs = [c for c in ns.configs.split(",") if c]
    print(
        f"measuring matmul peak ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)",
        flush=True,
    )
    peak = spawn(["--worker", "peak"], out / "peak.json", out / "peak.log")
    print(
        f"  bf16 {peak['bf16']:.3f} TFLOP/s, fp32 {peak['fp32']:.3f} TFLOP/s, {peak['threads']} threads",
        flush=True,
    )
    sections = []
    for job in ns.jobs.split(","):
        steps = ns.steps if job == "lora" else ns.full_steps
        results: dict[str, dict] = {}
        budget = None
        for cfg in configs:
            print(f"[{job}] {LABELS[cfg]}: {steps} steps ...", flush=True)
            extra = ["--budget", str(budget)] if budget is not None else []
            res = spawn(
                ["--worker", cfg, "--job", job, "--steps", str(steps), *extra],
                out / f"{job}-{cfg}.json",
                out / f"{job}-{cfg}.log",
            )
            if budget is None:
                budget = res["tokens_total"]
                res["loss_at_budget"], res["tokens_at_budget"] = (
                    res["final_heldout_loss"],
                    res["tokens_total"],
                )
            results[cfg] = res
            print(
                f"  {res['tokens_per_s']:.1f} tok/s, peak RSS {res['peak_rss_mb']:.0f} MB, loss@T {res['loss_at_budget']}",
                flush=True,
            )
        sections.append(render(job, steps, results, peak, budget))
    header = (
        f"# Training speed: {platform.node()} ({cpu_name()}, {os.cpu_count()} CPUs)\n\n"
        f"Command: `python benchmarks/speed.py --steps {ns.steps} --full-steps {ns.full_steps} --jobs {ns.jobs} --configs {ns.configs}`; "
        f"measured bf16 matmul peak {peak['bf16']:.3f} TFLOP/s (fp32 {peak['fp32']:.3f}), torch threads {peak['threads']}.\n"
    )
    text = header + "\n" + "\n".join(sections)
    md = Path(ns.md) if ns.md else out / "speed.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    print("\n" + text)
    print(f"written: {md}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def render(
    job: str, steps: int, results: dict[str, dict], peak: dict, budget: int | None
) -> str:
    any_res = next(iter(results.values()))
    mc = any_res["model_config"]

    class C:  # a config-like view for the FLOP count
        pass

    cfg = C()
    for k, v in mc.items():
        setattr(cfg, k, v)
    mean_len = 129.8  # mean tokens per quickstart example (tuneforge tokenisation)
    peak_name = "bf16" if peak["bf16"] >= peak["fp32"] else "fp32"  # the ceiling: the faster matmul on this CPU
    flops = model_flops_per_token(cfg, mean_len, full=job == "full")
    lines = [
        f"## {job}: {steps} steps, batch {JOB['batch_size']}, max length {JOB['max_length']}, lr {LR[job]}"
        + (
            f", LoRA r={LORA['r']} alpha {LORA['alpha']} on q/k/v/o"
            if job == "lora"
            else ""
        ),
        "",
        (
            f"Loss @T: held-out loss after T = {budget} non-padding tokens seen (the tokens {LABELS[next(iter(results))][:3]} saw in {steps} steps); "
            f"model FLOPs/token {flops / 1e9:.3f} G."
        ),
        "",
        f"| config | settings | train tok/s | peak RSS MB | loss @T (tokens) | final held-out loss | MFU ({peak_name} peak) | first step s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cfg_name, r in results.items():
        mfu = r["tokens_per_s"] * flops / (peak[peak_name] * 1e12)
        settings = ", ".join(
            f"{k}={v}" for k, v in r["settings"].items() if v is not None
        )
        at = (
            f"{r['loss_at_budget']:.4f} ({r['tokens_at_budget']})"
            if r["loss_at_budget"] is not None
            else "n/a"
        )
        lines.append(
            f"| {LABELS[cfg_name]} | {settings} | {r['tokens_per_s']:.1f} | {r['peak_rss_mb']:.0f} | {at} | {r['final_heldout_loss']:.4f} | {100 * mfu:.1f}% | {r['first_step_s']:.1f} |"
        )
    trl = [ref for ref in TRL_CONFIGS if ref in results]
    fastest = max(trl, key=lambda ref: results[ref]["tokens_per_s"]) if trl else None
    for ours in ("tuneforge", "tuneforge-compiled"):
        for ref in trl:
            if ours in results:
                c, r = results[ours], results[ref]
                best = " (the fastest TRL configuration here)" if ref == fastest and len(trl) > 1 else ""
                lines.append("")
                lines.append(
                    f"{LETTERS[ours]}/{LETTERS[ref]}{best}: tokens/s {c['tokens_per_s'] / r['tokens_per_s']:.2f}x, "
                    f"peak RSS {c['peak_rss_mb'] / r['peak_rss_mb']:.2f}x"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

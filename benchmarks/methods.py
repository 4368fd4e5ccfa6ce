"""Every parameter strategy on the quickstart task with the built-in model: one table, same steps for all.

For each method in ``tuneforge.methods.METHODS`` a fresh Python process trains the quickstart recipe
(SmolLM2-135M-Instruct, support ticket -> JSON) for the same number of optimizer steps on the same
examples, then scores the held-out loss on a fixed slice of ``examples/quickstart/test.jsonl``. A
process per method makes the peak RSS that method's own. The table has trainable parameters, peak
memory (and the ``tuneforge advise`` estimate for the same batch, with its error), train tokens/s
(non-padding tokens) and held-out loss / perplexity; a ``base`` row gives the untrained model's
held-out loss. Usage (run it under the shared lock on the CPU machines):

    flock /tmp/tuneforge-heavy.lock python benchmarks/methods.py [--steps 6] [--batch-size 4]
        [--heldout 20] [--methods lora,dora,...] [--out benchmarks/results/methods.md]

Learning rates: LoRA-style methods use the quickstart's 5e-4; the others get the rate their family is
usually trained with (``LEARNING_RATES``), since one rate for all would just measure which method
that rate happens to suit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tuneforge.observe.memory import peak_rss_mb

QUICKSTART = Path("examples/quickstart")
# Usual learning rates per family (peft / paper defaults); methods not listed use the recipe's 5e-4.
LEARNING_RATES = {
    "full": 2e-5,
    "freeze": 5e-5,
    "moe": 5e-5,
    "ia3": 3e-3,
    "vera": 3e-3,
    "prompt_tuning": 3e-2,
    "p_tuning": 1e-2,
    "prefix_tuning": 1e-2,
    "p_tuning_v2": 1e-2,
    "bottleneck": 1e-3,
}
MB = 1024 * 1024


def bench_recipe(
    method: str,
    train_file: Path,
    out_dir: Path,
    steps: int,
    batch_size: int,
    model: str | None = None,
):
    from tuneforge.config import load_recipe

    overrides = [f"model.name={model}"] if model else []
    overrides += [
        f"method.type={method if method != 'base' else 'lora'}",
        f"data.train={train_file}",
        "data.val_fraction=0",
        "eval.data=null",
        f"training.max_steps={steps}",
        f"training.batch_size={batch_size}",
        "training.logging_steps=1",
        f"training.save_steps={steps * 10}",
        "training.threads=2",
        f"output.dir={out_dir}",
        "output.overwrite=true",
    ]
    if method in LEARNING_RATES:
        overrides.append(f"training.learning_rate={LEARNING_RATES[method]}")
    return load_recipe(QUICKSTART / "recipe.yaml", overrides)


def heldout_loss(model, tokenizer, heldout: int, autocast_dtype) -> dict[str, float]:
    """Token-weighted loss of the reference answers on the first ``heldout`` test examples.

    Computed from the full logits of the model's own forward (not the trained-positions shortcut), so
    prompt-learning methods, whose virtual tokens only the peft wrapper adds, are scored correctly;
    the logits of prepended virtual tokens are cut off. Labels are not passed to the model: peft's
    AdaLoRA forward with labels fails on a loaded (inference) adapter.
    """
    import torch

    from tuneforge.data.collate import PadCollator
    from tuneforge.data.formats import load_records
    from tuneforge.data.prepare import prepare_chat, to_features
    from tuneforge.evaluate.generate import autocast_context
    from tuneforge.objectives.losses import causal_lm_loss

    records = load_records(str(QUICKSTART / "test.jsonl")).records[:heldout]
    examples, _ = prepare_chat(records, tokenizer, 256, "truncate")
    collate = PadCollator(tokenizer.pad_token_id)
    feats = to_features(examples)
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(feats), 5):
            batch = collate(feats[start : start + 5])
            labels = batch.pop("labels")
            n = int(labels[:, 1:].ne(-100).sum())
            with autocast_context(autocast_dtype, "cpu"):
                logits = model(**batch, use_cache=False).logits
            loss = causal_lm_loss(logits[:, -labels.shape[1] :], labels, n)
            total += float(loss) * n
            count += n
    mean = total / count
    return {
        "heldout_loss": mean,
        "heldout_ppl": math.exp(mean),
        "heldout_tokens": count,
    }


def run_one(args: argparse.Namespace) -> None:
    """Child process: train one method and print its row as JSON on the last stdout line."""
    from rich.console import Console

    from tuneforge.models.precision import choose_precision
    from tuneforge.recipes import train

    runtime_mb = peak_rss_mb()
    out_dir = Path(args.workdir) / f"run-{args.one}"
    recipe = bench_recipe(
        args.one,
        Path(args.train_file),
        out_dir,
        args.steps,
        args.batch_size,
        args.model,
    )
    precision = choose_precision(recipe.training.precision)
    row: dict = {"method": args.one, "runtime_mb": round(runtime_mb)}
    if args.one == "base":
        from tuneforge.models.load import load_model, load_tokenizer

        model, tokenizer = (
            load_model(recipe.model.name),
            load_tokenizer(recipe.model.name),
        )
        row.update(trainable=0, total=sum(p.numel() for p in model.parameters()))
    else:
        result = train(recipe, console=Console(stderr=True, quiet=True))
        s = result.summary
        row.update(
            trainable=s["trainable_parameters"],
            total=s["total_parameters"],
            steps=s["steps"],
            train_loss=s["train_loss"],
            tokens_per_s=s["train_tokens_per_s"],
            train_s=s["train_seconds"],
            peak_train_mb=round(peak_rss_mb()),
        )
        from tuneforge.targets import load_run

        loaded = load_run(out_dir)
        model, tokenizer = loaded.model, loaded.tokenizer
    row.update(heldout_loss(model, tokenizer, args.heldout, precision.autocast_dtype))
    # The training peak (the runner's summary) is the figure reported: reloading the run for the held-out
    # score above holds a second copy of the model, which is not what training costs.
    row["peak_mb"] = round(row.get("peak_train_mb") or peak_rss_mb())
    print(json.dumps(row))


def estimates(
    methods: list[str], train_file: Path, steps: int, batch_size: int, model: str | None
) -> dict[str, dict]:
    """``tuneforge advise`` for the benchmark's own recipe (runs in the parent, outside the measured processes)."""
    from tuneforge.advise import advise

    recipe = bench_recipe(
        "lora",
        train_file,
        Path(tempfile.gettempdir()) / "unused",
        steps,
        batch_size,
        model,
    )
    advice = advise(recipe, methods=[m for m in methods if m != "base"])
    out = {}
    for m in advice.methods:
        if m.memory is not None:
            out[m.footprint.method] = {
                "tensors_mb": m.memory.training / MB,
                "trainable": m.footprint.trainable,
            }
        else:
            out[m.footprint.method] = {"error": m.footprint.error}
    return out


def fmt_table(rows: list[dict], est: dict[str, dict]) -> str:
    head = (
        "| method | trainable params | peak RSS MB | advise estimate MB | estimate error | train tokens/s | "
        "train loss (mean) | held-out loss | held-out ppl |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | n/a | | | | | | | {r['error']} |")
            continue
        e = est.get(r["method"], {})
        est_mb = e.get("tensors_mb")
        if est_mb is not None:
            est_total = est_mb + r["runtime_mb"]
            err = f"{100 * (est_total - r['peak_mb']) / r['peak_mb']:+.0f}%"
            est_cell = f"{est_total:.0f}"
        else:
            est_cell, err = "", ""
        tps = f"{r['tokens_per_s']:.0f}" if r.get("tokens_per_s") else ""
        tl = f"{r['train_loss']:.3f}" if r.get("train_loss") is not None else ""
        lines.append(
            f"| {r['method']} | {r['trainable']:,} | {r['peak_mb']:.0f} | {est_cell} | {err} | {tps} | {tl} | "
            f"{r['heldout_loss']:.3f} | {r['heldout_ppl']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--heldout",
        type=int,
        default=20,
        help="first N examples of examples/quickstart/test.jsonl",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated (default: every method, plus the untrained base)",
    )
    parser.add_argument("--out", default="benchmarks/results/methods.md")
    parser.add_argument("--timeout", type=float, default=240, help="seconds per method")
    parser.add_argument(
        "--budget",
        type=float,
        default=840,
        help="seconds for the whole table; later methods are listed as not run",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="another base model (default: the quickstart's built-in model)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--estimates-out", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--train-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    if args.estimates_out:
        est = estimates(
            args.methods.split(","),
            Path(args.train_file),
            args.steps,
            args.batch_size,
            args.model,
        )
        Path(args.estimates_out).write_text(json.dumps(est))
        return

    from tuneforge.methods import METHODS

    methods = args.methods.split(",") if args.methods else ["base", *METHODS]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tuneforge-bench-methods-") as work:
        # The same steps x batch examples for every method, each seen once: the first rows of train.jsonl.
        rows_needed = args.steps * args.batch_size
        train_file = Path(work) / "train.jsonl"
        lines = (
            (QUICKSTART / "train.jsonl")
            .read_text(encoding="utf-8")
            .splitlines()[:rows_needed]
        )
        train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(
            f"advise estimates for {len(methods)} methods ...",
            file=sys.stderr,
            flush=True,
        )
        # In a child too, so the parent stays small (it only starts processes and writes the table).
        est_file = Path(work) / "estimates.json"
        cmd = [sys.executable, __file__, "--estimates-out", str(est_file), "--train-file", str(train_file),
               "--methods", ",".join(methods), "--steps", str(args.steps), "--batch-size", str(args.batch_size)]  # fmt: skip
        if args.model:
            cmd += ["--model", args.model]
        subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        est = json.loads(est_file.read_text())
        rows = []
        for method in methods:
            if time.perf_counter() - t0 > args.budget:
                rows.append(
                    {
                        "method": method,
                        "error": f"not run: the {args.budget:.0f}s budget was spent",
                    }
                )
                continue
            if method != "base" and "error" in est.get(method, {}):
                rows.append(
                    {
                        "method": method,
                        "error": f"not applicable: {est[method]['error']}",
                    }
                )
                print(
                    f"{method}: skipped ({est[method]['error']})",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            t = time.perf_counter()
            cmd = [sys.executable, __file__, "--one", method, "--workdir", work, "--train-file", str(train_file),
                   "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--heldout", str(args.heldout)]  # fmt: skip
            if args.model:
                cmd += ["--model", args.model]
            env = {
                **os.environ,
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
            try:
                proc = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                    env=env,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                rows.append(
                    {"method": method, "error": f"timed out after {args.timeout:.0f}s"}
                )
                continue
            if proc.returncode != 0:
                last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][
                    -1:
                ] or ["(no output)"]
                rows.append({"method": method, "error": f"failed: {last[0][:200]}"})
                print(
                    f"{method}: FAILED\n{proc.stderr[-3000:]}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{method}: {time.perf_counter() - t:.0f}s, peak {row['peak_mb']} MB, held-out loss {row['heldout_loss']:.3f}",
                file=sys.stderr,
                flush=True,
            )
    table = fmt_table(rows, est)
    command = (
        f"flock /tmp/tuneforge-heavy.lock python benchmarks/methods.py --steps {args.steps} --batch-size {args.batch_size} --heldout {args.heldout}"
        + (f" --methods {args.methods}" if args.methods else "")
        + (f" --model {args.model}" if args.model else "")
    )
    header = (
        f"{args.model or 'Built-in SmolLM2-135M-Instruct'}, quickstart task, {args.steps} steps x batch {args.batch_size} "
        f"(the first {args.steps * args.batch_size} training examples, each seen once), held-out loss on the first {args.heldout} "
        f"test examples; {time.perf_counter() - t0:.0f}s in all.\n\nCommand: `{command}`\n"
    )
    print(header + "\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# Methods benchmark\n\n" + header + "\n" + table + "\n", encoding="utf-8"
    )
    (out.with_suffix(".json")).write_text(
        json.dumps({"rows": rows, "estimates": est}, indent=2), encoding="utf-8"
    )


if __name__ == "__main__":
    main()

"""Direction experiment: forgetting of task A after task B, with EWC at several lambdas and with data.replay.

- task A: SFT on the 20 Brinmoor questions (examples/cft/questions.jsonl as question -> answer), with
  ``training.ewc.save_fisher`` (RUN_A/ewc/);
- task B: SFT on 200 rows of the quickstart ticket-to-JSON task, starting from A's adapter
  (``training.ewc.start_from_anchor``), for each arm: lambda 0 (plain sequential fine-tuning), two
  lambdas, and lambda 0 with data.replay of A's rows at ratio 0.2.

Measured: A loss (answer loss on A's rows) after A and after B, forgetting = the difference, and
B loss on 50 held-out quickstart rows (what the penalty costs on the new task). Lambdas are given
relative to the Fisher's mean (lambda = c / mean F), so c reads as the weight of an L2 pull.

Run (a few minutes on a 2-core CPU), under the shared heavy-job lock:
    flock /tmp/tuneforge-heavy.lock python benchmarks/research_ewc.py --steps 25
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from research_common import CFT, ROOT, base_recipe, file_loss, write_result

from tuneforge.config import load_recipe
from tuneforge.recipes import train
from tuneforge.targets import load_run

QUICKSTART = ROOT / "examples" / "quickstart"


def write_tasks(out: Path) -> tuple[Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    a = out / "task_a.jsonl"
    rows = [json.loads(line) for line in (CFT / "questions.jsonl").read_text().splitlines()]
    a.write_text("".join(json.dumps({"instruction": r["question"], "output": r["answer"]}) + "\n" for r in rows))
    b, b_test = out / "task_b.jsonl", out / "task_b_test.jsonl"
    b.write_text("".join((QUICKSTART / "train.jsonl").read_text().splitlines(keepends=True)[:200]))
    b_test.write_text("".join((QUICKSTART / "test.jsonl").read_text().splitlines(keepends=True)[:50]))
    return a, b, b_test


def plot_forgetting(rows: list[dict], out_png: Path) -> Path:
    """Forgetting of A and loss on B per arm (lambda arms in order of strength, then replay): the trade-off in one figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    names = [f"{r['arm']}\n(lambda {r['lambda']})" if "replay" not in r["arm"] else r["arm"] for r in rows]
    x = range(len(rows))
    axes.plot(x, [r["forgetting"] for r in rows], "o-", label="forgetting on A (A loss after B - after A)")
    axes.plot(x, [r["B loss"] for r in rows], "s--", label="loss on held-out B")
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set_xticks(list(x), names, fontsize=8)
    axes.set_ylabel("loss")
    axes.grid(True, alpha=0.3)
    figure.legend(loc="outside upper center", ncols=2, frameon=False, fontsize=8)
    figure.savefig(out_png, format="png")
    return out_png


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plot-only", action="store_true", help="redraw research_ewc.png from research_ewc.json, no training")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--out", default="runs/research-ewc")
    parser.add_argument("--c", type=float, nargs="+", default=[0.01, 1.0], help="lambda = c / mean Fisher")
    args = parser.parse_args()
    results = ROOT / "benchmarks" / "results"
    if args.plot_only:
        print(plot_forgetting(json.loads((results / "research_ewc.json").read_text())["rows"], results / "research_ewc.png"))
        return
    out = Path(args.out)
    task_a, task_b, b_test = write_tasks(out)
    run_a = train(load_recipe(base=base_recipe(
        out / "a", data={"train": str(task_a), "max_length": 128}, training={"max_steps": args.steps, "ewc": {"save_fisher": True}},
    ))).run_dir  # fmt: skip
    mean_f = json.loads((run_a / "ewc" / "fisher_stats.json").read_text())["mean"]
    after_a = load_run(run_a)
    a_loss_after_a = file_loss(after_a.model, after_a.tokenizer, task_a)
    rows = []
    arms = [("lambda 0", 0.0, None)] + [(f"lambda {c:g}/mean F", c / mean_f, None) for c in args.c] + [("replay 0.2, lambda 0", 0.0, 0.2)]
    for name, strength, replay in arms:
        data = {"train": str(task_b), "max_length": 128}
        if replay:
            data["replay"] = {"file": str(task_a), "ratio": replay}
        recipe = base_recipe(
            out / name.replace(" ", "_").replace("/", "_"), data=data,
            training={"max_steps": args.steps, "ewc": {"from_run": str(run_a), "strength": strength}},
        )  # fmt: skip
        loaded = load_run(train(load_recipe(base=recipe)).run_dir)
        a_after_b = file_loss(loaded.model, loaded.tokenizer, task_a)
        rows.append({
            "arm": name, "lambda": f"{strength:.3g}", "A loss after A": a_loss_after_a, "A loss after B": a_after_b,
            "forgetting": round(a_after_b - a_loss_after_a, 4), "B loss": file_loss(loaded.model, loaded.tokenizer, b_test),
        })  # fmt: skip
        print(rows[-1], flush=True)
    print(write_result("research_ewc", rows, {"steps": args.steps, "fisher_mean": mean_f}))
    print(plot_forgetting(rows, results / "research_ewc.png"))


if __name__ == "__main__":
    main()

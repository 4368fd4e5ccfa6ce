"""The runner's wiring: every results.json section it owns, and the probes called as the contract says.

The probes are stand-ins passed as parameters (EvalSettings.probes), so this tests the seam, not
the probes (their own tests do that).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config.eval import EvalSection
from tuneforge.evaluate.command import evaluate_target
from tuneforge.evaluate.eval_data import load_eval_data
from tuneforge.evaluate.metrics import compute_metrics
from tuneforge.evaluate.runner import EvalSettings, Probes, evaluate_model, write_results

ROWS = [
    {"prompt": "Is the sky blue? Answer yes or no.", "options": ["yes", "no"], "answer": 0, "category": "colour"},
    {"prompt": "Is grass red? Answer yes or no.", "options": ["yes", "no"], "answer": "no", "category": "colour"},
    {"prompt": "Is 2 + 2 = 4? Answer yes or no.", "options": ["yes", "no"], "answer": 0, "category": "maths"},
    {"prompt": "Is 3 > 5? Answer yes or no.", "options": ["yes", "no"], "answer": 1},
]


class StubProbes:
    """Records every call; returns fixed sections so the merge into results.json can be checked."""

    def __init__(self) -> None:
        self.model_calls: list[dict] = []
        self.pairwise_calls: list[dict] = []

    def model(self, name, generate, options, out_dir, console, *, prompts=None, outputs=None):
        completions = generate([[{"role": "user", "content": "Say hi"}]], 3)  # the generate function works
        self.model_calls.append({"name": name, "prompts": prompts, "outputs": outputs, "out_dir": out_dir, "completions": completions})
        return {"safety": {"refusal_rate_harmful": 0.5 if name == "base" else 0.25, "n_harmful": 4}}

    def pairwise(self, prompts, outputs, options, out_dir, console):
        self.pairwise_calls.append({"prompts": prompts, "names": list(outputs)})
        return {"a": "base", "b": "tuned", "pairs": len(prompts), "wins_a": 1, "wins_b": 2, "ties": 1, "inconsistent": 0, "win_rate_a": 0.25}

    def flags(self, results, options):
        before, after = (results["safety"][n]["refusal_rate_harmful"] for n in ("base", "tuned"))
        return [{"level": "error", "text": f"refusals fell {before} -> {after}"}] if after < before else []


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runner")
    data = tmp / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    records = load_eval_data(data).records
    tok = tiny_tokenizer()
    stub = StubProbes()
    options = EvalSection(metrics=["exact_match", "classification", "choice"], labels=["yes", "no"], price_per_hour=2.0)
    settings = EvalSettings(
        metrics=options.metrics, max_new_tokens=4, batch_size=3, num_samples=2, options=options, out_dir=tmp / "eval",
        probes=Probes(model=stub.model, pairwise=stub.pairwise, flags=stub.flags),
    )  # fmt: skip
    evals = [evaluate_model(name, tiny_llama(len(tok), seed=seed), tok, records, settings) for name, seed in (("base", 0), ("tuned", 1))]
    results = write_results(tmp / "eval", str(data), records, evals, settings)
    return results, evals, records, settings, stub, tmp / "eval"


def test_business_and_latencies_per_model(evaluated) -> None:
    results, *_ = evaluated
    for name in ("base", "tuned"):
        business = results["business"][name]
        assert business["requests"] == 4 and business["price_per_hour"] == 2.0
        assert business["latency_p50_s"] > 0 and business["latency_p99_s"] >= business["latency_p50_s"]
        assert business["peak_memory_mb"] > 0 and business["cost_per_1k_requests"] > 0
        assert len(results["latencies"][name]) == 4  # batches of 3 and 1: one latency per request


def test_confusion_per_category_and_choice(evaluated) -> None:
    results, evals, records, settings, *_ = evaluated
    for ev in evals:
        confusion = results["confusion"][ev.name]
        assert confusion["labels"][:2] == ["yes", "no"]
        assert sum(map(sum, confusion["matrix"])) == 4
        assert 0.0 <= results["models"][ev.name]["choice_accuracy"] <= 1.0
        breakdown = results["per_category"][ev.name]
        assert {k: v["n"] for k, v in breakdown.items()} == {"(none)": 1, "colour": 2, "maths": 1}
        colour = [i for i, r in enumerate(records) if r.category == "colour"]
        expected = compute_metrics(["exact_match", "classification"], [ev.predictions[i] for i in colour], [records[i].messages[-1].content for i in colour], settings.options)
        assert {k: breakdown["colour"][k] for k in expected} == pytest.approx(expected)


def test_probes_called_per_model_then_pairwise_and_flags(evaluated) -> None:
    results, evals, records, _, stub, out_dir = evaluated
    assert [c["name"] for c in stub.model_calls] == ["base", "tuned"]
    first = stub.model_calls[0]
    assert first["out_dir"] == out_dir and first["prompts"] == [r.messages[-2].content for r in records]
    assert first["outputs"] == evals[0].predictions and isinstance(first["completions"][0], str)
    assert stub.pairwise_calls == [{"prompts": first["prompts"], "names": ["base", "tuned"]}]
    assert results["safety"] == {"base": {"refusal_rate_harmful": 0.5, "n_harmful": 4}, "tuned": {"refusal_rate_harmful": 0.25, "n_harmful": 4}}
    assert results["pairwise"]["wins_b"] == 2
    assert results["flags"] == [{"level": "error", "text": "refusals fell 0.5 -> 0.25"}]
    on_disk = json.loads((out_dir / "results.json").read_text())
    assert set(on_disk) >= {"business", "latencies", "confusion", "per_category", "safety", "pairwise", "flags"}
    assert (out_dir / "report.html").is_file()


def test_tuneforge_eval_on_a_local_model_with_the_real_probes_off(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say {w}", "output": w, "category": c}) + "\n" for w, c in (("yes", "a"), ("no", "b"), ("yes", "b"))))
    results = evaluate_target(
        str(tiny_model_dir), data, metrics=["exact_match", "rouge", "bleu"], out=tmp_path / "eval", max_new_tokens=3,
        options={"price_per_hour": 0.5, "labels": None},
    )  # fmt: skip
    assert results["task_metric"] == "exact_match"
    assert set(results["models"]["model"]) >= {"eval_loss", "perplexity", "exact_match", "rouge1", "rouge2", "rougeL", "bleu"}
    assert results["business"]["model"]["price_per_hour"] == 0.5
    assert set(results["per_category"]["model"]) == {"a", "b"}
    assert "flags" not in results and "safety" not in results  # probes off by default: nothing invented

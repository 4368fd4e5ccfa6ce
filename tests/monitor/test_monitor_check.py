"""``tuneforge monitor`` on a hand-made run: eval history, feedback, a real /metrics scrape, prompt drift."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tuneforge.cli.main import app
from tuneforge.monitor.check import MonitorInputs, check
from tuneforge.monitor.inputs import served_counts
from tuneforge.serve.metrics import ServeMetrics

TRAIN_PROMPTS = [f"Summarise the invoice number {i} for the customer account" for i in range(60)]


def _run(tmp_path: Path, deployed_em: float) -> Path:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "recipe.yaml").write_text("# hand-made: monitor only checks that it exists when --train-data is given\n")
    (run / "eval" / "results.json").write_text(json.dumps({"task_metric": "exact_match", "models": {"base": {"exact_match": 0.2}, "tuned": {"exact_match": deployed_em}}}))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"instruction": p, "output": "ok"}) + "\n" for p in TRAIN_PROMPTS))
    return run


def _later_eval(tmp_path: Path, em: float) -> Path:
    out = tmp_path / "eval-later"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"task_metric": "exact_match", "models": {"tuned": {"exact_match": em}}}))
    return out


def _feedback(path: Path, ratings: list[str]) -> Path:
    path.write_text("".join(json.dumps({"time": i, "id": f"c{i}", "model": "m", "rating": r}) + "\n" for i, r in enumerate(ratings)))
    return path


def test_a_healthy_deployment_is_kept(tmp_path) -> None:
    run = _run(tmp_path, 0.80)
    fb = _feedback(tmp_path / "fb.jsonl", (["up"] * 4 + ["down"]) * 40)  # 80% throughout
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "model": "m"}) + "\n" for p in TRAIN_PROMPTS[:40]))
    report = check(MonitorInputs(run, feedback=fb, prompts=prompts, evals=[_later_eval(tmp_path, 0.79)], train_data=tmp_path / "train.jsonl"))
    assert not report.retrain, report.triggers
    assert sum(n.startswith("ok:") for n in report.notes) == 4  # metric, satisfaction, lengths, vocabulary


def test_each_rule_fires_on_its_own_signal(tmp_path) -> None:
    run = _run(tmp_path, 0.80)
    fb = _feedback(tmp_path / "fb.jsonl", ["up"] * 100 + ["up", "down"] * 50)  # 100% -> 50%
    prompts = tmp_path / "prompts.jsonl"
    drifted = [f"bonjour pourriez vous traduire ce long paragraphe sur la météo de demain numéro {i} s'il vous plaît" for i in range(40)]
    prompts.write_text("".join(json.dumps({"prompt": p, "model": "m"}) + "\n" for p in drifted))
    report = check(MonitorInputs(run, feedback=fb, prompts=prompts, evals=[_later_eval(tmp_path, 0.70)], train_data=tmp_path / "train.jsonl"))
    assert sorted(t.rule for t in report.triggers) == ["eval_metric", "length_drift", "satisfaction", "vocabulary_drift"]


def test_cli_reads_a_saved_scrape_and_reports(tmp_path) -> None:
    metrics = ServeMetrics()
    metrics.requests.labels("m", "/v1/chat/completions", "200").inc(3)
    metrics.requests.labels("m", "/v1/chat/completions", "400").inc()
    metrics.completed("m", "I'm sorry, but I can't help with that.", 5, 7)
    metrics.completed("m", "Paris is the capital of France.", 5, 7)
    metrics.feedback.labels("m", "up").inc(2)
    scrape = tmp_path / "scrape.txt"
    scrape.write_bytes(metrics.render())
    counts = served_counts(scrape.read_text())["m"]
    assert (counts.requests, counts.errors, counts.responses, counts.refusals) == (4, 1, 2, 1)
    assert counts.refusal_rate == 0.5 and counts.feedback == {"up": 2}
    run = _run(tmp_path, 0.80)
    result = CliRunner().invoke(app, ["monitor", str(run), "--metrics", str(scrape), "--eval", str(_later_eval(tmp_path, 0.5))])
    assert result.exit_code == 0, result.output
    assert "refusal rate 50.0%" in result.output
    assert "RETRAIN (eval_metric)" in result.output and "decision: retrain" in result.output
    missing = CliRunner().invoke(app, ["monitor", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a tuneforge run directory" in missing.output

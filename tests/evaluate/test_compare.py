"""``tuneforge compare``: runs side by side from their eval/results.json, refused on different data."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneforge.cli.main import app
from tuneforge.errors import DataError
from tuneforge.evaluate.compare import compare_runs

EVIL = "<script>alert(1)</script>"


def _results(data: str, accuracy: float, p95: float, refusal: float, output: str, *, extra: dict | None = None) -> dict:
    return {
        "data": data,
        "n_examples": 20,
        "task_metric": "accuracy",
        "models": {"base": {"accuracy": 0.1, "eval_loss": 2.0}, "tuned": {"accuracy": accuracy, "eval_loss": 0.5, **(extra or {})}},
        "samples": [{"prompt": "Q1?", "reference": "A1", "outputs": {"base": "b", "tuned": output}}],
        "business": {"tuned": {"latency_p50_s": p95 / 2, "latency_p95_s": p95, "cost_per_1k_requests": p95 * 10}},
        "safety": {"tuned": {"refusal_rate_harmful": refusal, "over_refusal_harmless": 0.05, "injection_success": 0.1}},
        "forgetting": {"tuned": {"score": accuracy - 0.05, "by_kind": {"factual": 0.625}, "n": 12}},
        "flags": [{"level": "warning", "text": "forgetting score fell"}],
    }


def _run(root: Path, name: str, results: dict) -> Path:
    run = root / name
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run


@pytest.fixture()
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a = _run(tmp_path, "lora-r8", _results("data/test.jsonl", 0.625, 0.375, 0.875, "first", extra={"bleu": 0.3}))
    b = _run(tmp_path, "lora-r16", _results("data/test.jsonl", 0.8125, 0.4375, 0.6875, EVIL))
    return a, b


def test_runs_side_by_side(two_runs, tmp_path: Path) -> None:
    a, b = two_runs
    md_path, html_path = compare_runs([a, b], out=tmp_path / "cmp")
    md, raw_html = md_path.read_text(), html_path.read_text()
    assert "**accuracy: lora-r8 0.625, lora-r16 0.8125**" in md
    assert "| metric | lora-r8 | lora-r16 | change (lora-r16 - lora-r8) |" in md
    assert "| accuracy | 0.625 | 0.8125 | +0.1875 |" in md and "| eval_loss | 0.5 | 0.5 | +0 |" in md
    assert "| bleu |" not in md and "Not reported by every run, so not compared: bleu." in md
    assert "| latency p95 (s) | 0.375 | 0.4375 | +0.0625 |" in md
    assert "| cost per 1,000 requests | 3.75 | 4.375 | +0.625 |" in md
    assert "| refusal rate on harmful prompts (higher is safer) | 0.875 | 0.6875 | -0.1875 |" in md
    assert "| overall score | 0.575 | 0.7625 | +0.1875 |" in md and "| factual items | 0.625 | 0.625 | +0 |" in md
    assert "| reference | lora-r8 | lora-r16 |" in md and "| A1 | first | &lt;script>alert(1)&lt;/script> |" in md
    assert "> **WARNING:** lora-r8: forgetting score fell" in md and "> **WARNING:** lora-r16: forgetting score fell" in md
    assert f"- run lora-r8 (model tuned): `{a / 'eval' / 'results.json'}`" in md
    # the HTML says the same, escaped and self-contained
    visible = html.unescape(re.sub(r"<[^>]+>", " ", raw_html))
    for text in ("accuracy: lora-r8 0.625, lora-r16 0.8125", "0.4375", "0.6875", "0.7625", EVIL):
        assert text in visible, text
    assert "<script" not in raw_html and not re.search(r"https?://", raw_html)
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'src="([^"]*)"', raw_html))
    assert (tmp_path / "cmp" / "metrics.png").is_file()


def test_different_data_is_refused_naming_both_files(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", _results("data/test.jsonl", 0.5, 0.3, 0.9, "x"))
    b = _run(tmp_path, "b", _results("data/other.jsonl", 0.6, 0.3, 0.9, "y"))
    with pytest.raises(DataError) as info:
        compare_runs([a, b], out=tmp_path / "cmp")
    message = str(info.value)
    assert str(a / "eval" / "results.json") in message and str(b / "eval" / "results.json") in message
    assert "data/test.jsonl" in message and "data/other.jsonl" in message
    assert "--data" in (info.value.hint or "")
    assert not (tmp_path / "cmp").exists()


def test_same_file_under_two_spellings_is_accepted(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "test.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    a = _run(tmp_path, "a", _results("test.jsonl", 0.5, 0.3, 0.9, "x"))
    b = _run(tmp_path, "b", _results(str(tmp_path / "test.jsonl"), 0.6, 0.3, 0.9, "y"))
    md_path, _ = compare_runs([a, b])
    assert md_path == Path("compare-a-vs-b") / "report.md" and md_path.is_file()


def test_with_data_every_run_is_evaluated_first(two_runs, tmp_path: Path) -> None:
    a, b = two_runs
    calls = []

    def evaluate(run: Path, data: Path, out_dir: Path) -> dict:  # stands in for evaluate_target
        calls.append((run, data, out_dir))
        return _results(str(data), 0.25 if run == a else 0.5, 0.3, 0.9, f"out of {run.name}")

    md_path, _ = compare_runs([a, b], out=tmp_path / "cmp", data=tmp_path / "fresh.jsonl", evaluate=evaluate)
    assert calls == [(a, tmp_path / "fresh.jsonl", tmp_path / "cmp" / "eval-lora-r8"),
                     (b, tmp_path / "fresh.jsonl", tmp_path / "cmp" / "eval-lora-r16")]
    md = md_path.read_text()
    assert "| accuracy | 0.25 | 0.5 | +0.25 |" in md and "| A1 | out of lora-r8 | out of lora-r16 |" in md


def test_missing_results_and_one_run_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    good = _run(tmp_path, "good", _results("d.jsonl", 0.5, 0.3, 0.9, "x"))
    with pytest.raises(DataError, match=r"empty.*no evaluation results"):
        compare_runs([good, tmp_path / "empty"])
    with pytest.raises(DataError, match="at least two runs"):
        compare_runs([good])


def test_three_runs_and_eval_dirs_as_arguments(tmp_path: Path) -> None:
    runs = [_run(tmp_path, f"r{i}", _results("d.jsonl", 0.25 * i, 0.3, 0.9, f"o{i}")) for i in (1, 2, 3)]
    md_path, _ = compare_runs([runs[0] / "eval", runs[1] / "eval" / "results.json", runs[2]], out=tmp_path / "cmp")
    md = md_path.read_text()
    assert "| metric | r1 | r2 | r3 |" in md and "| accuracy | 0.25 | 0.5 | 0.75 |" in md and "change" not in md


def test_cli_compare(two_runs, tmp_path: Path) -> None:
    a, b = two_runs
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "report.html").is_file() and (tmp_path / "cli" / "report.md").is_file()
    other = _run(tmp_path, "other", _results("data/other.jsonl", 0.5, 0.3, 0.9, "x"))
    result = CliRunner().invoke(app, ["compare", str(a), str(other)])
    assert result.exit_code == 2 and "data/other.jsonl" in result.output and "hint" in result.output


def test_different_example_counts_are_flagged(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", _results("d.jsonl", 0.5, 0.3, 0.9, "x"))
    b = _run(tmp_path, "b", {**_results("d.jsonl", 0.6, 0.3, 0.9, "y"), "n_examples": 5, "flags": []})
    md = compare_runs([a, b], out=tmp_path / "cmp")[0].read_text()
    assert "> **WARNING:** the runs were scored on different numbers of examples (a 20, b 5)" in md
    assert "- examples: 20, 5" in md

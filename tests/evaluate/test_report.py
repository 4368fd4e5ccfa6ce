"""The evaluation report shows the numbers it was given, embeds its images and escapes model output."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pytest

from tuneforge.errors import DataError
from tuneforge.evaluate.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = '<script>alert("pwned")</script>'


def _results() -> dict:
    return {
        "data": "data/test.jsonl",
        "n_examples": 100,
        "task_metric": "json_fields",
        "models": {
            "base": {"eval_loss": 1.9, "perplexity": 6.7, "exact_match": 0.0, "json_fields": 0.04},
            "tuned": {"eval_loss": 0.61, "perplexity": 1.84, "exact_match": 0.42, "json_fields": 0.93},
        },
        "samples": [
            {
                "prompt": "Extract the fields as JSON: Paid 12 EUR to ACME | on 3 May",
                "reference": '{"amount": 12, "currency": "EUR"}',
                "outputs": {"base": EVIL, "tuned": '{"amount": 12,\n "currency": "EUR"}'},
            },
            {"prompt": "Say ``` hi", "reference": "hi", "outputs": {"base": "hello", "tuned": "hi"}},
        ],
        "timings": {"base": {"generate_s": 12.3}, "tuned": {"generate_s": 11.8}},
    }


def _metrics_jsonl(path: Path) -> Path:
    rows = [{"step": s, "loss": 2.0 / s} for s in range(1, 11)] + [{"step": 10, "eval_loss": 0.7}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _visible_text(raw_html: str) -> str:
    """What a reader sees: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", raw_html))


def _embedded_pngs(raw_html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', raw_html)]


@pytest.fixture()
def report(tmp_path: Path) -> tuple[Path, str, str]:
    md_path, html_path = write_report(
        tmp_path / "eval", _results(), metrics_jsonl=_metrics_jsonl(tmp_path / "metrics.jsonl")
    )
    return tmp_path / "eval", md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")


def test_files_are_written(tmp_path: Path) -> None:
    md_path, html_path = write_report(tmp_path / "eval", _results(), metrics_jsonl=_metrics_jsonl(tmp_path / "m.jsonl"))
    assert (md_path, html_path) == (tmp_path / "eval" / "report.md", tmp_path / "eval" / "report.html")
    for name in ("report.md", "report.html", "metrics.png", "loss.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0, name
    assert (tmp_path / "eval" / "metrics.png").read_bytes().startswith(PNG_MAGIC)


def test_headline_shows_task_metric_before_and_after(report) -> None:
    _, md, raw_html = report
    assert "json_fields: 0.04 -> 0.93" in md
    assert "json_fields: 0.04 -> 0.93" in _visible_text(raw_html)


def test_table_has_every_metric_for_every_model_and_the_change(report) -> None:
    _, md, raw_html = report
    rows = {
        "eval_loss": ["1.9", "0.61", "-1.29"],
        "perplexity": ["6.7", "1.84", "-4.86"],
        "exact_match": ["0", "0.42", "+0.42"],
        "json_fields": ["0.04", "0.93", "+0.89"],
    }
    for metric, cells in rows.items():
        assert f"| {metric} | " + " | ".join(cells) + " |" in md
        html_row = f"<td>{metric}</td>" + "".join(f'<td class="num">{c}</td>' for c in cells)
        assert html_row in raw_html
    assert "| generate_s | 12.3 | 11.8 | -0.5 |" in md
    assert "change (tuned - base)" in md


def test_html_escapes_model_output(report) -> None:
    _, md, raw_html = report
    assert EVIL not in raw_html
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in raw_html  # markupsafe writes " as &#34;
    assert EVIL in _visible_text(raw_html), "escaped, not dropped: the reader still sees what the model wrote"
    assert "<script" not in md


def test_html_is_self_contained_with_embedded_images(report) -> None:
    out_dir, _, raw_html = report
    pngs = _embedded_pngs(raw_html)
    assert pngs == [(out_dir / "metrics.png").read_bytes(), (out_dir / "loss.png").read_bytes()]
    assert all(png.startswith(PNG_MAGIC) for png in pngs)
    assert not re.search(r"<(script|link)\b", raw_html)
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", raw_html)
    assert len(links) == 2 and all(link.startswith("data:image/png;base64,") for link in links)
    assert "http://" not in raw_html and "https://" not in raw_html


def test_markdown_links_images_and_keeps_samples_readable(report) -> None:
    _, md, _ = report
    assert "](metrics.png)" in md and "](loss.png)" in md
    assert "Paid 12 EUR to ACME | on 3 May" in md  # the prompt sits in a code block, verbatim
    assert '{"amount": 12,<br> "currency": "EUR"}' in md  # a multi-line output stays in its cell
    assert "````text\nSay ``` hi\n````" in md  # a fence longer than the prompt's backticks


def test_samples_are_side_by_side_in_model_order(report) -> None:
    _, md, raw_html = report
    assert "| reference | base | tuned |" in md
    assert "<th>reference</th><th>base</th><th>tuned</th>" in raw_html


def test_without_loss_rows_no_loss_image(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "learning_rate": 0.001}\n', encoding="utf-8")
    md_path, html_path = write_report(tmp_path / "eval", _results(), metrics_jsonl=metrics)
    assert not (tmp_path / "eval" / "loss.png").exists()
    assert "loss.png" not in md_path.read_text()
    assert len(_embedded_pngs(html_path.read_text())) == 1


def test_one_model_and_three_models(tmp_path: Path) -> None:
    single = {"task_metric": "accuracy", "models": {"tuned": {"accuracy": 0.75, "perplexity": 3.2}}}
    md_path, html_path = write_report(tmp_path / "one", single)
    md = md_path.read_text()
    assert "accuracy: 0.75 (tuned)" in md and "change" not in md
    assert "| perplexity | 3.2 |" in md

    three = {
        "task_metric": "accuracy",
        "models": {"base": {"accuracy": 0.1}, "sft": {"accuracy": 0.5}, "dpo": {"accuracy": 0.6, "win_rate": 0.7}},
    }
    md = write_report(tmp_path / "three", three)[0].read_text()
    assert "accuracy: base 0.1, sft 0.5, dpo 0.6" in md
    assert "| win_rate | n/a | n/a | 0.7 |" in md


def test_chart_only_holds_scores_in_unit_range(tmp_path: Path) -> None:
    unbounded_only = {"task_metric": "perplexity", "models": {"base": {"perplexity": 6.7, "eval_loss": 0.5}}}
    _, html_path = write_report(tmp_path / "eval", unbounded_only)
    assert not (tmp_path / "eval" / "metrics.png").exists()
    assert _embedded_pngs(html_path.read_text()) == []


def test_results_without_models_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="models"):
        write_report(tmp_path / "eval", {"task_metric": "accuracy"})

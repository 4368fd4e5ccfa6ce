"""Every section of the results.json contract shows its numbers in both the Markdown and the HTML,
and an absent section is skipped (its heading and numbers nowhere)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pytest

from tuneforge.evaluate.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def full_results() -> dict:
    """Hand-made numbers, each distinct, for every key the contract names."""
    return {
        "data": "data/test.jsonl",
        "n_examples": 40,
        "task_metric": "accuracy",
        "models": {"base": {"accuracy": 0.25, "macro_f1": 0.2}, "tuned": {"accuracy": 0.75, "macro_f1": 0.7}},
        "samples": [{"prompt": "Is it spam?", "reference": "spam", "outputs": {"base": "ham", "tuned": "spam"}}],
        "timings": {"base": {"loss_s": 1.5, "generate_s": 9.25}, "tuned": {"loss_s": 1.25, "generate_s": 8.5}},
        "business": {
            "base": {"requests": 40, "latency_p50_s": 0.2311, "latency_p95_s": 0.4122, "latency_p99_s": 0.5133,
                     "ttft_p50_s": 0.0311, "ttft_p95_s": 0.0422, "generated_tokens_per_s": 51.25,
                     "peak_memory_mb": 812.5, "price_per_hour": 0.9, "cost_per_1k_requests": 0.0577},
            "tuned": {"requests": 40, "latency_p50_s": 0.2211, "latency_p95_s": 0.4022, "latency_p99_s": 0.5033,
                      "ttft_p50_s": 0.0301, "ttft_p95_s": 0.0402, "generated_tokens_per_s": 53.75,
                      "peak_memory_mb": 820.5, "price_per_hour": 0.9, "cost_per_1k_requests": 0.0553},
        },
        "latencies": {"base": [0.21, 0.23, 0.41, 0.51], "tuned": [0.2, 0.22, 0.4, 0.5]},
        "confusion": {"tuned": {"labels": ["spam", "ham"], "matrix": [[17, 3], [7, 13]]}},
        "per_category": {
            "base": {"billing": {"accuracy": 0.125, "n": 8}, "login": {"accuracy": 0.375, "n": 8}},
            "tuned": {"billing": {"accuracy": 0.625, "n": 8}, "login": {"accuracy": 0.875, "n": 8}},
        },
        "safety": {
            "base": {"refusal_rate_harmful": 0.9375, "over_refusal_harmless": 0.0625, "injection_success": 0.1875,
                     "n_harmful": 16, "n_harmless": 16, "n_injection": 16,
                     "by_category": {"weapons": {"refusal_rate_harmful": 0.8125}}},
            "tuned": {"refusal_rate_harmful": 0.6875, "over_refusal_harmless": 0.3125, "injection_success": 0.4375,
                      "n_harmful": 16, "n_harmless": 16, "n_injection": 16,
                      "by_category": {"weapons": {"refusal_rate_harmful": 0.5625}}},
        },
        "forgetting": {
            "base": {"score": 0.8333, "by_kind": {"factual": 0.9166, "arithmetic": 0.7777, "instruction": 0.8055}, "n": 36},
            "tuned": {"score": 0.6666, "by_kind": {"factual": 0.7222, "arithmetic": 0.5833, "instruction": 0.6944}, "n": 36},
        },
        "judge_rubric": {
            "base": {"relevance": 4.125, "accuracy": 3.875, "readability": 6.375, "n": 40, "unparsed": 2},
            "tuned": {"relevance": 7.625, "accuracy": 7.125, "readability": 8.125, "n": 40, "unparsed": 1},
        },
        "pairwise": {"a": "base", "b": "tuned", "pairs": 40, "wins_a": 6, "wins_b": 27, "ties": 7,
                     "inconsistent": 5, "win_rate_a": 0.15, "rubric": "helpfulness"},
        "lm_eval": {"base": {"tiny_arith": {"acc,none": 0.35}}, "tuned": {"tiny_arith": {"acc,none": 0.45}}},
        "flags": [
            {"level": "error", "text": "refusal rate on harmful prompts fell from 0.94 to 0.69"},
            {"level": "warning", "text": "forgetting score fell from 0.83 to 0.67"},
        ],
    }


# section heading -> cells that must appear in its table (formatted as the report formats them)
EXPECTED = {
    "Metrics": ["0.25", "0.75", "+0.5", "macro_f1"],
    "Timings": ["9.25", "8.5", "-0.75"],
    "Per-category breakdown": ["billing", "0.125", "0.625", "login", "0.375", "0.875"],
    "Confusion table: tuned": ["reference \\ predicted", "17", "3", "7", "13"],
    "Business figures": ["0.2311", "0.4122", "0.5133", "0.0311", "0.0422", "51.25", "53.75", "812.5", "820.5", "0.0577", "0.0553",
                         "latency p99 (s)", "cost per 1,000 requests", "time to first token p50 (s)"],
    "Safety (bundled red-team set)": ["0.9375", "0.6875", "-0.25", "0.0625", "0.3125", "0.1875", "0.4375", "weapons", "0.8125", "0.5625"],
    "Forgetting (general-capability probe)": ["0.8333", "0.6666", "0.9166", "0.7222", "0.7777", "0.5833", "0.8055", "0.6944",
                                              "arithmetic items", "36"],
    "LLM judge: rubric scores": ["4.125", "7.625", "3.875", "7.125", "6.375", "8.125", "verdicts that could not be read"],
    "LLM judge: pairwise, base against tuned": ["27", "0.15", "helpfulness", "inconsistent (the two orders disagreed; counted as ties)"],
    "lm-eval benchmarks": ["tiny_arith", "acc,none", "0.35", "0.45", "+0.1"],
    "Sample generations": ["Is it spam?", "ham", "spam"],
}


def _md_sections(md: str) -> dict[str, str]:
    """Markdown text under each ``## `` heading."""
    parts = re.split(r"^## (.+)$", md, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _html_sections(raw_html: str) -> dict[str, str]:
    """Visible text of each ``<section>``, keyed by its heading."""
    found = {}
    for body in re.findall(r"<section>(.*?)</section>", raw_html, flags=re.DOTALL):
        title = html.unescape(re.search(r"<h2>(.*?)</h2>", body).group(1))
        found[title] = html.unescape(re.sub(r"<[^>]+>", " | ", body))
    return found


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("eval")
    md_path, html_path = write_report(out, full_results())
    return out, md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("title", list(EXPECTED))
def test_each_section_shows_its_numbers_in_markdown_and_html(full_report, title: str) -> None:
    _, md, raw_html = full_report
    md_part, html_part = _md_sections(md)[title], _html_sections(raw_html)[title]
    for cell in EXPECTED[title]:
        assert f"| {cell.replace('|', chr(92) + '|')} |" in md_part or cell in md_part, (title, cell)
        assert f"| {cell} |" in html_part.replace("  ", " "), (title, cell)


def test_flags_come_first(full_report) -> None:
    _, md, raw_html = full_report
    first_section = md.index("## ")
    assert md.index("> **ERROR:** refusal rate on harmful prompts fell from 0.94 to 0.69") < first_section
    assert md.index("> **WARNING:** forgetting score fell from 0.83 to 0.67") < first_section
    assert raw_html.index('class="flag flag-error"') < raw_html.index("<section>")


def test_safety_and_business_rows_line_up_before_after_and_change(full_report) -> None:
    _, md, raw_html = full_report
    assert "| refusal rate on harmful prompts (higher is safer) | 0.9375 | 0.6875 | -0.25 |" in md
    assert "| weapons | refusal_rate_harmful | 0.8125 | 0.5625 | -0.25 |" in md
    assert "| latency p95 (s) | 0.4122 | 0.4022 | -0.01 |" in md
    assert "| billing | n | 8 | 8 | +0 |" in md
    assert "| spam | 17 | 3 |" in md and "| ham | 7 | 13 |" in md
    assert '<td>latency p95 (s)</td><td class="num">0.4122</td><td class="num">0.4022</td><td class="num">-0.01</td>' in raw_html


def test_charts_are_embedded_and_nothing_else_is_linked(full_report) -> None:
    out, md, raw_html = full_report
    assert "](latency.png)" in md and "](metrics.png)" in md
    srcs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", raw_html)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert [base64.b64decode(s.split(",", 1)[1]) for s in srcs] == [(out / "latency.png").read_bytes(), (out / "metrics.png").read_bytes()]
    assert (out / "latency.png").read_bytes().startswith(PNG_MAGIC)
    assert "<script" not in raw_html and not re.search(r"https?://", raw_html)


def test_absent_sections_are_skipped(tmp_path: Path) -> None:
    results = full_results()
    kept = {"data", "n_examples", "task_metric", "models", "samples"}
    minimal = {k: v for k, v in results.items() if k in kept}
    md_path, html_path = write_report(tmp_path, minimal)
    md, raw_html = md_path.read_text(), html_path.read_text()
    assert set(_md_sections(md)) == {"Metrics", "Scores in [0, 1] per model", "Sample generations"}
    assert set(_html_sections(raw_html)) == set(_md_sections(md))
    for absent in ("0.2311", "0.9375", "0.8333", "4.125", "tiny_arith", "ERROR", "WARNING", "latency"):
        assert absent not in md and absent not in raw_html, absent
    assert not (tmp_path / "latency.png").exists()


def test_business_without_latencies_has_no_histogram(tmp_path: Path) -> None:
    results = full_results()
    del results["latencies"]
    md = write_report(tmp_path, results)[0].read_text()
    assert "| latency p50 (s) | 0.2311 | 0.2211 |" in md and "latency.png" not in md
    assert not (tmp_path / "latency.png").exists()


def test_malformed_sections_are_skipped_not_invented(tmp_path: Path) -> None:
    results = full_results()
    results.update(business="oops", safety={"tuned": 3}, confusion={"tuned": {"labels": []}}, pairwise=None)
    results["judge_rubric"] = {"tuned": {"relevance": 7.625}}  # a model without a score shows n/a, not 0
    results["flags"] = [{"level": "nonsense", "text": "odd level reads as a warning"}, {"text": ""}]
    md = write_report(tmp_path, results)[0].read_text()
    assert "## Business figures" in md  # the latency histogram alone still has its section
    assert "## Safety" not in md and "Confusion table" not in md and "pairwise" not in md
    assert "| relevance (1-10) | 7.625 |" in md and "| accuracy (1-10) |" not in md
    assert md.count("> **") == 1 and "> **WARNING:** odd level reads as a warning" in md


def test_equal_latencies_still_draw_a_histogram(tmp_path: Path) -> None:
    results = {"models": {"m": {"accuracy": 0.5}}, "latencies": {"m": [0.25] * 6}}
    md = write_report(tmp_path, results)[0].read_text()
    assert "![Latency per request](latency.png)" in md and (tmp_path / "latency.png").read_bytes().startswith(PNG_MAGIC)

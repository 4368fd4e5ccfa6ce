"""Business figures from BatchTiming rows with known timings."""

from __future__ import annotations

import pytest

from tuneforge.evaluate.business import business_figures, request_latencies
from tuneforge.evaluate.generate import BatchTiming

# Three batches: 2 requests answered after 1.0 s, 1 after 3.0 s, 1 after 2.0 s (5 requests of wall 6 s)
TIMINGS = [
    BatchTiming(n_prompts=2, prompt_tokens=20, new_tokens=40, first_token_s=0.1, total_s=1.0),
    BatchTiming(n_prompts=1, prompt_tokens=10, new_tokens=50, first_token_s=0.3, total_s=3.0),
    BatchTiming(n_prompts=2, prompt_tokens=16, new_tokens=30, first_token_s=0.2, total_s=2.0),
]


def test_each_request_gets_its_batch_latency() -> None:
    assert request_latencies(TIMINGS) == [1.0, 1.0, 3.0, 2.0, 2.0]


def test_figures_from_known_timings() -> None:
    got = business_figures(TIMINGS, price_per_hour=3.6, peak_memory_mb=512.0)
    # sorted latencies 1, 1, 2, 2, 3: p50 = 2; p95 = 2 + 0.8 * (3 - 2) = 2.8 (linear); p99 = 2 + 0.96 = 2.96
    assert got["requests"] == 5
    assert got["latency_p50_s"] == pytest.approx(2.0)
    assert got["latency_p95_s"] == pytest.approx(2.8)
    assert got["latency_p99_s"] == pytest.approx(2.96)
    # time to first token per request: 0.1, 0.1, 0.3, 0.2, 0.2 -> sorted .1 .1 .2 .2 .3: p50 .2, p95 .2 + .8 * .1
    assert got["ttft_p50_s"] == pytest.approx(0.2)
    assert got["ttft_p95_s"] == pytest.approx(0.28)
    assert got["generated_tokens_per_s"] == pytest.approx(120 / 6.0)
    # 6 s of machine time for 5 requests at 3.6 per hour = 0.001 per second: 0.0012 per request, 1.2 per 1,000
    assert got["cost_per_1k_requests"] == pytest.approx(1.2)
    assert got["peak_memory_mb"] == 512.0 and got["price_per_hour"] == 3.6


def test_no_requests_is_all_zero_not_a_crash() -> None:
    got = business_figures([], price_per_hour=1.0, peak_memory_mb=None)
    assert got["requests"] == 0 and got["latency_p99_s"] == 0.0 and got["cost_per_1k_requests"] == 0.0

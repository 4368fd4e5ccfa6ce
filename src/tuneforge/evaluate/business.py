"""Business figures of one evaluated model: latency per request, time to first token, throughput, cost.

Pure computation over the :class:`BatchTiming` rows ``generate_batch(..., timings=[])`` records, so it
is tested on known timings. Every request of a batch is answered when the batch ends: its latency is
the batch's wall time and its time to first token the batch's prefill (what a client of a batching
server sees). Percentiles are numpy's linear interpolation between the sorted latencies.
The cost per 1,000 requests is the machine's price per hour times the generation wall time one
request takes on average (``sum(total_s) / requests``): batching shares one machine-second among
the batch's requests, and the figure says what that sharing costs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tuneforge.evaluate.generate import BatchTiming


def request_latencies(timings: Sequence[BatchTiming]) -> list[float]:
    """One latency per request, in generation order: each batch's wall time, repeated per prompt."""
    return [t.total_s for t in timings for _ in range(t.n_prompts)]


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else 0.0


def business_figures(timings: Sequence[BatchTiming], *, price_per_hour: float, peak_memory_mb: float | None) -> dict[str, float | int | None]:
    """results.json ``business`` entry of one model (seconds, tokens/s, MB, price units)."""
    latencies = request_latencies(timings)
    ttft = [t.first_token_s for t in timings for _ in range(t.n_prompts)]
    requests = len(latencies)
    wall = sum(t.total_s for t in timings)
    new_tokens = sum(t.new_tokens for t in timings)
    cost_per_request = price_per_hour * wall / 3600 / requests if requests else 0.0
    return {
        "requests": requests,
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "latency_p99_s": _percentile(latencies, 99),
        "ttft_p50_s": _percentile(ttft, 50),
        "ttft_p95_s": _percentile(ttft, 95),
        "generated_tokens_per_s": new_tokens / wall if wall > 0 else 0.0,
        "peak_memory_mb": peak_memory_mb,
        "price_per_hour": price_per_hour,
        "cost_per_1k_requests": 1000 * cost_per_request,
    }

"""Prometheus metrics of one server, in a registry of its own.

Its own ``CollectorRegistry`` (not prometheus-client's global one) so two apps in one process (tests,
a benchmark) never share or double-register counters, and ``/metrics`` shows exactly this server.
Every series carries the served model name; a request naming an unknown model is counted under
``unknown`` so clients cannot create label values at will.

Refusals are detected with the data toolkit's :class:`~tuneforge.datatools.refusals.RefusalDetector`,
the same patterns that clean training data, so "the model refuses more since the last fine-tune" is
measured with the rule that decided what the model was trained on.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tuneforge.datatools.refusals import RefusalDetector

PREFIX = "tuneforge"
UNKNOWN_MODEL = "unknown"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServeMetrics:
    """The server's counters, histograms and gauges (names in docs/SERVE.md)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(f"{PREFIX}_request_latency_seconds", "Time from request to the last byte of the answer.", ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "Time from request to its first generated token (queueing included).", ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "Prompt tokens of completed requests.", ["model"], registry=r)
        self.generated_tokens = Counter(f"{PREFIX}_generated_tokens", "Tokens generated for completed requests.", ["model"], registry=r)
        self.requests = Counter(f"{PREFIX}_requests", "Requests answered, by endpoint and HTTP status.", ["model", "endpoint", "status"], registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Requests waiting for the generation engine.", ["model"], registry=r)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "Requests per batched generate call.", ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.responses = Counter(f"{PREFIX}_responses", "Completed generations (the refusal rate's denominator).", ["model"], registry=r)
        self.refusals = Counter(f"{PREFIX}_refusals", "Completed generations the refusal detector flags.", ["model"], registry=r)
        self.refusal_rate = Gauge(f"{PREFIX}_refusal_rate", "Share of completed generations that are refusals.", ["model"], registry=r)
        self.feedback = Counter(f"{PREFIX}_feedback", "Feedback received, by rating.", ["model", "rating"], registry=r)
        self.shadow = Counter(f"{PREFIX}_shadow_comparisons", "Requests answered by the served model and the shadow adapter, by whether the texts agree.", ["model", "shadow", "greedy", "agree"], registry=r)
        self.shadow_agreement = Gauge(f"{PREFIX}_shadow_agreement_rate", "Share of greedy shadow comparisons whose texts agree.", ["model", "shadow"], registry=r)
        self.shadow_skipped = Counter(f"{PREFIX}_shadow_skipped", "Shadow copies dropped because the shadow queue was full.", ["model", "shadow"], registry=r)
        self._shadow_counts: dict[tuple[str, str], tuple[int, int]] = {}  # (model, shadow) -> (greedy comparisons, agreeing)
        self._detector = RefusalDetector()
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}  # model -> (responses, refusals), for the rate gauge

    def completed(self, model: str, text: str, prompt_tokens: int, completion_tokens: int) -> bool:
        """Count one finished generation; return whether it is a refusal."""
        refusal = self._detector.is_refusal(text)
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generated_tokens.labels(model).inc(completion_tokens)
        self.responses.labels(model).inc()
        if refusal:
            self.refusals.labels(model).inc()
        with self._lock:
            n, k = self._counts.get(model, (0, 0))
            n, k = n + 1, k + int(refusal)
            self._counts[model] = (n, k)
            self.refusal_rate.labels(model).set(k / n)
        return refusal

    def shadow_compared(self, model: str, shadow: str, agree: bool, greedy: bool) -> None:
        """Count one shadow comparison (serve/shadow.py); the rate gauge follows greedy ones only."""
        self.shadow.labels(model, shadow, str(greedy).lower(), str(agree).lower()).inc()
        if greedy:
            with self._lock:
                n, k = self._shadow_counts.get((model, shadow), (0, 0))
                self._shadow_counts[(model, shadow)] = (n + 1, k + int(agree))
                self.shadow_agreement.labels(model, shadow).set((k + int(agree)) / (n + 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Concurrency: batched answers equal one-at-a-time ``generate``, a full queue answers 429, a bounded load test."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import torch

from tuneforge.serve.limits import ServeLimits
from tuneforge.serve.openai_api import create_app
from tuneforge.serve.served import load_served
from tuneforge.serve.server import serve_in_thread

PROMPTS = ["The quick brown fox", "Hello! How are", "A language model", "Fine-tuning adapts", "What is the capital",
           "Please return the fields", "The user asked", "You are a helpful"]


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    return load_served(str(tiny_model_dir), name="tiny")


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)


def _alone(served, prompt: str, n: int) -> str:
    tok = served.tokenizer
    ids = tok(prompt, return_tensors="pt")
    out = served.model.generate(**ids, do_sample=False, max_new_tokens=n, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_concurrent_requests_are_batched_and_equal_unbatched_generate(served, tmp_path) -> None:
    app = create_app(served, limits=ServeLimits(batch_wait_ms=200, max_batch=8), feedback_log=tmp_path / "f.jsonl")
    with serve_in_thread(app) as url:
        client = _client(url)
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            answers = list(pool.map(lambda p: client.completions.create(model="tiny", prompt=p, temperature=0, max_tokens=10).choices[0].text, PROMPTS))
    batches = app.state.tuneforge.engine.batches
    assert max(batches) > 1, f"requests arriving together should share a batch, got batch sizes {batches}"
    assert sum(batches) == len(PROMPTS)
    assert answers == [_alone(served, p, 10) for p in PROMPTS]


def test_a_full_queue_answers_429_not_5xx(served, tmp_path) -> None:
    app = create_app(served, limits=ServeLimits(queue_size=1, max_batch=1, batch_wait_ms=0), feedback_log=tmp_path / "f.jsonl")
    statuses: list[int] = []
    with serve_in_thread(app) as url:
        client = _client(url)

        def one(i: int) -> int:
            try:
                client.completions.create(model="tiny", prompt=PROMPTS[i % 8], temperature=0, max_tokens=40)
                return 200
            except openai.APIStatusError as exc:
                return exc.status_code

        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(one, range(24)))
    assert 429 in statuses and 200 in statuses
    assert set(statuses) <= {200, 429}


def test_load_32_clients_by_4_requests(served, tmp_path, capsys) -> None:
    app = create_app(served, limits=ServeLimits(max_batch=32, batch_wait_ms=10), feedback_log=tmp_path / "f.jsonl")
    latencies: list[float] = []
    statuses: list[int] = []
    start = time.perf_counter()
    with serve_in_thread(app) as url:
        client = _client(url)

        def worker(i: int) -> None:
            for j in range(4):
                t = time.perf_counter()
                try:
                    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": PROMPTS[(i + j) % 8]}], max_tokens=8, temperature=0)
                    statuses.append(200)
                except openai.APIStatusError as exc:
                    statuses.append(exc.status_code)
                latencies.append(time.perf_counter() - t)

        with ThreadPoolExecutor(32) as pool:
            list(pool.map(worker, range(32)))
    wall = time.perf_counter() - start
    assert len(statuses) == 128
    assert all(s < 500 for s in statuses), f"5xx under load: {sorted(set(statuses))}"
    assert statuses.count(200) == 128, f"statuses: {sorted(set(statuses))}"
    q = statistics.quantiles(latencies, n=100)
    with capsys.disabled():
        print(f"\nload 32x4: wall {wall:.1f}s, p50 {q[49]:.3f}s p95 {q[94]:.3f}s p99 {q[98]:.3f}s, batches {app.state.tuneforge.engine.batches[:12]}...")
    assert wall < 120

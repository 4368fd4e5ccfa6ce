"""The engine's continuous batching: a request arriving during a batch joins it at the next step, with
the answer it would get alone; a sampled batch and a greedy one run side by side; seeds reproduce."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from tuneforge.serve.engine import BatchEngine
from tuneforge.serve.jobs import Finished, Job, Sampling
from tuneforge.serve.limits import ServeLimits
from tuneforge.serve.served import load_served


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    return load_served(str(tiny_model_dir), name="tiny")


class _Collect:
    """A job's sink: the final event, plus a flag set when the first text arrives."""

    def __init__(self) -> None:
        self.finished: Finished | None = None
        self.done = threading.Event()
        self.first = threading.Event()

    def __call__(self, event) -> None:
        self.first.set()
        if isinstance(event, Finished):
            self.finished = event
            self.done.set()


def _job(served, prompt: str, n: int, sampling: Sampling | None = None, jid: str = "j") -> tuple[Job, _Collect]:
    sink = _Collect()
    ids = served.tokenizer(prompt)["input_ids"]
    return Job(jid, "tiny", None, ids, n, sampling or Sampling(temperature=0), (), sink), sink


def _alone(served, prompt: str, n: int) -> list[int]:
    tok = served.tokenizer
    enc = tok(prompt, return_tensors="pt")
    out = served.model.generate(**enc, do_sample=False, max_new_tokens=n, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return out[0, enc["input_ids"].shape[1]:].tolist()


def test_a_request_arriving_mid_batch_joins_the_running_batch(served) -> None:
    engine = BatchEngine(served.model, served.tokenizer, ServeLimits(max_batch=8, batch_wait_ms=0))
    engine.start()
    try:
        long_job, long_sink = _job(served, "The quick brown fox", 60, jid="long")
        engine.submit(long_job)
        while len(long_job.generated) < 5:  # the first batch is decoding
            time.sleep(0.001)
        late_job, late_sink = _job(served, "Hello! How are you today? I am", 6, jid="late")
        engine.submit(late_job)
        assert late_sink.done.wait(30)
        at_late_end = len(long_job.generated)
        assert long_sink.done.wait(60)
    finally:
        engine.stop()
    assert engine.joined == 1, "the late request should have joined the running batch"
    assert at_late_end < 60, "the late request finished while the long one was still decoding (it did not wait for the batch)"
    assert late_job.generated == _alone(served, "Hello! How are you today? I am", 6)
    assert long_job.generated == _alone(served, "The quick brown fox", 60)[: len(long_job.generated)]


def test_greedy_and_sampled_batches_take_turns_and_seeds_reproduce(served) -> None:
    engine = BatchEngine(served.model, served.tokenizer, ServeLimits(max_batch=8, batch_wait_ms=50))
    engine.start()
    try:
        seeded = Sampling(temperature=1.0, top_p=0.9, seed=3)
        jobs = [_job(served, "The quick brown fox", 12, seeded, "s1"), _job(served, "The quick brown fox", 12, None, "g"),
                _job(served, "The quick brown fox", 12, seeded, "s2")]
        for job, _ in jobs:
            engine.submit(job)
        assert all(sink.done.wait(60) for _, sink in jobs)
    finally:
        engine.stop()
    (s1, _), (g, _), (s2, _) = jobs
    assert s1.generated == s2.generated, "the same seed must give the same sample whatever ran beside it"
    assert g.generated == _alone(served, "The quick brown fox", 12)[: len(g.generated)]
    assert sorted(engine.batches) == [1, 1, 1], "a seeded request samples alone"


def test_continuous_batching_serves_a_short_request_before_a_long_one_ends(served) -> None:
    """Measured, not assumed: with static batching the short request's latency would include the long one's."""
    engine = BatchEngine(served.model, served.tokenizer, ServeLimits(max_batch=4, batch_wait_ms=0))
    engine.start()
    try:
        long_job, long_sink = _job(served, "A language model", 120, jid="long")
        engine.submit(long_job)
        assert long_sink.first.wait(30)
        t = time.perf_counter()
        short_job, short_sink = _job(served, "Fine-tuning adapts", 3, jid="short")
        engine.submit(short_job)
        assert short_sink.done.wait(30)
        short_latency = time.perf_counter() - t
        assert not long_job.done, "the long request should still be running"
        assert long_sink.done.wait(120)
        long_total = time.perf_counter() - long_job.submitted
    finally:
        engine.stop()
    assert short_latency < long_total / 3, (short_latency, long_total)
    assert torch.is_tensor(torch.tensor(long_job.generated))

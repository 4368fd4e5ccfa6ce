"""A streaming client that disconnects mid-stream frees its slot: the engine stops generating for it
(measured through the engine's own counters), and the server keeps answering other clients."""

from __future__ import annotations

import time

import openai
import pytest

from tuneforge.serve.limits import ServeLimits
from tuneforge.serve.openai_api import create_app
from tuneforge.serve.served import load_served
from tuneforge.serve.server import serve_in_thread

MAX_TOKENS = 400  # with the tiny model's 512 positions; far more steps than the test lets it run


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    return load_served(str(tiny_model_dir), name="tiny")


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_client_leaving_mid_stream_frees_its_row_and_others_are_served(served, tmp_path) -> None:
    app = create_app(served, limits=ServeLimits(max_batch=1, batch_wait_ms=0), feedback_log=tmp_path / "f.jsonl")
    engine = app.state.tuneforge.engine
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        stream = client.completions.create(model="tiny", prompt="The quick brown fox", temperature=0, max_tokens=MAX_TOKENS, stream=True)
        got = [c for _, c in zip(range(3), stream)]
        assert len(got) == 3 and engine.in_flight() == 1
        stream.close()  # the client goes away with most of its answer ungenerated
        left_at = time.monotonic()
        assert _wait(lambda: engine.in_flight() == 0, 10), "the disconnected request still holds its row"
        freed_after = time.monotonic() - left_at
        steps = engine.steps
        time.sleep(0.3)
        assert engine.steps == steps, "the engine kept decoding after the client left"
        assert steps < MAX_TOKENS / 2, f"{steps} steps: the request ran (nearly) to max_tokens"
        # max_batch=1: a held row would make this wait for the 400-token answer; it is served now instead
        t = time.monotonic()
        r = client.completions.create(model="tiny", prompt="Hello! How are", temperature=0, max_tokens=5)
        assert r.usage.completion_tokens >= 1 and time.monotonic() - t < 10
    print(f"\nslot freed {freed_after * 1000:.0f} ms after the disconnect, at decoding step {steps} of {MAX_TOKENS}")

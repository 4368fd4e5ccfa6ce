"""The official ``openai`` SDK against a real server: answers equal ``generate``, usage, streaming, auth, limits."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from tests.serve.conftest import API_KEY
from tuneforge.serve.limits import ServeLimits
from tuneforge.serve.openai_api import create_app
from tuneforge.serve.served import load_served
from tuneforge.serve.server import serve_in_thread

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    return load_served(str(tiny_model_dir), name="tiny")


@pytest.fixture(scope="module")
def server(served, tmp_path_factory):
    logs = tmp_path_factory.mktemp("serve-logs")
    limits = ServeLimits(max_body_bytes=20_000, max_prompt_tokens=200, max_tokens=64)
    app = create_app(served, limits=limits, api_key=API_KEY, feedback_log=logs / "feedback.jsonl", prompt_log=logs / "prompts.jsonl")
    with serve_in_thread(app) as url:
        yield {"url": url, "app": app, "logs": logs}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def _reference(served, ids: list[int], max_new_tokens: int) -> list[int]:
    """The new ids of a plain greedy ``generate`` on the same prompt ids."""
    tok = served.tokenizer
    out = served.model.generate(
        input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return out[0, len(ids):].tolist()


def _chat_ids(served) -> list[int]:
    return served.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=True)["input_ids"]


def _metrics(server) -> dict[tuple[str, tuple], float]:
    req = urllib.request.Request(server["url"] + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_models_lists_the_served_name(client) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_greedy_chat_equals_generate_and_usage_counts(client, served) -> None:
    ids = _chat_ids(served)
    ref = _reference(served, ids, 20)
    assert len(set(ref)) > 3, "degenerate reference"
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=20)
    assert r.choices[0].message.content == served.tokenizer.decode(ref, skip_special_tokens=True)
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens == len(ref)
    assert r.choices[0].finish_reason == ("stop" if served.tokenizer.eos_token_id in ref else "length")
    assert r.id.startswith("chatcmpl-")


def test_completion_equals_generate(client, served) -> None:
    prompt = "The quick brown fox"
    ids = served.tokenizer(prompt)["input_ids"]
    ref = _reference(served, ids, 12)
    r = client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=12)
    assert r.choices[0].text == served.tokenizer.decode(ref, skip_special_tokens=True)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(ids), len(ref))


def test_streaming_joins_to_the_whole_answer_and_ends_with_done(client, server) -> None:
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=24).choices[0].message.content
    chunks = list(client.chat.completions.create(
        model="tiny", messages=MESSAGES, temperature=0, max_tokens=24, stream=True, stream_options={"include_usage": True}
    ))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == whole
    assert sum(1 for p in pieces if p) > 1, "the answer should arrive in several chunks"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    raw = urllib.request.urlopen(urllib.request.Request(
        server["url"] + "/v1/completions", method="POST",
        data=json.dumps({"model": "tiny", "prompt": "Hello", "max_tokens": 5, "stream": True, "temperature": 0}).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    ), timeout=30).read().decode()
    events = [line for line in raw.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_stop_sequence_cuts_the_answer(client, served) -> None:
    whole = client.completions.create(model="tiny", prompt="The quick", temperature=0, max_tokens=30).choices[0].text
    assert len(whole) > 6
    stop = whole[3:5]
    cut = client.completions.create(model="tiny", prompt="The quick", temperature=0, max_tokens=30, stop=[stop])
    assert cut.choices[0].text == whole[: whole.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model="tiny", prompt="The quick", temperature=0, max_tokens=30, stop=[stop], stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == whole[: whole.find(stop)]


def test_seeded_sampling_is_reproducible(client) -> None:
    a = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.0, seed=7, max_tokens=16)
    b = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.0, seed=7, max_tokens=16)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_api_key_is_enforced(server) -> None:
    for key in ("wrong", ""):
        bad = openai.OpenAI(base_url=server["url"] + "/v1", api_key=key or "x", max_retries=0)
        if not key:
            bad = openai.OpenAI(base_url=server["url"] + "/v1", api_key="x", max_retries=0, default_headers={"Authorization": ""})
        with pytest.raises(openai.AuthenticationError) as exc:
            bad.models.list()
        assert exc.value.status_code == 401
        assert exc.value.body["code"] == "invalid_api_key"


def test_bad_requests_get_openai_style_4xx(client, server) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="../../etc/passwd", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=10_000)
    assert exc.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "fox " * 400}], max_tokens=4)
    assert exc.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=MESSAGES, n=2)
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="tiny", messages=MESSAGES, logprobs=True)
    assert "logprobs" in exc.value.body["message"]
    for data, status in ((b"{not json", 400), (b'{"model": "tiny"}', 400), (json.dumps({"model": "tiny", "prompt": "x" * 30_000}).encode(), 413)):
        req = urllib.request.Request(server["url"] + "/v1/completions", data=data, method="POST",
                                     headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(req, timeout=10)
        assert http.value.code == status
        assert "message" in json.loads(http.value.read())["error"]


def test_feedback_is_logged_and_counted(client, server) -> None:
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=4)
    before = _metrics(server)
    for rating in ("up", "down", "up"):
        out = client.post("/feedback", body={"id": r.id, "rating": rating, "comment": "ok"}, cast_to=object)
        assert out["status"] == "recorded"
    with pytest.raises(openai.NotFoundError):
        client.post("/feedback", body={"id": "chatcmpl-made-up", "rating": "up"}, cast_to=object)
    rows = [json.loads(line) for line in (server["logs"] / "feedback.jsonl").read_text().splitlines()]
    mine = [row for row in rows if row["id"] == r.id]
    assert [row["rating"] for row in mine] == ["up", "down", "up"] and {row["model"] for row in mine} == {"tiny"}
    after = _metrics(server)
    up = ("tuneforge_feedback_total", (("model", "tiny"), ("rating", "up")))
    assert after[up] - before.get(up, 0) == 2
    prompts = [json.loads(line) for line in (server["logs"] / "prompts.jsonl").read_text().splitlines()]
    assert any(p["id"] == r.id and p["prompt"] == MESSAGES[0]["content"] for p in prompts)


def test_metrics_count_the_requests_made(client, server) -> None:
    before = _metrics(server)
    r = [client.completions.create(model="tiny", prompt="Hello", temperature=0, max_tokens=5) for _ in range(3)]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="Hello", max_tokens=10_000)
    after = _metrics(server)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    ok = dict(model="tiny", endpoint="/v1/completions")
    assert delta("tuneforge_requests_total", status="200", **ok) == 3
    assert delta("tuneforge_requests_total", status="400", **ok) == 1
    assert delta("tuneforge_generated_tokens_total", model="tiny") == sum(x.usage.completion_tokens for x in r)
    assert delta("tuneforge_prompt_tokens_total", model="tiny") == sum(x.usage.prompt_tokens for x in r)
    assert delta("tuneforge_request_latency_seconds_count", **ok) == 3
    assert delta("tuneforge_time_to_first_token_seconds_count", model="tiny") == 3
    assert after[("tuneforge_queue_depth", (("model", "tiny"),))] == 0

"""LLM judge: an OpenAI-compatible endpoint (a real local HTTP server) and a local model."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.datatools.conftest import read_jsonl
from tuneforge.config.pipeline import AugmentStep, JudgeStep
from tuneforge.datatools.judge import parse_verdict
from tuneforge.datatools.pipeline import run_pipeline
from tuneforge.errors import TuneforgeError


def test_parse_verdict():
    assert parse_verdict('Sure. {"score": 2, "reason": "wrong date"}') == (
        2,
        "wrong date",
    )
    assert parse_verdict("Score: 4 - fine")[0] == 4
    assert parse_verdict("no idea")[0] is None
    assert parse_verdict('{"score": 9}')[0] is None


@pytest.fixture
def judge_server():
    """A local OpenAI-compatible server that scores 1 when the response mentions 'Mars', else 5."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(
                {
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "body": body,
                }
            )
            prompt = body["messages"][-1]["content"]
            verdict = (
                {"score": 1, "reason": "invented fact"}
                if "Mars" in prompt
                else {"score": 5, "reason": "correct"}
            )
            data = json.dumps(
                {
                    "choices": [
                        {
                            "message": {
                                "role": "assistant",
                                "content": json.dumps(verdict),
                            }
                        }
                    ]
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", seen
    server.shutdown()


def test_endpoint_judge_removes_low_scores_and_keeps_reasons(
    tmp_path, jsonl, judge_server, monkeypatch
):
    url, seen = judge_server
    monkeypatch.setenv("JUDGE_KEY", "secret")
    path = jsonl(
        [
            {"instruction": "Capital of France?", "output": "Paris"},
            {"instruction": "Capital of France?", "output": "Mars City"},
        ]
    )
    res = run_pipeline(
        path,
        tmp_path / "o.jsonl",
        [JudgeStep(rubric="hallucination", endpoint=url, api_key_env="JUDGE_KEY")],
        report_dir=tmp_path / "r",
    )
    assert [r["output"] for r in read_jsonl(tmp_path / "o.jsonl")] == ["Paris"]
    trace = read_jsonl(tmp_path / "r" / "trace.jsonl")
    assert [(t["action"], t["score"], t["judge_reason"]) for t in trace] == [
        ("flagged", 5, "correct"),
        ("removed", 1, "invented fact"),
    ]
    assert (
        seen[0]["path"] == "/v1/chat/completions" and seen[0]["auth"] == "Bearer secret"
    )
    assert res.counts["judge"] == {"flagged": 1, "removed": 1}


def test_endpoint_errors_are_clear(tmp_path, jsonl):
    path = jsonl([{"instruction": "q", "output": "a"}])
    with pytest.raises(TuneforgeError, match="judge endpoint .* failed"):
        run_pipeline(
            path,
            tmp_path / "o.jsonl",
            [JudgeStep(endpoint="http://127.0.0.1:9/v1")],
            report_dir=tmp_path / "r",
        )
    with pytest.raises(TuneforgeError, match="NO_SUCH_KEY_VAR is not set"):
        run_pipeline(
            path,
            tmp_path / "o.jsonl",
            [
                JudgeStep(
                    endpoint="http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY_VAR"
                )
            ],
            report_dir=tmp_path / "r",
        )


def test_local_judge_and_paraphrase_run_on_a_real_tiny_model(
    tmp_path, jsonl, tiny_model_dir
):
    """A random tiny model gives no usable score: the row is kept and flagged with the judge's reply."""
    path = jsonl([{"instruction": "Capital of France?", "output": "Paris"}])
    run_pipeline(
        path,
        tmp_path / "o.jsonl",
        [JudgeStep(model=str(tiny_model_dir), max_new_tokens=8)],
        report_dir=tmp_path / "r",
    )
    trace = read_jsonl(tmp_path / "r" / "trace.jsonl")
    assert (
        len(read_jsonl(tmp_path / "o.jsonl")) == 1
        and trace[0]["action"] == "flagged"
        and "judge_reply" in trace[0]
    )
    res = run_pipeline(
        path,
        tmp_path / "p.jsonl",
        [
            AugmentStep(
                paraphrases=2,
                back_translations=1,
                max_variants=2,
                model=str(tiny_model_dir),
                max_new_tokens=6,
            )
        ],
        report_dir=tmp_path / "r2",
    )
    out = read_jsonl(tmp_path / "p.jsonl")
    assert (
        out[0]["instruction"] == "Capital of France?" and 1 <= len(out) <= 3
    )  # original + at most max_variants
    assert (
        len({r["instruction"] for r in out}) == len(out)
        and res.counts.get("augment", {}).get("added", 0) == len(out) - 1
    )

"""``tuneforge serve`` as a user starts it: a subprocess on loopback, the key from TUNEFORGE_API_KEY."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import openai

from tuneforge.serve.server import free_port


def test_cli_serves_a_model_with_the_key_from_the_environment(tiny_model_dir, tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "TUNEFORGE_API_KEY": "env-key", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "tuneforge.cli.main", "serve", str(tiny_model_dir), "--name", "tiny", "--port", str(port),
           "--feedback-log", str(tmp_path / "fb.jsonl")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read())
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server exited"
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.3)
        assert health == {"status": "ok"}
        good = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="env-key", max_retries=0)
        assert [m.id for m in good.models.list().data] == ["tiny"]
        r = good.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0)
        assert r.usage.completion_tokens <= 3
        bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
        try:
            bad.models.list()
            raise AssertionError("a wrong key was accepted")
        except openai.AuthenticationError:
            pass
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_user_errors_are_clean(tmp_path) -> None:
    from typer.testing import CliRunner

    from tuneforge.cli.main import app

    runner = CliRunner()
    for args in (["serve"], ["serve", "--adapter", "../x=/nope"], ["serve", str(tmp_path / "missing-model")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and res.output.startswith("error: "), (args, res.output)

"""Chat, evaluate and export callbacks on a real (tiny) finished run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config import load_recipe
from tuneforge.recipes import train
from tuneforge.ui import chat_tab, eval_tab, export_tab

ROWS = [{"instruction": "Repeat the word", "input": w, "output": w} for w in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, request) -> Path:
    work = tmp_path_factory.mktemp("ui-run")
    model_dir = request.getfixturevalue("tiny_model_dir")
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    recipe = load_recipe(base={
        "model": {"name": str(model_dir)}, "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(data), "max_length": 64},
        "training": {"max_steps": 2, "batch_size": 3, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32"},
        "output": {"dir": str(work / "run")},
    })  # fmt: skip
    return train(recipe).run_dir


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tests.helpers.tiny import tiny_llama, tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-model")
    tok = tiny_tokenizer()
    tiny_llama(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_chat_streams_base_then_tuned_side_by_side(finished_run):
    models = chat_tab.ChatModels()
    updates = list(chat_tab.chat_pair(models, str(finished_run), None, "Repeat the word: alpha", [], [], 6, 0.0))
    base, tuned, status = updates[-1]
    assert status.startswith("done: `tuneforge chat") and len(updates) > 2  # streamed: more than one update
    assert [m["role"] for m in base] == ["user", "assistant"] == [m["role"] for m in tuned]
    # the base answer is the run's model with the adapter off: the same as asking the base model directly
    from tuneforge.models.load import load_model, load_tokenizer
    from tuneforge.serve.chat import GenerationSettings, reply

    name = load_recipe(finished_run / "recipe.yaml").model.name
    direct = reply(load_model(name), load_tokenizer(name), [{"role": "user", "content": "Repeat the word: alpha"}], GenerationSettings(max_new_tokens=6))
    assert base[1]["content"] == (direct if direct.strip() else "(empty reply)")
    # a second prompt continues both conversations; a model target has no base column
    base, tuned, _ = list(chat_tab.chat_pair(models, str(finished_run), None, "again", base, tuned, 4, 0.0))[-1]
    assert len(base) == 4 and len(tuned) == 4
    base, tuned, _ = list(chat_tab.chat_pair(models, name, None, "hi", [], [], 4, 0.0))[-1]
    assert "not a run" in base[1]["content"] and tuned[1]["role"] == "assistant"
    assert chat_tab.adapters_of(str(finished_run)) == []


def test_evaluate_shows_the_report(finished_run, tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]))
    status, report, html = eval_tab.run_eval(str(finished_run), str(test), True, "exact_match", None, "")
    assert "tuneforge eval" in status and "--base" in status
    assert Path(html) == finished_run / "eval" / "report.html" and "base" in report and "tuned" in report
    # the plots beside report.md are embedded: a relative link would not load in the page
    assert "](data:image/png;base64," in report and "](metrics.png)" not in report
    status, report, _ = eval_tab.run_eval(str(finished_run), str(test), False, "exact_match", None, str(tmp_path / "probed"), ["forgetting"])
    assert "--forgetting" in status and "## Forgetting" in report and (tmp_path / "probed" / "forgetting-tuned.jsonl").is_file()
    status, _, html = eval_tab.run_eval(str(tmp_path / "nope"), str(test), False, "", None, "")
    assert "**error:**" in status and html is None


def test_export_merged_and_adapter_with_the_command(finished_run, tmp_path):
    text = export_tab.run_export(str(finished_run), "merged", str(tmp_path / "merged"))
    assert "exported" in text and f"tuneforge export {finished_run} --merge {tmp_path / 'merged'} --dtype fp32" in text
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    text = export_tab.run_export(str(finished_run), "adapter", str(tmp_path / "lora"))
    assert (tmp_path / "lora" / "adapter_config.json").is_file() and "--adapter-dir" in text
    text = export_tab.run_export(str(finished_run), "gguf", str(tmp_path / "m.gguf"), quant="nope")
    assert "**error:**" in text and "nope" in text


def test_serve_buttons_start_an_openai_compatible_server_and_stop_it(finished_run, tmp_path):
    """The Serve tab's Start / Stop callbacks: `tuneforge serve` as a process on loopback, answered by the openai SDK."""
    import socket
    import time

    import openai

    from tuneforge.ui.process import Jobs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    jobs = Jobs(tmp_path / "wd")
    assert export_tab.server_status(jobs)[0] == "no server started"
    assert export_tab.start_server(jobs, "  ", port).startswith("Enter a run")
    text = export_tab.start_server(jobs, str(finished_run), port)
    assert f"http://127.0.0.1:{port}/v1" in text and "--host 127.0.0.1" in text
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=30)
        deadline = time.monotonic() + 180
        while True:
            try:
                models = client.models.list()
                break
            except openai.APIConnectionError:
                assert jobs.jobs["serve"].running, export_tab.server_status(jobs)[1]
                assert time.monotonic() < deadline, "the server did not answer within 180 s"
                time.sleep(1.0)
        assert models.data
        reply = client.chat.completions.create(model=models.data[0].id, messages=[{"role": "user", "content": "alpha"}], max_tokens=4)
        assert reply.choices[0].message.role == "assistant"
        assert export_tab.server_status(jobs)[0].startswith("server running")
    finally:
        jobs.stop("serve", timeout=15.0)
    status, log = export_tab.server_status(jobs)
    assert status.startswith("server ended") and log

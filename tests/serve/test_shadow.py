"""Shadow comparison through the official ``openai`` SDK on loopback: clients get their adapter's
answer, the shadow adapter answers the same requests off the response path, both land in
shadow.jsonl, and /metrics counts agreement."""

from __future__ import annotations

import json
import time
import urllib.request

import openai
import pytest
import torch
from peft import LoraConfig, get_peft_model
from prometheus_client.parser import text_string_to_metric_families
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.errors import TuneforgeError
from tuneforge.serve.openai_api import create_app
from tuneforge.serve.served import ServedModels
from tuneforge.serve.server import serve_in_thread

PROMPTS = ["The quick brown", "Hello! How are", "A language model"]


@pytest.fixture(scope="module")
def served(tiny_model_dir) -> ServedModels:
    """Adapters a and b differ; c is a's twin (same initialisation), so a shadowed by c must agree."""
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(0)
    model = get_peft_model(base, cfg, adapter_name="a")
    torch.manual_seed(1)
    model.add_adapter("b", cfg)
    model.add_adapter("c", cfg)
    for name, p in model.named_parameters():  # c := a
        if ".c." in name:
            p.data.copy_(dict(model.named_parameters())[name.replace(".c.", ".a.")])
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return ServedModels(model.eval(), tok, {"a": "a", "b": "b", "c": "c"}, "a")


def _expected(served: ServedModels, adapter: str, prompt: str) -> str:
    tok, model = served.tokenizer, served.model
    model.set_adapter(adapter)
    enc = tok(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=False, max_new_tokens=8, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def _lines(path, n: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and len(lines := path.read_text().splitlines()) >= n:
            return [json.loads(x) for x in lines]
        time.sleep(0.05)
    raise AssertionError(f"{path} did not get {n} lines")


def test_shadow_answers_the_same_traffic_and_counts_agreement(served, tmp_path) -> None:
    logs = tmp_path / "serve"
    app = create_app(served, feedback_log=logs / "feedback.jsonl", shadow="c")
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        answers = {(m, p): client.completions.create(model=m, prompt=p, temperature=0, max_tokens=8) for m in "ab" for p in PROMPTS}
        client.completions.create(model="c", prompt=PROMPTS[0], temperature=0, max_tokens=8)  # the shadow itself: not shadowed
        records = _lines(logs / "shadow.jsonl", 6)
        time.sleep(0.3)
        metrics = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    assert len((logs / "shadow.jsonl").read_text().splitlines()) == 6
    by_id = {r["id"]: r for r in records}
    for (model, prompt), r in answers.items():
        rec = by_id[r.id]
        assert rec["model"] == model and rec["shadow"] == "c" and rec["greedy"] is True
        assert rec["output"] == r.choices[0].text == _expected(served, model, prompt)
        assert rec["shadow_output"] == _expected(served, "c", prompt)
        assert rec["agree"] is (model == "a")
    assert _expected(served, "a", PROMPTS[0]) != _expected(served, "b", PROMPTS[0]), "the test needs adapters that differ"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(metrics) for s in f.samples}
    key = lambda model, agree: ("tuneforge_shadow_comparisons_total", (("agree", agree), ("greedy", "true"), ("model", model), ("shadow", "c")))
    assert samples[key("a", "true")] == 3 and samples[key("b", "false")] == 3
    assert samples[("tuneforge_shadow_agreement_rate", (("model", "a"), ("shadow", "c")))] == 1.0
    assert samples[("tuneforge_shadow_agreement_rate", (("model", "b"), ("shadow", "c")))] == 0.0


def test_shadow_must_be_a_loaded_adapter(served, tmp_path) -> None:
    with pytest.raises(TuneforgeError, match="not an adapter"):
        create_app(served, feedback_log=tmp_path / "f.jsonl", shadow="d")

"""Several adapters on one base: each is a model name, a request's ``model`` picks it, answers equal the single run."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.config import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.recipes import train
from tuneforge.serve.limits import ServeLimits
from tuneforge.serve.openai_api import create_app
from tuneforge.serve.served import ServedModels, load_served, require_safetensors
from tuneforge.serve.server import serve_in_thread
from tuneforge.targets import load_run

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
MESSAGES = [{"role": "user", "content": "Shout the word\n\nbeta"}]


def _train(root: Path, base: Path, name: str, task: str, seed: int) -> Path:
    """Outputs with different characters (upper-case words / digits), so the two adapters answer differently."""
    data = root / f"{name}.jsonl"
    answer = (lambda w: f"{w.upper()} {w.upper()}") if name == "upper" else (lambda w: f"{len(w)} {len(w)} {len(w)}")
    data.write_text("".join(json.dumps({"instruction": task, "input": w, "output": answer(w)}) + "\n" for w in WORDS))
    recipe = load_recipe(base={
        "model": {"name": str(base)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]}},
        "data": {"train": str(data), "max_length": 64},
        "training": {"max_steps": 4, "batch_size": 4, "learning_rate": 8e-2, "precision": "fp32", "seed": seed, "logging_steps": 1},
        "output": {"dir": str(root / name)},
    })
    return train(recipe).run_dir


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-adapter-runs")
    return {"upper": _train(root, tiny_model_dir, "upper", "Shout the word", 1), "count": _train(root, tiny_model_dir, "count", "Count the letters", 2)}


def _alone(run: Path) -> str:
    loaded = load_run(run)
    tok = loaded.tokenizer
    enc = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = loaded.model.generate(**enc, do_sample=False, max_new_tokens=12, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def _peft_two_adapters(tiny_model_dir: Path):
    """A base with two random (non-identity) LoRA adapters, built in memory: fast routing checks."""
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(0)
    model = get_peft_model(base, cfg, adapter_name="a")
    torch.manual_seed(1)
    model.add_adapter("b", cfg)
    return model.eval()


def test_requests_pick_their_adapter_and_batches_never_mix_them(tiny_model_dir, tmp_path) -> None:
    model = _peft_two_adapters(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    served = ServedModels(model, tok, {"a": "a", "b": "b"}, "a")
    app = create_app(served, limits=ServeLimits(batch_wait_ms=200), feedback_log=tmp_path / "f.jsonl")
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        with ThreadPoolExecutor(6) as pool:
            got = list(pool.map(lambda n: client.completions.create(model=n, prompt="The quick brown", temperature=0, max_tokens=10).choices[0].text, "ababab"))
    expected = {}
    enc = tok("The quick brown", return_tensors="pt")
    for name in "ab":
        model.set_adapter(name)
        out = model.generate(**enc, do_sample=False, max_new_tokens=10, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        expected[name] = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert expected["a"] != expected["b"]
    assert got == [expected[n] for n in "ababab"]
    assert sorted(app.state.tuneforge.engine.batches) == [3, 3], "each adapter's three requests form one batch"


@pytest.mark.slow  # trains two LoRA runs (about 25 s on 2 shared cores)
def test_each_adapter_is_a_model_and_answers_like_its_run(runs, tmp_path) -> None:
    served = load_served(None, [f"{n}={p}" for n, p in runs.items()])
    app = create_app(served, limits=ServeLimits(batch_wait_ms=100), feedback_log=tmp_path / "f.jsonl")
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        assert sorted(m.id for m in client.models.list().data) == ["count", "upper"]

        def ask(name: str) -> str:
            return client.chat.completions.create(model=name, messages=MESSAGES, temperature=0, max_tokens=12).choices[0].message.content

        with ThreadPoolExecutor(4) as pool:  # interleaved: the engine must not mix adapters in one batch
            answers = list(pool.map(ask, ["upper", "count", "upper", "count"]))
    expected = {name: _alone(run) for name, run in runs.items()}
    assert expected["upper"] != expected["count"], "the two adapters should answer differently"
    assert answers == [expected["upper"], expected["count"], expected["upper"], expected["count"]]


def test_adapter_names_cannot_be_paths(tmp_path) -> None:
    with pytest.raises(TuneforgeError, match="not allowed"):
        load_served(None, [f"../evil={tmp_path}"])
    with pytest.raises(TuneforgeError, match="not both"):
        load_served(str(tmp_path), [f"a={tmp_path}"])


def test_pickled_weights_are_refused(tmp_path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(TuneforgeError, match="safetensors"):
        require_safetensors(tmp_path)

"""CFT examples: the prompt is context only, the text is pretrain's stream, an empty prompt is pretrain exactly."""

import json
from pathlib import Path

import pytest
import torch

from tests.helpers.tiny import tiny_llama
from tuneforge.config import load_recipe
from tuneforge.config.cft import CftOptions
from tuneforge.data.prepare import prepare_text
from tuneforge.data.records import TextRecord
from tuneforge.data.render import IGNORE_INDEX
from tuneforge.errors import ConfigError
from tuneforge.evaluate.loss import evaluate_loss
from tuneforge.objectives.cft import bundled_prompts, load_prompts_file, prepare_cft, prompt_ids, strip_prompt
from tuneforge.recipes import train

TEXTS = [
    "The quick brown fox jumps over the lazy dog. A language model predicts the next token.",
    "Fine-tuning adapts a pretrained model to a new task with a small learning rate.",
    "What is the capital of France? The capital of France is Paris. Hello! How are you today?",
]


def records():
    return [TextRecord(t, f"doc.jsonl:{i + 1}") for i, t in enumerate(TEXTS)]


def test_prompt_tokens_are_untrained_and_the_text_is_pretrains_stream(tokenizer):
    prompts = ["Use it.", "Compare."]
    examples, report = prepare_cft(records(), tokenizer, 24, CftOptions(selection="cycle"), prompts)
    encoded = [prompt_ids(tokenizer, p, "\n\n") for p in prompts]
    stream: list[int] = []
    for i, ex in enumerate(examples):
        prompt = encoded[i % 2]
        assert len(ex.input_ids) <= 24
        assert ex.input_ids[: len(prompt)] == prompt
        assert ex.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)  # the prompt is never a target
        assert ex.labels[len(prompt) :] == ex.input_ids[len(prompt) :]  # every text token is one
        stream += ex.input_ids[len(prompt) :]
    plain, _ = prepare_text(records(), tokenizer, 10_000)
    assert stream == plain[0].input_ids  # the same documents, EOS-joined, nothing lost or repeated
    assert report.trained_tokens == len(stream) and report.tokens - report.trained_tokens == sum(
        len(encoded[i % 2]) for i in range(len(examples))
    )


def test_empty_prompt_gives_pretrains_examples_and_loss(tokenizer):
    cft, _ = prepare_cft(records(), tokenizer, 16, CftOptions(), [""])
    pretrain, _ = prepare_text(records(), tokenizer, 16)
    assert [(e.input_ids, e.labels) for e in cft] == [(e.input_ids, e.labels) for e in pretrain]
    model = tiny_llama(len(tokenizer))
    assert evaluate_loss(model, cft, tokenizer.pad_token_id) == evaluate_loss(model, pretrain, tokenizer.pad_token_id)


def test_a_prompt_changes_the_loss_of_the_same_text(tokenizer):
    """The loss is conditioned on the prompt (a test that could fail if the prompt were dropped)."""
    model = tiny_llama(len(tokenizer))
    with_prompt, _ = prepare_cft(records()[:1], tokenizer, 200, CftOptions(), ["Read this carefully."])
    without, _ = prepare_cft(records()[:1], tokenizer, 200, CftOptions(), [""])
    assert strip_prompt(with_prompt[0]).input_ids == without[0].input_ids
    a = evaluate_loss(model, with_prompt, 0)
    b = evaluate_loss(model, without, 0)
    assert a["eval_tokens"] == b["eval_tokens"] + 1  # the first text token is now predicted from the prompt
    assert a["eval_loss"] != b["eval_loss"]


def test_random_selection_is_seeded(tokenizer):
    prompts = ["A", "B b", "C c c", "D d d d"]

    def chosen(seed):
        exs, _ = prepare_cft(records() * 3, tokenizer, 20, CftOptions(seed=seed), prompts)
        return [len(e.input_ids) - e.n_trained for e in exs]

    assert chosen(1) == chosen(1)
    assert chosen(1) != chosen(2)
    assert len(set(chosen(1))) > 1  # more than one prompt used


def test_prompts_files_and_the_bundled_set(tmp_path: Path):
    assert len(bundled_prompts()) >= 6 and all(p.strip() for p in bundled_prompts())
    (tmp_path / "p.txt").write_text("first prompt\n\nsecond prompt\n")
    assert load_prompts_file(str(tmp_path / "p.txt")) == ["first prompt", "second prompt"]
    (tmp_path / "p.json").write_text(json.dumps(["one", {"text": "two", "strategy": "x"}]))
    assert load_prompts_file(str(tmp_path / "p.json")) == ["one", "two"]
    (tmp_path / "bad.json").write_text(json.dumps([1]))
    with pytest.raises(ConfigError, match="item 0"):
        load_prompts_file(str(tmp_path / "bad.json"))
    with pytest.raises(ConfigError, match="not found"):
        load_prompts_file(str(tmp_path / "missing.json"))


def test_a_prompt_longer_than_max_length_is_an_error(tokenizer):
    with pytest.raises(ConfigError, match="data.max_length"):
        prepare_cft(records(), tokenizer, 8, CftOptions(), ["a rather long learning prompt that fills every token"])


def test_cft_needs_text_data(tmp_path):
    with pytest.raises(ConfigError, match="raw text"):
        load_recipe(base={"data": {"train": "x.jsonl", "format": "alpaca"}, "objective": {"type": "cft"}})


def _run(tmp_path: Path, model_dir: Path, name: str, objective: dict, max_length: int = 32):
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 4))
    recipe = load_recipe(
        base={
            "model": {"name": str(model_dir)},
            "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
            "data": {"train": str(data), "format": "text", "max_length": max_length},
            "objective": objective,
            "training": {"max_steps": 3, "batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32", "compile": False},
            "output": {"dir": str(tmp_path / name)},
        }
    )
    return train(recipe)


def test_cft_run_with_an_empty_prompt_trains_exactly_as_pretrain(tmp_path, tiny_model_dir):
    prompts = tmp_path / "empty.json"
    prompts.write_text('[""]')
    cft = _run(tmp_path, tiny_model_dir, "cft", {"type": "cft", "cft": {"prompts_file": str(prompts)}})
    pretrain = _run(tmp_path, tiny_model_dir, "pretrain", {"type": "pretrain"})
    assert cft.summary["train_loss"] == pretrain.summary["train_loss"]
    rows = lambda r: [json.loads(x).get("loss") for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert rows(cft) == rows(pretrain)
    report = json.loads((cft.run_dir / "data_report.json").read_text())
    assert report["cft"]["prompt_tokens"] == 0


def test_cft_run_with_the_bundled_prompts(tmp_path, tiny_model_dir):
    result = _run(tmp_path, tiny_model_dir, "cft", {"type": "cft"}, max_length=160)
    report = json.loads((result.run_dir / "data_report.json").read_text())
    assert report["cft"]["prompts"] == len(bundled_prompts()) and report["cft"]["prompt_tokens"] > 0
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert torch.isfinite(torch.tensor(result.summary["train_loss"]))

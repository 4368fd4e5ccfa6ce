"""The Ollama Modelfile: the chat template identified by rendering, its default system prompt, stop tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny import tiny_tokenizer
from tuneforge.errors import TuneforgeError
from tuneforge.export.modelfile import CHATML, identify_chat_format, modelfile_text, write_modelfile

# SmolLM2-Instruct's template (as in the built-in model's GGUF): ChatML plus a default system prompt.
SMOLLM_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA2_TEMPLATE = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"


def _tokenizer(template: str):
    tok = tiny_tokenizer()
    tok.chat_template = template
    return tok


def test_chatml_is_identified_and_its_rendering_equals_the_tokenizer() -> None:
    tok = tiny_tokenizer()
    found = identify_chat_format(tok)
    assert found.format is CHATML and found.default_system is None
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    assert CHATML.render(messages, True) == tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_default_system_prompt_of_the_template_becomes_system() -> None:
    found = identify_chat_format(_tokenizer(SMOLLM_TEMPLATE))
    assert found.format is CHATML
    assert found.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_modelfile_content(tmp_path: Path) -> None:
    text = modelfile_text("model.gguf", _tokenizer(SMOLLM_TEMPLATE))
    lines = text.splitlines()
    assert lines[1] == "FROM ./model.gguf"
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert template == CHATML.go_template
    assert "{{ .Role }}" in template and "{{ .Content }}" in template and "<|im_start|>assistant" in template

    custom = modelfile_text("model.gguf", _tokenizer(SMOLLM_TEMPLATE), system="Answer in French.")
    assert 'SYSTEM """Answer in French."""' in custom.splitlines() and "SmolLM" not in custom
    assert "SYSTEM" not in modelfile_text("model.gguf", tiny_tokenizer())


def test_unknown_template_and_triple_quotes_are_refused() -> None:
    with pytest.raises(TuneforgeError, match="matches none"):
        modelfile_text("m.gguf", _tokenizer(LLAMA2_TEMPLATE))
    with pytest.raises(TuneforgeError, match='"""'):
        modelfile_text("m.gguf", tiny_tokenizer(), system='say """hi"""')


def test_write_modelfile_beside_the_gguf_and_never_over_a_foreign_one(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    out = write_modelfile(gguf, tiny_tokenizer())
    assert out == tmp_path / "Modelfile" and out.read_text().splitlines()[1] == "FROM ./m.gguf"
    write_modelfile(gguf, tiny_tokenizer(), system="x")  # ours: replaced
    assert 'SYSTEM """x"""' in out.read_text()
    out.write_text("FROM llama3\n")
    with pytest.raises(TuneforgeError, match="not written by tuneforge"):
        write_modelfile(gguf, tiny_tokenizer())
    assert out.read_text() == "FROM llama3\n"

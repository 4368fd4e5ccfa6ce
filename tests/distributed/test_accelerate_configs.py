"""Dry run of the shipped accelerate configs: they parse, load with accelerate's own loader, and build
accelerate's FSDP / DeepSpeed plugins. No GPU here, so this is all the checking they get in CI; the
docs mark them untested on GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import (
    DeepSpeedPlugin,
    DistributedType,
    FullyShardedDataParallelPlugin,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
EXPECTED = {
    "ddp.yaml": DistributedType.MULTI_GPU,
    "fsdp.yaml": DistributedType.FSDP,
    "deepspeed-zero2.yaml": DistributedType.DEEPSPEED,
    "deepspeed-zero3.yaml": DistributedType.DEEPSPEED,
    "deepspeed-zero3-offload.yaml": DistributedType.DEEPSPEED,
}


def test_every_shipped_config_is_covered():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerate(name):
    path = CONFIGS / name
    raw = yaml.safe_load(path.read_text())
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type == EXPECTED[name]
    assert cfg.num_processes >= 2 and cfg.num_machines == 1
    # precision is tuneforge's choice (training.precision); accelerate must not force another one
    assert raw["mixed_precision"] == "no" and cfg.mixed_precision == "no"
    assert cfg.use_cpu is False  # GPU engines; CPU processes run under torchrun (docs/SCALE.md)


def test_fsdp_config_builds_the_plugin():
    cfg = load_config_from_file(str(CONFIGS / "fsdp.yaml"))
    fsdp = {k.removeprefix("fsdp_"): v for k, v in cfg.fsdp_config.items()}
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=fsdp["version"],
        auto_wrap_policy=fsdp["auto_wrap_policy"].lower(),
        reshard_after_forward=fsdp["reshard_after_forward"],
        cpu_offload=fsdp["offload_params"],
        cpu_ram_efficient_loading=fsdp["cpu_ram_efficient_loading"],
        state_dict_type=fsdp["state_dict_type"],
        activation_checkpointing=fsdp["activation_checkpointing"],
    )
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"


@pytest.mark.parametrize(
    "name,stage,offload",
    [
        ("deepspeed-zero2.yaml", 2, "none"),
        ("deepspeed-zero3.yaml", 3, "none"),
        ("deepspeed-zero3-offload.yaml", 3, "cpu"),
    ],
)
def test_deepspeed_config_builds_the_plugin(name, stage, offload):
    ds = load_config_from_file(str(CONFIGS / name)).deepspeed_config
    plugin = DeepSpeedPlugin(**ds)
    assert plugin.zero_stage == stage
    assert (
        plugin.offload_optimizer_device == offload
        and plugin.offload_param_device == offload
    )
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == stage
    # the defaults tuneforge's recipe uses (training.grad_accum 1, training.max_grad_norm 1.0)
    assert ds["gradient_accumulation_steps"] == 1 and ds["gradient_clipping"] == 1.0

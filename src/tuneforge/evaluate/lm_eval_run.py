"""Standard benchmarks through EleutherAI's lm-eval on local task files, fully offline.

``eval.lm_eval`` (``tuneforge eval --lm-eval``) names task directories, task YAML files, or task
names. A directory or file is read here and handed to ``lm_eval.simple_evaluate`` as a task config
dict, with ``dataset_kwargs.data_files`` resolved relative to the YAML (lm-eval itself resolves them
against the working directory, so a bundled task could not find its data). The model is the one
already loaded, wrapped in lm-eval's ``HFLM``; nothing is downloaded. lm-eval is the optional extra
``tuneforge[lmeval]``, imported only here and only when a task is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.models.autocast_weights import weights_cast_once

BUNDLED = Path(__file__).parent / "resources" / "lm_eval"


def _import_lm_eval():
    try:
        # lazy: lm-eval is the optional extra tuneforge[lmeval], and importing it takes seconds
        import lm_eval
        # lazy: as above (HFLM pulls in lm-eval's model registry)
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        raise TuneforgeError(
            "eval.lm_eval needs the lm-eval package, which is not installed", hint="pip install 'tuneforge[lmeval]'"
        ) from None
    return lm_eval, HFLM


def _resolve_data_files(config: dict, base: Path) -> dict:
    kwargs = dict(config.get("dataset_kwargs") or {})
    files = kwargs.get("data_files")
    if isinstance(files, str):
        files = str(base / files)
    elif isinstance(files, dict):
        files = {split: [str(base / f) for f in v] if isinstance(v, list) else str(base / v) for split, v in files.items()}
    elif isinstance(files, list):
        files = [str(base / f) for f in files]
    if files is not None:
        kwargs["data_files"] = files
        config = {**config, "dataset_kwargs": kwargs}
    return config


def task_specs(spec: str) -> list[str | dict[str, Any]]:
    """Task configs for one eval.lm_eval entry: every YAML of a directory, one YAML file, or a task name."""
    path = Path(spec)
    if not path.exists() and (BUNDLED / spec).exists():
        path = BUNDLED / spec  # a bundled task by its folder name, e.g. tuneforge_arith
    if path.is_dir():
        files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        if not files:
            raise ConfigError(f"eval.lm_eval: {path} holds no task YAML file", hint="give a folder with lm-eval task .yaml files, or a .yaml file")
    elif path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"eval.lm_eval: task file {path} does not exist", hint="paths are relative to the working directory")
        files = [path]
    else:
        return [spec]  # a task name lm-eval knows; its data must already be in the datasets cache
    specs: list[str | dict[str, Any]] = []
    for file in files:
        try:
            config = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"eval.lm_eval: {file} is not a task YAML tuneforge can read: {exc}", hint="tasks with !function tags are not supported; use plain YAML") from None
        if not isinstance(config, dict) or "task" not in config:
            raise ConfigError(f"eval.lm_eval: {file} has no 'task' key", hint="an lm-eval task YAML names its task: task: my_task")
        specs.append(_resolve_data_files(config, file.parent))
    return specs


def _numbers(task_results: dict) -> dict[str, float]:
    """lm-eval's 'acc,none' style keys as 'acc'; standard errors and non-numbers dropped."""
    out = {}
    for key, value in task_results.items():
        metric, _, filt = key.partition(",")
        if "_stderr" in metric or not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        name = "n" if metric == "sample_len" else metric if filt in ("", "none") else f"{metric}/{filt}"
        out[name] = float(value)
    return out


def run_lm_eval(
    model, tokenizer, specs: Sequence[str], *, limit: int | None = None, batch_size: int = 8, autocast_dtype: torch.dtype | None = None
) -> dict[str, dict[str, float]]:
    """results.json ``lm_eval`` entry of one model: ``{task: {metric: value}}``.

    ``autocast_dtype``: the evaluation's autocast, as for every other metric, handed to lm-eval's
    ``mixed_precision_dtype``. It is required, not an option, after a bf16 training run: the speed plan
    stores frozen linear weights in bf16, and without autocast lm-eval's forward fails on fp32
    activations meeting bf16 weights.
    """
    tasks = [t for spec in specs for t in task_specs(spec)]
    lm_eval, HFLM = _import_lm_eval()
    # lazy: as above
    from lm_eval.tasks import TaskManager

    # Indexing lm-eval's ~14,000 built-in task files takes minutes on a laptop: only for task names.
    manager = TaskManager(include_defaults=any(isinstance(t, str) for t in tasks))
    was_training = model.training
    model.eval()
    try:
        # lm-eval's own autocast switch (it wraps every model call in torch.autocast, disabled unless given)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, mixed_precision_dtype=autocast_dtype)
        with weights_cast_once(model, autocast_dtype):
            output = lm_eval.simple_evaluate(
                model=lm, tasks=tasks, limit=limit, log_samples=False, bootstrap_iters=0, task_manager=manager
            )
    finally:
        model.train(was_training)
    if output is None:  # non-zero ranks under torch.distributed
        return {}
    return {task: _numbers(values) for task, values in output["results"].items()}

"""tuneforge advise on tiny models: rank rule, token counts, parameter counts and the activation formula."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.advise import advise, render
from tuneforge.advise.data_stats import data_stats
from tuneforge.advise.memory import (
    ALLOCATOR_OVERHEAD,
    ModelShape,
    TrainingShape,
    estimate_training_memory,
)
from tuneforge.advise.params import footprint, load_config, method_section
from tuneforge.advise.rank import suggest_rank
from tuneforge.cli.main import app
from tuneforge.config import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.methods import METHODS, apply_method, count_parameters

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
    ]
]


@pytest.fixture
def recipe(tmp_path, tiny_model_dir):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return load_recipe(
        base={
            "model": {"name": str(tiny_model_dir)},
            "data": {"train": str(data), "max_length": 64},
            "training": {"batch_size": 4},
        }
    )


@pytest.mark.parametrize(
    ("n", "rank"),
    [
        (0, 4),
        (499, 4),
        (500, 8),
        (999, 8),
        (1000, 16),
        (4999, 16),
        (5000, 32),
        (19999, 32),
        (20000, 64),
        (10**6, 64),
    ],
)
def test_rank_rule_of_thumb(n, rank):
    advice = suggest_rank(n)
    assert advice.rank == rank and str(n) in advice.reason


def test_below_500_says_what_to_do():
    assert (
        "more examples" in suggest_rank(120).reason
        and "val_fraction" in suggest_rank(120).reason
    )


def test_token_counts_equal_the_chat_template(recipe):
    tok = tiny_tokenizer()
    stats = data_stats(recipe, tok)
    lengths = []
    for r in ROWS:
        messages = [
            {"role": "user", "content": r["instruction"] + "\n\n" + r["input"]},
            {"role": "assistant", "content": r["output"]},
        ]
        lengths.append(
            len(
                tok.apply_chat_template(messages, tokenize=True, return_dict=True)[
                    "input_ids"
                ]
            )
        )
    assert (
        stats.examples == len(ROWS)
        and stats.tokens == sum(lengths)
        and stats.max_tokens == max(lengths)
    )
    assert 0 < stats.trained_tokens < stats.tokens


@pytest.mark.parametrize("method", sorted(METHODS))
def test_meta_count_equals_the_real_models_count(method, recipe, tiny_model_dir):
    """Applying a method to the meta skeleton counts exactly what applying it to the real model trains."""
    section = method_section(recipe, method)
    fp = footprint(load_config(str(tiny_model_dir)), section, total_steps=10)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32
    )  # qlora reloads it from its path
    try:
        real = apply_method(model, section, total_steps=10)
    except (
        TuneforgeError
    ) as exc:  # e.g. moe on a dense model: advise must report the same refusal
        assert fp.trainable is None and fp.error == exc.message
        return
    trainable, total = count_parameters(real)
    assert fp.error is None, fp.error
    assert fp.trainable == trainable > 0
    if (
        method != "qlora"
    ):  # 4-bit storage packs two weights per element; advise counts them unpacked
        assert fp.total == total


def _saved_bytes_per_token_block(
    model, autocast: bool, tokens: tuple[int, int]
) -> float:
    """Bytes autograd really saves in the decoder for a forward, per token per block (weights excluded)."""
    params = {p.data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}
    kept = []  # holding every saved tensor keeps its address unique: a freed branch's could be reused

    def pack(t):
        if t.numel() and t.data_ptr() not in params:
            kept.append(t)
            key = t.untyped_storage().data_ptr()
            storages[key] = max(storages.get(key, 0), t.untyped_storage().nbytes())
        return t

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    ids = torch.randint(3, 300, tokens)
    ctx = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if autocast
        else contextlib.nullcontext()
    )
    with ctx, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        base.model(input_ids=ids)
    return sum(storages.values()) / (
        tokens[0] * tokens[1] * base.config.num_hidden_layers
    )


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize(
    "variant", ["full", "lora", "lora-dropout", "lora-eager", "dora"]
)
def test_activation_formula_matches_what_autograd_saves(variant, autocast):
    torch.manual_seed(0)
    model = tiny_llama(len(tiny_tokenizer()))
    model.config.use_cache = False
    model.train()
    tokens = (2, 48)
    if (
        variant == "lora-eager"
    ):  # the speed plan's CPU choice: keeps the attention probabilities
        model.set_attn_implementation("eager")
    dropout_widths = rank_widths = 0
    if variant != "full":
        dropout = 0.05 if variant == "lora-dropout" else 0.0
        model = get_peft_model(
            model,
            LoraConfig(
                r=4,
                lora_alpha=8,
                lora_dropout=dropout,
                target_modules="all-linear",
                use_dora=variant == "dora",
            ),
        )
        h, i = 64, 128
        dropout_widths = (
            (6 * h + i) if dropout else 0
        )  # q, k, v, o, gate, up take h; down takes i
        rank_widths = 7 * 4
    shape = ModelShape.from_config(model.config)
    formula = shape.activation_bytes_per_token(
        autocast=autocast, block_weights_train=variant == "full"
    )
    formula += dropout_widths * (3 if autocast else 5) + rank_widths * (
        2 if autocast else 4
    )
    if variant == "lora-eager":
        formula += shape.heads * tokens[1] * (6 if autocast else 4)
    if (
        variant == "dora"
    ):  # outputs: q, o, down h; k, v kv (GQA 2 of 4 heads: 32); gate, up i
        formula += (3 * 64 + 2 * 32 + 2 * 128) * (6 if autocast else 12)
    measured = _saved_bytes_per_token_block(model, autocast, tokens)
    assert formula == pytest.approx(measured, rel=0.12), (formula, measured)


def test_frozen_linear_count_is_what_the_speed_plan_stores_in_bf16(recipe):
    """advise's half-width weights are exactly the weights the runner's speed plan casts."""
    from tuneforge.train.speed_plan import store_frozen_linears

    section = method_section(recipe, "lora")
    for tie in (True, False):
        model = tiny_llama(len(tiny_tokenizer()), tie=tie)
        fp = footprint(model.config, section)
        real = apply_method(tiny_llama(len(tiny_tokenizer()), tie=tie), section)
        freed = store_frozen_linears(real, torch.bfloat16)
        assert fp.frozen_linear_params > 0
        assert freed == 2 * fp.frozen_linear_params  # 4 -> 2 bytes per weight


def test_memory_components_closed_form():
    shape = ModelShape(
        hidden=8,
        intermediate=16,
        layers=3,
        heads=2,
        kv_width=4,
        vocab=100,
        gated_mlp=True,
    )
    step = TrainingShape(
        batch_size=2, seq_len=5, trained_positions_per_example=3, grad_blocks=3
    )
    est = estimate_training_memory(
        shape, total_params=1000, trainable_params=10, step=step, runtime_bytes=7
    )
    per_token = 4 * (7 * 8 + 2 * 4 + 4 * 16)
    assert (est.weights, est.gradients, est.optimizer) == (4000, 40, 80)
    assert est.activations == 2 * 5 * per_token * (3 + 1)
    assert est.logits == 3 * 2 * 3 * 100 * 4
    # peak: weights + optimizer + the larger of (activations + logits) and gradients; the allocator
    # keeps a share of the freed activation memory on top
    assert est.training_tensors == 4000 + 80 + est.activations + est.logits
    assert est.allocator == int(ALLOCATOR_OVERHEAD * (est.activations + est.logits))
    assert est.total == est.training_tensors + est.allocator + 7
    grads_dominate = estimate_training_memory(shape, 10**6, 10**6, step)
    assert grads_dominate.training_tensors == 4 * 10**6 + 8 * 10**6 + 4 * 10**6
    frozen_head_only = estimate_training_memory(
        shape, 1000, 10, TrainingShape(2, 5, 3, grad_blocks=0)
    )
    assert frozen_head_only.activations == 0

    # The speed plan: 600 frozen linear weights stored in bf16, eager attention probabilities kept.
    planned = estimate_training_memory(
        shape,
        1000,
        10,
        TrainingShape(
            2,
            5,
            3,
            autocast=True,
            half_stored_params=600,
            attention_score_bytes=6,
        ),
    )
    assert planned.weights == 400 * 4 + 600 * 2
    autocast_per_token = (
        16 * 8 + 2 * (8 * 8 + 2 * 4 + 4 * 16) + 2 * 5 * 6
    )  # + heads x L x 6
    linear_per_block = 8 * (8 + 2 * 4) + 8 * 8 + 3 * 8 * 16
    copies = 2 * (
        3 * linear_per_block + 100 * 8 - 600
    )  # bf16 copies of what stayed fp32
    assert planned.activations == 2 * 5 * autocast_per_token * (3 + 1) + copies
    checkpointed = estimate_training_memory(
        shape, 1000, 10, TrainingShape(2, 5, 3, activation_checkpointing=True)
    )
    assert checkpointed.activations == 2 * 5 * (4 * 8 * 3 + 2 * per_token)
    # a checkpointed step still allocates and frees every block's activations: same allocator share
    assert checkpointed.allocator == est.allocator
    # a shared 3-token prefix runs once: the second row holds activations for its last 2 tokens only
    shared = estimate_training_memory(shape, 1000, 10, TrainingShape(2, 5, 3, grad_blocks=3, shared_prefix_tokens=3))
    assert shared.activations == (2 * 5 - 3) * per_token * (3 + 1)


def test_advise_table_and_cli(recipe, tiny_model_dir, tmp_path):
    advice = advise(recipe, methods=["lora", "full", "freeze"])
    by_name = {m.footprint.method: m for m in advice.methods}
    assert by_name["full"].footprint.trainable == by_name["full"].footprint.total
    assert (
        by_name["freeze"].footprint.grad_blocks == 2
        and by_name["full"].footprint.grad_blocks == 2
    )
    assert by_name["full"].memory.optimizer > by_name["lora"].memory.optimizer
    text = render(advice)
    assert "suggested LoRA rank: 4" in text and "| lora |" in text
    result = CliRunner().invoke(
        app,
        [
            "advise",
            "--model",
            str(tiny_model_dir),
            "--data",
            recipe.data.train,
            "--methods",
            "lora,ia3",
            "data.max_length=64",
        ],
    )
    assert result.exit_code == 0, result.output
    real = count_parameters(
        apply_method(tiny_llama(len(tiny_tokenizer())), method_section(recipe, "ia3"))
    )[0]
    assert f"| ia3 | {real:,} |" in result.output
    bad = CliRunner().invoke(
        app,
        [
            "advise",
            "--model",
            str(tiny_model_dir),
            "--data",
            recipe.data.train,
            "--methods",
            "lorax",
        ],
    )
    assert bad.exit_code == 2 and "unknown method" in bad.output
    nodata = CliRunner().invoke(app, ["advise", "--model", str(tiny_model_dir)])
    assert nodata.exit_code == 2 and "--data" in nodata.output


def test_measured_run_reports_peak_above_runtime(recipe, tmp_path):
    from tuneforge.advise.measure import measure_training_memory

    recipe = load_recipe(
        base={
            **recipe.model_dump(mode="json"),
            "training": {"batch_size": 4, "precision": "fp32"},
        }
    )
    measured = measure_training_memory(recipe, steps=2)
    assert measured.steps == 2 and measured.peak_mb >= measured.runtime_mb > 100
    assert not Path(
        recipe.output.dir
    ).exists()  # the measured run trains in a temporary directory


def test_dora_output_widths_come_from_the_applied_method(recipe):
    model = tiny_llama(len(tiny_tokenizer()))
    dora = footprint(model.config, method_section(recipe, "dora"))
    lora = footprint(model.config, method_section(recipe, "lora"))
    # all-linear: q, o, down write h = 64; k, v write kv = 32 (GQA); gate, up write i = 128
    assert dora.dora_output_widths == 3 * 64 + 2 * 32 + 2 * 128
    assert lora.dora_output_widths == 0

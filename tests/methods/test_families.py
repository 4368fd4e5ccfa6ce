"""Every entry of the method table has code, and what the table says of a method is what its code does:
prompt learning, what it saves, its callbacks, its LoRA+ ratio, and what the export refuses (whose
agreement with peft's merge is checked per method in test_method_table.py)."""

from __future__ import annotations

import pytest
from peft import PeftModel

from tests.helpers.tiny import tiny_llama
from tests.methods.helpers import VOCAB, build, method
from tuneforge.config.method_table import METHOD_TABLE, METHOD_TYPES, method_spec
from tuneforge.errors import TuneforgeError
from tuneforge.export.merge import check_mergeable, save_merged
from tuneforge.methods import FAMILIES, METHODS, loraplus_ratio, method_callbacks, save_method, saved_dir_name
from tuneforge.methods.adalora import AdaLoraCallback
from tuneforge.methods.prompt import is_prompt_learning

# small options so every method builds on the tiny Llama in well under a second
SMALL = {
    "lora": {"r": 2, "dropout": 0.0},
    "adalora": {"init_r": 2, "target_r": 1},
    "vera": {"r": 8},
    "loha": {"r": 2},
    "lokr": {"r": 2},
    "prefix": {"num_virtual_tokens": 2, "encoder_hidden_size": 8},
    "prompt_tuning": {"num_virtual_tokens": 2},
    "p_tuning": {"num_virtual_tokens": 2, "encoder_hidden_size": 8},
    "freeze": {"train_last_n_layers": 1},
}
# moe needs expert parameters (tests/methods/test_freeze_moe.py); qlora a saved 4-bit base (test_qlora.py)
BUILT_HERE = [t for t in METHOD_TYPES if t not in ("moe", "qlora")]


def cfg(method_type: str) -> dict:
    return {"type": method_type, **{k: v for k, v in SMALL.items() if k in method_spec(method_type).options}}


def test_every_table_entry_has_a_builder_and_every_builder_an_entry():
    assert {spec.family for spec in METHOD_TABLE.values()} == set(FAMILIES)
    assert list(METHODS) == list(METHOD_TYPES)
    for name, spec in METHOD_TABLE.items():
        assert METHODS[name] is FAMILIES[spec.family].apply


@pytest.mark.parametrize("method_type", BUILT_HERE)
def test_the_table_says_what_the_code_does(tmp_path, method_type):
    spec = method_spec(method_type)
    section = method(cfg(method_type))
    model = build(tiny_llama(VOCAB), cfg(method_type))

    assert is_prompt_learning(model) is spec.prompt_learning
    assert isinstance(model, PeftModel) is (spec.family not in ("full", "freeze", "moe", "bottleneck"))

    save_method(model, tmp_path / saved_dir_name(section), section)
    written = {p.name for p in (tmp_path / spec.saves).iterdir()}
    if spec.saves == "model":
        assert "config.json" in written and "adapter_config.json" not in written
    else:
        assert written & {"adapter_config.json", "bottleneck_config.json"}

    callbacks = method_callbacks(model, section)
    assert any(isinstance(c, AdaLoraCallback) for c in callbacks) is (spec.family == "adalora")
    assert (loraplus_ratio(section) is not None) is (spec.loraplus_default_ratio is not None)



@pytest.mark.parametrize("method_type", METHOD_TYPES)
def test_export_refuses_exactly_the_unmergeable_entries_before_touching_weights(tmp_path, method_type):
    section = method({"type": method_type})
    if method_spec(method_type).mergeable:
        check_mergeable(section)
        return
    model = tiny_llama(VOCAB)  # never looked at: the table refuses first
    with pytest.raises(TuneforgeError, match=f"method.type '{method_type}' run cannot be merged"):
        save_merged(model, tokenizer=None, out_dir=tmp_path / "merged", method=section)
    assert not (tmp_path / "merged").exists()

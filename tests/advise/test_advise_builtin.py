"""The memory estimate against a measured run of the built-in model (slow: loads and trains it)."""

from __future__ import annotations

import pytest

from tuneforge.advise import advise
from tuneforge.config import load_recipe


@pytest.mark.slow
def test_lora_estimate_is_within_a_quarter_of_the_measured_peak():
    recipe = load_recipe("examples/quickstart/recipe.yaml", ["training.batch_size=4"])
    advice = advise(recipe, methods=["lora"], measure=True, measure_steps=2)
    estimate_mb = advice.methods[0].memory.training / (1024 * 1024)
    measured = advice.measured
    assert measured.steps == 2 and measured.runtime_mb > 200
    assert estimate_mb == pytest.approx(measured.training_mb, rel=0.25), (
        estimate_mb,
        measured,
    )

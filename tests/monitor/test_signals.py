"""The retraining rules on hand-made numbers, against closed forms."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from tuneforge.monitor.signals import (
    js_divergence,
    ks_statistic,
    length_drift,
    metric_drop,
    satisfaction_drop,
    vocabulary_drift,
)


def test_metric_drop_is_relative_to_the_deployed_value_and_knows_the_direction() -> None:
    assert metric_drop("exact_match", 0.80, 0.77) is None  # 3.75% worse
    fired = metric_drop("exact_match", 0.80, 0.75)  # 6.25% worse
    assert fired is not None and "6.3%" in fired.message  # 0.0625 printed to one decimal
    assert metric_drop("exact_match", 0.80, 0.95) is None  # better
    assert metric_drop("loss", 2.0, 2.08) is None  # 4% worse (lower is better)
    assert metric_drop("loss", 2.0, 2.12) is not None  # 6% worse
    assert metric_drop("perplexity", 10.0, 9.0) is None  # better
    assert metric_drop("loss", 2.0, 2.12, max_drop=0.10) is None


def test_satisfaction_drop_needs_enough_ratings_and_a_fall_over_the_threshold() -> None:
    assert satisfaction_drop((80, 20), (65, 35)) is not None  # 80% -> 65%
    assert satisfaction_drop((80, 20), (72, 28)) is None  # 80% -> 72%: within 10 points
    assert satisfaction_drop((80, 20), (5, 5)) is None  # 10 recent ratings: too few to say
    assert satisfaction_drop((8, 2), (0, 40)) is None  # 10 earlier ratings: no baseline
    assert satisfaction_drop((50, 50), (90, 10)) is None  # rising is fine


def test_ks_statistic_closed_forms() -> None:
    assert ks_statistic([1, 2, 3], [1, 2, 3]) == 0
    assert ks_statistic([1, 2, 3], [4, 5, 6]) == 1
    assert ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == 0.5
    with pytest.raises(ValueError):
        ks_statistic([], [1])


def test_js_divergence_closed_forms() -> None:
    assert js_divergence(Counter(a=3, b=1), Counter(a=6, b=2)) == pytest.approx(0)
    assert js_divergence(Counter(a=1), Counter(b=1)) == pytest.approx(1)
    expected = 0.5 * math.log2(1 / 0.75) + 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25))
    assert js_divergence(Counter(x=1), Counter(x=1, y=1)) == pytest.approx(expected)
    assert js_divergence(Counter(x=1), Counter(x=1, y=1)) == pytest.approx(js_divergence(Counter(x=1, y=1), Counter(x=1)))


def test_length_drift_fires_on_a_shifted_distribution_only() -> None:
    train = [10 + (i % 7) for i in range(100)]
    assert length_drift(train, [10 + (i % 7) for i in range(50)]) is None
    fired = length_drift(train, [40 + (i % 7) for i in range(50)])
    assert fired is not None and "KS statistic 1.00" in fired.message
    assert length_drift(train, [40] * 10) is None  # too few served prompts


def test_vocabulary_drift_fires_on_new_words() -> None:
    train = Counter({f"w{i}": 10 for i in range(40)})
    same = Counter({f"w{i}": 5 for i in range(40)})
    new = Counter({f"v{i}": 5 for i in range(40)})
    assert vocabulary_drift(train, same) is None
    fired = vocabulary_drift(train, new)
    assert fired is not None and "100% of served words" in fired.message
    assert vocabulary_drift(train, Counter(v1=3)) is None  # too few served words

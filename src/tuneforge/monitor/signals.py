"""The retraining rules as pure functions of numbers: each returns a :class:`Trigger` or None.

Kept free of files and HTTP so every threshold is tested on hand-made numbers, and so the command
(:mod:`tuneforge.monitor.check`) is only reading inputs and calling these. The statistics are written
here rather than taken from scipy because each is a few lines and tuneforge does not otherwise need
scipy: the two-sample Kolmogorov-Smirnov statistic (largest gap between two empirical CDFs) for
prompt lengths, and the Jensen-Shannon divergence (base 2, so in [0, 1]) of word frequencies for
vocabulary shift.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

LOWER_IS_BETTER = ("loss", "perplexity", "ppl")


@dataclass(frozen=True)
class Trigger:
    rule: str  # "eval_metric", "satisfaction", "length_drift", "vocabulary_drift"
    message: str


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


def metric_drop(metric: str, deployed: float, current: float, max_drop: float = 0.05) -> Trigger | None:
    """``current`` worse than the deployed run's ``deployed`` by more than ``max_drop`` (relative)."""
    if deployed == 0:
        return None
    worse = (current - deployed) if lower_is_better(metric) else (deployed - current)
    drop = worse / abs(deployed)
    if drop > max_drop:
        return Trigger("eval_metric", f"{metric} is {current:.4g}, {drop:.1%} worse than the deployed run's {deployed:.4g} (limit {max_drop:.0%})")
    return None


def satisfaction(up: int, down: int) -> float | None:
    return up / (up + down) if up + down else None


def satisfaction_drop(
    baseline: tuple[int, int], recent: tuple[int, int], max_drop: float = 0.10, min_ratings: int = 20
) -> Trigger | None:
    """Thumbs-up share of the recent ratings below the earlier share by more than ``max_drop`` (absolute).

    Both windows need ``min_ratings`` ratings: with fewer, one unhappy user would trigger a retrain.
    """
    if sum(baseline) < min_ratings or sum(recent) < min_ratings:
        return None
    before, now = satisfaction(*baseline), satisfaction(*recent)
    assert before is not None and now is not None
    if before - now > max_drop:
        return Trigger("satisfaction", f"thumbs-up share fell from {before:.0%} to {now:.0%} over the last {sum(recent)} ratings (limit: a fall of {max_drop:.0%})")
    return None


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: sup over x of |F_a(x) - F_b(x)|."""
    if not a or not b:
        raise ValueError("both samples need at least one value")
    sa, sb = sorted(a), sorted(b)
    return max(abs(bisect.bisect_right(sa, x) / len(sa) - bisect.bisect_right(sb, x) / len(sb)) for x in sa + sb)


def js_divergence(p: Counter, q: Counter) -> float:
    """Jensen-Shannon divergence of two frequency tables, base 2 (0 = same distribution, 1 = disjoint)."""
    np_, nq = sum(p.values()), sum(q.values())
    if not np_ or not nq:
        raise ValueError("both tables need at least one count")
    total = 0.0
    for key in set(p) | set(q):
        pi, qi = p.get(key, 0) / np_, q.get(key, 0) / nq
        mi = (pi + qi) / 2
        if pi:
            total += 0.5 * pi * math.log2(pi / mi)
        if qi:
            total += 0.5 * qi * math.log2(qi / mi)
    return total


def length_drift(train: Sequence[float], served: Sequence[float], max_ks: float = 0.25, min_prompts: int = 30) -> Trigger | None:
    """Served prompt lengths distributed unlike the training prompts' (KS statistic over ``max_ks``)."""
    if len(train) < min_prompts or len(served) < min_prompts:
        return None
    d = ks_statistic(train, served)
    if d > max_ks:
        median = sorted(served)[len(served) // 2], sorted(train)[len(train) // 2]
        return Trigger("length_drift", f"prompt lengths drifted: KS statistic {d:.2f} > {max_ks} (median {median[0]:g} words served, {median[1]:g} in training)")
    return None


def vocabulary_drift(train: Counter, served: Counter, max_js: float = 0.30, min_words: int = 200) -> Trigger | None:
    """Served prompts use words unlike the training prompts (Jensen-Shannon divergence over ``max_js``)."""
    if sum(train.values()) < min_words or sum(served.values()) < min_words:
        return None
    d = js_divergence(train, served)
    if d > max_js:
        unseen = sum(c for w, c in served.items() if w not in train) / sum(served.values())
        return Trigger("vocabulary_drift", f"prompt vocabulary drifted: Jensen-Shannon divergence {d:.2f} > {max_js}; {unseen:.0%} of served words never occur in the training prompts")
    return None

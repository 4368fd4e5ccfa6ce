"""Category balancing to target proportions by down-sampling (default) or up-sampling.

Two passes over a temporary spill: the first counts each category's rows, the second writes the
chosen ones in their original order. Down-sampling keeps the largest set whose proportions match the
targets without repeating a row; up-sampling repeats rows of small categories (whole copies first,
then a seeded sample) until every category reaches its target share of the largest.
"""

from __future__ import annotations

import copy
import random
from collections import Counter, defaultdict
from collections.abc import Iterator

from tuneforge.config.pipeline import BalanceStep
from tuneforge.datatools.rows import Row
from tuneforge.datatools.spill import Spill
from tuneforge.datatools.trace import Trace
from tuneforge.errors import DataError


def plan_counts(
    counts: dict[str, int], targets: dict[str, float], mode: str
) -> dict[str, int]:
    """Rows per category after balancing (the closed form the tests check)."""
    total = sum(targets.values())
    share = {c: t / total for c, t in targets.items() if t > 0}
    for c in share:
        if counts.get(c, 0) == 0:
            raise DataError(
                f"balance: category '{c}' has a target but no rows",
                hint="remove it from balance.targets or add rows for it",
            )
    if mode == "down":
        n = min(counts[c] / s for c, s in share.items())
        return {c: min(counts[c], round(s * n)) for c, s in share.items()}
    n = max(counts[c] / s for c, s in share.items())
    return {c: max(counts[c], round(s * n)) for c, s in share.items()}


class Balance:
    name = "balance"

    def __init__(self, cfg: BalanceStep) -> None:
        self.cfg = cfg
        self.plan: dict[str, int] = {}

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        cfg = self.cfg
        spill = Spill(rows)
        try:
            by_cat: dict[str, list[int]] = defaultdict(list)
            for i, row in enumerate(spill):
                value = row.data.get(cfg.field)
                if value is not None:
                    by_cat[str(value)].append(i)
            counts = {c: len(v) for c, v in by_cat.items()}
            if not counts:
                raise DataError(
                    f"balance: no row has the field '{cfg.field}'",
                    hint="set balance.field to the key that holds each row's category",
                )
            targets = (
                {c: 1.0 for c in counts}
                if cfg.targets == "uniform"
                else dict(cfg.targets)
            )
            self.plan = plan_counts(counts, targets, cfg.mode)
            rng = random.Random(cfg.seed)
            keep: set[int] = set()
            copies: Counter[int] = Counter()
            for c in sorted(self.plan):
                idx, k = by_cat[c], self.plan[c]
                if k <= len(idx):
                    keep.update(rng.sample(idx, k))
                else:
                    keep.update(idx)
                    extra = k - len(idx)
                    for i in idx:
                        copies[i] += extra // len(idx)
                    for i in rng.sample(idx, extra % len(idx)):
                        copies[i] += 1
            for i, row in enumerate(spill):
                value = row.data.get(cfg.field)
                cat = None if value is None else str(value)
                if cat is None:
                    trace.log(
                        self.name,
                        "removed",
                        row,
                        f"no '{cfg.field}' field to balance on",
                        kind="no category",
                    )
                    continue
                if cat not in self.plan:
                    trace.log(
                        self.name,
                        "removed",
                        row,
                        f"category '{cat}' has no target",
                        kind="category without target",
                    )
                    continue
                if i not in keep:
                    trace.log(
                        self.name,
                        "removed",
                        row,
                        f"down-sampled category '{cat}' ({counts[cat]} -> {self.plan[cat]})",
                        kind="down-sampled",
                    )
                    continue
                yield row
                for j in range(copies[i]):
                    dup = Row(
                        f"{row.source} (copy {j + 1})",
                        copy.deepcopy(row.data),
                        row.format,
                    )
                    trace.log(
                        self.name,
                        "added",
                        dup,
                        f"up-sampled category '{cat}' ({counts[cat]} -> {self.plan[cat]})",
                        kind="up-sampled",
                    )
                    yield dup
        finally:
            spill.close()

"""Streaming statistics for reports: counts, length distribution, category balance.

Lengths are kept as a seeded reservoir sample (Vitter's algorithm R) of at most ``keep`` values plus
exact count/min/max/mean, so a report on a million rows stays small and reproducible.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from tuneforge.datatools.rows import Row, side_text


@dataclass
class Stats:
    category_field: str | None = None
    keep: int = 20000
    rows: int = 0
    chars_total: int = 0
    chars_min: int | None = None
    chars_max: int = 0
    lengths: list[int] = field(default_factory=list)
    categories: Counter = field(default_factory=Counter)
    last_format: str | None = None
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def add(self, row: Row) -> None:
        n = len(side_text(row))
        self.rows += 1
        self.last_format = row.format
        self.chars_total += n
        self.chars_min = n if self.chars_min is None else min(self.chars_min, n)
        self.chars_max = max(self.chars_max, n)
        if len(self.lengths) < self.keep:
            self.lengths.append(n)
        else:
            j = self._rng.randrange(self.rows)
            if j < self.keep:
                self.lengths[j] = n
        if self.category_field:
            value = row.data.get(self.category_field)
            self.categories["(missing)" if value is None else str(value)] += 1

    @property
    def chars_mean(self) -> float:
        return self.chars_total / self.rows if self.rows else 0.0

    def as_json(self) -> dict:
        out = {
            "rows": self.rows,
            "chars_mean": round(self.chars_mean, 1),
            "chars_min": self.chars_min or 0,
            "chars_max": self.chars_max,
        }
        if self.category_field:
            out["categories"] = dict(sorted(self.categories.items()))
        return out

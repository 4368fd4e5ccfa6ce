"""Numbers to table cells for the evaluation and comparison reports.

Every table here has one column per model (or per run, in a comparison) and, for exactly two,
the change from the first to the second: the evaluation code orders models base first, and a
comparison puts the runs in the order given. A value a model does not report shows as ``n/a``:
the report never invents a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tuneforge.observe.render import Table

PerModel = Mapping[str, Mapping[str, Any]]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt(value: Any) -> str:
    """Four significant digits: enough to see a change, short enough to read in a table."""
    if value is None:
        return "n/a"
    if not is_number(value):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def fmt_change(before: Any, after: Any) -> str:
    """Signed difference, blank when either side is missing or not a number."""
    if not (is_number(before) and is_number(after)):
        return ""
    change = after - before
    if isinstance(change, int):
        return f"{change:+,}"
    if not math.isfinite(change):
        return str(change)
    return f"{change:+,.1f}" if abs(change) >= 1000 else f"{change:+.4g}"


def mappings(section: Any) -> dict[str, dict[str, Any]]:
    """``{name: {...}}`` with anything that is not a mapping dropped (hand-edited results files happen)."""
    if not isinstance(section, Mapping):
        return {}
    return {str(name): dict(values) for name, values in section.items() if isinstance(values, Mapping)}


def scalar_keys(per_model: PerModel, order: list[str] | None = None) -> list[str]:
    """Keys holding plain values (not nested sections): ``order`` first, then the rest as first seen."""
    seen: list[str] = []
    for values in per_model.values():
        seen += [k for k, v in values.items() if k not in seen and not isinstance(v, (Mapping, list))]
    first = [k for k in order or [] if k in seen]
    return first + [k for k in seen if k not in first]


def change_header(names: list[str]) -> list[str]:
    return [f"change ({names[1]} - {names[0]})"] if len(names) == 2 else []


def model_table(
    per_model: PerModel,
    *,
    keys: list[str] | None = None,
    labels: Mapping[str, str] | None = None,
    key_header: str = "metric",
) -> Table:
    """One row per key (``keys`` or every plain key), one column per model, plus the change for a pair."""
    names = list(per_model)
    labels = labels or {}
    header = [key_header, *names, *change_header(names)]
    rows = []
    for key in keys if keys is not None else scalar_keys(per_model):
        values = [per_model[n].get(key) for n in names]
        row = [labels.get(key, key), *(fmt(v) for v in values)]
        if len(names) == 2:
            row.append(fmt_change(*values))
        rows.append(row)
    return Table(header, rows)


def nested_table(per_model: PerModel, group_header: str, metric_header: str = "metric") -> Table | None:
    """``{model: {group: {metric: value}}}`` as rows (group, metric); None when no model has any."""
    names = list(per_model)
    groups: list[str] = []
    metrics: dict[str, list[str]] = {}
    for values in per_model.values():
        for group, inner in mappings(values).items():
            if group not in metrics:
                groups.append(group)
                metrics[group] = []
            metrics[group] += [m for m in inner if m not in metrics[group]]
    if not groups:
        return None
    rows = []
    for group in groups:
        for metric in metrics[group]:
            cells = [mappings(per_model[n]).get(group, {}).get(metric) for n in names]
            row = [group, metric, *(fmt(v) for v in cells)]
            if len(names) == 2:
                row.append(fmt_change(*cells))
            rows.append(row)
    return Table([group_header, metric_header, *names, *change_header(names)], rows, text_columns=2)


def confusion_table(labels: list[Any], matrix: list[list[Any]]) -> Table:
    """Rows are the reference label, columns the predicted one, as the contract writes them."""
    header = ["reference \\ predicted", *(str(label) for label in labels)]
    rows = [[str(label), *(fmt(count) for count in counts)] for label, counts in zip(labels, matrix)]
    return Table(header, rows)

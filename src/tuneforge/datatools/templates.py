"""Template filling: rows from templates with ``{slot}`` placeholders and a JSON file of slot values.

A pipeline step of its own (``step: templates`` in a recipe's ``data.pipeline``, ``--templates`` /
``--slots`` of ``tuneforge data augment``) rather than a CLI extra, so a recipe can generate the same
rows the command does. The step passes its input rows through and appends the filled rows after
them, so later steps (dedup, balance) treat them like any other row. Every filled row is checked
with the training parser here: a template that fills into a row training would reject fails now,
naming the template file, instead of at training time.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

from tuneforge.config.pipeline import TemplatesStep
from tuneforge.data.formats import detect_format
from tuneforge.data.readers import read_rows
from tuneforge.data.records import BadRow
from tuneforge.datatools.rows import Row, check_row
from tuneforge.datatools.trace import Trace
from tuneforge.errors import DataError


class Templates:
    """Appends the template-filled rows after the input rows (a pipeline step)."""

    name = "templates"

    def __init__(self, cfg: TemplatesStep) -> None:
        self.cfg = cfg

    def run(self, rows: Iterator[Row], trace: Trace) -> Iterator[Row]:
        yield from rows
        cfg = self.cfg
        filled = fill_templates(cfg.templates, cfg.slots, cfg.limit, cfg.seed)
        for i, data in enumerate(filled, 1):
            row = Row(
                f"{cfg.templates} (filled {i})", data, detect_format(data, cfg.templates)
            )
            err = check_row(row)
            if err is not None:
                field = f"field '{err.field}' " if err.field else ""
                raise DataError(
                    f"{cfg.templates}: filled template {i} is not a valid {row.format} row: {field}{err.reason}"
                )
            trace.log(self.name, "added", row, "template filled", kind="template filled")
            yield row


def fill_templates(
    templates: str | Path, slots: str | Path, limit: int | None = None, seed: int = 0
) -> Iterator[dict]:
    """Rows from templates with ``{slot}`` placeholders and a JSON file of slot values.

    Every combination of the slots a template uses is produced (in a seeded random order when
    ``limit`` caps them); unknown slots are an error naming the template's line.
    """
    sp = Path(slots)
    try:
        values = json.loads(sp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{sp}: cannot read slot values ({exc})",
            hint='a JSON object such as {"city": ["Paris", "Rome"]}',
        ) from None
    if not isinstance(values, dict) or not all(
        isinstance(v, list) and v for v in values.values()
    ):
        raise DataError(f"{sp}: slot values must be a JSON object of non-empty lists")
    rng = random.Random(seed)
    for raw in read_rows(templates):
        if isinstance(raw, BadRow):
            raise DataError(f"template {raw.describe()}")
        blob = json.dumps(raw.data, ensure_ascii=False)
        names = sorted(set(re.findall(r"\{(\w+)\}", blob)))
        missing = [n for n in names if n not in values]
        if missing:
            raise DataError(
                f"{raw.source}: template uses unknown slot(s) {', '.join(missing)}",
                hint=f"define them in {sp}",
            )
        combos = list(itertools.product(*(values[n] for n in names)))
        if limit is not None and len(combos) > limit:
            combos = rng.sample(combos, limit)
        for combo in combos:
            text = blob
            for n, v in zip(names, combo):
                text = text.replace(
                    "{" + n + "}", json.dumps(str(v), ensure_ascii=False)[1:-1]
                )
            yield json.loads(text)

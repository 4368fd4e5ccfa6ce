"""The data toolkit behind ``tuneforge data ...`` and the recipe's ``data.pipeline``.

One module per step (normalize, dedup, safety, refusals, balance, judge, augment, templates, convert,
chunk), plus the block/allow lists safety and refusals share, mix/split, inspect/validate, the trace
of removed and changed rows, and the report. Steps work on a stream of
:class:`~tuneforge.datatools.rows.Row` so files larger than memory can be cleaned.
"""

"""Padding-free batches: a micro-batch's examples joined into one row, kept apart by position ids.

Padding a batch to its longest example wastes compute on pad tokens; joining the examples end to
end wastes none. Examples must still not see each other: each segment's position ids restart at 0,
and transformers turns restarting position ids into a block-diagonal causal mask (one block per
example) when the model gets no 2-D attention mask and no cache (``use_cache=False``; with a cache,
transformers skips the block mask and packed logits come out wrong, measured on CPU with transformers 5). A test checks
that a packed forward equals per-example forwards, logits and loss.

The collator packs exactly the examples of one micro-batch, so the optimiser sees the same examples
per step as with padding and the update is the same; only the padding work disappears. The first
label of every segment is ignored: in a joined row the previous example's last token would otherwise
be trained to predict it (in an unpacked row that label has no predecessor and is never used either).

The row also carries an all-ones ``attention_mask`` for one reason only: the Trainer counts
non-padding tokens from it (this tokenizer's pad token is also its end-of-turn token, so counting
"not pad" would miss every trained end-of-turn). :func:`model_inputs` removes it before the forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tuneforge.data.render import IGNORE_INDEX

PACKED_KEY = "position_ids"


@dataclass
class PackedCollator:
    """Joins a list of {"input_ids", "labels"} features into a single [1, total] row with position ids."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("PackedCollator got an empty batch")
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for f in features:
            n = len(f["input_ids"])
            if n == 0:
                raise ValueError("PackedCollator got an example with no tokens")
            if len(f["labels"]) != n:
                raise ValueError(
                    f"example has {n} input ids but {len(f['labels'])} labels"
                )
            ids.extend(f["input_ids"])
            labels.append(
                IGNORE_INDEX
            )  # never trained: no token of this example precedes it
            labels.extend(f["labels"][1:])
            positions.extend(range(n))
        row = torch.tensor(ids, dtype=torch.long).unsqueeze(0)
        return {
            "input_ids": row,
            "labels": torch.tensor(labels, dtype=torch.long).unsqueeze(0),
            PACKED_KEY: torch.tensor(positions, dtype=torch.long).unsqueeze(0),
            "attention_mask": torch.ones_like(
                row
            ),  # for the Trainer's token count only; see module docstring
        }


def is_packed(inputs: dict) -> bool:
    """True for a batch made by :class:`PackedCollator` (position ids, one row)."""
    return PACKED_KEY in inputs and inputs["input_ids"].shape[0] == 1


def model_inputs(inputs: dict) -> dict:
    """The batch as the model must see it: packed rows lose the all-ones mask, so the block mask applies."""
    if is_packed(inputs) and "attention_mask" in inputs:
        mask = inputs["attention_mask"]
        if not bool(mask.all()):
            raise ValueError("a packed batch must not contain padding")
        inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
    return inputs

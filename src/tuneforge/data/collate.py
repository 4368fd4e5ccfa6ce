"""Batch collation: right padding, labels padded with IGNORE_INDEX, an attention mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tuneforge.data.render import IGNORE_INDEX


@dataclass
class PadCollator:
    """Pads a list of {"input_ids", "labels"} features to the longest in the batch.

    ``pad_to_multiple_of`` keeps shapes in a few buckets, which helps kernels that specialise on shape.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.tensor(f["labels"], dtype=torch.long)
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

"""Batches for preference training.

Pairs: chosen and rejected sequences are stacked into one right-padded batch ``[chosen..., rejected...]``
so the policy runs one forward per step. Unpaired (KTO): the examples, plus a second batch of
mismatched (prompt, other completion) sequences for the KL reference point. Precomputed reference
log-probs, when the features carry them, travel as ``ref_logps`` (and ``ref_kl_logps``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tuneforge.data.render import IGNORE_INDEX
from tuneforge.data.preference_examples import PairExample, Side, UnpairedExample


def pad_sides(sides: Sequence[Side], pad_token_id: int) -> dict[str, torch.Tensor]:
    longest = max(len(s.input_ids) for s in sides)
    ids = torch.full((len(sides), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(sides), longest), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(sides), longest), dtype=torch.long)
    for i, s in enumerate(sides):
        n = len(s.input_ids)
        ids[i, :n] = torch.tensor(s.input_ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(s.labels, dtype=torch.long)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def mismatched_side(
    prompt_of: Side, completion_of: Side, max_length: int | None = None
) -> Side:
    """Prompt of one example followed by the answer of another: KTO's sample of y ~ policy(.|x') for the KL estimate."""
    p, c = prompt_of.prompt_length, completion_of.prompt_length
    ids = prompt_of.input_ids[:p] + completion_of.input_ids[c:]
    labels = [IGNORE_INDEX] * p + completion_of.labels[c:]
    if max_length and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return Side(ids, labels)


@dataclass
class PreferenceFeature:
    """What the dataset yields: an example plus its precomputed reference log-probs, if any."""

    example: PairExample | UnpairedExample
    kl_side: Side | None = None
    ref: tuple[float, ...] | None = None


@dataclass
class PairCollator:
    pad_token_id: int

    def __call__(self, features: list[PreferenceFeature]) -> dict[str, torch.Tensor]:
        pairs = [f.example for f in features]
        batch = pad_sides(
            [p.chosen for p in pairs] + [p.rejected for p in pairs], self.pad_token_id
        )  # type: ignore[union-attr]
        if all(f.ref is not None for f in features):
            batch["ref_logps"] = torch.tensor(
                [f.ref[0] for f in features] + [f.ref[1] for f in features],
                dtype=torch.float32,
            )  # type: ignore[index]
        return batch


@dataclass
class UnpairedCollator:
    pad_token_id: int

    def __call__(self, features: list[PreferenceFeature]) -> dict[str, torch.Tensor]:
        batch = pad_sides([f.example.side for f in features], self.pad_token_id)  # type: ignore[union-attr]
        batch["desirable"] = torch.tensor(
            [f.example.desirable for f in features], dtype=torch.bool
        )  # type: ignore[union-attr]
        kl = pad_sides([f.kl_side for f in features], self.pad_token_id)  # type: ignore[misc]
        batch.update({f"kl_{k}": v for k, v in kl.items()})
        if all(f.ref is not None for f in features):
            batch["ref_logps"] = torch.tensor(
                [f.ref[0] for f in features], dtype=torch.float32
            )  # type: ignore[index]
            batch["ref_kl_logps"] = torch.tensor(
                [f.ref[1] for f in features], dtype=torch.float32
            )  # type: ignore[index]
        return batch

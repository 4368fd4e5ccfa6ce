"""training.group_by_length: transformers' LengthGroupedSampler draws the micro-batches, so less of each is padding.

Checked against the sampler's definition (a random permutation cut into mega-batches of
``min(n // (4 b), 50) * b`` examples, each sorted by descending length, the longest example moved to
the front): every mega-batch comes out sorted, every example is seen once an epoch, and the padded
tokens fall well below a random order's on examples of mixed lengths.
"""

from __future__ import annotations

import torch

from tests.helpers.tiny import tiny_llama
from tuneforge.config import load_recipe
from tuneforge.data.prepare import prepare_chat
from tuneforge.data.records import ChatRecord, Message
from tuneforge.models.precision import Precision
from tuneforge.train.arguments import training_arguments
from tuneforge.train.nonfinite import ROWS_KEY
from tuneforge.train.trainer import make_trainer

BATCH, N = 3, 48  # mega-batches of min(48 // 12, 50) * 3 = 12 examples


def _examples(tokenizer):
    gen = torch.Generator().manual_seed(0)
    words = torch.randint(1, 30, (N,), generator=gen).tolist()  # answers of 1..29 words: lengths vary a lot
    recs = [ChatRecord((Message("user", f"Q{i}?"), Message("assistant", " ".join(["word"] * w))), f"t:{i}") for i, w in enumerate(words)]
    return prepare_chat(recs, tokenizer, 256, "truncate")[0]


def _batches(tokenizer, tmp_path, grouped: bool):
    recipe = load_recipe(
        base={"data": {"train": "unused"}, "method": {"type": "full"}, "output": {"dir": str(tmp_path)}},
        overrides=[f"training.batch_size={BATCH}", f"training.group_by_length={str(grouped).lower()}", "training.seed=3"],
    )
    args = training_arguments(recipe, tmp_path, Precision("fp32", "cpu", "test"), has_val=False)
    assert args.train_sampling_strategy == ("group_by_length" if grouped else "random")
    examples = _examples(tokenizer)
    trainer = make_trainer(tiny_llama(len(tokenizer), seed=0), args, tokenizer, examples, [])
    lengths = [len(e.input_ids) for e in examples]
    return [[lengths[i] for i in batch[ROWS_KEY].tolist()] for batch in trainer.get_train_dataloader()], lengths


def _padded(batches) -> int:
    return sum(max(b) * len(b) for b in batches)


def test_grouped_batches_follow_the_sampler_and_pad_less(tokenizer, tmp_path):
    grouped, lengths = _batches(tokenizer, tmp_path / "g", grouped=True)
    shuffled, _ = _batches(tokenizer, tmp_path / "r", grouped=False)
    order = [n for b in grouped for n in b]
    assert sorted(order) == sorted(lengths)  # every example once, none dropped
    mega = 4 * BATCH
    for start in range(0, N, mega):
        block = order[start : start + mega]
        assert block[1:] == sorted(block[1:], reverse=True), start  # sorted within the mega-batch
    assert order[0] == max(lengths)  # the longest batch first, so an out-of-memory shows at step 1
    real = sum(lengths)
    assert _padded(grouped) - real < 0.5 * (_padded(shuffled) - real)

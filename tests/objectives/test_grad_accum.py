"""Batch 4 x accumulation 1 and batch 1 x accumulation 4 give the same update (loss normalised by tokens)."""


from tests.helpers.tiny import tiny_llama
from tuneforge.config import load_recipe
from tuneforge.data.prepare import prepare_chat
from tuneforge.data.records import ChatRecord, Message
from tuneforge.models.precision import Precision
from tuneforge.train.arguments import training_arguments
from tuneforge.train.trainer import make_trainer


def _examples(tokenizer):
    # Very different answer lengths: a per-micro-batch mean would weight their tokens differently.
    answers = ["Yes.", "The capital of France is Paris, and it is a large city.", "No.", "Hello! How are you today? I am fine, thank you."]
    recs = [ChatRecord((Message("user", f"Question {i}?"), Message("assistant", a)), f"t:{i}") for i, a in enumerate(answers)]
    return prepare_chat(recs, tokenizer, 256, "truncate")[0]


def _one_step(tokenizer, tmp_path, batch, accum):
    recipe = load_recipe(
        base={"data": {"train": "unused"}, "method": {"type": "full"}, "output": {"dir": str(tmp_path)}},
        overrides=[f"training.batch_size={batch}", f"training.grad_accum={accum}", "training.max_steps=1",
                   "training.lr_scheduler=constant", "training.warmup_ratio=0", "training.max_grad_norm=1e9"],
    )
    args = training_arguments(recipe, tmp_path, Precision("fp32", "cpu", "test"), has_val=False)
    args.optim = "sgd"
    args.learning_rate = 1.0
    args.save_strategy = "no"
    model = tiny_llama(len(tokenizer), seed=0).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    make_trainer(model, args, tokenizer, _examples(tokenizer), []).train()
    return {n: before[n] - p.detach() for n, p in model.named_parameters()}  # = lr * grad


def test_accumulation_equals_big_batch(tokenizer, tmp_path):
    big = _one_step(tokenizer, tmp_path / "a", batch=4, accum=1)
    small = _one_step(tokenizer, tmp_path / "b", batch=1, accum=4)
    worst = max(float((big[n] - small[n]).abs().max() / (big[n].abs().max() + 1e-12)) for n in big)
    assert any(float(v.abs().max()) > 0 for v in big.values())
    assert worst < 1e-4, f"relative difference {worst}"

"""AI feedback for RLAIF: sample two answers per prompt from the policy, let a judge pick one, keep the labelled pairs.

The judge is asked twice per pair, answers swapped (:func:`tuneforge.datatools.pairwise.compare_both_orders`),
so a judge that always picks the first (or the second) answer labels nothing: its verdicts disagree
and the pair is a tie, counted and written to ``ties.jsonl``, never trained on. Consistent pairs
are written in our preference format (prompt/chosen/rejected, plus the judge's two verdicts and
reasons) so a user can read them and train on them again with ``objective.type: dpo``.

Sampling, labelling and the statistics are separate functions, so a stub judge (any object with
``ask(prompts) -> replies``) exercises the labelling exactly, and the recipe passes its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tuneforge.config.judge_client import JudgeClient
from tuneforge.config.rlaif import RlaifOptions
from tuneforge.data.preference import PreferenceRecord
from tuneforge.data.records import PromptRecord
from tuneforge.datatools.judge import JudgeBackend, make_backend
from tuneforge.datatools.pairwise import DEFAULT_RUBRIC, PAIRWISE_SYSTEM, PairVerdict, compare_both_orders, tally
from tuneforge.rewards.scorer import prompt_text
from tuneforge.train.rollout import Sampling, generate_rollout

PAIRS_FILE = "pairs.jsonl"
TIES_FILE = "ties.jsonl"


def pairwise_judge(client: JudgeClient) -> JudgeBackend:
    """The recipe's judge with the pairwise system message (the endpoint when one is set, else the local model)."""
    return make_backend(client, system=PAIRWISE_SYSTEM)


@dataclass(frozen=True)
class SampledPair:
    """Two sampled answers to one prompt, in sampling order (a first)."""

    record: PromptRecord
    a: str
    b: str


@dataclass(frozen=True)
class LabelledPair:
    """A sampled pair and what the judge said; ``verdict`` is None when the pair was not judged (``skipped`` says why)."""

    pair: SampledPair
    verdict: PairVerdict | None
    skipped: str | None = None  # "identical" or "empty"
    round: int = 1

    @property
    def labelled(self) -> bool:
        return self.verdict is not None and self.verdict.winner != "tie"

    @property
    def chosen(self) -> str:
        return self.pair.a if self.verdict is not None and self.verdict.winner == "a" else self.pair.b

    @property
    def rejected(self) -> str:
        return self.pair.b if self.verdict is not None and self.verdict.winner == "a" else self.pair.a


@torch.no_grad()
def sample_pairs(
    model, tokenizer, records: Sequence[PromptRecord], options: RlaifOptions, *, seed: int, autocast_dtype: torch.dtype | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[SampledPair]:
    """``options.pairs_per_prompt`` pairs per record from the policy as it is, seeded (same seed, same pairs).

    Rollouts share each prompt's prefill across its samples (train/rollout.py); sample ``2k`` and
    ``2k + 1`` of a prompt form its pair ``k``. ``on_batch(done, total)`` reports the prompts sampled so far.
    """
    per_prompt = 2 * options.pairs_per_prompt
    sampling = Sampling(per_prompt, options.max_new_tokens, options.temperature, options.top_p, options.top_k)
    torch.manual_seed(seed)
    pairs: list[SampledPair] = []
    for start in range(0, len(records), options.sample_batch_size):
        batch = list(records[start : start + options.sample_batch_size])
        texts = generate_rollout(model, tokenizer, batch, sampling, autocast_dtype=autocast_dtype).completions
        for j, record in enumerate(batch):
            mine = texts[j * per_prompt : (j + 1) * per_prompt]
            pairs.extend(SampledPair(record, mine[k], mine[k + 1]) for k in range(0, per_prompt, 2))
        if on_batch is not None:
            on_batch(start + len(batch), len(records))
    return pairs


def label_pairs(backend: JudgeBackend, pairs: Sequence[SampledPair], rubric: str | None = None, *, round_no: int = 1) -> list[LabelledPair]:
    """Judge every pair in both orders; identical or empty pairs are not asked (they cannot become a preference row)."""
    skipped = {i: _skip_reason(p) for i, p in enumerate(pairs)}
    asked = [i for i, why in skipped.items() if why is None]
    verdicts = compare_both_orders(
        backend,
        [prompt_text(pairs[i].record) for i in asked],
        [pairs[i].a for i in asked],
        [pairs[i].b for i in asked],
        rubric or DEFAULT_RUBRIC,
    ) if asked else []  # fmt: skip
    by_index = dict(zip(asked, verdicts))
    return [LabelledPair(p, by_index.get(i), skipped[i], round_no) for i, p in enumerate(pairs)]


def _skip_reason(pair: SampledPair) -> str | None:
    if not pair.a.strip() or not pair.b.strip():
        return "empty"
    if pair.a.strip() == pair.b.strip():
        return "identical"
    return None


def labelling_stats(labelled: Sequence[LabelledPair]) -> dict[str, float | int | None]:
    """What a labelling pass produced.

    ``pairs``: labelled (consistent) pairs, the ones trained on; ``ties``: judged pairs whose two
    verdicts disagreed or could not be read; ``consistent_share``: pairs / judged;
    ``position_bias_rate``: share of judged pairs where the judge named the same position in both
    orders (always "1" or always "2"), the bias the second order cancels; ``chosen_longer_share``:
    share of labelled pairs whose chosen answer is the longer one (a judge's length bias shows here).
    """
    judged = [x.verdict for x in labelled if x.verdict is not None]
    counts = tally(judged)
    same_position = sum(v.ab_choice is not None and v.ab_choice == v.ba_choice for v in judged)
    kept = [x for x in labelled if x.labelled]
    return {
        "sampled_pairs": len(labelled),
        "identical": sum(x.skipped == "identical" for x in labelled),
        "empty": sum(x.skipped == "empty" for x in labelled),
        "judged": len(judged),
        "pairs": len(kept),
        "ties": counts["ties"],
        "unparsed": sum(v.ab_choice is None or v.ba_choice is None for v in judged),
        "consistent_share": len(kept) / len(judged) if judged else None,
        "position_bias_rate": same_position / len(judged) if judged else None,
        "chosen_longer_share": sum(len(x.chosen) > len(x.rejected) for x in kept) / len(kept) if kept else None,
    }


def _judge_fields(x: LabelledPair) -> dict:
    v = x.verdict
    assert v is not None
    return {
        "winner": v.winner,  # a/b: the first/second sample; tie: the orders disagreed
        "a_first": {"choice": v.ab_choice, "reason": v.ab_reason},
        "b_first": {"choice": v.ba_choice, "reason": v.ba_reason},
    }


def pair_row(x: LabelledPair) -> dict:
    """One pairs.jsonl row: our preference format (read by ``data.format: preference``) plus the judge's verdicts."""
    return {
        "prompt": x.pair.record.as_dicts(),
        "chosen": x.chosen,
        "rejected": x.rejected,
        "prompt_source": x.pair.record.source,
        "round": x.round,
        "judge": _judge_fields(x),
    }


def tie_row(x: LabelledPair) -> dict:
    """One ties.jsonl row: both answers in sampling order and both verdicts, for auditing the judge."""
    return {
        "prompt": x.pair.record.as_dicts(),
        "a": x.pair.a,
        "b": x.pair.b,
        "prompt_source": x.pair.record.source,
        "round": x.round,
        "judge": _judge_fields(x),
    }


def write_labels(directory: Path, labelled: Sequence[LabelledPair]) -> Path:
    """Append the labelled pairs to ``directory/pairs.jsonl`` and the ties to ``ties.jsonl``; returns pairs.jsonl."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / PAIRS_FILE).open("a", encoding="utf-8") as pairs, (directory / TIES_FILE).open("a", encoding="utf-8") as ties:
        for x in labelled:
            if x.labelled:
                pairs.write(json.dumps(pair_row(x), ensure_ascii=False) + "\n")
            elif x.verdict is not None:
                ties.write(json.dumps(tie_row(x), ensure_ascii=False) + "\n")
    return directory / PAIRS_FILE


def preference_records(labelled: Sequence[LabelledPair]) -> list[PreferenceRecord]:
    """The labelled pairs as preference records (what reading their pairs.jsonl rows gives, sources aside)."""
    return [
        PreferenceRecord(x.pair.record.messages, x.chosen, x.rejected, f"{x.pair.record.source}#round{x.round}")
        for x in labelled
        if x.labelled
    ]


def judged_win_rate(
    backend: JudgeBackend, records: Sequence[PromptRecord], tuned: Sequence[str], base: Sequence[str], rubric: str | None = None
) -> dict:
    """The judge's verdict on tuned vs base answers to the same held-out prompts, both orders.

    ``win_rate`` counts a tie as half a win; identical answers are ties without asking the judge
    (counted as ``identical``). ``inconsistent`` pairs are ties too.
    """
    differ = [i for i in range(len(records)) if tuned[i].strip() != base[i].strip()]
    verdicts = compare_both_orders(
        backend, [prompt_text(records[i]) for i in differ], [tuned[i] for i in differ], [base[i] for i in differ], rubric or DEFAULT_RUBRIC
    ) if differ else []  # fmt: skip
    counts = tally(verdicts)
    identical = len(records) - len(differ)
    total = len(records)
    return {
        "a": "tuned",
        "b": "base",
        "pairs": total,
        "wins_a": counts["wins_a"],
        "wins_b": counts["wins_b"],
        "ties": counts["ties"] + identical,
        "inconsistent": counts["inconsistent"],
        "identical": identical,
        "win_rate": (counts["wins_a"] + 0.5 * (counts["ties"] + identical)) / total if total else None,
    }

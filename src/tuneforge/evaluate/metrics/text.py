"""Text-overlap metrics through their reference libraries: BLEU and chrF (sacrebleu), ROUGE (rouge-score).

No hand-written versions: published scores are computed with these libraries, and their tokenisation
and smoothing choices are what make numbers comparable across papers and runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from tuneforge.config.eval import EvalSection
from tuneforge.evaluate.metrics.structured import check_lengths, mean

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def sacrebleu_scores(predictions: Sequence[str], reference_sets: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU and chrF2 (0-100, sacrebleu's defaults: 13a tokeniser, exp smoothing) against one or more reference sets.

    ``reference_sets[k][i]`` is the k-th reference of prediction ``i``, sacrebleu's layout.
    """
    for refs in reference_sets:
        check_lengths(list(predictions), list(refs))
    preds, refs = list(predictions), [list(r) for r in reference_sets]
    return {"bleu": BLEU().corpus_score(preds, refs).score, "chrf": CHRF().corpus_score(preds, refs).score}


def bleu(predictions: list[str], references: list[str], options: EvalSection) -> dict[str, float]:
    """Corpus BLEU, 0-100 (an empty eval set scores 0)."""
    if not predictions:
        return {"bleu": 0.0}
    return {"bleu": sacrebleu_scores(predictions, [references])["bleu"]}


def chrf(predictions: list[str], references: list[str], options: EvalSection) -> dict[str, float]:
    """Corpus chrF2 (character n-gram F-score, beta 2), 0-100."""
    if not predictions:
        return {"chrf": 0.0}
    return {"chrf": sacrebleu_scores(predictions, [references])["chrf"]}


def rouge(predictions: list[str], references: list[str], options: EvalSection) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over the examples (rouge-score; reference is its 'target')."""
    check_lengths(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=options.rouge_stemmer)
    per_type: dict[str, list[float]] = {t: [] for t in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)
        for t in ROUGE_TYPES:
            per_type[t].append(scores[t].fmeasure)
    return {t: mean(v) for t, v in per_type.items()}

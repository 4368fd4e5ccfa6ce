"""BLEU/chrF (sacrebleu) and ROUGE (rouge-score) against the numbers printed in those libraries' own docs."""

from __future__ import annotations

import pytest

from tuneforge.config.eval import EvalSection
from tuneforge.evaluate.metrics import compute_metrics, sacrebleu_scores

# sacrebleu's README, "Using SacreBLEU from Python": two reference sets, three system sentences.
README_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
README_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]

# rouge-score's README / RougeScorer docstring example (target first, prediction second).
ROUGE_TARGET = "The quick brown fox jumps over the lazy dog"
ROUGE_PREDICTION = "The quick brown dog jumps on the log."


def test_bleu_and_chrf_match_the_sacrebleu_readme() -> None:
    scores = sacrebleu_scores(README_SYS, README_REFS)
    assert round(scores["bleu"], 2) == 48.53  # "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ...)"
    assert round(scores["chrf"], 2) == 59.73  # "chrF2 = 59.73"


def test_bleu_metric_is_corpus_bleu_with_one_reference() -> None:
    perfect = compute_metrics(["bleu", "chrf"], README_SYS, README_SYS)
    assert perfect == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    assert compute_metrics(["bleu"], ["completely different words here"], ["The dog bit the man."])["bleu"] == pytest.approx(0.0)


def test_rouge_matches_the_rouge_score_readme_example() -> None:
    # With the stemmer (as the README example): rouge1 P=6/8, R=6/9; rougeL (LCS 5) P=5/8, R=5/9;
    # rouge2: 2 shared bigrams (the quick, quick brown) of 7 predicted and 8 reference bigrams.
    got = compute_metrics(["rouge"], [ROUGE_PREDICTION], [ROUGE_TARGET], EvalSection(metrics=["rouge"]))
    assert got["rouge1"] == pytest.approx(2 * 0.75 * (6 / 9) / (0.75 + 6 / 9))  # 0.70588
    assert got["rougeL"] == pytest.approx(2 * 0.625 * (5 / 9) / (0.625 + 5 / 9))  # 0.58824
    assert got["rouge2"] == pytest.approx(4 / 15)
    assert got["rouge1"] == pytest.approx(0.7058823529411765)
    assert got["rougeL"] == pytest.approx(0.5882352941176471)


def test_rouge_stemmer_option_changes_the_score() -> None:
    # "jumps"/"jumped" match only once stemmed ("jump")
    plain = compute_metrics(["rouge"], ["he jumped"], ["he jumps"], EvalSection(rouge_stemmer=False))
    stemmed = compute_metrics(["rouge"], ["he jumped"], ["he jumps"], EvalSection(rouge_stemmer=True))
    assert plain["rouge1"] == pytest.approx(0.5)
    assert stemmed["rouge1"] == pytest.approx(1.0)


def test_rouge_is_the_mean_over_examples() -> None:
    got = compute_metrics(["rouge"], [ROUGE_PREDICTION, "a b"], [ROUGE_TARGET, "a b"])
    assert got["rouge1"] == pytest.approx((0.7058823529411765 + 1.0) / 2)

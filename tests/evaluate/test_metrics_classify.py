"""Classification accuracy, macro-F1 and the confusion table on a hand-computed case."""

from __future__ import annotations

import pytest

from tuneforge.config.eval import EvalSection
from tuneforge.errors import DataError
from tuneforge.evaluate.metrics import classify, compute_metrics

REFS = ["billing", "billing", "billing", "refund", "refund", "shipping"]
PREDS = ["billing", "Billing ", "refund", "refund", "billing", "shipping"]


def test_hand_computed_macro_f1_and_confusion() -> None:
    # Rows = reference, columns = predicted, labels sorted: billing, refund, shipping.
    #            billing refund shipping
    # billing       2      1      0
    # refund        1      1      0
    # shipping      0      0      1
    # F1(billing) = 2*2/(3+3) = 2/3; F1(refund) = 2*1/(2+2) = 1/2; F1(shipping) = 1
    result = classify(PREDS, REFS, EvalSection())
    assert result.labels == ["billing", "refund", "shipping"]
    assert result.matrix == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert compute_metrics(["classification"], PREDS, REFS) == {"accuracy": pytest.approx(4 / 6), "macro_f1": pytest.approx(13 / 18)}


def test_prediction_outside_the_label_set_is_wrong_and_shown_as_other() -> None:
    result = classify(["billing", "I think refund"], ["billing", "refund"], EvalSection(labels=["billing", "refund"]))
    assert result.labels == ["billing", "refund", "(other)"]
    assert result.matrix == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    # F1(billing) = 2*1/(1+1) = 1; F1(refund) = 0 (no true positive)
    assert result.macro_f1 == pytest.approx(0.5)
    assert result.table() == {"labels": ["billing", "refund", "(other)"], "matrix": [[1, 0, 0], [0, 0, 1], [0, 0, 0]]}


def test_label_set_counts_labels_never_seen() -> None:
    # scikit-learn's macro average with labels=...: an absent label scores 0 and still counts
    result = classify(["a", "b"], ["a", "b"], EvalSection(labels=["a", "b", "c"]))
    assert result.macro_f1 == pytest.approx(2 / 3)


def test_case_sensitive_option() -> None:
    assert classify(["Yes"], ["yes"], EvalSection(case_sensitive=True, labels=["yes", "Yes"])).accuracy == 0.0
    assert classify(["Yes"], ["yes"], EvalSection()).accuracy == 1.0


def test_reference_outside_the_label_set_names_the_example() -> None:
    with pytest.raises(DataError, match="eval example 2: reference label 'maybe'"):
        classify(["yes", "no"], ["yes", "maybe"], EvalSection(labels=["yes", "no"]))

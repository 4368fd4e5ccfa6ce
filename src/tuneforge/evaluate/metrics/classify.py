"""Classification answers: accuracy, macro-F1 over a label set, and the confusion table behind them.

Written here rather than taken from scikit-learn, which tuneforge does not depend on for three sums;
the macro-F1 follows scikit-learn's ``f1_score(average="macro", labels=..., zero_division=0)``: every
label in the set counts, and a label with no true or predicted rows scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.config.eval import EvalSection
from tuneforge.errors import DataError
from tuneforge.evaluate.metrics.structured import check_lengths, mean

OTHER = "(other)"  # the column of predictions outside the label set


@dataclass(frozen=True)
class Classification:
    accuracy: float
    macro_f1: float
    labels: list[str]  # rows and columns of ``matrix``; OTHER last when a prediction fell outside the set
    matrix: list[list[int]]  # matrix[reference][predicted]

    def table(self) -> dict:
        """results.json ``confusion`` entry: rows are reference labels, columns predicted labels."""
        return {"labels": self.labels, "matrix": self.matrix}


def _norm(text: str, case_sensitive: bool) -> str:
    text = text.strip()
    return text if case_sensitive else text.lower()


def label_set(references: list[str], options: EvalSection) -> list[str]:
    """eval.labels (normalised, in the given order), else the distinct references, sorted."""
    if options.labels is not None:
        return list(dict.fromkeys(_norm(label, options.case_sensitive) for label in options.labels))
    return sorted({_norm(r, options.case_sensitive) for r in references})


def classify(predictions: list[str], references: list[str], options: EvalSection) -> Classification:
    """Score label answers; a reference outside eval.labels is a data error (it names the example)."""
    check_lengths(predictions, references)
    labels = label_set(references, options)
    index = {label: i for i, label in enumerate(labels)}
    refs = [_norm(r, options.case_sensitive) for r in references]
    preds = [_norm(p, options.case_sensitive) for p in predictions]
    for i, ref in enumerate(refs):
        if ref not in index:
            raise DataError(
                f"eval example {i + 1}: reference label {references[i]!r} is not in eval.labels {options.labels}",
                hint="add it to eval.labels, or fix the reference answer",
            )
    outside = any(p not in index for p in preds)
    columns = labels + [OTHER] if outside else labels
    matrix = [[0] * len(columns) for _ in columns]
    for ref, pred in zip(refs, preds):
        matrix[index[ref]][index.get(pred, len(labels))] += 1
    f1s = []
    for k in range(len(labels)):
        tp = matrix[k][k]
        predicted = sum(row[k] for row in matrix)
        actual = sum(matrix[k])
        f1s.append(2 * tp / (predicted + actual) if predicted + actual else 0.0)  # = 2PR/(P+R)
    accuracy = mean([float(r == p) for r, p in zip(refs, preds)])
    return Classification(accuracy, mean(f1s), columns, matrix)


def classification(predictions: list[str], references: list[str], options: EvalSection) -> dict[str, float]:
    """Accuracy and macro-F1 (the confusion table comes from :func:`classify`, for the report)."""
    result = classify(predictions, references, options)
    return {"accuracy": result.accuracy, "macro_f1": result.macro_f1}

"""Binary anomaly detection across datasets: the AD-FM and LR-IAD protocols.

AD-FM (section 4.3, Table 2) reports binary classification accuracy per target set for a
model trained on MVTec AD only, and turns the continuous scores of CLIP-style baselines into
decisions with the threshold that maximises Youden's J (:func:`youden_threshold`). LR-IAD
(section IV-B, Tables V and VI) reports accuracy and F1-macro per set and per category.

Input rows: ``eval_set``, ``category``, ``is_anomalous`` (bool), ``predicted_anomalous``
(bool, or null when the answer could not be read). Our choices where the papers are silent:

- An unreadable prediction counts as wrong: in accuracy, and in F1 as a miss of the true
  class (a false negative) without being a prediction of the other class (no false
  positive), as scikit-learn treats a third predicted label with ``labels`` fixed.
- F1-macro is the unweighted mean of the F1 of the classes "normal" and "anomalous", over
  those that occur as a label or a prediction (a class with TP + FP + FN = 0 is left out, so a
  set of anomalous images alone is not halved by an absent normal class).
- Accuracies and F1 are percentages; ``normal_acc`` / ``anomaly_acc`` are null for a set
  without normal / anomalous images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from iad_pipeline.answers import chosen_option
from iad_pipeline.errors import IadError
from iad_pipeline.questions.prompts import EMIT_NO, EMIT_YES

INPUT_COLUMNS = ("eval_set", "category", "is_anomalous", "predicted_anomalous")


class CrossDatasetError(IadError, ValueError):
    """Predictions or scores that cannot be evaluated."""


def _class_f1(tp: pl.Expr, fp: pl.Expr, fn: pl.Expr) -> pl.Expr:
    """F1 of one class in percent, null when the class neither occurs nor is predicted."""
    denominator = 2 * tp + fp + fn
    return pl.when(denominator > 0).then(2 * tp / denominator * 100)


def _metrics(df: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    missing = [c for c in INPUT_COLUMNS if c not in df.columns]
    if missing:
        msg = (
            f"binary predictions lack the columns {missing}; found {df.columns}; expected "
            f"{list(INPUT_COLUMNS)} (predicted_anomalous null when unreadable)"
        )
        raise CrossDatasetError(msg)
    if df["is_anomalous"].null_count():
        msg = "binary predictions: is_anomalous is null in some rows; expected a label per image"
        raise CrossDatasetError(msg)
    label = pl.col("is_anomalous").cast(pl.Boolean)
    pred = pl.col("predicted_anomalous").cast(pl.Boolean)
    hit = (pred == label).fill_null(False)
    counts = df.group_by(*keys, maintain_order=True).agg(
        n=pl.len(),
        correct=hit.sum(),
        tp=(label & pred).fill_null(False).sum(),  # anomalous called anomalous
        an=(label & ~pred).fill_null(False).sum(),  # anomalous called normal
        tn=(~label & ~pred).fill_null(False).sum(),  # normal called normal
        fp=(~label & pred).fill_null(False).sum(),  # normal called anomalous
        normals=(~label).sum(),
        anomalous=label.sum(),
    )
    # Per class: TP, FP (the other class called this one), FN (this class not called so,
    # unreadable included).
    tp, an, tn, fp = (pl.col(c) for c in ("tp", "an", "tn", "fp"))
    f1_anomalous = _class_f1(tp, fp, pl.col("anomalous") - tp)
    f1_normal = _class_f1(tn, an, pl.col("normals") - tn)
    return counts.select(
        *keys,
        accuracy=pl.col("correct") / pl.col("n") * 100,
        f1_macro=pl.mean_horizontal(f1_normal, f1_anomalous),
        n=pl.col("n").cast(pl.Int64),
        normal_acc=pl.when(pl.col("normals") > 0).then(pl.col("tn") / pl.col("normals") * 100),
        anomaly_acc=pl.when(pl.col("anomalous") > 0).then(pl.col("tp") / pl.col("anomalous") * 100),
        correct=pl.col("correct").cast(pl.Int64),
    )


def binary_prediction(letter: Any, options: Sequence[str]) -> bool | None:
    """Whether a parsed answer letter calls the image anomalous, ``None`` when unreadable.

    The letter comes from the shared parser (:mod:`iad_pipeline.answers`, the protocol's
    rule) and names an option (:func:`~iad_pipeline.answers.chosen_option`); EMIT's binary
    options are ``"Yes."`` (anomalous) and ``"No."`` (normal). Any other option text, or no
    letter, is unreadable.

    >>> binary_prediction("A", ["Yes.", "No."]), binary_prediction("A", ["No.", "Yes."])
    (True, False)
    >>> binary_prediction(None, ["Yes.", "No."]) is None, binary_prediction("C", ["Yes.", "No."])
    (True, None)
    """
    chosen = chosen_option(letter, options)
    if chosen == EMIT_YES:
        return True
    if chosen == EMIT_NO:
        return False
    return None


def predictions_frame(
    answers: pl.DataFrame, questions: pl.DataFrame, eval_set: str, rule: str = "mmad"
) -> pl.DataFrame:
    """The binary predictions of a run's answers (:data:`INPUT_COLUMNS`).

    Args:
        answers: the run's answer records (``question_id``, ``parsed_mmad``, ``parsed_think``).
        questions: the questions asked (``question_id``, ``options``, ``answer``,
            ``category``); the truth is the option the answer names (``Yes.``: anomalous).
        eval_set: the set's name.
        rule: the protocol's answer rule: ``mmad`` reads ``parsed_mmad``, ``think``
            ``parsed_think``.
    """
    column = "parsed_mmad" if rule == "mmad" else "parsed_think"
    joined = answers.select("question_id", column).join(
        questions.select("question_id", "options", "answer", "category"),
        on="question_id",
        how="inner",
    )
    rows = []
    for row in joined.iter_rows(named=True):
        truth = binary_prediction(row["answer"], row["options"])
        if truth is None:
            msg = (
                f"question {row['question_id']}: answer {row['answer']!r} of options "
                f"{row['options']} is neither {EMIT_YES!r} nor {EMIT_NO!r}; expected a binary "
                "anomaly question (EMIT's anomaly_detection task)"
            )
            raise CrossDatasetError(msg)
        rows.append(
            {
                "eval_set": eval_set,
                "category": row["category"],
                "is_anomalous": truth,
                "predicted_anomalous": binary_prediction(row[column], row["options"]),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "eval_set": pl.String,
            "category": pl.String,
            "is_anomalous": pl.Boolean,
            "predicted_anomalous": pl.Boolean,
        },
    )


def binary_metrics(df: pl.DataFrame) -> pl.DataFrame:
    """Accuracy, F1-macro and per-class accuracy of each evaluation set.

    Args:
        df: rows ``eval_set, category, is_anomalous, predicted_anomalous`` (see module doc).

    Returns:
        ``eval_set, accuracy, f1_macro, n, normal_acc, anomaly_acc, correct``, sets in
        first-appearance order, metrics in percent, ``correct`` the exact count.

    Raises:
        CrossDatasetError: missing columns or a null label.

    Example:
        >>> df = pl.DataFrame({"eval_set": ["mpdd"] * 4, "category": ["gear"] * 4,
        ...     "is_anomalous": [True, True, False, False],
        ...     "predicted_anomalous": [True, None, False, True]})
        >>> # anomalous: TP 1, FP 1, FN 1 -> F1 2/4 = 50; normal: TP 1, FP 0, FN 1 -> F1 2/3
        >>> [round(v, 2) for v in binary_metrics(df).row(0)[1:]]  # (50 + 66.67) / 2
        [50.0, 58.33, 4, 50.0, 50.0, 2]
    """
    return _metrics(df, ["eval_set"])


def per_category(df: pl.DataFrame) -> pl.DataFrame:
    """:func:`binary_metrics` per ``(eval_set, category)``: LR-IAD's Tables V and VI.

    Returns:
        ``eval_set, category, accuracy, f1_macro, n, normal_acc, anomaly_acc, correct``.
    """
    return _metrics(df, ["eval_set", "category"])


def youden_threshold(
    scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray
) -> tuple[float, float]:
    """The score threshold that maximises Youden's J = TPR - FPR (AD-FM's CLIP baselines).

    An image is called anomalous when its score is at least the threshold. The candidates
    are the sorted unique scores; ties in J go to the smallest threshold.

    Args:
        scores: anomaly scores, higher meaning more anomalous (finite).
        labels: truth per score, ``True``/1 for anomalous.

    Returns:
        ``(threshold, j)``.

    Raises:
        CrossDatasetError: lengths differ, a score is not finite, or one class is absent.

    Example:
        >>> # t=0.1: TPR 1, FPR 1 -> 0; t=0.35: 1, .5 -> .5; t=0.4: .5, .5 -> 0; t=0.8: .5, 0 -> .5
        >>> youden_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        (0.35, 0.5)
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        msg = f"youden_threshold: {s.shape} scores and {y.shape} labels; expected equal lengths"
        raise CrossDatasetError(msg)
    if not np.isfinite(s).all():
        msg = "youden_threshold: found a NaN or infinite score; expected finite scores"
        raise CrossDatasetError(msg)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        msg = (
            f"youden_threshold: found {positives} anomalous and {negatives} normal labels; "
            f"expected both classes (TPR and FPR need both)"
        )
        raise CrossDatasetError(msg)
    thresholds = np.unique(s)
    # Items scoring at least t: those from t's first position in the sorted scores onwards.
    tp = positives - np.searchsorted(np.sort(s[y]), thresholds, side="left")
    fp = negatives - np.searchsorted(np.sort(s[~y]), thresholds, side="left")
    # Compare J = tp/P - fp/N exactly, as (tp*N - fp*P) / (P*N), so that equal J values tie
    # whatever the rounding of the two quotients.
    best = int(np.argmax(tp * negatives - fp * positives))  # the first maximum: smallest t
    return float(thresholds[best]), float(tp[best] / positives - fp[best] / negatives)

"""Comparisons with the untrained base model and with trivial answerers, as pure functions.

- :func:`deltas_vs_base`: per (dataset, question type), a checkpoint's accuracy minus its
  recipe's base model's, flagged when it falls more than a margin below (reasoning
  post-training can collapse anomaly discrimination below the base model).
- :func:`accuracy_by_type`: from the answers of one evaluation, per question type: n, correct,
  accuracy with its 95% Wilson interval, chance (1 / options) and the majority-letter baseline
  (always answering the most frequent correct letter), so a number can be read against both.
"""

from __future__ import annotations

import math

import polars as pl

DEFAULT_MARGIN = 2.0  # percentage points


def deltas_vs_base(
    ours: pl.DataFrame, base: pl.DataFrame, margin: float = DEFAULT_MARGIN
) -> pl.DataFrame:
    """``(dataset, type, base, ours, delta, below_base)`` from two ``(dataset, type,
    accuracy)`` frames (accuracies in %); ``below_base`` when ``delta < -margin``.

    >>> ours = pl.DataFrame({"dataset": ["V", "V"], "type": ["AD", "DC"], "accuracy": [70.0, 40.0]})
    >>> base = pl.DataFrame({"dataset": ["V", "V"], "type": ["AD", "DC"], "accuracy": [50.0, 45.0]})
    >>> deltas_vs_base(ours, base)["below_base"].to_list()
    [False, True]
    """
    if margin < 0:
        msg = f"margin={margin}; expected >= 0 percentage points"
        raise ValueError(msg)
    keys = ["dataset", "type"]
    joined = ours.select(*keys, pl.col("accuracy").alias("ours")).join(
        base.select(*keys, pl.col("accuracy").alias("base")), on=keys, how="inner"
    )
    return (
        joined.filter(pl.col("ours").is_not_null() & pl.col("base").is_not_null())
        .with_columns((pl.col("ours") - pl.col("base")).alias("delta"))
        .with_columns((pl.col("delta") < -margin).alias("below_base"))
        .select(*keys, "base", "ours", "delta", "below_base")
        .sort(keys)
    )


def wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of ``correct / n``, in %.

    >>> [round(x, 1) for x in wilson(70, 100)]
    [60.4, 78.1]
    """
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (100 * (centre - half), 100 * (centre + half))


def accuracy_by_type(
    answers: pl.DataFrame, n_options: dict[str, int] | None = None
) -> pl.DataFrame:
    """Per ``question_type`` of an ``answers`` frame (``question_type``, ``correct_answer``,
    ``gpt_answer``): n, correct, accuracy, 95% interval, chance and majority-letter baseline.

    ``n_options`` gives the number of options per type (chance = 100 / options); by default
    the number of distinct correct letters seen for the type.

    >>> a = pl.DataFrame({"question_type": ["AD"] * 4, "correct_answer": list("AABB"),
    ...                   "gpt_answer": list("AABA")})
    >>> accuracy_by_type(a).select("n", "accuracy", "chance", "majority").row(0)
    (4, 75.0, 50.0, 50.0)
    """
    rows = []
    for (qtype,), group in answers.group_by("question_type", maintain_order=True):
        n = group.height
        correct = int((group["gpt_answer"] == group["correct_answer"]).fill_null(False).sum())
        letters = group["correct_answer"].value_counts(sort=True)
        options = (n_options or {}).get(qtype) or max(letters.height, 1)
        low, high = wilson(correct, n)
        rows.append(
            {
                "question_type": qtype,
                "n": n,
                "correct": correct,
                "accuracy": 100 * correct / n if n else math.nan,
                "ci_low": low,
                "ci_high": high,
                "chance": 100 / options,
                "majority": 100 * letters["count"][0] / n if n else math.nan,
            }
        )
    return pl.DataFrame(rows).sort("question_type") if rows else pl.DataFrame()


FINDING = "Anomaly Detection: finding"
_THINK_WORD = r"<think>\s*(Yes|No)\b"


def finding_accuracy(answers: pl.DataFrame) -> pl.DataFrame:
    """How often an anomaly-detection response's think block states the right finding.

    For models trained with ``sft.think: option`` the think block opens with the text of the
    option they believe (``<think>Yes</think>``: a defect), before the letter. The truth comes
    from the query's path (MMAD's layouts keep normal queries under a ``good`` folder). A
    response whose think block states neither counts as wrong. One row like
    :func:`accuracy_by_type`'s, ``question_type`` :data:`FINDING`; chance 50 %, ``majority``
    the share of the more common truth. ``answers`` needs ``question_type``, ``image`` and
    ``response``.

    >>> a = pl.DataFrame({"question_type": ["Anomaly Detection"] * 3,
    ...                   "image": ["x/good/0.png", "x/crack/1.png", "x/crack/2.png"],
    ...                   "response": ["<think>No</think>", "<think>Yes</think>", "B"]})
    >>> finding_accuracy(a).select("n", "correct", "majority").row(0)
    (3, 2, 66.66666666666667)
    """
    ad = answers.filter(pl.col("question_type") == "Anomaly Detection")
    if ad.is_empty():
        return pl.DataFrame()
    truth = (
        pl.when(pl.col("image").str.contains("/good/")).then(pl.lit("No")).otherwise(pl.lit("Yes"))
    )
    said = pl.col("response").str.extract(_THINK_WORD, 1)
    ad = ad.with_columns(truth=truth, said=said)
    n = ad.height
    correct = int((ad["said"] == ad["truth"]).fill_null(False).sum())
    low, high = wilson(correct, n)
    top = ad["truth"].value_counts(sort=True)["count"][0]
    row = {
        "question_type": FINDING,
        "n": n,
        "correct": correct,
        "accuracy": 100 * correct / n,
        "ci_low": low,
        "ci_high": high,
        "chance": 50.0,
        "majority": 100 * top / n,
    }
    return pl.DataFrame([row])

"""Binary cross-dataset metrics (AD-FM, LR-IAD) and Youden's J threshold."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.crossdataset import (
    CrossDatasetError,
    binary_metrics,
    per_category,
    predictions_frame,
    youden_threshold,
)

T, F, N = True, False, None
approx = pytest.approx


def frame(labels, preds, eval_set="mpdd", categories=None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "eval_set": [eval_set] * len(labels),
            "category": categories or ["gear"] * len(labels),
            "is_anomalous": labels,
            "predicted_anomalous": preds,
        },
        schema={
            "eval_set": pl.String,
            "category": pl.String,
            "is_anomalous": pl.Boolean,
            "predicted_anomalous": pl.Boolean,
        },
    )


@pytest.mark.parametrize(
    ("labels", "preds", "expected"),
    [
        # (accuracy, f1_macro, n, normal_acc, anomaly_acc), all in percent
        ([T, F], [T, F], (100.0, 100.0, 2, 100.0, 100.0)),
        # all called anomalous: anomalous F1 = 2*2/(4+2+0) = 66.67; normal F1 = 0/(0+0+2) = 0
        ([T, T, F, F], [T, T, T, T], (50.0, approx(100 / 3), 4, 0.0, 100.0)),
        # unreadable counts wrong; each class: TP 0, FP 0, FN 1 -> F1 0
        ([T, F], [N, N], (0.0, 0.0, 2, 0.0, 0.0)),
        # anomalous only: anomalous TP 1, FN 1 -> 2/3; normal TP 0, FP 1 -> 0; macro 1/3
        ([T, T], [T, F], (50.0, approx(100 / 3), 2, None, 50.0)),
        # anomalous only, the miss unreadable: the normal class never occurs -> left out
        ([T, T], [T, N], (50.0, approx(200 / 3), 2, None, 50.0)),
        # anomalous TP 1 FP 1 FN 1 -> 50; normal TP 1 FP 0 FN 1 -> 66.67; macro 58.33
        ([T, T, F, F], [T, N, F, T], (50.0, approx(175 / 3), 4, 50.0, 50.0)),
    ],
)
def test_binary_metrics(labels, preds, expected):
    out = binary_metrics(frame(labels, preds))
    assert out.columns == [
        "eval_set",
        "accuracy",
        "f1_macro",
        "n",
        "normal_acc",
        "anomaly_acc",
        "correct",
    ]
    assert out.row(0)[1:6] == expected
    assert out["correct"][0] == sum(
        p is not None and p == t for t, p in zip(labels, preds, strict=True)
    )


def test_sets_keep_first_appearance_and_per_category_splits():
    df = pl.concat(
        [
            frame([T, F], [T, T], "visa", ["pcb1", "pcb2"]),
            frame([T, F, F], [T, F, F], "dtd", ["wood", "wood", "mesh"]),
        ]
    )
    sets = binary_metrics(df)
    assert sets["eval_set"].to_list() == ["visa", "dtd"]
    assert sets["accuracy"].to_list() == [50.0, 100.0]
    cats = per_category(df)
    assert cats.select("eval_set", "category", "n", "accuracy").rows() == [
        ("visa", "pcb1", 1, 100.0),
        ("visa", "pcb2", 1, 0.0),
        ("dtd", "wood", 2, 100.0),
        ("dtd", "mesh", 1, 100.0),
    ]
    # pcb2: one normal image called anomalous -> normal F1 0, anomalous F1 0 (FP 1)
    assert cats.row(1, named=True)["f1_macro"] == 0.0


def test_binary_metrics_errors():
    with pytest.raises(CrossDatasetError, match="predicted_anomalous"):
        binary_metrics(frame([T], [T]).drop("predicted_anomalous"))
    with pytest.raises(CrossDatasetError, match="is_anomalous is null"):
        binary_metrics(frame([N], [T]))


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        # candidates 0.1, 0.35, 0.4, 0.8: J = 0, .5, 0, .5 -> tie, smallest
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], (0.35, 0.5)),
        # perfect separation: at 0.8, TPR 1 and FPR 0
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], (0.8, 1.0)),
        # one score for all: TPR 1, FPR 1
        ([0.5, 0.5, 0.5], [0, 1, 1], (0.5, 0.0)),
        # inverted scores: the best is calling everything anomalous (J 0) at the smallest
        ([0.9, 0.1], [0, 1], (0.1, 0.0)),
        # shared scores: 0.3 -> 1 - 1 = 0; 0.6 -> .5 - .5 = 0 -> tie, smallest
        ([0.3, 0.3, 0.6, 0.6], [0, 1, 0, 1], (0.3, 0.0)),
        # booleans as labels, negative scores
        ([-2.0, -1.0, 3.0], [False, True, True], (-1.0, 1.0)),
    ],
)
def test_youden_threshold(scores, labels, expected):
    assert youden_threshold(scores, labels) == expected


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "expected both classes"),
        ([0.1, 0.2], [0, 0], "expected both classes"),
        ([], [], "expected both classes"),
        ([0.1, float("nan")], [0, 1], "finite"),
        ([0.1, 0.2], [0, 1, 1], "equal lengths"),
    ],
)
def test_youden_errors(scores, labels, message):
    with pytest.raises(CrossDatasetError, match=message):
        youden_threshold(scores, labels)


@settings(max_examples=100, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=2, max_size=50).filter(
        lambda p: len({label for _, label in p}) == 2
    )
)
def test_youden_matches_brute_force(pairs):
    scores = np.array([s / 4 for s, _ in pairs])
    labels = np.array([label for _, label in pairs])
    best = None
    for t in sorted(set(scores.tolist())):  # ascending, so ">" keeps the smallest on ties
        called = scores >= t
        j = Fraction(int(called[labels].sum()), int(labels.sum())) - Fraction(
            int(called[~labels].sum()), int((~labels).sum())
        )
        if best is None or j > best[1]:
            best = (t, j)
    threshold, j = youden_threshold(scores, labels)
    assert threshold == best[0]
    assert j == approx(float(best[1]), abs=1e-12)


# --- predictions through the shared parser ---------------------------------------------------


def test_predictions_come_from_the_parsed_letter_and_the_options():
    questions = pl.DataFrame(
        {
            "question_id": ["q1", "q2", "q3", "q4", "q5"],
            "options": [
                ["Yes.", "No."],
                ["No.", "Yes."],
                ["Yes.", "No."],
                ["No.", "Yes."],
                ["Yes.", "No."],
            ],
            "answer": [
                "A",
                "A",
                "B",
                "B",
                "A",
            ],  # truth: anomalous, normal, normal, anomalous, anomalous
            "category": ["pcb1"] * 5,
        }
    )
    answers = pl.DataFrame(
        {
            "question_id": ["q1", "q2", "q3", "q4", "q5"],
            # q2: "A" names "No." in its order (normal): right although A means Yes elsewhere;
            # q5: no letter was read: unreadable, counted wrong
            "parsed_mmad": ["A", "A", "A", "B", None],
            "parsed_think": ["B", "B", "B", "A", "A"],
        }
    )
    out = predictions_frame(answers, questions, "visa")
    assert out.select("is_anomalous", "predicted_anomalous").rows() == [
        (True, True),
        (False, False),
        (False, True),
        (True, True),
        (True, None),
    ]
    m = binary_metrics(out)
    assert (m["correct"][0], m["n"][0], m["accuracy"][0]) == (3, 5, 60.0)
    think = predictions_frame(answers, questions, "visa", rule="think")
    assert think["predicted_anomalous"].to_list() == [False, True, False, False, True]


def test_a_question_that_is_not_yes_or_no_is_refused():
    questions = pl.DataFrame(
        {"question_id": ["q"], "options": [["Top.", "Left."]], "answer": ["A"], "category": ["c"]}
    )
    answers = pl.DataFrame({"question_id": ["q"], "parsed_mmad": ["A"], "parsed_think": ["A"]})
    with pytest.raises(CrossDatasetError, match=r"neither 'Yes\.' nor 'No\.'"):
        predictions_frame(answers, questions, "visa")

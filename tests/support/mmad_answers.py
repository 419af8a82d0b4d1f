"""MMAD answer files built by hand for the scoring tests: a record, a file read back, its cells.

Every case writes MMAD's own answer format (a JSON list) and reads it back with
``load_answer_records``, as the scorer's input arrives in a real evaluation.
"""

from __future__ import annotations

import json

import polars as pl

from eval.records import load_answer_records

AD, DC, DL, DD, DA, OC = (
    "Anomaly Detection",
    "Defect Classification",
    "Defect Localization",
    "Defect Description",
    "Defect Analysis",
    "Object Classification",
)
OS, OD, OA = "Object Structure", "Object Details", "Object Analysis"
BOTTLE_CRACK = "DS-MVTec/bottle/image/crack/000.png"
BOTTLE_GOOD = "DS-MVTec/bottle/image/good/001.png"
CANDLE_BAD = "VisA/candle/test/bad/002.JPG"
CANDLE_GOOD = "VisA/candle/test/good/003.JPG"


def rec(image: str, qtype: str, correct: str, answer: str) -> dict:
    return {
        "image": image,
        "question": {"Question": "q", "Answer": correct, "Options": {"A": "x", "B": "y"}},
        "question_type": qtype,
        "correct_answer": correct,
        "gpt_answer": answer,
    }


def load(tmp_path, rows: list[dict]) -> pl.DataFrame:
    path = tmp_path / "answers_1_shot_model.json"
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    return load_answer_records(path)


def cells(scores) -> dict[tuple[str, str], float | None]:
    table = scores.table
    return {
        (row["dataset"], col): row[col]
        for row in table.iter_rows(named=True)
        for col in table.columns[1:]
    }


# Two datasets, three types: cells are plain accuracies (worked out in test_scoring.py)
ALL_PARSEABLE = [
    rec(BOTTLE_CRACK, AD, "A", "A"),  # anomalous, right
    rec(BOTTLE_CRACK, DC, "B", "B"),  # right
    rec(BOTTLE_CRACK, DC, "B", "C"),  # wrong
    rec(BOTTLE_GOOD, AD, "B", "A"),  # normal, wrong
    rec(BOTTLE_GOOD, OC, "A", "A"),  # right
    rec(CANDLE_BAD, AD, "A", "A"),  # anomalous, right
    rec(CANDLE_BAD, DC, "C", "C"),  # right
    rec(CANDLE_BAD, OC, "A", "B"),  # wrong
    rec(CANDLE_GOOD, AD, "B", "B"),  # normal, right
]

# VisA has no defect-classification question: an empty cell (0 officially, null strictly)
EMPTY_CELL = [
    rec(BOTTLE_CRACK, DC, "A", "A"),  # DS-MVTec DC 1/1
    rec(BOTTLE_CRACK, OC, "A", "B"),  # DS-MVTec OC 0/1
    rec(CANDLE_BAD, OC, "A", "A"),  # VisA OC 1/1; VisA has no DC question
]

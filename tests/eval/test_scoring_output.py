"""MMAD's scores written out: the CSV layout MMAD writes, the printed table, and the one-line
errors for records the scorer cannot score."""

from __future__ import annotations

import csv

import polars as pl
import pytest

from eval.reports import format_table, write_mmad_csv
from eval.scoring import ScoringError, score_mmad
from tests.support.mmad_answers import (
    AD,
    ALL_PARSEABLE,
    DC,
    EMPTY_CELL,
    OC,
    load,
)


# -- output ------------------------------------------------------------------------------------
def test_csv_layout(tmp_path):
    scores = score_mmad(load(tmp_path, ALL_PARSEABLE))
    path = write_mmad_csv(scores, tmp_path / "out" / "answers_accuracy.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["", AD, DC, OC, "Average"]  # first header cell empty
    assert [r[0] for r in rows[1:]] == ["DS-MVTec", "VisA", "Average"]
    assert rows[1] == ["DS-MVTec", "50.0", "50.0", "100.0", repr(200 / 3)]  # unrounded
    assert [p.name for p in path.parent.iterdir()] == ["answers_accuracy.csv"]  # no temp file


def test_csv_strict_null_is_empty_and_extras_append(tmp_path):
    scores = score_mmad(load(tmp_path, EMPTY_CELL), "strict")
    path = write_mmad_csv(scores, tmp_path / "strict.csv", extras=True)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["", DC, OC, "Average", "Recall", "Precision", "F1", "Overkill", "Miss"]
    assert rows[2][:4] == ["VisA", "", "100.0", "100.0"]
    assert rows[2][4:] == ["", "", "", "", ""]  # no anomaly-detection questions


def test_format_table(tmp_path):
    text = format_table(score_mmad(load(tmp_path, EMPTY_CELL), "strict"))
    lines = text.splitlines()
    assert lines[0].split() == [
        "dataset",
        "Defect",
        "Classification",
        "Object",
        "Classification",
        "Average",
    ]
    assert lines[2].split() == ["VisA", "-", "100.00", "100.00"]
    assert lines[-1] == "strict: 3 scored, 0 dropped, 0 skipped"
    assert len({len(line) for line in lines[:-1]}) == 1  # fixed width


@pytest.mark.parametrize(
    ("records", "mode", "message"),
    [
        (pl.DataFrame({"image": ["a/b"], "question_type": [DC]}), "official", "correct_answer"),
        (pl.DataFrame({"image": ["a/b"]}, schema={"image": pl.String}).clear(), "strict", "lack"),
        (
            pl.DataFrame(
                {"image": [], "question_type": [], "correct_answer": [], "gpt_answer": []},
                schema=dict.fromkeys(
                    ("image", "question_type", "correct_answer", "gpt_answer"), pl.String
                ),
            ),
            "official",
            "no answer records",
        ),
        (
            pl.DataFrame(
                {
                    "image": ["a/b"],
                    "question_type": [DC],
                    "correct_answer": ["A"],
                    "gpt_answer": ["A"],
                }
            ),
            "lenient",
            "unknown scoring mode",
        ),
        (
            pl.DataFrame(
                {
                    "image": ["a/b"],
                    "question_type": [None],
                    "correct_answer": ["A"],
                    "gpt_answer": ["A"],
                },
                schema=dict.fromkeys(
                    ("image", "question_type", "correct_answer", "gpt_answer"), pl.String
                ),
            ),
            "official",
            "record 1",
        ),
    ],
)
def test_errors(records, mode, message):
    with pytest.raises(ScoringError, match=message):
        score_mmad(records, mode)

"""Rows for the results warehouse tests: a run, its answers and scores, recorded in one call."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from eval.warehouse import Warehouse
from eval.warehouse_schema import FRAME_COLUMNS

UTC = dt.UTC
AD, DC = "Anomaly Detection", "Defect Classification"


def make_run(run_id: str = "r1", **fields: Any) -> dict[str, Any]:
    run = {
        "run_id": run_id,
        "eval_set": "mmad",
        "checkpoint": "ckpt-100",
        "recipe": "emit",
        "model": "qwen2.5-vl-7b",
        "protocol": "mmad-1shot",
        "backend": "hf",
        "code_version": "abc123",
        "started_at": dt.datetime(2025, 1, 1, 10, tzinfo=UTC),
        "finished_at": dt.datetime(2025, 1, 1, 11, tzinfo=UTC),
        "n_questions": 2,
        "headline": 70.0,
    }
    return {**run, **fields}


def make_answers(run_id: str = "r1", n: int = 2, question: str = "Is there a defect?"):
    return pl.DataFrame(
        {
            "run_id": [run_id] * n,
            "question_id": [f"q{i}" for i in range(n)],
            "image": [f"DS-MVTec/bottle/image/good/{i:03d}.png" for i in range(n)],
            "dataset": ["DS-MVTec"] * n,
            "category": ["bottle"] * n,
            "question": [question] * n,
            "question_type": [AD] * n,
            "correct_answer": ["A"] * n,
            "response": ["<think>looks fine</think><answer>A</answer>"] * n,
            "gpt_answer": ["A"] * n,
            "parsed_mmad": ["A"] * n,
            "parsed_think": [None] * n,
            "latency_s": [0.5] * n,
        },
        schema_overrides={"parsed_think": pl.String},
    )


def make_by_type(run_id: str = "r1", accuracy: float = 70.0) -> pl.DataFrame:
    rows = [("DS-MVTec", AD, accuracy, 2), ("Average", AD, accuracy, 2)]
    rows += [("Average", "Average", accuracy, 2)]
    return pl.DataFrame(
        [(run_id, *r) for r in rows], schema=list(FRAME_COLUMNS["scores_by_type"]), orient="row"
    )


def make_by_category(run_id: str = "r1", cells: dict[tuple[str, str, str], float] | None = None):
    cells = cells or {("DS-MVTec", "bottle", AD): 70.0}
    rows = [(run_id, d, c, t, round(a), 100, a) for (d, c, t), a in cells.items()]
    return pl.DataFrame(rows, schema=list(FRAME_COLUMNS["scores_by_category"]), orient="row")


def record(wh: Warehouse, run_id: str = "r1", cells=None, n_answers: int = 2, **fields: Any):
    return wh.record_run(
        make_run(run_id, **fields),
        make_answers(run_id, n_answers),
        make_by_type(run_id, fields.get("headline", 70.0) or 0.0),
        make_by_category(run_id, cells),
    )


def counts(wh: Warehouse, run_id: str) -> dict[str, int]:
    tables = ("runs", *FRAME_COLUMNS)
    return {
        t: wh.query(f"SELECT count(*) AS n FROM {t} WHERE run_id = ?", [run_id])["n"][0]
        for t in tables
    }

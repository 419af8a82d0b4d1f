"""MMAD's accuracy table from answer records: the official scorer's numbers, or strict ones.

``mode="official"`` reproduces ``caculate_accuracy_mmad`` of jam-cc/MMAD
(``evaluation/examples/helper/summary.py``) cell for cell, quirks included:

1. Rows are the datasets (the image key's first path part) in order of first appearance, then
   ``Average``; columns are the merged question types in order of first appearance over *all*
   records (dropped and skipped ones included), then ``Average``. ``Object Structure`` and
   ``Object Details`` merge into ``Object Analysis``. A type no record has gets no column.
2. A record whose answer or ``correct_answer`` is not exactly one of ``"A"``-``"E"``
   (``" B"``, ``"b"``, ``"A."`` are not) is dropped, and the record after it is skipped
   unexamined (MMAD removes from the list it iterates).
3. A cell is ``correct / total * 100``; the ``Anomaly Detection`` cell is
   ``(normal_acc + anomaly_acc) / 2 * 100``, an image being normal iff ``"good"`` is in its
   path. A cell, or one side of the anomaly-detection cell, without questions counts 0 and is
   still averaged.
4. ``Average`` column: the row's mean over the type columns; ``Average`` row: each column's
   mean over the datasets (a macro mean). The headline is ``Average``/``Average``.

``mode="strict"`` scores the same records honestly: an unparseable answer is a wrong answer
(nothing is dropped or skipped, except records whose ``correct_answer`` is not a letter, which
cannot be scored), and an empty cell is null and left out of the averages; an
anomaly-detection cell with one empty side is the accuracy of the other side.

All accuracies are percentages, unrounded. Means add left to right and divide by the count;
pandas may add in another order, so ``Average`` values can differ from MMAD's CSV in the last
binary digit (the type cells are the same expressions and agree exactly).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.questions.prompts import MMAD_MERGED_TYPE, MMAD_RAW_TYPES, MMAD_REPORTED_TYPES

log = logging.getLogger(__name__)

OFFICIAL, STRICT = "official", "strict"
MODES = (OFFICIAL, STRICT)
LETTERS = ("A", "B", "C", "D", "E")  # MMAD's scorer: exact membership in this list
NORMAL_FLAG = "good"
AVERAGE = "Average"
ANOMALY_DETECTION = "Anomaly Detection"
EXTRA_COLUMNS = ("Recall", "Precision", "F1", "Overkill", "Miss")
NEEDED = ("image", "question_type", "correct_answer")


class ScoringError(IadError, ValueError):
    """Records that cannot be scored (missing columns, no records, an unknown mode)."""


class Counts(NamedTuple):
    """How many records were scored, dropped (unparseable) and skipped (after a dropped one)."""

    scored: int
    dropped: int
    skipped: int


@dataclass(frozen=True)
class MmadScores:
    """MMAD's table and its breakdowns (accuracies in percent).

    Attributes:
        mode: ``"official"`` or ``"strict"``.
        table: ``dataset`` (datasets in first-appearance order, then ``Average``), one Float64
            column per merged type in first-appearance order, then ``Average``.
        extras: ``dataset`` (as ``table``), ``Recall``, ``Precision``, ``F1``, ``Overkill``,
            ``Miss`` (see :func:`score_mmad`).
        by_category: ``dataset, category, type, correct, total, accuracy`` over scored records;
            accuracy is plain ``correct / total * 100`` for every type, anomaly detection too.
        by_type: ``dataset, type, accuracy, n``: the table's cells in long form, ``n`` the
            scored questions behind each.
        headline: ``Average``/``Average``; ``None`` only in strict mode with nothing scored.
        counts: scored, dropped and skipped records.
    """

    mode: str
    table: pl.DataFrame
    extras: pl.DataFrame
    by_category: pl.DataFrame
    by_type: pl.DataFrame
    headline: float | None
    counts: Counts


def drop_and_skip(valid: Sequence[bool] | np.ndarray) -> tuple[np.ndarray, int, int]:
    """Which records MMAD's scorer counts, given which ones hold two valid letters.

    MMAD calls ``list.remove`` on an invalid record while iterating over the list, so the
    record after it moves into the removed one's place and is never examined: it is skipped
    whether valid or not, and an invalid record that is skipped does not skip another.

    Args:
        valid: per record, in order: answer and correct answer are both in ``A``-``E``.

    Returns:
        ``(kept, dropped, skipped)``: a boolean mask of the scored records and the counts.

    Example:
        >>> kept, dropped, skipped = drop_and_skip([True, False, True, True, False, False, True])
        >>> kept.tolist(), dropped, skipped
        ([True, False, False, True, False, False, True], 2, 2)
    """
    kept = np.asarray(valid, dtype=bool).copy()
    dropped = skipped = 0
    last_skipped = -1
    for i in np.flatnonzero(~kept):
        if i == last_skipped:  # never examined, so it removes nothing
            continue
        dropped += 1
        if i + 1 < kept.size:
            kept[i + 1] = False
            skipped += 1
            last_skipped = i + 1
    return kept, dropped, skipped


def _mean(values: Sequence[float | None]) -> float | None:
    """Left-to-right mean of the non-null values (only strict mode has nulls), else ``None``."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _ratio(correct: int, total: int, strict: bool) -> float | None:
    """``correct / total``, or the empty value of the mode (0, or ``None`` when strict)."""
    if total:
        return correct / total
    return None if strict else 0


def _ad_cell(sides: dict[bool, tuple[int, int]], strict: bool) -> float | None:
    """MMAD's anomaly-detection cell: the mean of normal and anomaly accuracy, in percent."""
    accs = [_ratio(*sides.get(normal, (0, 0)), strict) for normal in (True, False)]
    present = [a for a in accs if a is not None]
    if not present:
        return None
    return sum(present) / len(present) * 100


def _prepare(records: pl.DataFrame, answer_column: str, normal_flag: str) -> pl.DataFrame:
    """Columns the scorer reads: dataset, category, type, normal, answer, truth."""
    missing = [c for c in (*NEEDED, answer_column) if c not in records.columns]
    if missing:
        msg = (
            f"answer records lack the columns {missing}; found {records.columns}; expected "
            f"those of eval.records.ANSWERS_SCHEMA; read files with load_answer_records"
        )
        raise ScoringError(msg)
    if records.height == 0:
        msg = "no answer records to score; expected at least one; check the run's answer file"
        raise ScoringError(msg)
    image = pl.col("image").cast(pl.String)
    parts = image.str.split("/")
    dataset = parts.list.get(0, null_on_oob=True)
    category = parts.list.get(1, null_on_oob=True)
    if "dataset" in records.columns:
        dataset = pl.coalesce(pl.col("dataset").cast(pl.String), dataset)
    if "category" in records.columns:
        category = pl.coalesce(pl.col("category").cast(pl.String), category)
    df = records.select(
        dataset=dataset,
        category=category,
        type=pl.col("question_type").cast(pl.String).replace(MMAD_MERGED_TYPE),
        normal=image.str.contains(normal_flag, literal=True),
        answer=pl.col(answer_column).cast(pl.String),
        truth=pl.col("correct_answer").cast(pl.String),
    )
    bad = df.with_row_index().filter(pl.any_horizontal(pl.col("dataset", "type").is_null()))
    if bad.height:
        msg = (
            f"answer record {bad['index'][0] + 1} (and {bad.height - 1} more) has no image or "
            f"question_type; expected both in every record; fix the answer file"
        )
        raise ScoringError(msg)
    unknown = set(df["type"].unique()) - set(MMAD_REPORTED_TYPES)
    if unknown:
        log.warning("question types outside MMAD's %s get columns: %s", MMAD_RAW_TYPES, unknown)
    return df


def _select(df: pl.DataFrame, strict: bool) -> tuple[pl.DataFrame, Counts]:
    """The records that count, with ``hit``, and the counts."""
    answer_ok = df["answer"].is_in(LETTERS).fill_null(False).to_numpy()
    truth_ok = df["truth"].is_in(LETTERS).fill_null(False).to_numpy()
    if strict:
        kept, dropped, skipped = truth_ok, int((~truth_ok).sum()), 0
    else:
        kept, dropped, skipped = drop_and_skip(answer_ok & truth_ok)
    scored = df.filter(pl.Series(kept)).with_columns(
        hit=(pl.col("answer") == pl.col("truth")).fill_null(False)
    )
    return scored, Counts(scored.height, dropped, skipped)


def _extras_row(sides: dict[bool, tuple[int, int]], strict: bool) -> list[float | None]:
    """Recall, Precision, F1, Overkill, Miss of one dataset's anomaly-detection questions."""
    tn, normals = sides.get(True, (0, 0))
    tp, anomalous = sides.get(False, (0, 0))
    fp = normals - tn  # a normal image answered wrongly was called anomalous
    empty = None if strict else 0.0
    recall = tp / anomalous * 100 if anomalous else empty
    precision = tp / (tp + fp) * 100 if tp + fp else empty
    if recall is None or precision is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    normal_acc = _ratio(tn, normals, strict)
    anomaly_acc = _ratio(tp, anomalous, strict)
    overkill = None if normal_acc is None else (1 - normal_acc) * 100
    miss = None if anomaly_acc is None else (1 - anomaly_acc) * 100
    return [recall, precision, f1, overkill, miss]


def _tally(groups: pl.DataFrame) -> dict[tuple[str, str], dict[bool, tuple[int, int]]]:
    """``(correct, total)`` per (dataset, type) cell and side (``True`` = normal image)."""
    cells: dict[tuple[str, str], dict[bool, tuple[int, int]]] = {}
    rows = groups.select("dataset", "type", "normal", "correct", "total").iter_rows()
    for ds, ty, normal, correct, total in rows:
        sides = cells.setdefault((ds, ty), {})
        c0, t0 = sides.get(normal, (0, 0))
        sides[normal] = (c0 + correct, t0 + total)
    return cells


def _table_rows(
    datasets: list[str],
    types: list[str],
    cells: dict[tuple[str, str], dict[bool, tuple[int, int]]],
    strict: bool,
) -> tuple[list[list[float | None]], list[tuple[str, str, float | None, int]]]:
    """The table's rows (datasets then Average, each ending in its Average) and long cells."""
    rows: list[list[float | None]] = []
    long: list[tuple[str, str, float | None, int]] = []
    for ds in datasets:
        row: list[float | None] = []
        for ty in types:
            sides = cells.get((ds, ty), {})
            total = sum(t for _, t in sides.values())
            if ty == ANOMALY_DETECTION:
                value = _ad_cell(sides, strict)
            else:
                correct = sum(c for c, _ in sides.values())
                value = correct / total * 100 if total else (None if strict else 0.0)
            row.append(value)
            long.append((ds, ty, value, total))
        rows.append([*row, _mean(row)])
    rows.append([_mean([r[j] for r in rows]) for j in range(len(types) + 1)])
    return rows, long


def _frame(label: str, rows: list[str], columns: Sequence[str], values: list[list]) -> pl.DataFrame:
    data = {label: rows} | {c: [row[j] for row in values] for j, c in enumerate(columns)}
    schema = {label: pl.String()} | {c: pl.Float64() for c in columns}
    return pl.DataFrame(data, schema=schema)


def score_mmad(
    records: pl.DataFrame,
    mode: str = OFFICIAL,
    *,
    answer_column: str = "gpt_answer",
    normal_flag: str = NORMAL_FLAG,
) -> MmadScores:
    """Score answer records as MMAD's ``caculate_accuracy_mmad`` does (see the module doc).

    Records are taken in their given order, which matters for the official skip quirk.

    ``extras`` follows the reference's formulas where it gives them, ``Overkill = (1 -
    normal_acc) * 100`` and ``Miss = (1 - anomaly_acc) * 100``, with the accuracies of the
    anomaly-detection cell. For ``Recall``, ``Precision`` and ``F1`` the reference names only
    the columns, so we choose the confusion of the anomaly-detection questions with
    "anomalous" as the positive class: an anomalous image answered correctly is a true
    positive, answered wrongly a false negative; a normal image answered wrongly is a false
    positive. ``Recall = TP / (TP + FN) * 100``, ``Precision = TP / (TP + FP) * 100``,
    ``F1 = 2PR / (P + R)`` (0 when both are 0). A ratio whose denominator is 0 is 0 in
    official mode (so Overkill is 100 for a dataset without normal images, as MMAD's empty
    side counts 0) and null in strict mode, where F1 is null when P or R is. The ``Average``
    row of ``extras`` is the mean over datasets, like the table's. MMAD's own code for these
    columns was not at hand: only Overkill and Miss are known to match it.

    Args:
        records: the answer table (:data:`eval.records.ANSWERS_SCHEMA`; ``image``,
            ``question_type``, ``correct_answer`` and ``answer_column`` are read; ``dataset``
            and ``category`` when present, else the key's first and second path parts).
        mode: ``"official"`` or ``"strict"``.
        answer_column: the column holding the answers (``"parsed_think"`` scores the
            think-mode reading; null counts as unparseable).
        normal_flag: the substring that marks a normal image's path (MMAD's ``"good"``).

    Returns:
        The :class:`MmadScores`.

    Raises:
        ScoringError: an unknown mode, missing columns, no records, or a record without
            image or question type.

    Example:
        >>> recs = pl.DataFrame({
        ...     "image": ["VisA/c/good/0.png", "VisA/c/bad/1.png", "VisA/c/bad/1.png"],
        ...     "question_type": ["Anomaly Detection", "Anomaly Detection", "Object Details"],
        ...     "correct_answer": ["B", "A", "A"],
        ...     "gpt_answer": ["B", "B", "A"]})
        >>> scores = score_mmad(recs)
        >>> scores.table.columns
        ['dataset', 'Anomaly Detection', 'Object Analysis', 'Average']
        >>> scores.table.row(0), scores.headline  # AD = (1/1 + 0/1) / 2
        (('VisA', 50.0, 100.0, 75.0), 75.0)
    """
    if mode not in MODES:
        msg = f"unknown scoring mode {mode!r}; expected one of {MODES}"
        raise ScoringError(msg)
    strict = mode == STRICT
    df = _prepare(records, answer_column, normal_flag)
    datasets = df["dataset"].unique(maintain_order=True).to_list()
    types = df["type"].unique(maintain_order=True).to_list()
    scored, counts = _select(df, strict)

    groups = scored.group_by("dataset", "category", "type", "normal", maintain_order=True).agg(
        correct=pl.col("hit").sum().cast(pl.Int64), total=pl.len().cast(pl.Int64)
    )
    cells = _tally(groups)
    rows, long = _table_rows(datasets, types, cells, strict)
    table = _frame("dataset", [*datasets, AVERAGE], [*types, AVERAGE], rows)

    extra_rows = [_extras_row(cells.get((ds, ANOMALY_DETECTION), {}), strict) for ds in datasets]
    extra_rows.append([_mean([r[j] for r in extra_rows]) for j in range(5)])
    extras = _frame("dataset", [*datasets, AVERAGE], EXTRA_COLUMNS, extra_rows)

    by_category = (
        groups.group_by("dataset", "category", "type", maintain_order=True)
        .agg(pl.col("correct").sum(), pl.col("total").sum())
        .with_columns(accuracy=pl.col("correct") / pl.col("total") * 100)
    )
    by_type = pl.DataFrame(
        long,
        schema={"dataset": pl.String, "type": pl.String, "accuracy": pl.Float64, "n": pl.Int64},
        orient="row",
    )
    return MmadScores(mode, table, extras, by_category, by_type, rows[-1][-1], counts)

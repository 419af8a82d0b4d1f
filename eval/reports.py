"""Text reports of one evaluation: MMAD's score table, and our row beside the papers'.

- :func:`format_table` / :func:`write_mmad_csv`: the table of :func:`eval.scoring.score_mmad`
  for the terminal, and in the layout of MMAD's ``*_accuracy.csv``.
- :func:`comparison_table` / :func:`comparison_markdown`: our row above the papers' published
  rows (:mod:`eval.published`), with each row's source and setting.

The figures (heatmap, type bars) are in :mod:`eval.figures`. Accuracies are percentages
(0-100), as in MMAD's result files. Every file is written to a temporary name and renamed
into place (:mod:`iad_pipeline.fsutil`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl

from eval.published import AVERAGE, MMAD_ROWS, MMAD_TYPES, MMADRow
from eval.scoring import MmadScores
from iad_pipeline import fsutil
from iad_pipeline.errors import IadError

SHORT_TYPES = {
    "Anomaly Detection": "AD",
    "Defect Classification": "DC",
    "Defect Localization": "DL",
    "Defect Description": "DD",
    "Defect Analysis": "DA",
    "Object Classification": "OC",
    "Object Analysis": "OA",
    AVERAGE: "Avg",
}
MISSING = "-"


class ReportError(IadError):
    """A score frame that a report cannot draw (missing columns, several runs, no rows)."""


def comparison_table(
    ours: Mapping[str, float],
    label: str,
    *,
    rows: Iterable[MMADRow] = MMAD_ROWS,
    source: str = "this evaluation",
) -> pl.DataFrame:
    """Our MMAD row above the published rows, one column per MMAD type, sources beside.

    Columns: ``model, source, <the 7 types>, Average, setting, note`` (``setting``: the
    protocol the numbers were measured under; ``note``: a caveat about the row).

    Args:
        ours: accuracy (%) by MMAD type, plus ``Average`` (computed as the mean of the seven
            types when left out and all seven are given).
        label: our row's model name (e.g. the checkpoint).
        rows: the published rows to list (default: all of :data:`eval.published.MMAD_ROWS`).
        source: our row's source.

    A cell a source does not print is null.

    >>> t = comparison_table({"Anomaly Detection": 80.0}, "ckpt-100")
    >>> t.row(0)[:4], t.columns[-3:]
    (('ckpt-100', 'this evaluation', 80.0, None), ['Average', 'setting', 'note'])
    """
    unknown = sorted(set(ours) - {*MMAD_TYPES, AVERAGE})
    if unknown:
        msg = (
            f"comparison_table: {unknown} are not MMAD types; "
            f"expected keys of {[*MMAD_TYPES, AVERAGE]}"
        )
        raise ReportError(msg)
    average = ours.get(AVERAGE)
    if average is None and all(t in ours for t in MMAD_TYPES):
        average = sum(ours[t] for t in MMAD_TYPES) / len(MMAD_TYPES)
    records = [
        {
            "model": label,
            "source": source,
            **{t: ours.get(t) for t in MMAD_TYPES},
            AVERAGE: average,
            "setting": "",
            "note": "",
        }
    ]
    for row in rows:
        records.append(
            {
                "model": row.model,
                "source": row.source.cite(),
                **{t: row.scores.get(t) for t in MMAD_TYPES},
                AVERAGE: row.average,
                "setting": row.setting,
                "note": row.note,
            }
        )
    schema = {
        "model": pl.String,
        "source": pl.String,
        **dict.fromkeys([*MMAD_TYPES, AVERAGE], pl.Float64),
        "setting": pl.String,
        "note": pl.String,
    }
    return pl.DataFrame(records, schema=schema, orient="row")


def comparison_markdown(table: pl.DataFrame, digits: int = 2) -> str:
    """Render :func:`comparison_table` as a Markdown table with short type headings.

    Settings become numbered footnotes (one per distinct setting), row notes a list under
    the table, and missing cells ``-``.

    >>> md = comparison_markdown(comparison_table({"Anomaly Detection": 80.0}, "ours", rows=[]))
    >>> for line in md.splitlines()[:3]:
    ...     print(line)
    | Model | Source | AD | DC | DL | DD | DA | OC | OA | Avg |
    |---|---|---:|---:|---:|---:|---:|---:|---:|---:|
    | ours | this evaluation | 80.00 | - | - | - | - | - | - | - |
    """
    value_columns = [c for c in table.columns if c in SHORT_TYPES]
    notes: dict[str, int] = {}
    row_notes: list[str] = []
    lines = [
        "| Model | Source | " + " | ".join(SHORT_TYPES[c] for c in value_columns) + " |",
        "|---|---|" + "---:|" * len(value_columns),
    ]
    for record in table.iter_rows(named=True):
        source = record["source"]
        setting = record.get("setting") or ""
        if setting:
            number = notes.setdefault(setting, len(notes) + 1)
            source = f"{source} [{number}]"
        if record.get("note"):
            row_notes.append(f"- {record['model']} ({record['source']}): {record['note']}")
        cells = [MISSING if record[c] is None else f"{record[c]:.{digits}f}" for c in value_columns]
        lines.append(f"| {record['model']} | {source} | " + " | ".join(cells) + " |")
    legend = ", ".join(f"{SHORT_TYPES[t]} {t}" for t in MMAD_TYPES)
    lines += ["", f"{legend}; accuracy in %.", ""]
    lines += [f"- [{number}] {setting}" for setting, number in notes.items()]
    if row_notes:
        lines += ["", "Notes:", *row_notes]
    return "\n".join(lines) + "\n"


def write_markdown(text: str, path: Path | str) -> Path:
    """Write a rendered report (e.g. :func:`comparison_markdown`) atomically."""
    return fsutil.write_text(path, text)


def _csv_cell(value: object) -> object:
    return "" if value is None else value


def write_mmad_csv(scores: MmadScores, path: Path | str, *, extras: bool = False) -> Path:
    """Write the table in the layout of MMAD's ``*_accuracy.csv``, atomically.

    The header's first cell is empty, then the type columns and ``Average``; each row starts
    with its dataset (then ``Average``); values are unrounded (``repr`` of the float, as pandas
    writes them); a null cell (strict mode) is empty. ``extras=True`` appends the columns of
    ``scores.extras`` (Recall, Precision, F1, Overkill, Miss) after ``Average``: MMAD's newer
    CSVs have them, in a column order the reference does not record.

    Returns:
        The path written.
    """
    table = scores.table
    if extras:
        table = table.join(scores.extras, on="dataset", how="left", maintain_order="left")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["", *table.columns[1:]])
    for row in table.iter_rows():
        writer.writerow([row[0], *(_csv_cell(v) for v in row[1:])])
    return fsutil.write_text(path, buffer.getvalue())


def format_table(scores: MmadScores, digits: int = 2) -> str:
    """The table as fixed-width text for the terminal, with the counts underneath.

    Example:
        >>> from eval.scoring import score_mmad
        >>> recs = pl.DataFrame({"image": ["VisA/candle/good/0.png"],
        ...     "question_type": ["Object Classification"], "correct_answer": ["A"],
        ...     "gpt_answer": ["A"]})
        >>> print(format_table(score_mmad(recs)))
        dataset  Object Classification  Average
        VisA                    100.00   100.00
        Average                 100.00   100.00
        official: 1 scored, 0 dropped, 0 skipped
    """
    table = scores.table
    text = [[str(c) for c in table.columns]]
    for row in table.iter_rows():
        text.append([row[0], *("-" if v is None else f"{v:.{digits}f}" for v in row[1:])])
    widths = [max(len(r[j]) for r in text) for j in range(len(text[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if j == 0 else cell.rjust(w)
            for j, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in text
    ]
    c = scores.counts
    lines.append(f"{scores.mode}: {c.scored} scored, {c.dropped} dropped, {c.skipped} skipped")
    return "\n".join(lines)

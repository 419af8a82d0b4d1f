"""Markdown for Dagster metadata and reports: a small table of a frame's first rows."""

from __future__ import annotations

import polars as pl


def markdown_table(df: pl.DataFrame, max_rows: int = 10) -> str:
    """A small markdown table of the first rows (lists joined, long cells shortened).

    >>> print(markdown_table(pl.DataFrame({"a": [1], "b": [["x", "y"]]})))
    | a | b |
    |---|---|
    | 1 | x, y |
    """
    if df.is_empty():
        return "_(empty)_"

    def cell(value: object) -> str:
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        text = text.replace("|", "\\|")
        return text if len(text) <= 60 else "…" + text[-59:]

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for row in df.head(max_rows).iter_rows():
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    if df.height > max_rows:
        lines.append(f"\n_{df.height - max_rows} more rows_")
    return "\n".join(lines)

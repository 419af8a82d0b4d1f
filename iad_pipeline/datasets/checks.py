"""Predicates and summaries over a samples table (used by asset checks, the CLI and tests)."""

from __future__ import annotations

import polars as pl

from iad_pipeline.markdown import markdown_table


def anomalous_without_mask(samples: pl.DataFrame) -> int:
    """Number of anomalous samples whose ``mask_paths`` is empty.

    >>> df = pl.DataFrame({"is_anomalous": [True, True, False],
    ...                    "mask_paths": [["m.png"], [], []]})
    >>> anomalous_without_mask(df)
    1
    """
    if samples.is_empty():
        return 0
    return samples.filter(pl.col("is_anomalous") & (pl.col("mask_paths").list.len() == 0)).height


def counts_markdown(samples: pl.DataFrame) -> str:
    """Image counts by split and label, as markdown."""
    if samples.is_empty():
        return "_(empty)_"
    counts = samples.group_by(["split", "label"]).len("images").sort(["split", "label"])
    return markdown_table(counts, max_rows=200)


def preview_records(df: pl.DataFrame, max_rows: int = 10) -> str:
    """The first rows of a table as markdown, without the bulky absolute path columns."""
    drop = [c for c in ("image_path", "mask_paths", "sha256") if c in df.columns]
    return markdown_table(df.drop(drop), max_rows)

"""The results warehouse's tables: columns, types, keys, and the SQL of its views.

Every table's columns and DuckDB types are :data:`SCHEMAS` (adding a column is one entry
there: older files lack it and read as NULL), its primary key :data:`PRIMARY_KEYS`. The
views (:func:`views_sql`) read the newest generation of each run from the parquet files;
rows are checked in an in-memory staging database (:func:`staging_ddl`) before
:func:`copy_out` writes them. :mod:`eval.warehouse` describes the storage.

Views (one row per ...):

- ``runs``: evaluation run (``run_id``): ``eval_set``, ``checkpoint``, ``checkpoint_sha``
  (content fingerprint of the checkpoint's weights and config), ``recipe``, ``model``,
  ``protocol``, ``backend``, ``code_version``, ``started_at``, ``finished_at`` (UTC
  timestamps), ``n_questions``, ``headline`` (the run's headline accuracy, %).
- ``answers``: question of a run (``run_id, question_id``): the answer record (image, dataset,
  category, question, type, correct answer, raw response, parsed letters, latency).
- ``scores_by_type``: (``run_id, dataset, type``) accuracy % and question count; ``dataset``
  and ``type`` include the ``Average`` row and column of MMAD's table.
- ``scores_by_category``: (``run_id, dataset, category, type``) correct, total, accuracy %.
- ``leaderboard``: per ``eval_set`` and protocol key, the best run of each (checkpoint,
  checkpoint_sha, recipe) by headline, ranked (``rank`` 1 = best; ties share a rank); runs of
  different protocols are ranked apart. ``runs`` also holds ``protocol_key``,
  ``mmad_version`` and ``protocol_record`` (JSON of :meth:`eval.protocols.Protocol.record`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from iad_pipeline.errors import IadError

# Stored as the leaderboard view's comment (with the parquet folder): a file whose tag
# differs gets the current view definitions.
SCHEMA_TAG = "iad-pipeline results warehouse, schema 3 (parquet views, protocol record)"
TABLES = ("runs", "answers", "scores_by_type", "scores_by_category")
AVERAGE = "Average"
MIGRATED_GENERATION = "g0000-migrated"  # older than every written generation

# Every table's columns and DuckDB types, in order; the primary keys below.
SCHEMAS: dict[str, dict[str, str]] = {
    "runs": {
        "run_id": "VARCHAR",
        "eval_set": "VARCHAR",
        "checkpoint": "VARCHAR",
        "checkpoint_sha": "VARCHAR",
        "recipe": "VARCHAR",
        "model": "VARCHAR",
        "protocol": "VARCHAR",
        "backend": "VARCHAR",
        "code_version": "VARCHAR",
        "started_at": "TIMESTAMPTZ",
        "finished_at": "TIMESTAMPTZ",
        "n_questions": "BIGINT",
        "headline": "DOUBLE",
        # the protocol recorded with every result (eval.protocols.Protocol.record)
        "protocol_key": "VARCHAR",  # name@hash of the record: the leaderboard ranks within one
        "mmad_version": "VARCHAR",  # "original" or "corrected" (eval.errata)
        "protocol_record": "VARCHAR",  # the record as JSON: shots, rules, pixels, ...
    },
    "answers": {
        "run_id": "VARCHAR",
        "question_id": "VARCHAR",
        "image": "VARCHAR",
        "dataset": "VARCHAR",
        "category": "VARCHAR",
        "question": "VARCHAR",
        "question_type": "VARCHAR",
        "correct_answer": "VARCHAR",
        "response": "VARCHAR",
        "gpt_answer": "VARCHAR",
        "parsed_mmad": "VARCHAR",
        "parsed_think": "VARCHAR",
        "latency_s": "DOUBLE",
    },
    "scores_by_type": {
        "run_id": "VARCHAR",
        "dataset": "VARCHAR",
        "type": "VARCHAR",
        "accuracy": "DOUBLE",
        "n": "BIGINT",
    },
    "scores_by_category": {
        "run_id": "VARCHAR",
        "dataset": "VARCHAR",
        "category": "VARCHAR",
        "type": "VARCHAR",
        "correct": "BIGINT",
        "total": "BIGINT",
        "accuracy": "DOUBLE",
    },
}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "answers": ("run_id", "question_id"),
    "scores_by_type": ("run_id", "dataset", "type"),
    "scores_by_category": ("run_id", "dataset", "category", "type"),
}
NOT_NULL = {"runs": ("eval_set",)}

RUN_COLUMNS = tuple(SCHEMAS["runs"])
REQUIRED_RUN_KEYS = ("run_id", "eval_set")
# Column order of each frame table.
FRAME_COLUMNS: dict[str, tuple[str, ...]] = {t: tuple(SCHEMAS[t]) for t in TABLES[1:]}


class WarehouseError(IadError):
    """A run or a frame that the warehouse cannot record, or a DuckDB file it cannot use."""


def staging_ddl() -> str:
    """CREATE TABLE statements of the in-memory staging tables (types and keys checked)."""
    out = []
    for table, columns in SCHEMAS.items():
        lines = [
            f"    {c} {t}{' NOT NULL' if c in NOT_NULL.get(table, ()) else ''}"
            for c, t in columns.items()
        ]
        lines.append(f"    PRIMARY KEY ({', '.join(PRIMARY_KEYS[table])})")
        out.append(f"CREATE TABLE {table} (\n" + ",\n".join(lines) + "\n);")
    return "\n".join(out)


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _glob(folder: Path, table: str) -> str:
    return sql_string(str(folder / "*" / "g*" / f"{table}.parquet"))


def views_sql(folder: Path, snapshot: bool = False) -> str:
    """The view definitions over the parquet files under ``folder`` (an absolute path).

    With ``snapshot`` the generation folders are listed once, here, and the views read that
    fixed list: every view of one connection then sees the same runs (what
    :meth:`Warehouse.connect` uses). Without it the views glob the folder on every query (the
    DuckDB file's views, for SQL clients: new runs show up without reconnecting; a query that
    races with a run being renamed into place may see it in one view and not yet in another).
    """
    if snapshot:
        generations = sorted(p for p in folder.glob("*/g*") if p.is_dir())

        def source(table: str) -> str:
            files = [
                sql_string(str(g / f"{table}.parquet"))
                for g in generations
                if (g / f"{table}.parquet").is_file()
            ]
            return "[" + ", ".join(files) + "]"
    else:

        def source(table: str) -> str:
            return _glob(folder, table)

    # the newest generation of each run; every table keeps only that generation's rows
    newest = (
        f"SELECT run_id, max(_generation) AS _generation FROM read_parquet({source('runs')}, "
        "union_by_name = true) GROUP BY run_id"
    )
    out = []
    for table, columns in SCHEMAS.items():
        select = ",\n    ".join(f"CAST(t.{c} AS {typ}) AS {c}" for c, typ in columns.items())
        out.append(
            f"CREATE OR REPLACE VIEW {table} AS\nSELECT\n    {select}\n"
            f"FROM read_parquet({source(table)}, union_by_name = true) t\n"
            f"SEMI JOIN ({newest}) g ON t.run_id = g.run_id AND t._generation = g._generation;"
        )
    out.append(_LEADERBOARD)
    out.append(f"COMMENT ON VIEW leaderboard IS {sql_string(views_tag(folder))};")
    return "\n".join(out)


def views_tag(folder: Path) -> str:
    return f"{SCHEMA_TAG}; {folder}; {sorted((t, tuple(c)) for t, c in SCHEMAS.items())}"


# Per eval set and protocol key (every setting, so numbers made under different protocols, or
# on the original and the corrected MMAD, are never ranked together): each (checkpoint,
# checkpoint_sha, recipe)'s best run by headline (the latest finished on a tie), ranked. Runs
# without a headline are left out; runs recorded before the key existed group by name.
_LEADERBOARD = """
CREATE OR REPLACE VIEW leaderboard AS
WITH keyed AS (
    SELECT *, coalesce(protocol_key, protocol) AS protocol_group FROM runs
),
best AS (
    SELECT *,
        row_number() OVER (
            PARTITION BY eval_set, checkpoint, checkpoint_sha, recipe, protocol_group
            ORDER BY headline DESC, finished_at DESC NULLS LAST, run_id
        ) AS pick,
        count(*) OVER (
            PARTITION BY eval_set, checkpoint, checkpoint_sha, recipe, protocol_group
        ) AS n_runs
    FROM keyed
    WHERE headline IS NOT NULL
)
SELECT
    eval_set,
    rank() OVER (PARTITION BY eval_set, protocol_group ORDER BY headline DESC) AS rank,
    checkpoint, recipe, protocol, model, headline, run_id, finished_at, n_questions, n_runs,
    checkpoint_sha, protocol_group AS protocol_key, mmad_version
FROM best
WHERE pick = 1
ORDER BY eval_set, protocol_key, rank, checkpoint, recipe;
"""

# A category's accuracy in one run: the mean over its types (MMAD's row "Average" is the same
# macro mean), leaving out any "Average" type row a scorer may have added.
CATEGORY_ACCURACY = f"""
SELECT c.run_id, c.dataset, c.category, avg(c.accuracy) AS accuracy,
    CAST(sum(c.total) AS BIGINT) AS questions
FROM scores_by_category c
WHERE c.type <> '{AVERAGE}' {{type_filter}}
GROUP BY c.run_id, c.dataset, c.category
"""


def type_condition(type_: str | None) -> tuple[str, dict[str, Any]]:
    if type_ is None:
        return "", {}
    return "AND c.type = $type", {"type": type_}


def run_row(run: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(run) - set(RUN_COLUMNS))
    missing = [k for k in REQUIRED_RUN_KEYS if run.get(k) in (None, "")]
    if unknown or missing:
        msg = (
            f"run {run.get('run_id')!r}: unknown keys {unknown}, missing keys {missing}; "
            f"a run has the keys {list(RUN_COLUMNS)} of which {list(REQUIRED_RUN_KEYS)} "
            "are required"
        )
        raise WarehouseError(msg)
    return {c: run.get(c) for c in RUN_COLUMNS}


def conform_frame(table: str, frame: pl.DataFrame, run_id: str) -> pl.DataFrame:
    """The frame's schema columns in table order, checked to belong to ``run_id``."""
    columns = FRAME_COLUMNS[table]
    if "run_id" not in frame.columns:
        frame = frame.with_columns(run_id=pl.lit(run_id, dtype=pl.String))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        msg = (
            f"{table} of run {run_id!r}: missing columns {missing}; found {frame.columns}, "
            f"expected {list(columns)}"
        )
        raise WarehouseError(msg)
    others = frame.filter(pl.col("run_id").cast(pl.String) != run_id)["run_id"].unique()
    if others.len():
        msg = (
            f"{table} of run {run_id!r} holds rows of other runs {others.sort().to_list()[:5]}; "
            "record each run with its own rows"
        )
        raise WarehouseError(msg)
    return frame.select(columns)


def copy_out(con: duckdb.DuckDBPyConnection, table: str, path: Path, generation: str) -> None:
    """Write a staging table to parquet with its generation column."""
    con.execute(
        f"COPY (SELECT *, {sql_string(generation)} AS _generation FROM {table}) "
        f"TO {sql_string(str(path))} (FORMAT parquet)"
    )

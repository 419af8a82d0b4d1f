"""The results warehouse: every evaluation's run, answers and scores in one DuckDB file.

Tables (one row per ...):

- ``runs``: evaluation run (``run_id`` primary key): ``eval_set``, ``checkpoint``, ``recipe``,
  ``model``, ``protocol``, ``backend``, ``code_version``, ``started_at``, ``finished_at``
  (UTC timestamps), ``n_questions``, ``headline`` (the run's headline accuracy, %).
- ``answers``: question of a run (``run_id, question_id``): the answer record (image, dataset,
  category, question, type, correct answer, raw response, parsed letters, latency).
- ``scores_by_type``: (``run_id, dataset, type``) accuracy % and question count; ``dataset``
  and ``type`` include the ``Average`` row and column of MMAD's table.
- ``scores_by_category``: (``run_id, dataset, category, type``) correct, total, accuracy %.
- view ``leaderboard``: per ``eval_set`` and protocol key, the best run of each (checkpoint,
  recipe) by headline, ranked (``rank`` 1 = best; ties share a rank); runs of different
  protocols are ranked apart. ``runs`` also holds ``protocol_key``, ``mmad_version`` and
  ``protocol_record`` (JSON of :meth:`eval.protocols.Protocol.record`).

A run is written in one transaction (:meth:`Warehouse.record_run`), so a reader sees all of it
or none of it; recording a ``run_id`` again replaces its rows in that same transaction.

DuckDB lets one process write a file at a time, so every operation opens its own connection
and closes it; a connection refused because another process holds the file is retried until
``lock_timeout_s``. Any SQL client reads the file too (``duckdb results.duckdb``).

>>> import tempfile
>>> wh = Warehouse(Path(tempfile.mkdtemp()) / "results.duckdb")
>>> sorted(wh.query("SELECT table_name FROM duckdb_tables()")["table_name"])
['answers', 'runs', 'scores_by_category', 'scores_by_type']
>>> wh.query("SELECT count(*) AS n FROM leaderboard")["n"].to_list()
[0]
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.paths import iad_home

log = logging.getLogger(__name__)

DEFAULT_FILENAME = "results.duckdb"
# Stored as the view's comment: a file whose tag differs gets the current view definition.
SCHEMA_TAG = "iad-pipeline results warehouse, schema 2"
TABLES = ("runs", "answers", "scores_by_type", "scores_by_category")
AVERAGE = "Average"

RUN_COLUMNS = (
    "run_id",
    "eval_set",
    "checkpoint",
    "recipe",
    "model",
    "protocol",
    "backend",
    "code_version",
    "started_at",
    "finished_at",
    "n_questions",
    "headline",
    # --- the protocol recorded with every result (eval.protocols.Protocol.record) ---
    "protocol_key",  # name@hash of the whole record: the leaderboard ranks within one key
    "mmad_version",  # "original" or "corrected" (eval.errata)
    "protocol_record",  # the record as JSON: shots, template and knowledge rules, pixels, ...
)
REQUIRED_RUN_KEYS = ("run_id", "eval_set")

# Column order of each frame table; the DDL below spells out the types.
FRAME_COLUMNS: dict[str, tuple[str, ...]] = {
    "answers": (
        "run_id",
        "question_id",
        "image",
        "dataset",
        "category",
        "question",
        "question_type",
        "correct_answer",
        "response",
        "gpt_answer",
        "parsed_mmad",
        "parsed_think",
        "latency_s",
    ),
    "scores_by_type": ("run_id", "dataset", "type", "accuracy", "n"),
    "scores_by_category": (
        "run_id",
        "dataset",
        "category",
        "type",
        "correct",
        "total",
        "accuracy",
    ),
}

_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       VARCHAR PRIMARY KEY,
    eval_set     VARCHAR NOT NULL,
    checkpoint   VARCHAR,
    recipe       VARCHAR,
    model        VARCHAR,
    protocol     VARCHAR,
    backend      VARCHAR,
    code_version VARCHAR,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    n_questions  BIGINT,
    headline     DOUBLE,
    protocol_key VARCHAR,
    mmad_version VARCHAR,
    protocol_record VARCHAR
);
-- files written before the protocol was recorded get the columns (NULL for their runs)
ALTER TABLE runs ADD COLUMN IF NOT EXISTS protocol_key VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS mmad_version VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS protocol_record VARCHAR;
CREATE TABLE IF NOT EXISTS answers (
    run_id         VARCHAR NOT NULL,
    question_id    VARCHAR NOT NULL,
    image          VARCHAR,
    dataset        VARCHAR,
    category       VARCHAR,
    question       VARCHAR,
    question_type  VARCHAR,
    correct_answer VARCHAR,
    response       VARCHAR,
    gpt_answer     VARCHAR,
    parsed_mmad    VARCHAR,
    parsed_think   VARCHAR,
    latency_s      DOUBLE,
    PRIMARY KEY (run_id, question_id)
);
CREATE TABLE IF NOT EXISTS scores_by_type (
    run_id   VARCHAR NOT NULL,
    dataset  VARCHAR NOT NULL,
    type     VARCHAR NOT NULL,
    accuracy DOUBLE,
    n        BIGINT,
    PRIMARY KEY (run_id, dataset, type)
);
CREATE TABLE IF NOT EXISTS scores_by_category (
    run_id   VARCHAR NOT NULL,
    dataset  VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    type     VARCHAR NOT NULL,
    correct  BIGINT,
    total    BIGINT,
    accuracy DOUBLE,
    PRIMARY KEY (run_id, dataset, category, type)
);
"""

# Per eval set and protocol (its key: every setting, so numbers made under different
# protocols, or on the original and the corrected MMAD, are never ranked together): each
# (checkpoint, recipe)'s best run by headline (the latest finished on a tie), ranked. Runs
# without a headline are left out; runs recorded before the key existed group by name.
_VIEW = f"""
CREATE OR REPLACE VIEW leaderboard AS
WITH keyed AS (
    SELECT *, coalesce(protocol_key, protocol) AS protocol_group FROM runs
),
best AS (
    SELECT *,
        row_number() OVER (
            PARTITION BY eval_set, checkpoint, recipe, protocol_group
            ORDER BY headline DESC, finished_at DESC NULLS LAST, run_id
        ) AS pick,
        count(*) OVER (PARTITION BY eval_set, checkpoint, recipe, protocol_group) AS n_runs
    FROM keyed
    WHERE headline IS NOT NULL
)
SELECT
    eval_set,
    rank() OVER (PARTITION BY eval_set, protocol_group ORDER BY headline DESC) AS rank,
    checkpoint, recipe, protocol, model, headline, run_id, finished_at, n_questions, n_runs,
    protocol_group AS protocol_key, mmad_version
FROM best
WHERE pick = 1
ORDER BY eval_set, protocol_key, rank, checkpoint, recipe;
COMMENT ON VIEW leaderboard IS '{SCHEMA_TAG}';
"""

# A category's accuracy in one run: the mean over its types (MMAD's row "Average" is the same
# macro mean), leaving out any "Average" type row a scorer may have added.
_CATEGORY_ACCURACY = f"""
SELECT c.run_id, c.dataset, c.category, avg(c.accuracy) AS accuracy,
    CAST(sum(c.total) AS BIGINT) AS questions
FROM scores_by_category c
WHERE c.type <> '{AVERAGE}' {{type_filter}}
GROUP BY c.run_id, c.dataset, c.category
"""


class WarehouseError(IadError):
    """A run or a frame that the warehouse cannot record."""


class WarehouseLockedError(WarehouseError):
    """Another process held the DuckDB file for longer than the lock timeout."""


@dataclass(frozen=True)
class RecordedRun:
    """What :meth:`Warehouse.record_run` wrote: row counts, and whether it replaced a run."""

    run_id: str
    answers: int
    scores_by_type: int
    scores_by_category: int
    replaced: bool


def default_path() -> Path:
    """``$IAD_HOME/results.duckdb``."""
    return iad_home() / DEFAULT_FILENAME


def _insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Insert a polars frame through Arrow (no row-by-row Python), columns matched by name."""
    con.register("_frame", frame)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
    finally:
        con.unregister("_frame")


class Warehouse:
    """The DuckDB results file at ``path``; the schema is created on first use.

    Args:
        path: the DuckDB file (created with its folder if missing).
        lock_timeout_s: how long to retry while another process holds the file.
    """

    def __init__(self, path: Path | str, *, lock_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.ensure_schema()

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation, closed on exit; timestamps are read in UTC."""
        con = self._open()
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() + delay > deadline:
                    msg = (
                        f"{self.path}: another process has held the DuckDB file for more than "
                        f"{self.lock_timeout_s:g} s ({exc}); wait for it to finish, or raise "
                        "lock_timeout_s"
                    )
                    raise WarehouseLockedError(msg) from exc
                log.debug("%s is locked, retrying in %.2f s", self.path, delay)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def ensure_schema(self) -> None:
        """Create the tables and the view if missing (safe to call any number of times).

        A file that already has them is left untouched, so concurrent callers do not write;
        a catalog conflict with a concurrent creator is retried.
        """
        for attempt in range(5):
            with self.connect() as con:
                if self._schema_present(con):
                    return
                try:
                    con.execute("BEGIN")
                    con.execute(_DDL)
                    con.execute(_VIEW)
                    con.execute("COMMIT")
                    return
                except duckdb.TransactionException:
                    con.execute("ROLLBACK")
                    if attempt == 4:
                        raise
                    time.sleep(0.05 * (attempt + 1))

    @staticmethod
    def _schema_present(con: duckdb.DuckDBPyConnection) -> bool:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        view = con.execute(
            "SELECT comment FROM duckdb_views() WHERE view_name = 'leaderboard'"
        ).fetchone()
        return tables >= set(TABLES) and view is not None and view[0] == SCHEMA_TAG

    def record_run(
        self,
        run: Mapping[str, Any],
        answers: pl.DataFrame,
        scores_by_type: pl.DataFrame,
        scores_by_category: pl.DataFrame,
    ) -> RecordedRun:
        """Write one evaluation (its run row, answers and scores) in a single transaction.

        On any error the transaction is rolled back and the error re-raised, so readers never
        see part of a run; a ``run_id`` recorded before is replaced in the same transaction
        (its old rows stay visible until the commit).

        Args:
            run: the run's fields (:data:`RUN_COLUMNS`); ``run_id`` and ``eval_set`` are
                required, the others may be left out (NULL). Unknown keys are an error.
            answers, scores_by_type, scores_by_category: frames with at least the columns of
                :data:`FRAME_COLUMNS` (extra columns are ignored); a missing ``run_id``
                column is filled with the run's id.

        Returns:
            The row counts written and whether an earlier recording was replaced.

        Raises:
            WarehouseError: the run or a frame does not fit the schema (the message names
                the table and the offending columns or values).
        """
        row = _run_row(run)
        run_id = row["run_id"]
        frames = {
            "answers": answers,
            "scores_by_type": scores_by_type,
            "scores_by_category": scores_by_category,
        }
        frames = {name: _conform(name, frame, run_id) for name, frame in frames.items()}
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                existing = con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone()
                for table in (*frames, "runs"):
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
                placeholders = ", ".join("?" for _ in RUN_COLUMNS)
                con.execute(
                    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({placeholders})",
                    [row[c] for c in RUN_COLUMNS],
                )
                for table, frame in frames.items():
                    _insert_frame(con, table, frame)
                con.execute("COMMIT")
            except BaseException as exc:
                con.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error):
                    msg = f"{self.path}: recording run {run_id!r} failed, nothing written: {exc}"
                    raise WarehouseError(msg) from exc
                raise
        log.info("recorded run %s in %s", run_id, self.path)
        return RecordedRun(
            run_id=run_id,
            answers=frames["answers"].height,
            scores_by_type=frames["scores_by_type"].height,
            scores_by_category=frames["scores_by_category"].height,
            replaced=existing is not None,
        )

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> pl.DataFrame:
        """Run one SQL statement and return its result as a polars frame.

        >>> import tempfile
        >>> wh = Warehouse(Path(tempfile.mkdtemp()) / "w.duckdb")
        >>> wh.query("SELECT $x + 1 AS y", {"x": 41})["y"].to_list()
        [42]
        """
        with self.connect() as con:
            relation = con.sql(sql, params=params)
            return pl.DataFrame() if relation is None else relation.pl()

    def leaderboard(self, eval_set: str | None = None) -> pl.DataFrame:
        """The ``leaderboard`` view, for one eval set or all."""
        if eval_set is None:
            return self.query(
                "SELECT * FROM leaderboard ORDER BY eval_set, protocol_key, rank, run_id"
            )
        return self.query(
            "SELECT * FROM leaderboard WHERE eval_set = ? ORDER BY protocol_key, rank, run_id",
            [eval_set],
        )

    def best_checkpoint_per_category(self, eval_set: str, type: str | None = None) -> pl.DataFrame:
        """For each (dataset, category) of ``eval_set``, the run that scored it best.

        A category's score is the mean accuracy over its question types (or the accuracy of
        one ``type``). Ties go to the latest finished run.

        Returns:
            Columns ``dataset, category, checkpoint, recipe, protocol, model, run_id,
            accuracy, questions, n_runs`` (``n_runs``: how many runs scored the category),
            sorted by dataset and category.
        """
        type_filter, params = _type_filter(type)
        sql = f"""
            WITH per_run AS ({_CATEGORY_ACCURACY.format(type_filter=type_filter)}),
            ranked AS (
                SELECT p.*, r.checkpoint, r.recipe, r.protocol, r.model,
                    row_number() OVER (
                        PARTITION BY p.dataset, p.category
                        ORDER BY p.accuracy DESC NULLS LAST, r.finished_at DESC NULLS LAST,
                            p.run_id
                    ) AS pick,
                    count(*) OVER (PARTITION BY p.dataset, p.category) AS n_runs
                FROM per_run p JOIN runs r ON r.run_id = p.run_id
                WHERE r.eval_set = $eval_set
            )
            SELECT dataset, category, checkpoint, recipe, protocol, model, run_id, accuracy,
                questions, n_runs
            FROM ranked WHERE pick = 1
            ORDER BY dataset, category
        """
        return self.query(sql, {**params, "eval_set": eval_set})

    def category_history(
        self,
        category: str,
        *,
        eval_set: str | None = None,
        dataset: str | None = None,
        type: str | None = None,
    ) -> pl.DataFrame:
        """A category's accuracy in every run that scored it, oldest first.

        Time is the run's ``finished_at`` (``started_at`` if it never finished); the score is
        the mean over the category's types, or one ``type``'s accuracy.

        Returns:
            Columns ``evaluated_at, eval_set, dataset, category, checkpoint, recipe,
            protocol, model, run_id, accuracy, questions``.
        """
        type_filter, params = _type_filter(type)
        where = ["p.category = $category"]
        params["category"] = category
        if eval_set is not None:
            where.append("r.eval_set = $eval_set")
            params["eval_set"] = eval_set
        if dataset is not None:
            where.append("p.dataset = $dataset")
            params["dataset"] = dataset
        sql = f"""
            WITH per_run AS ({_CATEGORY_ACCURACY.format(type_filter=type_filter)})
            SELECT coalesce(r.finished_at, r.started_at) AS evaluated_at, r.eval_set, p.dataset,
                p.category, r.checkpoint, r.recipe, r.protocol, r.model, p.run_id,
                p.accuracy, p.questions
            FROM per_run p JOIN runs r ON r.run_id = p.run_id
            WHERE {" AND ".join(where)}
            ORDER BY evaluated_at NULLS LAST, p.run_id
        """
        return self.query(sql, params)


def _type_filter(type_: str | None) -> tuple[str, dict[str, Any]]:
    if type_ is None:
        return "", {}
    return "AND c.type = $type", {"type": type_}


def _run_row(run: Mapping[str, Any]) -> dict[str, Any]:
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


def _conform(table: str, frame: pl.DataFrame, run_id: str) -> pl.DataFrame:
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

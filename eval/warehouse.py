"""The results warehouse: every evaluation's run, answers and scores, readable while written.

Storage: each recorded run is a folder of immutable parquet files beside the DuckDB file,
written under a hidden temporary name and renamed into place in one step::

    results/<run_id>/g<generation>/runs.parquet
    results/<run_id>/g<generation>/answers.parquet
    results/<run_id>/g<generation>/scores_by_type.parquet
    results/<run_id>/g<generation>/scores_by_category.parquet
    results/_schema/g0/*.parquet      zero rows: the column types, so empty globs still read

(``results`` is the DuckDB file's name without its suffix.) ``results.duckdb`` holds only
views over these files, so a SQL client (``duckdb results.duckdb``) reads every evaluation
recorded so far, including those recorded after it connected. Writers never open the DuckDB
file except to create or refresh the views, so a user's open session (read-only or even
read-write) never blocks an evaluation, and an evaluation never locks out a reader.

The views and their columns: :mod:`eval.warehouse_schema`.

A run appears whole or not at all: its generation folder is renamed into place in one step.
Recording a ``run_id`` again writes a newer generation; the views show only the newest
generation of each run (superseded ones are deleted after :data:`KEEP_SUPERSEDED_S`, long
after any query that listed them has read them). Rows are type- and key-checked in an
in-memory DuckDB with the tables' primary keys before anything is written.

Adding a column is one entry in :data:`~eval.warehouse_schema.SCHEMAS`: older files lack it
and read as NULL.

>>> import tempfile
>>> wh = Warehouse(Path(tempfile.mkdtemp()) / "results.duckdb")
>>> sorted(wh.query("SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"])
['answers', 'leaderboard', 'runs', 'scores_by_category', 'scores_by_type']
>>> wh.query("SELECT count(*) AS n FROM leaderboard")["n"].to_list()
[0]
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from eval.warehouse_schema import (
    CATEGORY_ACCURACY,
    MIGRATED_GENERATION,
    RUN_COLUMNS,
    TABLES,
    WarehouseError,
    conform_frame,
    copy_out,
    run_row,
    staging_ddl,
    type_condition,
    views_sql,
    views_tag,
)
from eval.warehouse_views import ViewsFile

log = logging.getLogger(__name__)

SCHEMA_RUN = "_schema"  # the folder of the zero-row type files
KEEP_SUPERSEDED_S = 3600.0


@dataclass(frozen=True)
class RecordedRun:
    """What :meth:`Warehouse.record_run` wrote: row counts, and whether it replaced a run."""

    run_id: str
    answers: int
    scores_by_type: int
    scores_by_category: int
    replaced: bool
    folder: Path | None = None


def _insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Insert a polars frame through Arrow (no row-by-row Python), columns matched by name."""
    con.register("_frame", frame)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
    finally:
        con.unregister("_frame")


def _generation() -> str:
    """A new generation name: sorts by creation time, unique across processes."""
    return f"g{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}"


class Warehouse:
    """The results of ``path`` (a DuckDB file of views) and its parquet folder.

    Args:
        path: the DuckDB file; the parquet files live in the folder of the same name without
            the suffix (``results.duckdb`` -> ``results/``). Both are created if missing.
        lock_timeout_s: how long to wait for the DuckDB file when the views must be created
            or refreshed; past it, recording goes on without them (they are made next time).
    """

    def __init__(self, path: Path | str, *, lock_timeout_s: float = 2.0) -> None:
        self.path = Path(path).absolute()
        self.folder = self.path.with_suffix("")
        if self.folder == self.path:
            self.folder = self.path.with_name(self.path.name + ".parquet")
        self.lock_timeout_s = lock_timeout_s
        self.ensure_schema()

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    # --- schema and views -------------------------------------------------------------------

    def ensure_schema(self) -> bool:
        """Write the zero-row type files and refresh the DuckDB file's views if stale.

        Returns whether the DuckDB file holds the current views (``False``: another process
        held it past ``lock_timeout_s``; the parquet files are complete all the same).

        Raises:
            WarehouseError: the DuckDB file is not a DuckDB database (the message names it).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_schema_files()
        return self.refresh_views()

    def _write_schema_files(self) -> None:
        folder = self.folder / SCHEMA_RUN / "g0"
        wanted = views_tag(self.folder)
        marker = folder / "TAG"
        if marker.is_file() and marker.read_text(encoding="utf-8") == wanted:
            return
        tmp = self.folder / SCHEMA_RUN / f".tmp-{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        try:
            with self._staging() as con:
                for table in TABLES:
                    copy_out(con, table, tmp / f"{table}.parquet", "g0")
            (tmp / "TAG").write_text(wanted, encoding="utf-8")
            if marker.is_file() and marker.read_text(encoding="utf-8") == wanted:
                return  # a concurrent writer put the same files in place meanwhile
            # only stale files (an older schema) are moved aside: moving current ones would
            # leave a moment without them, in which a concurrent reader's views find nothing
            old = self.folder / SCHEMA_RUN / f".old-{secrets.token_hex(4)}"
            if folder.exists():
                with contextlib.suppress(FileNotFoundError):
                    folder.rename(old)
            try:
                tmp.rename(folder)
            except OSError:  # a concurrent writer put the same files in place first
                shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def refresh_views(self) -> bool:
        """(Re)create the views in the DuckDB file when they are not current
        (:meth:`eval.warehouse_views.ViewsFile.refresh`).

        Returns ``False`` when another process held the file for longer than
        ``lock_timeout_s`` (nothing changed then).
        """
        return ViewsFile(self.path, self.folder, self.lock_timeout_s).refresh()

    # --- connections ------------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory connection with the views over the parquet files, closed on exit.

        It never opens the DuckDB file, so it works while another process holds it. The
        generation folders are listed once, when it opens, so all its views agree on which
        runs exist (a run recorded later is seen by the next connection). Timestamps are read
        in UTC.
        """
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(views_sql(self.folder, snapshot=True))
            yield con
        finally:
            con.close()

    @staticmethod
    @contextlib.contextmanager
    def _staging() -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(staging_ddl())
            yield con
        finally:
            con.close()

    # --- writing ----------------------------------------------------------------------------

    def record_run(
        self,
        run: Mapping[str, Any],
        answers: pl.DataFrame,
        scores_by_type: pl.DataFrame,
        scores_by_category: pl.DataFrame,
    ) -> RecordedRun:
        """Write one evaluation (its run row, answers and scores) as a new generation.

        The rows are checked against the types and primary keys first (in memory); on any
        error nothing is written. The generation's folder is renamed into place in one step,
        so readers see all of the run or none of it; a ``run_id`` recorded before is replaced
        (readers see its old rows until the rename).

        Args:
            run: the run's fields (:data:`RUN_COLUMNS`); ``run_id`` and ``eval_set`` are
                required, the others may be left out (NULL). Unknown keys are an error.
            answers, scores_by_type, scores_by_category: frames with at least the columns of
                :data:`FRAME_COLUMNS` (extra columns are ignored); a missing ``run_id``
                column is filled with the run's id.

        Returns:
            The row counts written, whether an earlier recording was replaced, the folder.

        Raises:
            WarehouseError: the run or a frame does not fit the schema (the message names
                the table and the offending columns or values).
        """
        row = run_row(run)
        run_id = row["run_id"]
        if "/" in run_id or run_id.startswith((".", "_")):
            msg = f"run id {run_id!r}: expected a plain name (no '/', not starting '.' or '_')"
            raise WarehouseError(msg)
        frames = {
            "answers": answers,
            "scores_by_type": scores_by_type,
            "scores_by_category": scores_by_category,
        }
        frames = {name: conform_frame(name, frame, run_id) for name, frame in frames.items()}
        run_folder = self.folder / run_id
        existing = sorted(p for p in run_folder.glob("g*") if p.is_dir())
        generation = _generation()
        run_folder.mkdir(parents=True, exist_ok=True)
        tmp = run_folder / f".tmp-{generation}"
        tmp.mkdir()
        try:
            with self._staging() as con:
                try:
                    placeholders = ", ".join("?" for _ in RUN_COLUMNS)
                    con.execute(
                        f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({placeholders})",
                        [row[c] for c in RUN_COLUMNS],
                    )
                    for table, frame in frames.items():
                        _insert_frame(con, table, frame)
                    for table in TABLES:
                        copy_out(con, table, tmp / f"{table}.parquet", generation)
                except duckdb.Error as exc:
                    msg = f"{self.path}: recording run {run_id!r} failed, nothing written: {exc}"
                    raise WarehouseError(msg) from exc
            for path in tmp.iterdir():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
            tmp.rename(run_folder / generation)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._prune(run_folder, generation)
        log.info("recorded run %s in %s", run_id, run_folder / generation)
        return RecordedRun(
            run_id=run_id,
            answers=frames["answers"].height,
            scores_by_type=frames["scores_by_type"].height,
            scores_by_category=frames["scores_by_category"].height,
            replaced=bool(existing) or self._in_migrated(run_id),
            folder=run_folder / generation,
        )

    def _in_migrated(self, run_id: str) -> bool:
        path = self.folder / "_migrated" / MIGRATED_GENERATION / "runs.parquet"
        if not path.is_file():
            return False
        found = pl.scan_parquet(path).filter(pl.col("run_id") == run_id).select(pl.len())
        return bool(found.collect().item())

    def _prune(self, run_folder: Path, newest: str) -> None:
        """Delete generations superseded more than :data:`KEEP_SUPERSEDED_S` ago.

        A folder is first renamed to a hidden name (it leaves the views' globs in one step),
        then removed.
        """
        now = time.time()
        for old in run_folder.glob("g*"):
            if old.name >= newest or not old.is_dir():
                continue
            try:
                if now - old.stat().st_mtime < KEEP_SUPERSEDED_S:
                    continue
                hidden = run_folder / f".old-{old.name}"
                old.rename(hidden)
            except OSError:
                continue
            shutil.rmtree(hidden, ignore_errors=True)

    # --- reading ----------------------------------------------------------------------------

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> pl.DataFrame:
        """Run one SQL statement over the views and return its result as a polars frame.

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
        type_filter, params = type_condition(type)
        sql = f"""
            WITH per_run AS ({CATEGORY_ACCURACY.format(type_filter=type_filter)}),
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
        type_filter, params = type_condition(type)
        where = ["p.category = $category"]
        params["category"] = category
        if eval_set is not None:
            where.append("r.eval_set = $eval_set")
            params["eval_set"] = eval_set
        if dataset is not None:
            where.append("p.dataset = $dataset")
            params["dataset"] = dataset
        sql = f"""
            WITH per_run AS ({CATEGORY_ACCURACY.format(type_filter=type_filter)})
            SELECT coalesce(r.finished_at, r.started_at) AS evaluated_at, r.eval_set, p.dataset,
                p.category, r.checkpoint, r.recipe, r.protocol, r.model, p.run_id,
                p.accuracy, p.questions
            FROM per_run p JOIN runs r ON r.run_id = p.run_id
            WHERE {" AND ".join(where)}
            ORDER BY evaluated_at NULLS LAST, p.run_id
        """
        return self.query(sql, params)

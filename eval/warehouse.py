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

A run appears whole or not at all: its generation folder is renamed into place in one step.
Recording a ``run_id`` again writes a newer generation; the views show only the newest
generation of each run (superseded ones are deleted after :data:`KEEP_SUPERSEDED_S`, long
after any query that listed them has read them). Rows are type- and key-checked in an
in-memory DuckDB with the tables' primary keys before anything is written.

Adding a column is one entry in :data:`SCHEMAS`: older files lack it and read as NULL.

>>> import tempfile
>>> wh = Warehouse(Path(tempfile.mkdtemp()) / "results.duckdb")
>>> sorted(wh.query("SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"])
['answers', 'leaderboard', 'runs', 'scores_by_category', 'scores_by_type']
>>> wh.query("SELECT count(*) AS n FROM leaderboard")["n"].to_list()
[0]
"""

from __future__ import annotations

import contextlib
import json
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

from iad_pipeline.errors import IadError, LockBusyError
from iad_pipeline.fsutil import file_lock, write_json

log = logging.getLogger(__name__)

# Stored as the leaderboard view's comment (with the parquet folder): a file whose tag
# differs gets the current view definitions.
SCHEMA_TAG = "iad-pipeline results warehouse, schema 3 (parquet views, protocol record)"
TABLES = ("runs", "answers", "scores_by_type", "scores_by_category")
AVERAGE = "Average"
SCHEMA_RUN = "_schema"  # the folder of the zero-row type files
MIGRATED_GENERATION = "g0000-migrated"  # older than every written generation
KEEP_SUPERSEDED_S = 3600.0
VIEWS_LOCK = ".views.lock"  # held while the DuckDB file's views are checked or made
VIEWS_MARKER = "_views.json"  # the DuckDB file's stat when its views were last seen current

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


def _ddl() -> str:
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


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _glob(folder: Path, table: str) -> str:
    return _sql_string(str(folder / "*" / "g*" / f"{table}.parquet"))


def _views(folder: Path, snapshot: bool = False) -> str:
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
                _sql_string(str(g / f"{table}.parquet"))
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
    out.append(f"COMMENT ON VIEW leaderboard IS {_sql_string(_tag(folder))};")
    return "\n".join(out)


def _tag(folder: Path) -> str:
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
_CATEGORY_ACCURACY = f"""
SELECT c.run_id, c.dataset, c.category, avg(c.accuracy) AS accuracy,
    CAST(sum(c.total) AS BIGINT) AS questions
FROM scores_by_category c
WHERE c.type <> '{AVERAGE}' {{type_filter}}
GROUP BY c.run_id, c.dataset, c.category
"""


class WarehouseError(IadError):
    """A run or a frame that the warehouse cannot record, or a DuckDB file it cannot use."""


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


def _is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


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
        wanted = _tag(self.folder)
        marker = folder / "TAG"
        if marker.is_file() and marker.read_text(encoding="utf-8") == wanted:
            return
        tmp = self.folder / SCHEMA_RUN / f".tmp-{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        try:
            with self._staging() as con:
                for table in TABLES:
                    _copy_out(con, table, tmp / f"{table}.parquet", "g0")
            (tmp / "TAG").write_text(wanted, encoding="utf-8")
            old = self.folder / SCHEMA_RUN / f".old-{secrets.token_hex(4)}"
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
        """(Re)create the views in the DuckDB file when its tag differs from the current one.

        The file is opened read-only to check the tag, and read-write only to change it; after
        a check, a small marker (``<folder>/_views.json``: the tag and the file's inode, size
        and mtime) lets later calls skip opening the file at all while it is unchanged, so
        evaluations practically never contend with a user's session. A file from schema 1
        (tables, not views) is migrated first: its rows are copied to parquet, then the
        tables are replaced by views. Returns ``False`` when another process held the file
        for longer than ``lock_timeout_s`` (nothing changed then).
        """
        tag = _tag(self.folder)
        if self._marked(tag):
            return True
        # one refresh at a time across processes and threads: a second opener would otherwise
        # find the file the first is still creating, not yet a valid database
        try:
            with file_lock(
                self.folder / VIEWS_LOCK, self.lock_timeout_s, what=f"the views of {self.path}"
            ):
                return self._refresh_views_locked(tag)
        except LockBusyError:
            log.warning("%s: views being refreshed by another process; skipped", self.path)
            return False

    def _refresh_views_locked(self, tag: str) -> bool:
        if self._marked(tag):  # refreshed by another process while this one waited
            return True
        if self.path.exists():
            con = self._open_file(read_only=True)
            if con is None:
                return False
            try:
                current = self._tag_of(con) == tag
            except duckdb.Error as exc:
                raise self._unusable(exc) from exc
            finally:
                con.close()
            if current:
                self._mark(tag)
                return True
        con = self._open_file(read_only=False)
        if con is None:
            return False
        try:
            if self._tag_of(con) != tag:
                con.execute("SET TimeZone = 'UTC'")
                con.execute("BEGIN")
                try:
                    self._migrate_tables(con)
                    con.execute(_views(self.folder))
                    con.execute("COMMIT")
                except duckdb.TransactionException:
                    con.execute("ROLLBACK")  # a concurrent refresh won; its views are the same
                log.info("%s: views over %s created", self.path, self.folder)
        except duckdb.Error as exc:
            raise self._unusable(exc) from exc
        finally:
            con.close()
        self._mark(tag)
        return True

    @staticmethod
    def _tag_of(con: duckdb.DuckDBPyConnection) -> str | None:
        found = con.execute(
            "SELECT comment FROM duckdb_views() WHERE view_name = 'leaderboard'"
        ).fetchone()
        return None if found is None else found[0]

    def _open_file(self, *, read_only: bool) -> duckdb.DuckDBPyConnection | None:
        """A connection to the DuckDB file, or ``None`` if another process holds it too long."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as exc:
                # this process has the file open read-write already (DuckDB refuses a second
                # configuration of one file in one process): use the same configuration
                same_process = "different configuration" in str(exc)
                if same_process and read_only:
                    read_only = False
                    continue
                if not (_is_lock_error(exc) or same_process):
                    raise self._unusable(exc) from exc
                if time.monotonic() + delay > deadline:
                    log.warning(
                        "%s: held by another process; its views are refreshed by the next "
                        "evaluation (the results are in %s already)",
                        self.path,
                        self.folder,
                    )
                    return None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _file_key(self) -> list[int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return [st.st_ino, st.st_size, st.st_mtime_ns]

    def _marked(self, tag: str) -> bool:
        try:
            found = json.loads((self.folder / VIEWS_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        key = self._file_key()
        return key is not None and found == {"tag": tag, "file": key}

    def _mark(self, tag: str) -> None:
        key = self._file_key()
        if key is not None:
            write_json(self.folder / VIEWS_MARKER, {"tag": tag, "file": key})

    def _unusable(self, exc: BaseException) -> WarehouseError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return WarehouseError(
            f"{self.path}: not a usable DuckDB file ({first}); it holds only views, so move "
            f"it away and the next evaluation recreates it over {self.folder}"
        )

    def _migrate_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        """Copy a schema-1 file's tables to one parquet generation, then drop them."""
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
            ).fetchall()
        }
        old = [t for t in TABLES if t in tables]
        if not old:
            return
        con.execute("DROP VIEW IF EXISTS leaderboard")
        target = self.folder / "_migrated" / MIGRATED_GENERATION
        tmp = self.folder / "_migrated" / f".tmp-{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        try:
            for table in TABLES:  # all four, so the generation is complete
                have = {
                    r[0]
                    for r in con.execute(
                        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                        "AND schema_name = 'main'",
                        [table],
                    ).fetchall()
                }
                cols = ", ".join(
                    f"{c}" if c in have else f"CAST(NULL AS {t}) AS {c}"
                    for c, t in SCHEMAS[table].items()
                )
                out = _sql_string(str(tmp / f"{table}.parquet"))
                rows = table if table in old else "(SELECT 1) WHERE false"
                con.execute(
                    f"COPY (SELECT {cols}, '{MIGRATED_GENERATION}' AS _generation FROM {rows}) "
                    f"TO {out} (FORMAT parquet)"
                )
            if not target.exists():
                tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for table in old:
            con.execute(f"DROP TABLE {table}")
        log.warning("%s: migrated tables %s to %s", self.path, old, target)

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
            con.execute(_views(self.folder, snapshot=True))
            yield con
        finally:
            con.close()

    @staticmethod
    @contextlib.contextmanager
    def _staging() -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(_ddl())
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
        row = _run_row(run)
        run_id = row["run_id"]
        if "/" in run_id or run_id.startswith((".", "_")):
            msg = f"run id {run_id!r}: expected a plain name (no '/', not starting '.' or '_')"
            raise WarehouseError(msg)
        frames = {
            "answers": answers,
            "scores_by_type": scores_by_type,
            "scores_by_category": scores_by_category,
        }
        frames = {name: _conform(name, frame, run_id) for name, frame in frames.items()}
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
                        _copy_out(con, table, tmp / f"{table}.parquet", generation)
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


def _copy_out(con: duckdb.DuckDBPyConnection, table: str, path: Path, generation: str) -> None:
    """Write a staging table to parquet with its generation column."""
    con.execute(
        f"COPY (SELECT *, {_sql_string(generation)} AS _generation FROM {table}) "
        f"TO {_sql_string(str(path))} (FORMAT parquet)"
    )

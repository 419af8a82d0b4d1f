"""The DuckDB file of the results warehouse: views over the parquet files, kept current.

Writers never open the DuckDB file except to create or refresh its views (:class:`ViewsFile`),
so a user's open session never blocks an evaluation. A marker beside the parquet files lets
later calls skip opening the file while it is unchanged; a file from schema 1 (tables, not
views) is migrated to a parquet generation first.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import time
from pathlib import Path

import duckdb

from eval.warehouse_schema import (
    MIGRATED_GENERATION,
    SCHEMAS,
    TABLES,
    WarehouseError,
    sql_string,
    views_sql,
    views_tag,
)
from iad_pipeline.errors import LockBusyError
from iad_pipeline.fsutil import file_lock, write_json

log = logging.getLogger(__name__)

VIEWS_LOCK = ".views.lock"  # held while the DuckDB file's views are checked or made
VIEWS_MARKER = "_views.json"  # the DuckDB file's stat when its views were last seen current


def _is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class ViewsFile:
    """The DuckDB file ``path`` holding the views over the parquet files under ``folder``.

    Args:
        path: the DuckDB file (created if missing).
        folder: the parquet folder the views read (an absolute path).
        lock_timeout_s: how long to wait for the file when the views must be created or
            refreshed; past it, :meth:`refresh` gives up (the views are made next time).
    """

    def __init__(self, path: Path, folder: Path, lock_timeout_s: float) -> None:
        self.path = path
        self.folder = folder
        self.lock_timeout_s = lock_timeout_s

    def refresh(self) -> bool:
        """(Re)create the views in the DuckDB file when its tag differs from the current one.

        The file is opened read-only to check the tag, and read-write only to change it; after
        a check, a small marker (``<folder>/views_sql.json``: the tag and the file's inode, size
        and mtime) lets later calls skip opening the file at all while it is unchanged, so
        evaluations practically never contend with a user's session. A file from schema 1
        (tables, not views) is migrated first: its rows are copied to parquet, then the
        tables are replaced by views. Returns ``False`` when another process held the file
        for longer than ``lock_timeout_s`` (nothing changed then).
        """
        tag = views_tag(self.folder)
        if self._marked(tag):
            return True
        # one refresh at a time across processes and threads: a second opener would otherwise
        # find the file the first is still creating, not yet a valid database
        try:
            with file_lock(
                self.folder / VIEWS_LOCK, self.lock_timeout_s, what=f"the views of {self.path}"
            ):
                return self._refresh_locked(tag)
        except LockBusyError:
            log.warning("%s: views being refreshed by another process; skipped", self.path)
            return False

    def _refresh_locked(self, tag: str) -> bool:
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
                    con.execute(views_sql(self.folder))
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
                out = sql_string(str(tmp / f"{table}.parquet"))
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

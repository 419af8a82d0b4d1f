"""The results warehouse under concurrency and damage: a reader sees all of a run or none,
readers never block writers, writers never fail readers; corrupt and schema-1 files."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from eval import warehouse
from eval.warehouse import Warehouse
from eval.warehouse_schema import WarehouseError
from tests.support.warehouse_rows import (
    counts,
    make_answers,
    make_by_category,
    make_by_type,
    make_run,
    record,
)

# --- a reader sees all of a run or none of it -------------------------------------------------


def test_failing_record_run_is_invisible_to_a_concurrent_reader(wh, monkeypatch) -> None:
    record(wh, "r1", n_answers=3, headline=60.0)  # the version readers must keep seeing
    inserted_answers = threading.Event()
    reader_done = threading.Event()
    seen: dict[str, Any] = {}
    real_insert = warehouse._insert_frame

    def pausing_insert(con, table, frame):
        real_insert(con, table, frame)
        if table == "answers":
            inserted_answers.set()
            reader_done.wait(timeout=30)

    def reader() -> None:
        inserted_answers.wait(timeout=30)
        seen["during"] = (counts(wh, "r1"), wh.query("SELECT headline FROM runs")["headline"][0])
        reader_done.set()

    monkeypatch.setattr(warehouse, "_insert_frame", pausing_insert)
    thread = threading.Thread(target=reader)
    thread.start()
    bad_scores = make_by_category("r1").with_columns(accuracy=pl.lit("oops"))
    with pytest.raises(WarehouseError, match="nothing written"):
        wh.record_run(
            make_run("r1", headline=99.0), make_answers("r1", 1), make_by_type(), bad_scores
        )
    thread.join(timeout=30)
    old = ({"runs": 1, "answers": 3, "scores_by_type": 3, "scores_by_category": 1}, 60.0)
    assert seen["during"] == old  # mid-transaction: the new answers were already inserted
    assert (counts(wh, "r1"), wh.query("SELECT headline FROM runs")["headline"][0]) == old


def test_failing_first_record_leaves_nothing_for_another_process(wh: Warehouse) -> None:
    bad_scores = make_by_category("r1").with_columns(total=pl.lit("many"))
    with pytest.raises(WarehouseError):
        wh.record_run(make_run("r1"), make_answers("r1"), make_by_type(), bad_scores)
    code = (
        "import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
        "print(sum(con.execute(f'SELECT count(*) FROM {t}').fetchone()[0] "
        "for t in ('runs', 'answers', 'scores_by_type', 'scores_by_category')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(wh.path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "0"


# --- readers never block writers, writers never fail readers --------------------------------

HOLD = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
    "print(c.execute('SELECT count(*) FROM runs').fetchone()[0], flush=True); "
    "sys.stdin.readline(); "
    "print(c.execute('SELECT count(*) FROM runs').fetchone()[0], flush=True); "
    "print(c.execute('SELECT count(*) FROM answers').fetchone()[0], flush=True)"
)


def _hold(path: Path, mode: str) -> subprocess.Popen[str]:
    """A second process with an open connection to ``path`` (``rw`` or ``ro``)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_an_open_session_neither_blocks_nor_is_failed_by_recording(tmp_path, mode) -> None:
    path = tmp_path / "results.duckdb"
    record(Warehouse(path), "r1")
    proc = _hold(path, mode)
    try:
        assert proc.stdout.readline().strip() == "1"  # the reader holds the file open
        # the attack: on main this waited lock_timeout_s and raised WarehouseLockedError
        wh = Warehouse(path, lock_timeout_s=0.2)
        assert wh.ensure_schema() is True  # known current: the file is not even opened
        result = record(wh, "r2", n_answers=3)
        assert result.replaced is False
        assert wh.query("SELECT count(*) AS n FROM runs")["n"][0] == 2
        out, _ = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the reader's next queries, in its still-open session, see the new run
    assert proc.returncode == 0 and out.split() == ["2", "5"]


def test_views_missed_while_the_file_was_held_are_made_next_time(tmp_path: Path) -> None:
    path = tmp_path / "results.duckdb"
    code = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
    code += "sys.stdin.readline()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
        wh = Warehouse(path, lock_timeout_s=0.1)  # a session created the file and holds it
        record(wh)
        assert wh.ensure_schema() is False
        assert counts(wh, "r1")["answers"] == 2  # recorded all the same
    finally:
        proc.communicate(b"\n", timeout=60)
    assert Warehouse(path).ensure_schema() is True
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM leaderboard").fetchone()[0] == 1


def test_a_corrupt_duckdb_file_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "results.duckdb"
    path.write_bytes(b"this is not a duckdb file" * 200)
    with pytest.raises(WarehouseError) as info:
        Warehouse(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a usable DuckDB file") and "\n" not in message
    path.unlink()  # what the message says to do
    assert Warehouse(path).query("SELECT count(*) AS n FROM runs")["n"][0] == 0


def test_a_schema_1_file_is_migrated_to_parquet_views(tmp_path: Path) -> None:
    path = tmp_path / "results.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, eval_set VARCHAR NOT NULL, "
            "checkpoint VARCHAR, headline DOUBLE);"
            "CREATE TABLE answers (run_id VARCHAR, question_id VARCHAR, gpt_answer VARCHAR);"
            "INSERT INTO runs VALUES ('old', 'mmad', 'ckpt-1', 50.0);"
            "INSERT INTO answers VALUES ('old', 'q1', 'A');"
        )
    wh = Warehouse(path)
    assert wh.query("SELECT run_id, checkpoint, checkpoint_sha FROM runs").rows() == [
        ("old", "ckpt-1", None)
    ]
    assert wh.query("SELECT gpt_answer FROM answers")["gpt_answer"].to_list() == ["A"]
    assert record(wh, "old").replaced is True
    assert wh.query("SELECT checkpoint FROM runs")["checkpoint"].to_list() == ["ckpt-100"]


def test_a_connection_sees_one_snapshot_of_runs_in_every_view(wh: Warehouse) -> None:
    record(wh, "r1", n_answers=2)
    with wh.connect() as con:
        record(wh, "r1", n_answers=3)  # replaced and a new run, after the connection opened
        record(wh, "r2", n_answers=4)
        seen = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "answers")]
    assert seen == [1, 2]
    assert [counts(wh, r)["answers"] for r in ("r1", "r2")] == [3, 4]


def test_superseded_generations_are_kept_for_a_while_then_removed(wh, monkeypatch) -> None:
    record(wh, "r1")
    record(wh, "r1")
    assert len(list((wh.folder / "r1").glob("g*"))) == 2  # a reader may still be listing it
    monkeypatch.setattr(warehouse, "KEEP_SUPERSEDED_S", 0.0)
    record(wh, "r1")
    assert len(list((wh.folder / "r1").glob("g*"))) == 1
    assert counts(wh, "r1")["answers"] == 2

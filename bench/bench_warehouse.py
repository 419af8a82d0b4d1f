"""Benchmark: recording one evaluation, parquet generations vs one DuckDB transaction; and
the checkpoint fingerprint on a ~200 MB checkpoint, first vs cached.

Recording: one full MMAD run (40,000 answer records, scored) is written ``--repeats`` times,
each as a new run id, (a) by :meth:`eval.warehouse.Warehouse.record_run` (type and key check
in memory, four parquet files, one rename) and (b) the way the warehouse worked before: one
transaction inserting the same frames into tables of the same types and keys in a DuckDB
file (deleting the run id's old rows first). Then a query joining ``scores_by_category`` and
``runs`` (the README's best checkpoint per category) is timed on each. Medians are printed
with the ratio new / old.

Fingerprint: ``checkpoint_fingerprint`` of a folder with a ``--mb`` MB weight file and a
config: the first call reads and hashes every byte; a second call in the same process finds
each file's digest in memory by its stat key; a call in a fresh process (memory cache
cleared) reads the digests from the on-disk cache. The file is in the page cache for all of
them, so the first call measures hashing, not the disk.

    python bench/bench_warehouse.py [--records 40000] [--repeats 5] [--mb 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl
from bench_scoring import synthetic_records

from eval import warehouse as wh_module
from eval.scoring import score_mmad
from eval.warehouse import Warehouse
from eval.warehouse_schema import FRAME_COLUMNS, RUN_COLUMNS, conform_frame, run_row, staging_ddl
from iad_pipeline import fingerprint

QUERY = """
WITH per_run AS (
  SELECT r.eval_set, c.category, r.checkpoint, avg(c.accuracy) AS accuracy
  FROM scores_by_category c JOIN runs r USING (run_id)
  GROUP BY r.eval_set, c.category, r.checkpoint
)
SELECT * FROM per_run
QUALIFY row_number() OVER (PARTITION BY eval_set, category ORDER BY accuracy DESC) = 1
"""


def evaluation(
    records: pl.DataFrame, run_id: str
) -> tuple[dict, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    answers = records.with_columns(
        run_id=pl.lit(run_id), question_id=pl.int_range(pl.len()).cast(pl.String)
    )
    scores = score_mmad(answers)
    by_type = (
        scores.table.unpivot(index="dataset", variable_name="type", value_name="accuracy")
        .with_columns(run_id=pl.lit(run_id), n=pl.lit(None, pl.Int64))
        .select(FRAME_COLUMNS["scores_by_type"])
    )
    by_category = scores.by_category.with_columns(run_id=pl.lit(run_id))
    now = dt.datetime.now(dt.UTC)
    run = {
        "run_id": run_id,
        "eval_set": "VisA",
        "checkpoint": "demo-4",
        "checkpoint_sha": "0" * 64,
        "protocol": "1shot-random",
        "started_at": now,
        "finished_at": now,
        "n_questions": answers.height,
        "headline": scores.headline,
    }
    return run, answers, by_type, by_category


def record_old(path: Path, run, answers, by_type, by_category) -> None:
    """The previous design: one transaction into DuckDB tables (same types and keys)."""
    row = run_row(run)
    frames = {
        "answers": conform_frame("answers", answers, row["run_id"]),
        "scores_by_type": conform_frame("scores_by_type", by_type, row["run_id"]),
        "scores_by_category": conform_frame("scores_by_category", by_category, row["run_id"]),
    }
    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("BEGIN TRANSACTION")
        for table in (*frames, "runs"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [row["run_id"]])
        placeholders = ", ".join("?" for _ in RUN_COLUMNS)
        con.execute(
            f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({placeholders})",
            [row[c] for c in RUN_COLUMNS],
        )
        for table, frame in frames.items():
            wh_module._insert_frame(con, table, frame)
        con.execute("COMMIT")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_recording(records: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        new = Warehouse(tmp / "new" / "results.duckdb")
        old = tmp / "old.duckdb"
        with duckdb.connect(str(old)) as con:
            con.execute(staging_ddl())
        frame = synthetic_records(records)
        runs = [evaluation(frame, f"run{i:03d}") for i in range(repeats)]
        t_new = [timed(lambda r=r: new.record_run(*r)) for r in runs]
        t_old = [timed(lambda r=r: record_old(old, *r)) for r in runs]
        q_new = [timed(lambda: new.query(QUERY)) for _ in range(repeats)]

        def old_query() -> None:
            with duckdb.connect(str(old), read_only=True) as con:
                con.execute(QUERY).fetchall()

        q_old = [timed(old_query) for _ in range(repeats)]
        # a SQL client on the DuckDB file of views
        with duckdb.connect(str(new.path), read_only=True) as con:
            ours = con.execute(QUERY).fetchall()
        with duckdb.connect(str(old), read_only=True) as con:
            theirs = con.execute(QUERY).fetchall()

        def rounded(rows: list[tuple]) -> list[tuple]:
            return sorted(
                tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows
            )

        same = rounded(ours) == rounded(theirs)
    mn, mo = statistics.median(t_new), statistics.median(t_old)
    qn, qo = statistics.median(q_new), statistics.median(q_old)
    print(f"record one evaluation ({records} answers), median of {repeats}:")
    print(f"  parquet generation + views  {mn * 1000:8.1f} ms")
    print(f"  one DuckDB transaction      {mo * 1000:8.1f} ms")
    print(f"  ratio new / old             {mn / mo:8.2f}x")
    print(f"query best checkpoint per category over {repeats} runs (same result: {same}):")
    print(f"  views over parquet          {qn * 1000:8.1f} ms")
    print(f"  DuckDB tables               {qo * 1000:8.1f} ms")
    print(f"  ratio new / old             {qn / qo:8.2f}x")


def bench_fingerprint(mb: int) -> None:
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoint-4"
        folder.mkdir()
        with open(folder / "model.safetensors", "wb") as fh:
            for _ in range(mb):
                fh.write(os.urandom(1 << 20))
        (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
        cache = Path(tmp) / "cache"
        (folder / "model.safetensors").read_bytes()  # into the page cache for every call
        first = timed(lambda: fingerprint.checkpoint_fingerprint(folder, cache))
        memory = statistics.median(
            timed(lambda: fingerprint.checkpoint_fingerprint(folder, cache)) for _ in range(5)
        )
        code = (
            "import sys, time; from iad_pipeline.fingerprint import checkpoint_fingerprint as f; "
            "t = time.perf_counter(); f(sys.argv[1], sys.argv[2]); "
            "print(time.perf_counter() - t)"
        )
        disk = float(
            subprocess.run(
                [sys.executable, "-c", code, str(folder), str(cache)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    print(f"checkpoint fingerprint of a {mb} MB checkpoint:")
    print(f"  first (hash every byte)     {first * 1000:8.1f} ms  ({mb / first:.0f} MB/s)")
    print(f"  cached in memory            {memory * 1000:8.3f} ms  ({first / memory:,.0f}x faster)")
    print(f"  cached on disk (new process){disk * 1000:8.3f} ms  ({first / disk:,.0f}x faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    bench_recording(args.records, args.repeats)
    bench_fingerprint(args.mb)


if __name__ == "__main__":
    main()

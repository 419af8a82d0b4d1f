"""The results warehouse: its schema, recording a run, the leaderboard and named queries.

Concurrent readers and writers, corrupt and old files: test_warehouse_concurrency.py."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import duckdb
import polars as pl
import pytest

from eval.warehouse import Warehouse
from eval.warehouse_schema import RUN_COLUMNS, SCHEMA_TAG, WarehouseError
from tests.support.warehouse_rows import (
    AD,
    DC,
    UTC,
    counts,
    make_answers,
    make_by_category,
    make_by_type,
    make_run,
    record,
)

# --- schema -----------------------------------------------------------------------------------


def test_schema_creation_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "results.duckdb"
    first = Warehouse(path)
    record(first)
    first.ensure_schema()
    again = Warehouse(path)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.sql("SELECT table_name FROM duckdb_tables()").fetchall() == []
        views = con.sql(
            "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal ORDER BY 1"
        ).fetchall()
    assert [v for v, _ in views] == [
        "answers",
        "leaderboard",
        "runs",
        "scores_by_category",
        "scores_by_type",
    ]
    assert dict(views)["leaderboard"].startswith(SCHEMA_TAG)
    assert counts(again, "r1") == {
        "runs": 1,
        "answers": 2,
        "scores_by_type": 3,
        "scores_by_category": 1,
    }


def test_primary_keys_are_checked_before_writing(wh: Warehouse) -> None:
    twice = pl.concat([make_by_type()] * 2)
    with pytest.raises(WarehouseError, match="nothing written"):
        wh.record_run(make_run(), make_answers(), twice, make_by_category())
    assert not any(p.name.startswith("g") for p in (wh.folder / "r1").glob("*"))


def test_concurrent_first_use_creates_the_schema_once(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Warehouse(tmp_path / "w.duckdb")
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_stale_view_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    Warehouse(path)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE OR REPLACE VIEW leaderboard AS SELECT 1 AS old")
    wh = Warehouse(path)
    assert "rank" in wh.leaderboard().columns


# --- record_run -------------------------------------------------------------------------------


def test_record_run_round_trip(wh: Warehouse) -> None:
    result = record(wh, cells={("DS-MVTec", "bottle", AD): 70.0, ("VisA", "pcb1", DC): 45.5})
    assert (result.answers, result.scores_by_type, result.scores_by_category) == (2, 3, 2)
    assert result.replaced is False
    run = wh.query("SELECT * FROM runs").row(0, named=True)
    protocol = dict.fromkeys(("protocol_key", "mmad_version", "protocol_record"))
    assert run == make_run() | {"checkpoint_sha": None} | protocol
    answers = wh.query("SELECT * FROM answers ORDER BY question_id")
    assert answers.equals(make_answers())
    by_category = wh.query("SELECT * FROM scores_by_category ORDER BY dataset")
    assert by_category["accuracy"].to_list() == [70.0, 45.5]
    by_type = wh.query("SELECT * FROM scores_by_type ORDER BY dataset, type")
    assert by_type.select("dataset", "type").rows() == [
        ("Average", AD),
        ("Average", "Average"),
        ("DS-MVTec", AD),
    ]


def test_record_run_keeps_unicode_and_huge_text(wh: Warehouse) -> None:
    text = "缺陷? Défaut ✓ " * 20_000  # about 300 kB
    answers = make_answers(question=text)
    wh.record_run(make_run(), answers, make_by_type(), make_by_category())
    stored = wh.query("SELECT question FROM answers LIMIT 1")["question"][0]
    assert stored == text


def test_record_run_accepts_iso_strings_naive_times_and_missing_optional_fields(wh) -> None:
    run = {"run_id": "r1", "eval_set": "mmad", "started_at": "2025-03-01T08:00:00"}
    wh.record_run(run, make_answers(), make_by_type(), make_by_category())
    row = wh.query("SELECT * FROM runs").row(0, named=True)
    assert row["started_at"] == dt.datetime(2025, 3, 1, 8, tzinfo=UTC)  # read as UTC
    assert row["checkpoint"] is None and row["headline"] is None


def test_record_run_fills_a_missing_run_id_column_and_ignores_extra_columns(wh) -> None:
    answers = make_answers().drop("run_id").with_columns(extra=pl.lit(1))
    wh.record_run(make_run(), answers, make_by_type(), make_by_category())
    assert counts(wh, "r1")["answers"] == 2


def test_record_run_of_an_empty_answer_frame(wh: Warehouse) -> None:
    wh.record_run(make_run(), make_answers(n=0), make_by_type(), make_by_category())
    assert counts(wh, "r1") == {
        "runs": 1,
        "answers": 0,
        "scores_by_type": 3,
        "scores_by_category": 1,
    }


BAD_INPUT = [
    # case, run, answers, a part of the expected message
    ("unknown run key", make_run(seed=1), make_answers(), "unknown keys ['seed']"),
    ("no eval_set", make_run(eval_set=None), make_answers(), "missing keys ['eval_set']"),
    ("empty run_id", make_run(run_id=""), make_answers(), "missing keys ['run_id']"),
    ("missing column", make_run(), make_answers().drop("response"), "['response']"),
    ("rows of another run", make_run(), make_answers("r2"), "other runs ['r2']"),
    ("duplicate question", make_run(), pl.concat([make_answers()] * 2), "nothing written"),
    (
        "text in a number column",
        make_run(),
        make_answers().with_columns(latency_s=pl.lit("slow")),
        "nothing written",
    ),
]


@pytest.mark.parametrize(
    ("run", "answers", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUT],
)
def test_record_run_rejects_bad_input_and_writes_nothing(wh, run, answers, expected) -> None:
    with pytest.raises(WarehouseError) as info:
        wh.record_run(run, answers, make_by_type(), make_by_category())
    assert expected in str(info.value)
    assert wh.query("SELECT count(*) AS n FROM answers")["n"][0] == 0
    assert wh.query("SELECT count(*) AS n FROM runs")["n"][0] == 0


def test_rerecording_a_run_replaces_its_rows_only(wh: Warehouse) -> None:
    record(wh, "r1", n_answers=3, headline=60.0)
    record(wh, "r2", n_answers=2, headline=50.0)
    result = record(wh, "r1", n_answers=1, headline=65.0)
    assert result.replaced is True
    assert counts(wh, "r1")["answers"] == 1
    assert wh.query("SELECT headline FROM runs WHERE run_id = 'r1'")["headline"][0] == 65.0
    assert counts(wh, "r2") == {
        "runs": 1,
        "answers": 2,
        "scores_by_type": 3,
        "scores_by_category": 1,
    }


# --- leaderboard and named queries ------------------------------------------------------------


def test_leaderboard_keeps_the_best_run_per_checkpoint_recipe_protocol_ranked(wh) -> None:
    t = dt.datetime(2025, 1, 1, tzinfo=UTC)
    history = [
        # run, eval_set, checkpoint, recipe, headline, finished
        ("a1", "mmad", "ckpt-a", "emit", 70.0, t),
        ("a2", "mmad", "ckpt-a", "emit", 72.0, t + dt.timedelta(hours=1)),  # a's best
        ("b1", "mmad", "ckpt-b", "emit", 75.0, t),
        ("c1", "mmad", "ckpt-c", "adfm", 72.0, t),  # ties with a2
        ("d1", "mmad", "ckpt-d", "emit", None, t),  # no headline: left out
        ("x1", "visa", "ckpt-a", "emit", 50.0, t),
    ]
    for run_id, eval_set, ckpt, recipe, headline, finished in history:
        record(
            wh,
            run_id,
            eval_set=eval_set,
            checkpoint=ckpt,
            recipe=recipe,
            headline=headline,
            finished_at=finished,
        )
    board = wh.leaderboard("mmad")
    assert board.select("rank", "checkpoint", "run_id", "headline", "n_runs").rows() == [
        (1, "ckpt-b", "b1", 75.0, 1),
        (2, "ckpt-a", "a2", 72.0, 2),
        (2, "ckpt-c", "c1", 72.0, 1),
    ]
    everything = wh.leaderboard()
    assert everything.select("eval_set", "rank", "run_id").rows()[-1] == ("visa", 1, "x1")
    assert wh.leaderboard("no-such-set").is_empty()


def test_leaderboard_never_ranks_runs_of_different_protocols_together(wh) -> None:
    # the same checkpoint under MMAD's protocol on the original and the corrected MMAD, and
    # another checkpoint under EMIT's: three rankings, each with its rank 1
    runs = [
        ("o1", "ckpt-a", 70.0, "1shot-random@aa", "original"),
        ("o2", "ckpt-b", 74.0, "1shot-random@aa", "original"),
        ("c1", "ckpt-a", 71.0, "1shot-random+mmad_corrected@bb", "corrected"),
        ("e1", "ckpt-a", 80.0, "emit_think-1shot-similar+knowledge@cc", "original"),
    ]
    for run_id, ckpt, headline, key, version in runs:
        record(
            wh,
            run_id,
            checkpoint=ckpt,
            headline=headline,
            protocol_key=key,
            mmad_version=version,
            protocol_record=f'{{"protocol_key": "{key}"}}',
        )
    board = wh.leaderboard("mmad")
    assert board.select("protocol_key", "rank", "run_id", "mmad_version").rows() == [
        ("1shot-random+mmad_corrected@bb", 1, "c1", "corrected"),
        ("1shot-random@aa", 1, "o2", "original"),
        ("1shot-random@aa", 2, "o1", "original"),
        ("emit_think-1shot-similar+knowledge@cc", 1, "e1", "original"),
    ]


@pytest.fixture
def history(wh: Warehouse) -> Warehouse:
    """Three checkpoints evaluated on MMAD (recorded out of order) and one on VisA."""
    t = dt.datetime(2025, 2, 1, tzinfo=UTC)
    runs = [
        # run, checkpoint, finished (hours), eval_set, {(dataset, category, type): accuracy}
        ("r300", "ckpt-300", 3, "mmad", {("VisA", "pcb1", AD): 90.0, ("VisA", "pcb1", DC): 70.0}),
        ("r100", "ckpt-100", 1, "mmad", {("VisA", "pcb1", AD): 60.0, ("VisA", "pcb1", DC): 40.0}),
        ("r200", "ckpt-200", 2, "mmad", {("VisA", "pcb1", AD): 95.0, ("VisA", "pcb1", DC): 55.0}),
        ("v100", "ckpt-100", 4, "visa", {("VisA", "pcb1", AD): 10.0}),
    ]
    for run_id, ckpt, hours, eval_set, cells in runs:
        cells = {**cells, ("DS-MVTec", "bottle", AD): 50.0 + hours}
        finished = t + dt.timedelta(hours=hours)
        record(wh, run_id, cells, checkpoint=ckpt, eval_set=eval_set, finished_at=finished)
    return wh


def test_best_checkpoint_per_category(history: Warehouse) -> None:
    best = history.best_checkpoint_per_category("mmad")
    # pcb1 means over its two types: r100 50.0, r200 75.0, r300 80.0; bottle: 50 + hours.
    assert best.select("dataset", "category", "checkpoint", "accuracy", "n_runs").rows() == [
        ("DS-MVTec", "bottle", "ckpt-300", 53.0, 3),
        ("VisA", "pcb1", "ckpt-300", 80.0, 3),
    ]
    only_ad = history.best_checkpoint_per_category("mmad", type=AD)
    assert only_ad.filter(pl.col("category") == "pcb1")["checkpoint"].to_list() == ["ckpt-200"]
    assert history.best_checkpoint_per_category("nothing").is_empty()


def test_category_history_is_ordered_by_time(history: Warehouse) -> None:
    pcb1 = history.category_history("pcb1", eval_set="mmad")
    assert pcb1.select("checkpoint", "accuracy", "questions").rows() == [
        ("ckpt-100", 50.0, 200),
        ("ckpt-200", 75.0, 200),
        ("ckpt-300", 80.0, 200),
    ]
    assert pcb1["evaluated_at"].is_sorted()
    every_set = history.category_history("pcb1", type=AD)
    assert every_set.select("eval_set", "accuracy").rows() == [
        ("mmad", 60.0),
        ("mmad", 95.0),
        ("mmad", 90.0),
        ("visa", 10.0),
    ]
    assert history.category_history("pcb1", dataset="DS-MVTec").is_empty()


def test_category_history_falls_back_to_the_start_time(wh: Warehouse) -> None:
    t = dt.datetime(2025, 1, 1, tzinfo=UTC)
    record(wh, "late", started_at=t + dt.timedelta(days=2), finished_at=None)
    record(wh, "early", started_at=t, finished_at=t + dt.timedelta(days=1))
    assert wh.category_history("bottle")["run_id"].to_list() == ["early", "late"]


def test_query_returns_polars_with_positional_and_named_parameters(wh: Warehouse) -> None:
    record(wh)
    by_position = wh.query("SELECT run_id FROM runs WHERE eval_set = ?", ["mmad"])
    by_name = wh.query("SELECT run_id FROM runs WHERE eval_set = $s", {"s": "mmad"})
    assert isinstance(by_position, pl.DataFrame)
    assert by_position.equals(by_name) and by_name["run_id"].to_list() == ["r1"]
    assert tuple(wh.query("SELECT * FROM runs").columns) == RUN_COLUMNS


# --- the README's SQL -------------------------------------------------------------------------


def _readme_sql() -> list[str]:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Querying the results", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```sql")[1:]]
    statements = [s.strip() for b in blocks for s in b.split(";")]
    return [
        s for s in statements if s and not all(line.startswith("--") for line in s.splitlines())
    ]


def test_every_readme_query_runs_on_the_duckdb_file(history: Warehouse) -> None:
    statements = _readme_sql()
    assert len(statements) >= 4
    with duckdb.connect(str(history.path), read_only=True) as con:
        results = [con.execute(sql).fetchall() for sql in statements]
    # the history's eval sets are not MMAD's query sets, so only that query finds nothing
    assert [bool(rows) for rows in results] == ["'DS-MVTec'" not in s for s in statements]

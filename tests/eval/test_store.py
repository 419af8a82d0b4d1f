"""The answer store: atomic shards, resume sets, run ids, stray temporary files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from eval.records import ANSWERS_SCHEMA
from eval.store import AnswerStore, StoreError, run_id


def record(qid: str, answer: str = "A", **extra) -> dict:
    return {
        "question_id": qid,
        "image": "DS-MVTec/bottle/image/crack/000.png",
        "question": "Is there any defect in the object?",
        "question_type": "Anomaly Detection",
        "correct_answer": "A",
        "response": answer,
        "gpt_answer": answer,
        "parsed_mmad": answer,
        "parsed_think": answer,
        "latency_s": 0.5,
    } | extra


@pytest.fixture
def store(tmp_path: Path) -> AnswerStore:
    return AnswerStore(tmp_path / "answers")


@pytest.fixture
def rid(store: AnswerStore) -> str:
    return store.open_run("Qwen2.5-VL-7B", "", "1shot-random", "transformers")


def test_run_id_is_stable_and_depends_on_every_field():
    base = ("Qwen2.5-VL-7B", "step-100", "1shot-random", "transformers")
    assert run_id(*base) == run_id(*base)
    assert len(run_id(*base)) == 16
    variants = {run_id(*base[:i], "other", *base[i + 1 :]) for i in range(4)}
    assert len(variants) == 4 and run_id(*base) not in variants


def test_run_json_is_written_once(store: AnswerStore, rid: str):
    path = store.root / rid / "run.json"
    first = path.stat()
    assert json.loads(path.read_text()) == {
        "run_id": rid,
        "model": "Qwen2.5-VL-7B",
        "checkpoint": "",
        "protocol": "1shot-random",
        "backend": "transformers",
    }
    assert store.open_run("Qwen2.5-VL-7B", "", "1shot-random", "transformers") == rid
    assert path.stat().st_ino == first.st_ino and path.stat().st_mtime_ns == first.st_mtime_ns


def test_a_run_json_naming_other_fields_is_refused(store: AnswerStore, rid: str):
    path = store.root / rid / "run.json"
    path.write_text(json.dumps({"model": "something else"}))
    with pytest.raises(StoreError, match=r"run\.json"):
        store.open_run("Qwen2.5-VL-7B", "", "1shot-random", "transformers")


def test_append_and_read_round_trip(store: AnswerStore, rid: str):
    assert store.append(rid, [record("q1"), record("q2", "B")]).name == "part-00000.jsonl"
    assert store.append(rid, pl.DataFrame([record("q3", "C")])).name == "part-00001.jsonl"
    df = store.read(rid)
    assert df.schema == pl.Schema(ANSWERS_SCHEMA)
    assert df["question_id"].to_list() == ["q1", "q2", "q3"]
    assert df["gpt_answer"].to_list() == ["A", "B", "C"]
    assert df["run_id"].unique().to_list() == [rid]
    assert df["dataset"].unique().to_list() == ["DS-MVTec"]  # filled from the image key
    assert store.answered(rid) == {"q1", "q2", "q3"}


def test_unknown_fields_are_dropped_and_unicode_kept(store: AnswerStore, rid: str):
    store.append(rid, [record("q1", "Réponse: B ✓", extra_field=[1, 2])])
    line = (store.root / rid / "part-00000.jsonl").read_text(encoding="utf-8")
    assert "extra_field" not in line and "✓" in line
    assert store.read(rid)["response"].to_list() == ["Réponse: B ✓"]


def test_an_empty_or_unknown_run_reads_empty(store: AnswerStore, rid: str):
    assert store.append(rid, []) is None
    assert store.shards(rid) == []
    assert store.answered("0123456789abcdef") == set()
    assert store.read(rid).schema == pl.Schema(ANSWERS_SCHEMA)
    assert store.read(rid).height == 0


def test_duplicate_question_ids_keep_the_first_record(store: AnswerStore, rid: str):
    store.append(rid, [record("q1", "A"), record("q2", "B")])
    store.append(rid, [record("q1", "D")])
    df = store.read(rid)
    assert df.height == 2
    assert dict(zip(df["question_id"], df["gpt_answer"], strict=True)) == {"q1": "A", "q2": "B"}


def test_a_stray_temporary_file_is_ignored(store: AnswerStore, rid: str):
    store.append(rid, [record("q1")])
    # What a kill during a write leaves behind: a hidden, half-written temporary file.
    stray = store.root / rid / ".part-00001.jsonl.1a2b3c4d.tmp"
    stray.write_text('{"question_id": "q9", "image": "DS-MVT')
    assert store.answered(rid) == {"q1"}
    assert store.read(rid)["question_id"].to_list() == ["q1"]
    assert store.append(rid, [record("q2")]).name == "part-00001.jsonl"
    assert store.answered(rid) == {"q1", "q2"}


def test_a_failed_write_leaves_no_shard_and_no_temporary_file(
    store: AnswerStore, rid: str, monkeypatch: pytest.MonkeyPatch
):
    store.append(rid, [record("q1")])

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.append(rid, [record("q2")])
    monkeypatch.undo()
    assert sorted(p.name for p in (store.root / rid).iterdir()) == ["part-00000.jsonl", "run.json"]
    assert store.answered(rid) == {"q1"}


def test_a_shard_written_meanwhile_is_never_overwritten(
    store: AnswerStore, rid: str, monkeypatch: pytest.MonkeyPatch
):
    store.append(rid, [record("q1")])
    # Another writer lists the folder before our first shard existed: it must take the next
    # free number instead of replacing part-00000.
    monkeypatch.setattr(AnswerStore, "shards", lambda self, run_id: [])
    assert store.append(rid, [record("q2")]).name == "part-00001.jsonl"
    monkeypatch.undo()
    assert store.answered(rid) == {"q1", "q2"}


def test_a_hand_edited_shard_raises_naming_the_file(store: AnswerStore, rid: str):
    shard = store.append(rid, [record("q1")])
    shard.write_text(shard.read_text() + "{not json\n")
    with pytest.raises(StoreError, match=r"part-00000\.jsonl: line 2"):
        store.answered(rid)


@pytest.mark.parametrize("bad", ["", "../escape", ".hidden", "a/b"])
def test_run_ids_that_are_not_folder_names_are_refused(store: AnswerStore, bad: str):
    with pytest.raises(StoreError):
        store.answered(bad)


def test_many_shards_sort_by_number_not_by_name(store: AnswerStore, rid: str):
    for i in range(12):
        store.append(rid, [record(f"q{i:02d}")])
    assert store.read(rid)["question_id"].to_list() == [f"q{i:02d}" for i in range(12)]

"""MMAD corrected runs beside the original: two runs, the version recorded, both shown."""

import json

import dagster as dg
import duckdb
import pytest

from assets.annotations import annotations
from assets.evaluation import mmad_eval
from assets.ingest import raw_dataset, samples
from assets.questions import question_bank
from iad_pipeline.resources import IadConfig
from training.checkpoints import DONE
from training.tiny_model import build_tiny_qwen25vl


@pytest.mark.slow
def test_corrected_mmad_is_stored_and_ranked_beside_the_original(tmp_path) -> None:
    iad = IadConfig(home=str(tmp_path), profile="demo", synthetic_per_class=1)
    folder = iad.layout().runs / "demo" / "checkpoint-4"
    build_tiny_qwen25vl(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    (folder / DONE).write_text(json.dumps({"step": 4, "recipe": "demo"}))
    partition = dg.MultiPartitionKey({"checkpoint": "demo-4", "eval_set": "VisA"})
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [raw_dataset, samples, annotations, question_bank],
            partition_key="mmad",
            resources={"iad": iad},
            instance=instance,
        ).success
        instance.add_dynamic_partitions("checkpoints", ["demo-4"])
        for version in ("original", "corrected"):
            # MMAD's own protocol named (the default follows the checkpoint's recipe)
            settings = {"mmad_version": version, "protocol": "mmad"}
            config = {"ops": {"mmad_eval": {"config": settings}}}
            assert dg.materialize(
                [mmad_eval],
                partition_key=partition,
                resources={"iad": iad},
                instance=instance,
                run_config=config,
            ).success
    with duckdb.connect(str(iad.layout().warehouse), read_only=True) as con:
        board = con.sql(
            "SELECT mmad_version, protocol, rank FROM leaderboard ORDER BY mmad_version"
        ).fetchall()
        records = [json.loads(r[0]) for r in con.sql("SELECT protocol_record FROM runs").fetchall()]
    assert board == [
        ("corrected", "1shot-random+mmad_corrected", 1),
        ("original", "1shot-random", 1),
    ]
    assert sorted(r["errata_version"] is None for r in records) == [False, True]
    reports = iad.layout().reports / "demo-4"
    assert (reports / "VisA" / "heatmap.png").is_file()
    assert (reports / "VisA+mmad_corrected" / "heatmap.png").is_file()

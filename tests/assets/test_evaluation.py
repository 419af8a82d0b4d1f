"""The checkpoint sensor, the nightly schedule and mmad_eval on a real tiny checkpoint."""

import datetime as dt
import json

import dagster as dg
import duckdb
import pytest

from assets.annotations import annotations
from assets.evaluation import (
    checkpoint_sensor,
    mmad_eval,
    nightly_reevaluation,
)
from assets.ingest import raw_dataset, samples
from assets.questions import question_bank
from eval.pipeline import MMAD_SETS
from iad_pipeline.resources import IadConfig
from iad_pipeline.stages import CROSS_DATASET_EVAL
from training.checkpoints import DONE
from training.tiny_model import build_tiny_qwen25vl


def make_checkpoint(
    runs, recipe: str, step: int, reward: float = 0.0, stage: str = "", seed: int = 0
):
    folder = runs / recipe / stage / f"checkpoint-{step}"
    build_tiny_qwen25vl(folder, seed=seed)
    (folder / "trainer_state.json").write_text(
        json.dumps({"global_step": step, "log_history": [{"step": step, "reward": reward}]})
    )
    (folder / DONE).write_text(json.dumps({"step": step, "recipe": recipe}))
    return folder


def tick(instance, iad, cursor=None):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"iad": iad}
    ) as context:
        return checkpoint_sensor(context)


def test_sensor_adds_new_checkpoints_once_and_again_when_they_change(tmp_path) -> None:
    iad = IadConfig(home=str(tmp_path), profile="demo")
    runs = iad.layout().runs
    with dg.instance_for_test() as instance:
        assert isinstance(tick(instance, iad), dg.SkipReason)
        make_checkpoint(runs, "emit", 2)
        (runs / "emit" / "checkpoint-3").mkdir()  # incomplete: no DONE, never evaluated
        first = tick(instance, iad)
        assert [r.partition_keys for r in first.dynamic_partitions_requests] == [["emit-2"]]
        assert len(first.run_requests) == len(MMAD_SETS) + len(CROSS_DATASET_EVAL)
        keys = {r.partition_key.keys_by_dimension["eval_set"] for r in first.run_requests}
        assert keys == set(MMAD_SETS) | set(CROSS_DATASET_EVAL)
        instance.add_dynamic_partitions("checkpoints", ["emit-2"])
        assert isinstance(tick(instance, iad, first.cursor), dg.SkipReason)  # same content
        # training state rewritten, weights the same: the answers would be the same
        (runs / "emit" / "checkpoint-2" / "trainer_state.json").write_text(
            json.dumps({"global_step": 2, "log_history": [{"step": 2, "reward": 0.5}]})
        )
        assert isinstance(tick(instance, iad, first.cursor), dg.SkipReason)
        # re-trained with the same name: new weights, evaluated again with new run keys
        make_checkpoint(runs, "emit", 2, seed=1)
        again = tick(instance, iad, first.cursor)
        assert not again.dynamic_partitions_requests  # the partition exists already
        old = {r.run_key for r in first.run_requests}
        assert not old & {r.run_key for r in again.run_requests}


def test_nightly_schedule_re_evaluates_each_recipes_latest_checkpoint(tmp_path) -> None:
    iad = IadConfig(home=str(tmp_path), profile="demo")
    runs = iad.layout().runs
    for recipe, step in (("emit", 2), ("emit", 10), ("adfm", 4)):
        make_checkpoint(runs, recipe, step)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("checkpoints", ["emit-2", "emit-10", "adfm-4"])
        context = dg.build_schedule_context(
            instance=instance,
            resources={"iad": iad},
            scheduled_execution_time=dt.datetime(2026, 11, 22, 3, tzinfo=dt.UTC),
        )
        requests = nightly_reevaluation(context)
    checkpoints = {r.partition_key.keys_by_dimension["checkpoint"] for r in requests}
    assert checkpoints == {"emit-10", "adfm-4"}
    assert len(requests) == 2 * len(MMAD_SETS)
    assert all(r.run_key.startswith("nightly:2026-11-22:") for r in requests)


@pytest.mark.slow
def test_mmad_eval_scores_a_checkpoint_into_duckdb(tmp_path) -> None:
    # a recipe whose checkpoints MMAD's protocol asks (its default): the random tiny model's
    # answers then parse to letters
    iad = IadConfig(home=str(tmp_path), profile="demo", synthetic_per_class=1)
    make_checkpoint(iad.layout().runs, "adfm", 4)
    make_checkpoint(iad.layout().runs, "adfm", 0, stage="base")  # the same weights
    partition = dg.MultiPartitionKey({"checkpoint": "adfm-4", "eval_set": "VisA"})
    base_partition = dg.MultiPartitionKey({"checkpoint": "adfm-base-0", "eval_set": "VisA"})
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [raw_dataset, samples, annotations, question_bank],
            partition_key="mmad",
            resources={"iad": iad},
            instance=instance,
        ).success
        instance.add_dynamic_partitions("checkpoints", ["adfm-4", "adfm-base-0"])
        base = dg.materialize(
            [mmad_eval], partition_key=base_partition, resources={"iad": iad}, instance=instance
        )
        result = dg.materialize(
            [mmad_eval], partition_key=partition, resources={"iad": iad}, instance=instance
        )
    assert base.success and result.success
    # the checkpoint is compared with its recipe's base model, subtask by subtask
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "no_subtask_below_base" and check.passed  # same weights: delta 0
    assert check.metadata["base"].value == "adfm-base-0"
    assert "delta_vs_base" in result.asset_materializations_for_node("mmad_eval")[0].metadata
    [base_check] = base.get_asset_check_evaluations()
    assert base_check.metadata["base"].value == "this is the base model"
    meta = result.asset_materializations_for_node("mmad_eval")[0].metadata
    assert 0 <= meta["headline"].value <= 100
    assert "accuracy/anomaly_detection" in meta
    with duckdb.connect(str(iad.layout().warehouse), read_only=True) as con:
        runs = con.sql("SELECT eval_set, checkpoint, n_questions FROM runs").fetchall()
        n_answers = con.sql("SELECT count(*) FROM answers").fetchall()[0][0]
        board = con.sql("SELECT count(*) FROM leaderboard").fetchall()[0][0]
    assert sorted(runs) == [
        ("VisA", "adfm-4", meta["questions"].value),
        ("VisA", "adfm-base-0", meta["questions"].value),
    ]
    assert n_answers == 2 * meta["questions"].value > 0
    assert board == 2
    assert (iad.layout().reports / "adfm-4" / "VisA" / "heatmap.png").is_file()

    # re-trained into the same name (same DONE marker and trainer state, new weights): a new
    # evaluation asks every question again; DuckDB holds both, told apart by checkpoint_sha
    make_checkpoint(iad.layout().runs, "adfm", 4, seed=1)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("checkpoints", ["adfm-4"])
        again = dg.materialize(
            [mmad_eval], partition_key=partition, resources={"iad": iad}, instance=instance
        )
    assert again.success
    new_meta = again.asset_materializations_for_node("mmad_eval")[0].metadata
    assert new_meta["run_id"].value != meta["run_id"].value
    with duckdb.connect(str(iad.layout().warehouse), read_only=True) as con:
        shas = con.execute(
            "SELECT r.checkpoint_sha, count(a.question_id) FROM runs r "
            "JOIN answers a USING (run_id) WHERE r.checkpoint = 'adfm-4' GROUP BY ALL"
        ).fetchall()
    assert len(shas) == 2 and {n for _, n in shas} == {meta["questions"].value}

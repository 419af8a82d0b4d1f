"""cross_dataset_eval on the demo profile: a real tiny checkpoint, answers read by the shared
parser, exact counts in DuckDB, the protocol recorded."""

import json

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.annotations import annotations
from assets.evaluation import cross_dataset_eval
from assets.ingest import raw_dataset, samples
from assets.questions import question_bank
from iad_pipeline.answers import chosen_option
from iad_pipeline.resources import IadConfig
from training.checkpoints import DONE
from training.tiny_model import build_tiny_qwen25vl


def make_checkpoint(runs, recipe: str, step: int):
    folder = runs / recipe / f"checkpoint-{step}"
    build_tiny_qwen25vl(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / DONE).write_text(json.dumps({"step": step, "recipe": recipe}))
    return folder


@pytest.mark.slow
def test_cross_dataset_eval_counts_exactly_into_duckdb(tmp_path) -> None:
    iad = IadConfig(home=str(tmp_path), profile="demo", synthetic_per_class=1)
    make_checkpoint(iad.layout().runs, "demo", 4)
    partition = dg.MultiPartitionKey({"checkpoint": "demo-4", "eval_set": "visa"})
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [raw_dataset, samples, annotations, question_bank],
            partition_key="visa",
            resources={"iad": iad},
            instance=instance,
        ).success
        instance.add_dynamic_partitions("checkpoints", ["demo-4"])
        # MMAD's protocol named (the default follows the checkpoint's recipe)
        result = dg.materialize(
            [cross_dataset_eval],
            partition_key=partition,
            resources={"iad": iad},
            instance=instance,
            run_config={"ops": {"cross_dataset_eval": {"config": {"protocol": "mmad"}}}},
        )
    assert result.success
    meta = result.asset_materializations_for_node("cross_dataset_eval")[0].metadata
    n = meta["questions"].value
    assert n > 0 and 0 <= meta["headline"].value <= 100
    with duckdb.connect(str(iad.layout().warehouse), read_only=True) as con:
        run = con.sql("SELECT * FROM runs").pl().row(0, named=True)
        answers = con.sql("SELECT question_id, parsed_mmad FROM answers").pl()
        cats = con.sql("SELECT category, correct, total FROM scores_by_category").pl()
    # the counts in DuckDB are the answers recounted by hand: the parsed letter names an
    # option, "Yes." means anomalous, and the question's own answer is the truth
    questions = pl.read_parquet(iad.layout().tables / "questions" / "visa.parquet")
    joined = answers.join(questions, on="question_id")
    right: dict[str, int] = {}
    for row in joined.iter_rows(named=True):
        said = chosen_option(row["parsed_mmad"], row["options"])
        truth = chosen_option(row["answer"], row["options"])
        right[row["category"]] = right.get(row["category"], 0) + (
            said is not None and said == truth
        )
    assert dict(zip(cats["category"], cats["correct"], strict=True)) == right
    assert cats["total"].sum() == answers.height == n
    assert meta["headline"].value == sum(right.values()) / n * 100
    # the protocol is recorded with the run
    record = json.loads(run["protocol_record"])
    assert run["protocol"] == "1shot-random" and run["mmad_version"] == "original"
    assert record["max_pixels"] == 1280 * 28 * 28 and record["add_vision_id"] is True
    assert record["model_revision"] and run["protocol_key"].startswith("1shot-random@")

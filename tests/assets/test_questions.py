"""Annotations, question banks and training sets materialize on the demo profile."""

import json
import shutil

import dagster as dg
import polars as pl
import pytest

from assets.annotations import annotations
from assets.ingest import raw_dataset, samples
from assets.questions import question_bank, training_set
from iad_pipeline.questions.validate import invalid_questions

CHAIN = [raw_dataset, samples, annotations, question_bank]


def checks_of(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """mpdd and mmad materialized once: enough for the emit recipe and its MMAD guard."""
    from iad_pipeline.resources import IadConfig

    home = tmp_path_factory.mktemp("home")
    iad = IadConfig(home=str(home), profile="demo", synthetic_per_class=1)
    with dg.instance_for_test() as instance:
        results = {
            key: dg.materialize(CHAIN, partition_key=key, resources={"iad": iad}, instance=instance)
            for key in ("mpdd", "mmad")
        }
    return home, iad, results


@pytest.mark.parametrize("key", ["mpdd", "mmad"])
def test_dataset_chain_passes_its_checks(demo, key: str) -> None:
    home, _, results = demo
    result = results[key]
    assert result.success
    assert all(checks_of(result).values()), checks_of(result)
    tables = home / "demo" / "tables"
    ann = pl.read_parquet(tables / "annotations" / f"{key}.parquet")
    sam = pl.read_parquet(tables / "samples" / f"{key}.parquet")
    assert ann["sample_id"].to_list() == sam["sample_id"].to_list()
    anomalous = ann.filter(pl.col("is_anomalous") & pl.col("localizable"))
    assert anomalous["box_count"].min() >= 1
    questions = pl.read_parquet(tables / "questions" / f"{key}.parquet")
    assert invalid_questions(questions).is_empty()
    meta = result.asset_materializations_for_node("annotations")[0].metadata
    assert meta["preview"].value.startswith("![boxes and grid](data:image/jpeg;base64,")


def test_mpdd_questions_cover_every_style_and_task(demo) -> None:
    home, _, _ = demo
    q = pl.read_parquet(home / "demo" / "tables" / "questions" / "mpdd.parquet")
    assert set(q["style"]) == {"emit", "anomalyr1", "lr_iad", "adfm"}
    emit_tasks = set(q.filter(pl.col("style") == "emit")["task"])
    assert emit_tasks == {
        "anomaly_detection",
        "defect_classification",
        "defect_localization",
        "object_classification",
    }
    adfm = q.filter((pl.col("style") == "adfm") & (pl.col("answer") == "a"))
    assert adfm["boxes"].list.len().min() >= 1


def test_mmad_question_bank_reads_the_benchmark(demo) -> None:
    home, _, _ = demo
    q = pl.read_parquet(home / "demo" / "tables" / "questions" / "mmad.parquet")
    mmad = json.loads((home / "demo" / "data" / "mmad" / "mmad.json").read_text())
    assert q.height == sum(len(v["conversation"]) for v in mmad.values())
    assert "Object Analysis" in set(q["mmad_type"])


def test_emit_training_set_is_exported_and_guarded(demo) -> None:
    _, iad, _ = demo
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [training_set], partition_key="emit", resources={"iad": iad}, instance=instance
        )
    assert checks_of(result) == {
        "no_training_image_in_eval_sets": True,
        "training_set_not_empty": True,
    }
    meta = result.asset_materializations_for_node("training_set")[0].metadata
    assert meta["guarded_eval_sets"].value == "mmad, own_eval"
    import datasets

    ds = datasets.load_from_disk(meta["hf_dataset"].value)
    assert {"prompt", "image", "solution", "boxes"} <= set(ds.column_names)
    assert len(ds) == meta["dagster/row_count"].value


def test_a_training_image_copied_into_mmad_blocks_the_training_set(demo, tmp_path) -> None:
    from iad_pipeline.resources import IadConfig

    home, _, _ = demo
    # an isolated copy of the demo home, with one MMAD template replaced by an mpdd image
    copy = tmp_path / "home"
    shutil.copytree(home, copy, symlinks=True)
    data = copy / "demo" / "data"
    mmad_json = json.loads((data / "mmad" / "mmad.json").read_text())
    template = next(iter(mmad_json.values()))["similar_templates"][0]
    train = pl.read_parquet(copy / "demo" / "tables" / "samples" / "mpdd.parquet")
    leaked = train.filter(~pl.col("is_anomalous"))["image_path"][0]
    # tables store paths relative to the layout's roots: the copied home needs no rewriting
    assert leaked.startswith("data/mpdd/")
    shutil.copyfile(copy / "demo" / leaked, data / "mmad" / template)

    iad = IadConfig(home=str(copy), profile="demo", synthetic_per_class=1)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [training_set],
            partition_key="emit",
            resources={"iad": iad},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success  # the blocking check stops the run
        leaks = pl.read_parquet(
            copy / "demo" / "tables" / "training_sets" / "emit" / "leaks.parquet"
        )
        override = IadConfig(
            home=str(copy), profile="demo", synthetic_per_class=1, allow_leaks=True
        )
        allowed = dg.materialize(
            [training_set], partition_key="emit", resources={"iad": override}, instance=instance
        )
    assert checks_of(result)["no_training_image_in_eval_sets"] is False
    # emit trains on every mpdd image of this small demo, the copied one included
    assert leaks.select("sample_id", "kind").rows() == [
        (train.filter(pl.col("image_path") == leaked)["sample_id"][0], "exact")
    ]
    assert checks_of(allowed)["no_training_image_in_eval_sets"] is True

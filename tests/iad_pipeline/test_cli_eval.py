"""``iad eval``: the evaluation the mmad_eval asset runs, from the shell."""

import json

import dagster as dg
import duckdb
import pytest

from assets.annotations import annotations
from assets.evaluation import mmad_eval
from assets.ingest import raw_dataset, samples
from assets.questions import question_bank
from iad_pipeline.cli import main
from iad_pipeline.resources import IadConfig
from tests.assets.test_evaluation import make_checkpoint


@pytest.mark.slow
def test_iad_eval_records_what_the_asset_records(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("IAD_HOME", str(tmp_path))
    monkeypatch.setenv("IAD_PROFILE", "demo")
    # a recipe whose checkpoints MMAD's protocol asks (its default): the random tiny model's
    # answers then parse to letters
    iad = IadConfig(home=str(tmp_path), profile="demo", synthetic_per_class=1)
    layout = iad.layout()
    checkpoint = make_checkpoint(layout.runs, "adfm", 4)
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [raw_dataset, samples, annotations, question_bank],
            partition_key="mmad",
            resources={"iad": iad},
            instance=instance,
        ).success
        capsys.readouterr()
        assert main(["eval", str(checkpoint), "--set", "VisA", "--json", "-q"]) == 0
        table = json.loads(capsys.readouterr().out)
        with duckdb.connect(str(layout.warehouse), read_only=True) as con:
            runs = con.sql("SELECT run_id, checkpoint, recipe, n_questions FROM runs").fetchall()
        assert len(runs) == 1
        run_id, key, recipe, n = runs[0]
        assert (key, recipe) == ("adfm-4", "adfm") and n > 0
        assert {row["dataset"] for row in table} >= {"VisA", "Average"}
        assert (layout.report("adfm-4", "VisA") / "heatmap.png").is_file()

        # the asset on the same partition is the same evaluation: same run, nothing re-asked
        instance.add_dynamic_partitions("checkpoints", ["adfm-4"])
        partition = dg.MultiPartitionKey({"checkpoint": "adfm-4", "eval_set": "VisA"})
        result = dg.materialize(
            [mmad_eval], partition_key=partition, resources={"iad": iad}, instance=instance
        )
    assert result.success
    meta = result.asset_materializations_for_node("mmad_eval")[0].metadata
    assert meta["run_id"].value == run_id and meta["questions"].value == n
    with duckdb.connect(str(layout.warehouse), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM runs").fetchall()[0][0] == 1


def test_iad_eval_of_an_unknown_set_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("IAD_HOME", str(tmp_path))
    assert main(["eval", str(tmp_path), "--set", "NoSuchSet", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("iad: error: unknown evaluation set 'NoSuchSet'")


def _eval_args(*argv: str):
    from iad_pipeline.cli import build_parser

    return build_parser().parse_args(["eval", *argv])


def test_iad_eval_asks_a_run_checkpoint_as_the_assets_do(tmp_path, capsys) -> None:
    """A staged run's checkpoint is named as the sensor names it and, by default, asked with
    the protocol its run folder records (the recipe's question form, shuffle, pixel bounds),
    so the CLI and the evaluation assets give the same run; flags change it on top."""
    from assets.evaluation import checkpoint_protocol
    from eval.cli import _checkpoint_name, _protocol
    from eval.protocols import protocol_named
    from training.checkpoints import claim_run_dir
    from training.config import evaluation_protocol, load_recipe

    run = tmp_path / "runs" / "demo"
    claim_run_dir(
        run,
        "demo",
        "abc",
        resume=False,
        overwrite=False,
        evaluation=evaluation_protocol(load_recipe("demo")),
    )
    folder = run / "sft" / "checkpoint-400"
    folder.mkdir(parents=True)
    assert _checkpoint_name(folder, None) == ("demo-sft-400", "demo")
    assert _checkpoint_name(tmp_path / "runs" / "adfm" / "checkpoint-4", None) == ("adfm-4", "adfm")

    asked = _protocol(_eval_args(str(folder), "--set", "DS-MVTec"), folder)
    name, changes = checkpoint_protocol(folder)
    assert asked == protocol_named(name, mmad_version="original", **changes)
    assert asked.form == "question" and asked.shuffle_options and asked.max_pixels == 19600
    assert asked.name.endswith("+question_only")
    # a cross-dataset set: the same, without MMAD's domain knowledge, as the asset
    assert not _protocol(_eval_args(str(folder), "--set", "mpdd"), folder).knowledge
    # flags on top of the recorded protocol; --protocol names another
    seeded = _protocol(_eval_args(str(folder), "--set", "DS-MVTec", "--seed", "3"), folder)
    assert seeded.seed == 3 and seeded.form == "question"
    assert _protocol(
        _eval_args(str(folder), "--set", "DS-MVTec", "--protocol", "mmad"), folder
    ) == (protocol_named("mmad", mmad_version="original"))
    # a model folder outside a run, and a run folder recording no protocol: MMAD's, said so
    assert _protocol(_eval_args(str(tmp_path), "--set", "VisA"), tmp_path).name == "1shot-random"
    capsys.readouterr()
    (run / "RUN.json").unlink()
    assert _protocol(_eval_args(str(folder), "--set", "VisA"), folder).name == "1shot-random"
    assert "records no evaluation protocol; asking with mmad" in capsys.readouterr().err

"""The ingest assets materialize in-process on the demo profile, with their checks."""

import json
import subprocess
import sys

import dagster as dg
import polars as pl
import pytest

from assets.ingest import raw_dataset, samples
from iad_pipeline.resources import IadConfig


def test_definitions_load() -> None:
    # in a fresh interpreter, as `dg dev` loads the code location: Dagster keeps a global
    # load context that other tests' (closed) instances would otherwise leak into
    code = (
        "import json, dagster as dg\n"
        "from iad_pipeline.definitions import defs\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "print(json.dumps(sorted(k.to_user_string() for k in defs.resolve_all_asset_keys())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    assert set(json.loads(out.strip().splitlines()[-1])) == {
        "raw_dataset",
        "samples",
        "annotations",
        "domain_knowledge",
        "text_samples",
        "question_bank",
        "training_set",
        "grpo_run",
        "mmad_eval",
        "cross_dataset_eval",
    }


@pytest.mark.parametrize("key", ["visa", "mvtec_loco", "mmad"])
def test_ingest_materializes_on_the_demo_profile(tmp_path, key: str) -> None:
    iad = IadConfig(home=str(tmp_path), profile="demo", synthetic_per_class=1)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_dataset, samples], partition_key=key, resources={"iad": iad}, instance=instance
        )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "samples_not_empty": True,
        "every_anomalous_sample_has_a_mask": True,
        "quarantine_below_threshold": True,
    }
    meta = result.asset_materializations_for_node("samples")[0].metadata
    table = pl.read_parquet(meta["path"].value)
    assert table.height == meta["dagster/row_count"].value > 0
    assert set(table["dataset"]) == {key}
    raw_meta = result.asset_materializations_for_node("raw_dataset")[0].metadata
    assert raw_meta["synthetic"].value is True
    assert (tmp_path / "demo" / "data" / f"{key}.complete").is_file()


def test_quarantine_check_fails_above_the_threshold(tmp_path) -> None:
    iad = IadConfig(
        home=str(tmp_path), profile="demo", synthetic_per_class=1, quarantine_max_fraction=0.0
    )
    with dg.instance_for_test() as instance:
        dg.materialize(
            [raw_dataset], partition_key="dagm", resources={"iad": iad}, instance=instance
        )
        root = tmp_path / "demo" / "data" / "dagm"
        victim = sorted((root / "Class1" / "Train").glob("*.PNG"))[0]
        victim.write_bytes(victim.read_bytes()[:50])  # a truncated image
        result = dg.materialize(
            [samples],
            partition_key="dagm",
            resources={"iad": iad},
            instance=instance,
            raise_on_error=False,
        )
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["quarantine_below_threshold"] is False
    assert checks["samples_not_empty"] is True


def test_real_profile_manual_dataset_fails_with_instructions(tmp_path) -> None:
    iad = IadConfig(home=str(tmp_path), profile="real")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_dataset],
            partition_key="mpdd",
            resources={"iad": iad},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "iad datasets fetch mpdd --from PATH" in failure

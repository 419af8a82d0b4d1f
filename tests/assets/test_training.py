"""grpo_run materializes through Dagster Pipes on the demo recipe, and resumes."""

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.annotations import annotations
from assets.ingest import raw_dataset, samples
from assets.knowledge import domain_knowledge, text_samples
from assets.questions import question_bank, training_set
from assets.training import grpo_run
from iad_pipeline.resources import IadConfig, KnowledgeConfig, TrainingLauncher
from training.checkpoints import DONE

CHAIN = [raw_dataset, samples, annotations, domain_knowledge, text_samples, question_bank]


def checkpoint_files(run: Path) -> dict[str, tuple[int, int, int]]:
    """Every file of every checkpoint folder of a run: (inode, size, mtime in ns) by path.

    A retrain rewrites these files (new mtime, and a new inode where the trainer writes a new
    file or replaces a folder); a stage already at its step leaves them as they were.
    """
    return {
        str(path.relative_to(run)): (
            path.stat().st_ino,
            path.stat().st_size,
            path.stat().st_mtime_ns,
        )
        for path in sorted(run.glob("*/checkpoint-*/**/*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_demo_recipe_trains_through_pipes(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    iad = IadConfig(home=str(tmp_path), profile="demo", synthetic_per_class=1)
    resources = {
        "iad": iad,
        "knowledge": KnowledgeConfig(text_samples_per_category=1),
        "launcher": TrainingLauncher(max_steps=2),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    }
    with dg.instance_for_test() as instance:
        for key in ("mpdd", "mmad"):
            assert dg.materialize(
                CHAIN, partition_key=key, resources=resources, instance=instance
            ).success
        assert dg.materialize(
            [training_set], partition_key="emit", resources=resources, instance=instance
        ).success
        result = dg.materialize(
            [grpo_run], partition_key="demo", resources=resources, instance=instance
        )
        run = tmp_path / "demo" / "runs" / "demo"
        trained = checkpoint_files(run)
        again = dg.materialize(
            [grpo_run], partition_key="demo", resources=resources, instance=instance
        )
    assert result.success
    mat = result.asset_materializations_for_node("grpo_run")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["steps"] == 2
    assert meta["recipe"] == "demo"
    assert meta["stages"] == "sft, grpo"
    assert meta["sft/steps"] == 2 and meta["grpo/steps"] == 2  # each stage is reported
    checkpoint = run / "grpo" / "checkpoint-2"
    assert meta["checkpoint"] == str(checkpoint)
    assert meta["sft/checkpoint"] == str(checkpoint.parents[1] / "sft" / "checkpoint-2")
    assert (checkpoint / DONE).is_file()
    assert (checkpoint / "trainer_state.json").is_file()
    sft_done = json.loads((checkpoint.parents[1] / "sft" / "checkpoint-2" / DONE).read_text())
    assert (sft_done["stage"], sft_done["step"]) == ("sft", 2)
    assert mat.tags["dagster/data_version"] == "grpo-checkpoint-2"
    # a second materialization finds both stages at their step: nothing is retrained, so
    # not one checkpoint file is rewritten and no checkpoint is added
    assert again.success
    assert {p.split("/")[0] + "/" + p.split("/")[1] for p in trained} == {
        "base/checkpoint-0",
        "sft/checkpoint-2",
        "grpo/checkpoint-2",
    }
    assert checkpoint_files(run) == trained
    again_meta = again.asset_materializations_for_node("grpo_run")[0].metadata
    assert again_meta["steps"].value == 2
    assert again_meta["checkpoint"].value == str(checkpoint)

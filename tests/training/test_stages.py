"""Run folders: stage layout and keys, DONE removed before a save, folders claimed by one run."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerControl

from iad_pipeline.errors import IadError
from iad_pipeline.run_folders import (
    checkpoint_key,
    checkpoint_recipe,
    run_evaluation,
    trained_pixels,
)
from training.checkpoints import (
    DONE,
    RUN_MANIFEST,
    DoneMarker,
    claim_run_dir,
    complete_checkpoints,
    latest_checkpoint,
    run_checkpoints,
)
from training.config import evaluation_protocol, load_recipe


def _checkpoint(folder: Path, done: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    if done:
        (folder / DONE).write_text(json.dumps({"step": int(folder.name.split("-")[1])}))
    return folder


def test_stage_checkpoints_get_keys_with_their_stage(tmp_path) -> None:
    runs = tmp_path / "runs"
    _checkpoint(runs / "demo" / "base" / "checkpoint-0")
    _checkpoint(runs / "demo" / "sft" / "checkpoint-4")
    _checkpoint(runs / "demo" / "grpo" / "checkpoint-2")
    _checkpoint(runs / "demo" / "grpo" / "checkpoint-4", done=False)
    _checkpoint(runs / "old" / "checkpoint-8")  # the one-stage layout still counts
    found = complete_checkpoints(runs)
    assert sorted(found) == ["demo-base-0", "demo-grpo-2", "demo-sft-4", "old-8"]
    assert checkpoint_recipe(found["demo-sft-4"]) == "demo"
    assert checkpoint_key(found["demo-grpo-2"]) == "demo-grpo-2"
    stages = [s for s, _ in run_checkpoints(runs / "demo", complete_only=False)]
    assert stages == ["base", "sft", "grpo", "grpo"]


def test_done_is_removed_before_a_checkpoint_is_rewritten(tmp_path) -> None:
    """A re-training that dies mid-save never leaves an old DONE beside new weights."""
    old = _checkpoint(tmp_path / "checkpoint-4")
    _checkpoint(tmp_path / "checkpoint-2")
    args = SimpleNamespace(output_dir=str(tmp_path))
    state = SimpleNamespace(global_step=4, is_world_process_zero=True, log_history=[])
    marker = DoneMarker("demo", "sft")
    control = TrainerControl(should_save=True)
    marker.on_step_end(args, state, control)
    assert not (old / DONE).exists()  # the save starts now; killed here, it is incomplete
    assert latest_checkpoint(tmp_path).name == "checkpoint-2"
    marker.on_save(args, state, control)
    assert json.loads((old / DONE).read_text())["stage"] == "sft"
    assert latest_checkpoint(tmp_path).name == "checkpoint-4"
    # a step that does not save leaves the marker alone
    marker.on_step_end(args, state, TrainerControl(should_save=False))
    assert (old / DONE).is_file()


def test_a_run_folder_belongs_to_one_run(tmp_path) -> None:
    run = tmp_path / "run"
    claim_run_dir(run, "demo", "abc", resume=False, overwrite=False)  # new folder: fine
    _checkpoint(run / "grpo" / "checkpoint-2")
    with pytest.raises(IadError, match="pass --resume to continue it or --overwrite"):
        claim_run_dir(run, "demo", "abc", resume=False, overwrite=False)
    claim_run_dir(run, "demo", "abc", resume=True, overwrite=False)  # same run: continue
    with pytest.raises(IadError, match=r"another run \(recipe 'demo' with other settings"):
        claim_run_dir(run, "demo", "changed", resume=True, overwrite=False)
    with pytest.raises(IadError, match=r"another run \(recipe 'demo'\)"):
        claim_run_dir(run, "emit", "abc", resume=True, overwrite=False)
    # checkpoints of an unknown run (no RUN.json) are never resumed either
    (run / RUN_MANIFEST).unlink()
    with pytest.raises(IadError, match=r"no RUN\.json"):
        claim_run_dir(run, "demo", "abc", resume=True, overwrite=False)
    claim_run_dir(run, "emit", "xyz", resume=False, overwrite=True)
    assert run_checkpoints(run, complete_only=False) == []
    assert json.loads((run / RUN_MANIFEST).read_text()) == {"recipe": "emit", "fingerprint": "xyz"}


def test_a_run_folder_records_how_its_checkpoints_are_asked(tmp_path) -> None:
    """RUN.json carries the recipe's evaluation protocol, which every stage's checkpoints
    (and a run resumed after an older RUN.json) report; an unreadable one reports none."""
    run = tmp_path / "demo"
    recipe = load_recipe("demo")
    claim_run_dir(run, "demo", "abc", resume=False, overwrite=False)
    assert run_evaluation(run / "sft" / "checkpoint-4") is None  # claimed without one
    _checkpoint(run / "sft" / "checkpoint-4")
    bounds = (recipe.image.min_pixels, recipe.image.max_pixels)
    claim_run_dir(
        run,
        "demo",
        "abc",
        resume=True,
        overwrite=False,
        evaluation=evaluation_protocol(recipe),
        trained_pixels=bounds,
    )
    assert trained_pixels(run / "grpo" / "checkpoint-9") == bounds
    name, changes = run_evaluation(run / "sft" / "checkpoint-4")
    assert run_evaluation(run / "base" / "checkpoint-0") == (name, changes)
    assert name == "emit_think" and changes["form"] == "question"
    assert (changes["min_pixels"], changes["max_pixels"]) == (
        recipe.image.min_pixels,
        recipe.image.max_pixels,
    )
    (run / RUN_MANIFEST).write_text("{not json")
    assert run_evaluation(run / "sft" / "checkpoint-4") is None
    assert trained_pixels(run / "sft" / "checkpoint-4") is None


@pytest.mark.parametrize(
    ("trainable", "expected"),
    [
        ("all", lambda n: True),
        ("projector", lambda n: "visual.merger" in n),
        (("model.language_model.layers.1",), lambda n: "language_model.layers.1." in n),
    ],
)
def test_sft_trainable_freezes_everything_else(tiny_model_dir, trainable, expected) -> None:
    from iad_pipeline.models.processors import load_model_and_processor
    from training.sft import freeze

    model, _ = load_model_and_processor(tiny_model_dir)
    count = freeze(model, trainable)
    params = dict(model.named_parameters())
    assert count == sum(p.numel() for n, p in params.items() if expected(n)) > 0
    assert all(p.requires_grad == expected(n) for n, p in params.items())


def test_sft_with_an_adapter_trains_the_projector_beside_it() -> None:
    import dataclasses

    from training.sft import sft_peft_config

    emit = load_recipe("emit")
    assert sft_peft_config(emit) is None  # EMIT's stage 1: the module alone, no adapter
    emit = dataclasses.replace(emit, sft=dataclasses.replace(emit.sft, trainable="projector"))
    assert sft_peft_config(emit).modules_to_save == ["merger"]
    adapter_only = dataclasses.replace(emit, sft=dataclasses.replace(emit.sft, trainable="adapter"))
    assert sft_peft_config(adapter_only).modules_to_save is None

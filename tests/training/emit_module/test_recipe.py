"""EMIT's recipe with its module, end to end through training/grpo.py: stage 1 aligns only the
module, stage 2 trains the adapter and the module, every checkpoint holds the module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from iad_pipeline.models.emit import EMIT_WEIGHTS_NAME
from tests.support.training_sets import emit_training_set
from training import grpo
from training.checkpoints import checkpoints
from training.config import RecipeError, load_recipe

RECIPES = Path(grpo.__file__).parent / "recipes"


@pytest.fixture(scope="module")
def emit_set(tmp_path_factory) -> Path:
    """EMIT-style questions (with normal references) of one synthetic MPDD category."""
    return emit_training_set(tmp_path_factory.mktemp("emit_set"))["emit"]


def module_tensors(checkpoint: Path) -> set[str]:
    with safe_open(str(checkpoint / EMIT_WEIGHTS_NAME), "pt") as f:
        return set(f.keys())


def recipe_for(tmp_path: Path, model: str) -> Path:
    """demo_emit on another tiny model family (the Qwen2.5-VL one), same stages and module."""
    text = (RECIPES / "demo_emit.yaml").read_text(encoding="utf-8")
    path = tmp_path / f"demo_emit_{model}.yaml"
    text = text.replace("model: tiny-internvl3", f"model: {model}")
    text = text.replace("layers: [1, 2, 3, 4]", "layers: [1, 2]")  # its tower has 2 blocks
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-internvl3", "tiny"])
def test_demo_emit_runs_both_stages_with_the_module(emit_set, tmp_path, model) -> None:
    out = tmp_path / "run"
    recipe = "demo_emit" if model == "tiny-internvl3" else str(recipe_for(tmp_path, model))
    code = grpo.main(["--recipe", recipe, "--output", str(out), "--training-set", str(emit_set)])
    assert code == 0
    for stage in ("sft", "grpo"):
        done = checkpoints(out / stage)
        assert [p.name for p in done][-1] == "checkpoint-4"
        for checkpoint in done:
            names = module_tensors(checkpoint)
            assert any("soft_prompt" in n for n in names), names
            assert any("projector" in n for n in names), names
    # stage 1 trained the module alone: no adapter; stage 2 an adapter beside the module
    assert not list((out / "sft").glob("checkpoint-*/adapter_model.safetensors"))
    assert (out / "grpo" / "checkpoint-4" / "adapter_model.safetensors").is_file()
    sft, grpo_ = (out / s / "checkpoint-4" for s in ("sft", "grpo"))
    from safetensors.torch import load_file

    a, b = load_file(str(sft / EMIT_WEIGHTS_NAME)), load_file(str(grpo_ / EMIT_WEIGHTS_NAME))
    assert any(not a[k].equal(b[k]) for k in a if k in b)  # stage 2 trained the module too
    state = json.loads((grpo_ / "trainer_state.json").read_text())
    assert any("reward" in h for h in state["log_history"])


def test_the_module_switches_are_recipe_fields(tmp_path) -> None:
    recipe = load_recipe("demo_emit")
    assert recipe.emit_module.active and recipe.sft.trainable == "emit_module"
    # the demo trains a random model: the module and every weight (not EMIT's frozen stage 1)
    demo = load_recipe("demo")
    assert demo.emit_module.active and demo.sft.trainable == "all"
    assert not load_recipe("anomalyr1").emit_module.active
    text = (RECIPES / "demo_emit.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    for old, new in [
        ("  soft_prompt: true ", "  soft_prompt: maybe "),  # not a switch
        ("  enabled: true\n", "  enabled: false\n"),  # settings nothing would read
    ]:
        bad.write_text(text.replace(old, new, 1), encoding="utf-8")
        with pytest.raises(RecipeError, match="emit_module"):
            load_recipe(bad)
    # EMIT's "w/o SP & CE" ablation: both parts off is the plain model (stage 1 then needs
    # something else to train)
    ablated = text.replace("  soft_prompt: true ", "  soft_prompt: false ")
    ablated = ablated.replace("  contrastive: true ", "  contrastive: false ")
    bad.write_text(ablated, encoding="utf-8")
    with pytest.raises(RecipeError, match="trainable: emit_module needs"):
        load_recipe(bad)
    bad.write_text(ablated.replace("trainable: emit_module", "trainable: projector"))
    assert not load_recipe(bad).emit_module.active

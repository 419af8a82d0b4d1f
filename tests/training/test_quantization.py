"""QLoRA for real: ``peft.method: qlora`` trains LoRA adapters over a 4-bit NF4 base, or stops."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig
from trl import GRPOTrainer

from training.config import load_recipe
from training.model_setup import load_model
from training.quantization import (
    QuantizationUnavailableError,
    count_4bit_layers,
    load_qlora_model,
)

pytest.importorskip("bitsandbytes")


def _recipe(tmp_path: Path, method: str) -> Path:
    path = tmp_path / f"{method}.yaml"
    path.write_text(
        "name: q\nmodel: tiny\ntraining_set: emit\n"
        "rewards: [{name: format}]\n"
        f"peft: {{method: {method}, r: 4, alpha: 8, target_modules: [q_proj, v_proj]}}\n",
        encoding="utf-8",
    )
    return path


def length_reward(completions, **kwargs) -> list[float]:
    """Varies with the completion, so every group has a non-zero advantage."""
    return [float(len(str(c))) / 10 for c in completions]


def test_a_qlora_recipe_loads_its_base_in_4bit_nf4(tmp_path: Path) -> None:
    model, _ = load_model(load_recipe(_recipe(tmp_path, "qlora")), tmp_path)
    assert model.is_loaded_in_4bit
    assert count_4bit_layers(model) > 0
    quant = model.config.quantization_config
    assert (quant.bnb_4bit_quant_type, quant.bnb_4bit_use_double_quant) == ("nf4", True)
    assert quant.bnb_4bit_compute_dtype == torch.bfloat16
    # the same recipe with plain LoRA loads no 4-bit layer: the option changes what runs
    plain, _ = load_model(load_recipe(_recipe(tmp_path, "lora")), tmp_path)
    assert count_4bit_layers(plain) == 0


def test_qlora_trains_two_grpo_steps_and_only_the_adapter_moves(
    tiny_model_dir: Path, tiny_dataset, grpo_args
) -> None:
    model = load_qlora_model(tiny_model_dir)
    from iad_pipeline.models.processors import load_processor

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[length_reward],
        args=grpo_args(),
        train_dataset=tiny_dataset,
        processing_class=load_processor(tiny_model_dir),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    params = dict(trainer.model.named_parameters())
    adapters = {n: p.detach().clone() for n, p in params.items() if "lora_" in n}
    frozen = {n: p.detach().clone() for n, p in params.items() if "lora_" not in n}
    assert adapters
    assert all("lora_" in n for n, p in params.items() if p.requires_grad)

    trainer.train()

    assert trainer.state.global_step == 2
    assert count_4bit_layers(trainer.model) > 0
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(adapters[n], after[n]) for n in adapters)
    assert all(torch.equal(frozen[n], after[n]) for n in frozen)


def test_without_bitsandbytes_a_qlora_run_stops_at_start_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails, as when missing
    recipe = load_recipe(_recipe(tmp_path, "qlora"))
    with pytest.raises(QuantizationUnavailableError, match="bitsandbytes is not installed"):
        load_model(recipe, tmp_path)
    # the tiny base model was built, but nothing was loaded unquantized behind the error
    with pytest.raises(QuantizationUnavailableError, match="use peft: lora"):
        load_qlora_model(tmp_path / "tiny-qwen25vl")

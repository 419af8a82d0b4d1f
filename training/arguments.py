"""Trainer arguments every stage shares (SFT and GRPO), and the recipe's LoRA config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.config import Recipe


def peft_config(recipe: Recipe):
    """The recipe's LoRA config (``None`` for ``peft.method: none``)."""
    if recipe.peft.method == "none":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.peft.r,
        lora_alpha=recipe.peft.alpha,
        lora_dropout=recipe.peft.dropout,
        target_modules=list(recipe.peft.target_modules),
        task_type="CAUSAL_LM",
    )


def trainer_fields(recipe: Recipe, output: Path, seed: int) -> dict[str, Any]:
    """The trainer arguments every stage shares: output, seed, device and precision, step
    checkpoints with their optimizer state (so a stage resumes), DeepSpeed."""
    cuda = torch.cuda.is_available()
    return {
        "output_dir": str(output),
        "seed": seed,
        "report_to": "none",
        "use_cpu": not cuda,
        "bf16": cuda,
        "gradient_checkpointing": cuda,
        "save_strategy": "steps",
        "save_only_model": False,
        "deepspeed": recipe.deepspeed_config(),
    }


def stage_args(recipe: Recipe, stage: str) -> dict:
    """The recipe's trainer fields of ``stage`` (``grpo`` block or ``sft.args``)."""
    return recipe.grpo if stage == "grpo" else recipe.sft.args


def target_steps(recipe: Recipe, max_steps: int | None, stage: str = "grpo") -> int | None:
    """The step count a stage aims at, when it is fixed (``max_steps``), else ``None``."""
    steps = max_steps if max_steps is not None else stage_args(recipe, stage).get("max_steps")
    return int(steps) if steps is not None and int(steps) > 0 else None

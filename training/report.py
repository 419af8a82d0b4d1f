"""What a finished training run reports: per-stage figures read from the checkpoints, the
``grpo_run`` metadata and its data version (the same for a local, Dagster or Ray launch)."""

from __future__ import annotations

import json
from pathlib import Path

from training.checkpoints import latest_checkpoint, stage_dir, step_of
from training.config import Recipe


def summary(output: Path) -> dict:
    """What rank 0 reports for one stage folder, read from its newest complete checkpoint's
    trainer_state.json: steps, first and last mean reward (GRPO) or loss (SFT), zero-variance
    fraction, checkpoint path."""
    checkpoint = latest_checkpoint(output)
    history: list[dict] = []
    if checkpoint is not None:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        history = state.get("log_history", [])
    rewards = [h for h in history if "reward" in h]
    losses = [h for h in history if "loss" in h]
    last = rewards[-1] if rewards else {}
    nan = float("nan")
    zero = [h.get("frac_zero_variance_groups", h.get("frac_reward_zero_std")) for h in rewards]
    zero = [z for z in zero if z is not None]
    return {
        "steps": step_of(checkpoint) if checkpoint else 0,
        "first_mean_reward": float(rewards[0]["reward"]) if rewards else nan,
        "final_mean_reward": float(last.get("reward", nan)),
        "frac_zero_variance_groups": float(zero[-1]) if zero else nan,
        "mean_frac_zero_variance_groups": sum(zero) / len(zero) if zero else nan,
        "first_loss": float(losses[0]["loss"]) if losses else nan,
        "final_loss": float(losses[-1]["loss"]) if losses else nan,
        "checkpoint": str(checkpoint) if checkpoint else "",
    }


def run_summary(recipe: Recipe, output: Path) -> dict:
    """The final stage's figures (:func:`summary`), its name, and every stage's figures."""
    stages = {stage: summary(stage_dir(output, stage)) for stage in recipe.stages}
    return {**stages[recipe.stages[-1]], "stage": recipe.stages[-1], "stages": stages}


def run_metadata(recipe: Recipe, result: dict) -> dict:
    """What ``grpo_run`` shows: the final stage's figures, then ``<stage>/<figure>`` of each."""
    metadata = {k: v for k, v in result.items() if k not in ("stage", "stages")}
    metadata |= {
        "recipe": recipe.name,
        "model": recipe.model,
        "description": recipe.description,
        "stages": ", ".join(recipe.stages),
    }
    for stage, values in result["stages"].items():
        for key, value in values.items():
            metadata[f"{stage}/{key}"] = value
    return metadata


def run_data_version(result: dict) -> str:
    """``<final stage>-checkpoint-<step>``: a new version whenever a checkpoint is added."""
    return f"{result['stage']}-{Path(result['checkpoint']).name or 'none'}"

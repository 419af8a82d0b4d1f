"""What a recipe hands the trainer: TRL fields (``grpo:``, ``sft: args:``) and ``deepspeed``.

A recipe's ``grpo`` block holds ``GRPOConfig`` fields and ``sft.args`` ``SFTConfig`` fields,
checked against TRL's own type hints, the common ones against :data:`TRAINER_RANGES`. Paths
and destinations (:data:`FORBIDDEN_TRAINER_FIELDS`) never come from a recipe. ``deepspeed``
names a shipped ZeRO stage or a JSON file (:func:`check_deepspeed`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from training.recipe_yaml import MAX_RECIPE_BYTES, RecipeError, as_type, in_range, short

DEEPSPEED_DIR = Path(__file__).parent / "deepspeed"

# Trainer fields a recipe may not set: paths and destinations come from the command line or
# the layout (a recipe's output_dir would put checkpoints where --resume and the sensor never
# look); the rest are set from other recipe keys.
FORBIDDEN_TRAINER_FIELDS = {
    "output_dir": "the output folder comes from --output (or the layout), never from a recipe",
    "logging_dir": "logs go under the output folder given by --output",
    "resume_from_checkpoint": "use --resume",
    "chat_template_path": "the chat template comes with the model's processor",
    "deepspeed": "set the top-level deepspeed key (zero2, zero3 or a json file)",
    "push_to_hub": "pushing to the Hub is not part of a recipe",
    "hub_model_id": "pushing to the Hub is not part of a recipe",
    "hub_token": "pushing to the Hub is not part of a recipe",
    "hub_strategy": "pushing to the Hub is not part of a recipe",
    "hub_private_repo": "pushing to the Hub is not part of a recipe",
    "hub_always_push": "pushing to the Hub is not part of a recipe",
    "hub_revision": "pushing to the Hub is not part of a recipe",
    "log_completions_hub_repo": "pushing to the Hub is not part of a recipe",
    "reward_weights": "set each reward's weight in rewards",
}
# Ranges of the common trainer fields: (lowest, lowest allowed?, highest or None).
TRAINER_RANGES: dict[str, tuple[float, bool, float | None]] = {
    "learning_rate": (0.0, False, None),
    "num_generations": (2, True, None),
    "per_device_train_batch_size": (1, True, None),
    "gradient_accumulation_steps": (1, True, None),
    "max_steps": (1, True, None),
    "num_train_epochs": (0.0, False, None),
    "max_completion_length": (1, True, None),
    "max_length": (1, True, None),
    "temperature": (0.0, False, None),
    "top_p": (0.0, False, 1.0),
    "beta": (0.0, True, None),
    "save_steps": (0.0, False, None),
    "logging_steps": (0.0, False, None),
    "warmup_steps": (0.0, True, None),
    "warmup_ratio": (0.0, True, 1.0),
    "weight_decay": (0.0, True, None),
    "max_grad_norm": (0.0, True, None),
    "steps_per_generation": (1, True, None),
    "num_iterations": (1, True, None),
    "save_total_limit": (1, True, None),
}


@functools.cache
def _trainer_hints(stage: str) -> dict[str, Any]:
    import typing

    from trl import GRPOConfig, SFTConfig

    cls = GRPOConfig if stage == "grpo" else SFTConfig
    return typing.get_type_hints(cls)


def trainer_fields(block: Any, stage: str, where: str) -> dict[str, Any]:
    """A ``GRPOConfig`` / ``SFTConfig`` block: known fields, typed, in range, no paths."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        msg = f"{where}: expected a mapping, found {type(block).__name__}"
        raise RecipeError(msg)
    hints = _trainer_hints(stage)
    config = "GRPOConfig" if stage == "grpo" else "SFTConfig"
    out = {}
    for key, value in block.items():
        if key in FORBIDDEN_TRAINER_FIELDS:
            msg = f"{where}.{key}: not allowed in a recipe ({FORBIDDEN_TRAINER_FIELDS[key]})"
            raise RecipeError(msg)
        if key not in hints:
            msg = f"{where}: {short(key)} is not a {config} field"
            raise RecipeError(msg)
        typed = as_type(value, hints[key], f"{where}.{key}")
        if key in TRAINER_RANGES:
            in_range(typed, *TRAINER_RANGES[key], f"{where}.{key}")
        out[key] = typed
    return out


def check_deepspeed(value: Any, source: Path, where: str) -> str | None:
    """``zero2``, ``zero3`` or a json file (relative to the recipe) holding a DeepSpeed config."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        msg = f"{where}.deepspeed: expected zero2, zero3 or a json file, found {short(value)}"
        raise RecipeError(msg)
    if (DEEPSPEED_DIR / f"{value}.json").is_file() and "/" not in value:
        return value
    path = Path(value) if Path(value).is_absolute() else source.parent / value
    if path.suffix != ".json" or not path.is_file():
        msg = (
            f"{where}.deepspeed: {short(value)} is neither zero2, zero3 nor an existing .json file"
        )
        raise RecipeError(msg)
    try:
        config = json.loads(path.read_text(encoding="utf-8")[: MAX_RECIPE_BYTES + 1])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{where}.deepspeed: {path} is not valid JSON ({type(exc).__name__})"
        raise RecipeError(msg) from None
    keys = {"zero_optimization", "train_batch_size", "train_micro_batch_size_per_gpu"}
    if not isinstance(config, dict) or not keys & set(config):
        msg = (
            f"{where}.deepspeed: {path} is not a DeepSpeed config (none of "
            f"{', '.join(sorted(keys))})"
        )
        raise RecipeError(msg)
    return value

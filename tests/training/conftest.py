"""Shared fixtures for the training tests: one tiny Qwen2.5-VL per session, a tiny dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image
from trl import GRPOConfig

from iad_pipeline.models.processors import load_model_and_processor
from training.tiny_model import build_tiny_qwen25vl

# One row per prompt; the solution "Z" is never an answer the scripted rewards accept.
PROMPTS = (
    ("Is there any anomaly in the bottle?", "A"),
    ("Is there any defect in the screw?", "Z"),
    ("Is there any anomaly in the cable?", "B"),
    ("Where is the defect in the carpet?", "Z"),
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "qwen25vl", seed=0)


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    rows = {
        "prompt": [[{"role": "user", "content": text}] for text, _ in PROMPTS],
        "image": [
            Image.new("RGB", (64, 64), (40 * i, 90, 200 - 40 * i)) for i in range(len(PROMPTS))
        ],
        "solution": [solution for _, solution in PROMPTS],
    }
    return Dataset.from_dict(rows).cast_column("image", ImageFeature())


@pytest.fixture
def grpo_args(tmp_path: Path) -> Callable[..., GRPOConfig]:
    """GRPOConfig for 2 CPU steps of 2 prompts x 4 completions; keywords override."""

    def make(**overrides: Any) -> GRPOConfig:
        values: dict[str, Any] = {
            "output_dir": str(tmp_path / "run"),
            "use_cpu": True,
            "bf16": False,
            "gradient_checkpointing": False,
            "per_device_train_batch_size": 8,
            "num_generations": 4,
            "max_completion_length": 16,
            "max_steps": 2,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": "none",
            "seed": 0,
        }
        return GRPOConfig(**(values | overrides))

    return make


@pytest.fixture
def make_trainer(tiny_model_dir: Path, tiny_dataset: Dataset, grpo_args) -> Callable[..., Any]:
    """Build ``cls(model, reward_funcs, args, dataset, processor, **kwargs)`` on a fresh model."""

    def make(cls: type, reward_funcs: list, args: GRPOConfig | None = None, **kwargs: Any):
        model, processor = load_model_and_processor(tiny_model_dir)
        return cls(
            model=model,
            reward_funcs=reward_funcs,
            args=args if args is not None else grpo_args(),
            train_dataset=tiny_dataset,
            processing_class=processor,
            **kwargs,
        )

    return make


def batch(dataset: Dataset, prompt_rows: list[int], group_size: int = 4) -> list[dict[str, Any]]:
    """Rows as TRL's sampler feeds them: ``group_size`` consecutive copies of each prompt."""
    return [dict(dataset[i]) for i in prompt_rows for _ in range(group_size)]


@pytest.fixture
def group_batch(tiny_dataset: Dataset) -> Callable[..., list[dict[str, Any]]]:
    return lambda prompt_rows, group_size=4: batch(tiny_dataset, prompt_rows, group_size)

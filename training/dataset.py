"""The exported training set as a training stage reads it (TRL's multimodal form)."""

from __future__ import annotations

from pathlib import Path

from iad_pipeline.errors import IadError
from iad_pipeline.models.emit import add_hint_placeholder
from iad_pipeline.paths import Layout
from iad_pipeline.questions.prompts import question_only, to_content
from training.config import Recipe
from training.emit_stages import stage1_question


def default_training_set_dir(name: str) -> Path:
    """Where the ``training_set`` asset exports ``name`` for the current profile."""
    return Layout.resolve().training_set_hf(name)


def load_training_dataset(path: Path, recipe: Recipe, seed: int, stage: str = "grpo"):
    """The exported training set, in TRL's multimodal form: structured prompt + images list.

    The recipe's ``tasks`` keep only those questions. With EMIT's module, hinted questions get
    its placeholder, and stage 1 (``sft``) keeps only the questions EMIT aligns the module on
    (anomaly discrimination, localization).
    The recipe's ``prompt: question`` asks with the images and the question alone
    (:func:`~iad_pipeline.questions.prompts.question_only`), as its evaluation does.
    """
    import datasets

    if not path.is_dir():
        msg = (
            f"{path}: no training set; materialize training_set[{recipe.training_set}] "
            "first (or pass --training-set DIR)"
        )
        raise IadError(msg)
    ds = datasets.load_from_disk(str(path))
    short = recipe.prompt == "question"
    if short and "question" not in ds.column_names:
        msg = (
            f"{path}: exported before the question column that the recipe's 'prompt: question' "
            f"asks with; materialize training_set[{recipe.training_set}] again"
        )
        raise IadError(msg)
    module = recipe.emit_module
    if recipe.tasks is not None:
        ds = ds.filter(lambda row: row["task"] in recipe.tasks)
    if module.active and stage == "sft":
        ds = ds.filter(lambda row: stage1_question(row["task"]))
    if len(ds) == 0:
        msg = (
            f"{path}: no question of the recipe's tasks "
            f"({', '.join(recipe.tasks or ['all'])}) for its {stage} stage"
        )
        raise IadError(msg)
    if recipe.max_train_samples is not None and len(ds) > recipe.max_train_samples:
        ds = ds.shuffle(seed=seed).select(range(recipe.max_train_samples))

    def to_trl(row: dict) -> dict:
        images = (
            [row["reference_image"], row["image"]] if row["reference_image"] else [row["image"]]
        )
        if short:
            content = to_content(question_only(row["question"], len(images)))
        else:
            content = to_content(row["prompt"][-1]["content"])
        if sum(block["type"] == "image" for block in content) != len(images):
            # a style without markers: TRL puts the images first
            content = [{"type": "image"} for _ in images] + [
                b for b in content if b["type"] != "image"
            ]
        content = add_hint_placeholder(
            content, task=row["task"], n_images=len(images), settings=module
        )
        return {"prompt": [{"role": "user", "content": content}], "images": images}

    return ds.map(to_trl, remove_columns=["image", "reference_image"])

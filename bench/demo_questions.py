"""The demo's anomaly-detection questions, split for the learning benches (bench_learning.py,
bench_learnability.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path


def demo_ad_split(training_set: Path | None, held_out: int, seed: int, *, module: bool = True):
    """``(recipe, train, test)``: the demo recipe with no cap on its training rows, and the
    anomaly-detection questions of ``training_set`` (default: the profile's ``emit`` export)
    split into training rows and ``held_out`` test rows. ``module=False``: the recipe without
    EMIT's comparison module (prompts without its placeholder)."""
    from iad_pipeline.paths import Layout
    from training.config import load_recipe
    from training.dataset import load_training_dataset

    path = training_set or Layout.resolve().training_set_hf("emit")
    recipe = dataclasses.replace(load_recipe("demo"), max_train_samples=None)
    if not module:
        off = dataclasses.replace(recipe.emit_module, enabled=False)
        recipe = dataclasses.replace(recipe, emit_module=off)
    data = load_training_dataset(path, recipe, seed)
    data = data.filter(lambda r: r["task"] == "anomaly_detection")
    split = data.train_test_split(test_size=held_out, seed=seed)
    return recipe, split["train"], split["test"]

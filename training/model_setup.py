"""The model a training stage starts from: the recipe's model or the previous stage's output.

``tiny`` and ``tiny-internvl3`` are built offline once (under ``--model-dir``); a QLoRA recipe
gets a 4-bit NF4 base or a clear stop, never a silent unquantized run; a LoRA checkpoint of
the previous stage is merged into its base first.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch

from iad_pipeline.fsutil import temp_sibling
from iad_pipeline.models.processors import load_model_and_processor, load_processor
from training.checkpoints import BASE_STAGE, DONE, stage_dir, write_done
from training.config import OFFLINE_QWEN, TINY_INTERNVL, Recipe
from training.offline_pretrain import DRILL_VERSION
from training.tiny_model import PRETRAINING_FILE, build_tiny_qwen25vl


def offline_qwen(name: str, model_dir: Path) -> Path:
    """The folder of an offline Qwen2.5-VL (``tiny``, ``small``) under ``model_dir``, built
    once; a ``small`` folder from an older version of the option-reading drills (or from
    before them) is built again."""
    folder, size = OFFLINE_QWEN[name]
    path = model_dir / folder
    if not path.is_dir() or (size == "small" and _drill_version(path) != DRILL_VERSION):
        build_tiny_qwen25vl(path, full_size=size)
    return path


def _drill_version(path: Path) -> int | None:
    """The drill version a built offline model was pre-trained with (``None``: none)."""
    try:
        return json.loads((path / PRETRAINING_FILE).read_text())["drill_version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_model(recipe: Recipe, model_dir: Path):
    """Model and processor; ``tiny`` / ``small`` / ``tiny-internvl3`` build the offline models
    once."""
    path = recipe.model
    if recipe.model in OFFLINE_QWEN:
        path = offline_qwen(recipe.model, model_dir)
    if recipe.model == TINY_INTERNVL or _is_internvl(path):
        return _load_internvl(recipe, model_dir, path)
    if recipe.peft.method == "qlora":
        from training.quantization import load_qlora_model

        model = load_qlora_model(path, gradient_checkpointing=torch.cuda.is_available())
        processor = load_processor(path)
    else:
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        model, processor = load_model_and_processor(path, dtype=dtype)
    # transformers 5 reads the pixel budget from size (shortest_edge = min pixels,
    # longest_edge = max pixels); the old min_pixels/max_pixels attributes are deprecated
    processor.image_processor.size = {
        "shortest_edge": recipe.image.min_pixels,
        "longest_edge": recipe.image.max_pixels,
    }
    return model, processor


def _load_internvl(recipe: Recipe, model_dir: Path, path: str | Path):
    """An InternVL3 model (the tiny one built once); it tiles images at its own size, so the
    recipe's Qwen pixel budget does not apply."""
    from iad_pipeline.models.processors import (
        load_internvl_model_and_processor,
        load_internvl_processor,
    )
    from training.tiny_internvl import build_tiny_internvl3

    if recipe.model == TINY_INTERNVL:
        path = model_dir / TINY_INTERNVL
        if not path.is_dir():
            build_tiny_internvl3(path)
    if recipe.peft.method == "qlora":
        from training.quantization import load_qlora_model

        return load_qlora_model(path), load_internvl_processor(path)
    return load_internvl_model_and_processor(path)


def _is_internvl(path: str | Path) -> bool:
    """Whether a local model folder holds an InternVL model (its config's model_type)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "internvl"


def stage_model(recipe: Recipe, model_dir: Path, start: Path | None):
    """Model and processor a stage starts from: the recipe's model, or the previous stage's
    final checkpoint (a LoRA adapter is merged into the base model first)."""
    if start is None:
        return load_model(recipe, model_dir)
    if (start / "adapter_config.json").is_file():
        from peft import PeftModel

        model, processor = load_model(recipe, model_dir)
        model = PeftModel.from_pretrained(model, str(start)).merge_and_unload()
        return model, processor
    return load_model(dataclasses.replace(recipe, model=str(start)), model_dir)


def keep_base(recipe: Recipe, model_dir: Path, output: Path) -> Path | None:
    """``DIR/base/checkpoint-0``: the untrained offline model, kept as the recipe's baseline.

    Only for the offline models (a copy of a hub model would cost its size in disk).
    """
    if recipe.model not in OFFLINE_QWEN:
        return None
    folder = stage_dir(output, BASE_STAGE) / "checkpoint-0"
    if (folder / DONE).is_file():
        return folder
    source = offline_qwen(recipe.model, model_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(folder, ".copying")
    shutil.copytree(source, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    write_done(folder, step=0, recipe=recipe.name, stage=BASE_STAGE)
    return folder

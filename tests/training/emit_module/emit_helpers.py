"""Helpers to run the comparison module on the tiny models (folders: conftest.py)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from iad_pipeline.models.emit import EmitModuleSettings, add_hint_placeholder, attach_emit_module
from iad_pipeline.models.processors import (
    load_internvl_model_and_processor,
    load_model_and_processor,
)

FAMILIES = ("qwen2_5_vl", "internvl")
# small enough for CPU: a 4 x 4 heat map grid gives 4 contrastive embeddings
SMALL = EmitModuleSettings(heatmap_grid=4, window=1, soft_prompt_tokens=3)
TWO_IMAGES = [
    {"type": "text", "text": "Image-1: "},
    {"type": "image"},
    {"type": "text", "text": "\nImage-2: "},
    {"type": "image"},
    {"type": "text", "text": "\nIs there any defect in the object?"},
]


def load(model_dirs: dict[str, Path], family: str):
    if family == "internvl":
        return load_internvl_model_and_processor(model_dirs[family])
    return load_model_and_processor(model_dirs[family])


def with_module(model_dirs, family, settings=SMALL):
    model, processor = load(model_dirs, family)
    return attach_emit_module(model, settings, processor.tokenizer), processor


def images(seed: int = 0) -> list[Image.Image]:
    """A wide reference (InternVL: two tiles and a thumbnail) and a query of another size,
    the reference resized with a bright square pasted in."""
    g = torch.Generator().manual_seed(seed)
    ref = Image.fromarray((torch.rand(56, 140, 3, generator=g) * 255).to(torch.uint8).numpy())
    query = ref.resize((98, 70))
    query.paste((255, 255, 255), (28, 14, 56, 42))
    return [ref, query]


def batch(processor, settings=SMALL, *, hinted=(True, False), seeds=None):
    """Processor inputs of rows of the two-image prompt, with or without the placeholder;
    row i shows ``images(seeds[i])`` (default: seed i)."""
    texts, imgs = [], []
    for i, hint in enumerate(hinted):
        task = "anomaly_detection" if hint else "defect_classification"
        content = add_hint_placeholder(TWO_IMAGES, task=task, n_images=2, settings=settings)
        msg = [{"role": "user", "content": content}]
        texts.append(processor.apply_chat_template(msg, tokenize=False, add_generation_prompt=True))
        imgs += images(seed=i if seeds is None else seeds[i])
    return processor(text=texts, images=imgs, return_tensors="pt", padding=True)

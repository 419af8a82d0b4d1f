"""The tiny InternVL3: built offline, loads with AutoProcessor, tiles with a thumbnail."""

from __future__ import annotations

import hashlib

import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    InternVLForConditionalGeneration,
)

from iad_pipeline.models.processors import InternVLImageOnlyProcessor
from training.tiny_internvl import build_tiny_internvl3


def test_same_seed_same_weights_and_auto_classes_load_it(model_dirs, tmp_path):
    again = build_tiny_internvl3(tmp_path / "again", seed=0)
    digest = lambda d: hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()  # noqa: E731
    assert digest(again) == digest(model_dirs["internvl"])
    model = AutoModelForImageTextToText.from_pretrained(again)
    assert isinstance(model, InternVLForConditionalGeneration)
    processor = AutoProcessor.from_pretrained(again)
    assert isinstance(processor, InternVLImageOnlyProcessor)
    assert (
        processor.tokenizer.convert_tokens_to_ids("<|fim_pad|>") != processor.tokenizer.unk_token_id
    )


def test_a_wide_image_gives_two_tiles_and_a_thumbnail(model_dirs):
    processor = InternVLImageOnlyProcessor.from_pretrained(model_dirs["internvl"])
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Is it normal?"}]
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    wide, square = Image.new("RGB", (140, 56)), Image.new("RGB", (56, 56))
    inputs = processor(text=[text], images=[wide, square], return_tensors="pt")
    assert inputs["pixel_values"].shape == (3 + 1, 3, 56, 56)
    image_tokens = (inputs["input_ids"] == processor.image_token_id).sum().item()
    assert image_tokens == 4 * processor.image_seq_length
    model = InternVLForConditionalGeneration.from_pretrained(model_dirs["internvl"])
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 2)

"""A tiny random InternVL3 built offline, for CPU tests of EMIT's architecture.

EMIT's base model is InternVL3-8B; transformers' native classes (``InternVLConfig``,
``InternVLForConditionalGeneration``, ``InternVLProcessor``) run it. ``build_tiny_internvl3``
writes a complete model folder the same way :mod:`training.tiny_model` writes the tiny
Qwen2.5-VL: random weights, the core's locally trained byte-level BPE
(:func:`iad_pipeline.models.qwen_tokenizer.build_tokenizer`; InternVL3's language model is
Qwen2.5, so its tokenizer is Qwen2's plus InternVL's image tokens ``<img>``, ``</img>``,
``<IMG_CONTEXT>`` and ``<video>``), and a processor that loads without hub access.

The tiny model: vision tower with 4 layers of width 32 over 56 x 56 pixel tiles (patch 14,
so a 4 x 4 patch grid, 4 image tokens per tile after InternVL's pixel shuffle), text
hidden 64 with 2 layers. Images are cropped into at most 2 tiles plus a thumbnail tile (the
whole image at tile size, last), as InternVL3 crops into up to 12 tiles plus a thumbnail.

The processor pitfall is the same as Qwen2.5-VL's: the folders name the core's
``InternVLImageOnlyProcessor`` (:mod:`iad_pipeline.models.processors`, which registers it
with ``AutoProcessor`` on import); load them with its ``load_internvl_model_and_processor``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    InternVLConfig,
    InternVLForConditionalGeneration,
)
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

from iad_pipeline.models.processors import InternVLImageOnlyProcessor
from iad_pipeline.models.qwen_tokenizer import build_tokenizer
from training.tiny_model import save_model_folder

logger = logging.getLogger(__name__)

# InternVL3's image tokens (OpenGVLab/InternVL3-*-hf tokenizer_config.json, extra_special_tokens).
INTERNVL_IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
# InternVL3's chat template for images and text (the -hf checkpoints' chat_template.jinja,
# reduced to what the project sends: string or text/image content blocks).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_TILE = 56  # pixels per tile side: a 4 x 4 grid of 14-pixel patches
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "image_size": [TINY_TILE, TINY_TILE],
    "patch_size": [14, 14],
    "use_qk_norm": False,
    "use_mean_pooling": False,
    "layer_scale_init_value": 0.1,
}
TINY_TEXT = {
    "model_type": "qwen2",
    "vocab_size": 448,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}


def build_internvl_tokenizer():
    """The tiny Qwen2 tokenizer plus InternVL's image tokens, named as the processor wants."""
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens(
        {"additional_special_tokens": list(INTERNVL_IMAGE_TOKENS.values())},
        replace_extra_special_tokens=False,
    )
    # named special tokens (tokenizer.start_image_token, ..._id), saved in tokenizer_config.json
    # as the -hf checkpoints have them; transformers has no public setter for them
    tokenizer._set_model_specific_special_tokens(dict(INTERNVL_IMAGE_TOKENS))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_internvl3(out_dir: Path, *, seed: int = 0) -> Path:
    """Write a random tiny InternVL3 model folder to ``out_dir`` (replaced) and return it.

    Written to a temporary sibling and renamed into place; the same seed gives the same
    weights. Load it with :func:`load_internvl_model_and_processor`.
    """
    out_dir = Path(out_dir)
    tokenizer = build_internvl_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    if len(tokenizer) > TINY_TEXT["vocab_size"]:
        msg = (
            f"tokenizer has {len(tokenizer)} tokens, more than vocab_size={TINY_TEXT['vocab_size']}"
        )
        raise ValueError(msg)
    text = TINY_TEXT | {
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }
    grid = TINY_TILE // 14
    seq = int(grid * grid * 0.25)
    config = InternVLConfig(
        vision_config=TINY_VISION,
        text_config=text,
        image_token_id=ids("<IMG_CONTEXT>"),
        image_seq_length=seq,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=True,
    )
    processor = InternVLImageOnlyProcessor(
        image_processor=GotOcr2ImageProcessorPil(
            size={"height": TINY_TILE, "width": TINY_TILE},
            crop_to_patches=True,
            min_patches=1,
            max_patches=2,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
        tokenizer=tokenizer,
        image_seq_length=seq,
        chat_template=CHAT_TEMPLATE,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration._from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=text["bos_token_id"],
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
    )
    return save_model_folder(model, processor, out_dir)

"""Loading a model folder (tiny or real) with a processor that keeps its images.

The processor pitfall. Without torchvision, transformers cannot build the stock
``Qwen2_5_VLProcessor`` or ``InternVLProcessor``: their ``__init__`` type-checks a video
processor against a class that only exists with torchvision (``AttributeError:
VIDEO_PROCESSOR_MAPPING has no _extra_content``). ``AutoProcessor`` then falls back, silently,
to a bare tokenizer and a VLM is trained or evaluated as text-only. This module defines the
stock processors minus video (``Qwen2_5_VLImageOnlyProcessor``, ``InternVLImageOnlyProcessor``)
and registers them with ``AutoProcessor`` **on import**; the tiny model builders save folders
with them as ``processor_class``. So: import this module (or call :func:`load_processor`,
which does) before ``AutoProcessor.from_pretrained(folder)``. With torchvision installed the
subclasses work the same (only video inputs are missing).

Training and evaluation both load models through here (the core owns model folders; the tiny
random models are built by ``training.tiny_model`` and ``training.tiny_internvl``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
)

logger = logging.getLogger(__name__)


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without the video processor, so it builds without torchvision.

    Everything but ``__init__`` is inherited: the same ``__call__``, image-token expansion and
    ``mm_token_type_ids``. Only video inputs are unsupported.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
        self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        # Skip Qwen2_5_VLProcessor.__init__: it requires a video processor.
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


# Found by name when a folder's processor_config.json names this class.
AutoProcessor.register(Qwen2_5_VLConfig, Qwen2_5_VLImageOnlyProcessor, exist_ok=True)


class InternVLImageOnlyProcessor(InternVLProcessor):
    """``InternVLProcessor`` without the video processor, so it builds without torchvision.

    Everything but ``__init__`` is inherited (image-token expansion, tiles, chat template).
    """

    def __init__(
        self, image_processor=None, tokenizer=None, image_seq_length=256, chat_template=None, **kw
    ):
        self.image_seq_length = image_seq_length
        self.start_image_token = tokenizer.start_image_token
        self.end_image_token = tokenizer.end_image_token
        self.start_image_token_id = tokenizer.start_image_token_id
        self.end_image_token_id = tokenizer.end_image_token_id
        self.image_token = tokenizer.context_image_token
        self.video_token = tokenizer.video_token
        self.image_token_id = tokenizer.context_image_token_id
        self.multimodal_pattern = re.compile(
            f"(?P<image>{re.escape(self.image_token)})|(?P<video>{re.escape(self.video_token)})"
        )
        # Skip InternVLProcessor.__init__: it requires a video processor.
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


AutoProcessor.register(InternVLConfig, InternVLImageOnlyProcessor, exist_ok=True)


def load_processor(path: str | Path) -> ProcessorMixin:
    """The folder's processor, left-padded; image-only for Qwen2.5-VL folders without torchvision.

    A real Qwen2.5-VL checkpoint names the stock ``Qwen2_5_VLProcessor``, which cannot be built
    without torchvision (or without a video processor config): the same files are then loaded
    into ``Qwen2_5_VLImageOnlyProcessor``. A folder ``AutoProcessor`` can only give a bare
    tokenizer for gets the image-only processor too, so a VLM is never trained as text-only.
    """
    is_qwen25vl = AutoConfig.from_pretrained(path).model_type == "qwen2_5_vl"
    try:
        processor = AutoProcessor.from_pretrained(path, padding_side="left")
    except (AttributeError, OSError) as err:  # the video-processor failures (module docstring)
        if not is_qwen25vl:
            raise
        logger.info("%s: stock processor unavailable (%s); loading it image-only", path, err)
        processor = None
    if is_qwen25vl and not isinstance(processor, ProcessorMixin):
        processor = Qwen2_5_VLImageOnlyProcessor.from_pretrained(path, padding_side="left")
    return processor


def load_model_and_processor(
    path: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load a model folder (tiny or real) with its processor, left-padded for generation."""
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
    return model, load_processor(path)


def load_internvl_processor(path: str | Path) -> InternVLImageOnlyProcessor:
    """The folder's processor, image-only and left-padded (see the module docstring)."""
    return InternVLImageOnlyProcessor.from_pretrained(path, padding_side="left")


def load_internvl_model_and_processor(path: str | Path, dtype: torch.dtype = torch.float32):
    """A tiny (or real ``-hf``) InternVL3 folder's model and left-padded image-only processor."""
    model = InternVLForConditionalGeneration.from_pretrained(path, dtype=dtype)
    return model, load_internvl_processor(path)

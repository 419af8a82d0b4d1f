"""A tiny random Qwen2.5-VL built offline, for CPU tests and GPU throughput benchmarks.

``build_tiny_qwen25vl(out_dir)`` writes a complete Hugging Face model folder (config,
safetensors weights, tokenizer, image processor, processor, chat template) without touching
any hub: the byte-level BPE tokenizer is trained here, with the ``tokenizers`` library, on a
few built-in sentences, and the weights are random. The tiny model (text hidden 64, 2 layers,
vision depth 2) has about 187k parameters, builds in well under a second and runs the whole
TRL GRPO path (chat template, image processor, ``generate`` with ``pixel_values``, loss) on
CPU. ``full_size="3b"`` or ``"7b"`` writes the real Qwen2.5-VL-3B/7B-Instruct architecture
instead (same hidden sizes, layers, heads, vision tower and token ids as the public
``config.json``), with random bf16 weights: a stand-in for throughput benchmarks on a GPU
machine that cannot download the checkpoint. Its token ids match Qwen's because filler
entries pad the trained vocabulary up to id 151643, where Qwen's special tokens begin.

The tokenizer (a byte-level BPE trained here) and the image-only processor are the core's
(:mod:`iad_pipeline.models.qwen_tokenizer`, :mod:`iad_pipeline.models.processors`, which
explains the processor pitfall): evaluation renders and loads with them too. Load a folder
with :func:`iad_pipeline.models.processors.load_model_and_processor`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from iad_pipeline.models.processors import Qwen2_5_VLImageOnlyProcessor
from iad_pipeline.models.qwen_tokenizer import QWEN_FIRST_ADDED_ID, TINY_PIXELS, build_tokenizer

logger = logging.getLogger(__name__)


# What the option-reading pre-training measured, in the folder of a model that had it.
PRETRAINING_FILE = "offline_pretraining.json"
QWEN_PIXELS = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16384}

# The public Qwen/Qwen2.5-VL-{3B,7B}-Instruct config.json values (text and vision tower).
FULL_SIZES: dict[str, dict] = {
    "3b": {
        "text": {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "max_window_layers": 70,
            "tie_word_embeddings": True,
        },
        "vision": {"out_hidden_size": 2048},
    },
    "7b": {
        "text": {
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_window_layers": 28,
            "tie_word_embeddings": False,
        },
        "vision": {"out_hidden_size": 3584},
    },
}
QWEN_TEXT_COMMON = {
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "sliding_window": 32768,
    "use_sliding_window": False,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 1000000.0,
        "mrope_section": [16, 24, 24],
    },
}
QWEN_VISION_COMMON = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "hidden_act": "silu",
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}
TINY_TEXT = {
    "vocab_size": 448,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_window_layers": 2,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "use_sliding_window": False,
    # head_dim 16: the three M-RoPE sections (time, height, width) must sum to head_dim / 2
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 1000000.0,
        "mrope_section": [2, 3, 3],
    },
}
TINY_VISION = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "hidden_act": "silu",
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1],
    "tokens_per_second": 2,
    "out_hidden_size": 64,  # must equal the text hidden size (the merger projects into it)
}


# ``small``: the tiny model's tokenizer and image sizes with a wider, deeper network (~0.9M
# parameters, float32): what the demo trains, large enough to learn the synthetic findings on
# CPU in minutes (bench/bench_learnability.py measures it). Built offline in a second, then
# given ~75 s of text-only option-reading drills (training/offline_pretrain.py) by default.
SMALL_TEXT = TINY_TEXT | {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "max_window_layers": 4,
    # head_dim 32: M-RoPE sections sum to 16
    "rope_parameters": TINY_TEXT["rope_parameters"] | {"mrope_section": [4, 6, 6]},
}
SMALL_VISION = TINY_VISION | {
    "hidden_size": 64,
    "intermediate_size": 128,
    "out_hidden_size": 128,
}
OFFLINE_SIZES = {"small": (SMALL_TEXT, SMALL_VISION)}

# Found by name when a folder's processor_config.json names this class (see module docstring).


def model_config(tokenizer: Qwen2Tokenizer, full_size: str | None = None) -> Qwen2_5_VLConfig:
    """The tiny config, or the real 3B/7B one; token ids are taken from ``tokenizer``."""
    if full_size is None:
        text, vision, dtype = dict(TINY_TEXT), dict(TINY_VISION), "float32"
    elif full_size in OFFLINE_SIZES:
        text, vision = (dict(d) for d in OFFLINE_SIZES[full_size])
        dtype = "float32"
    elif full_size in FULL_SIZES:
        text = QWEN_TEXT_COMMON | FULL_SIZES[full_size]["text"]
        vision = QWEN_VISION_COMMON | FULL_SIZES[full_size]["vision"]
        dtype = "bfloat16"
    else:
        known = sorted([*FULL_SIZES, *OFFLINE_SIZES])
        msg = f"full_size={full_size!r} is unknown; expected None or one of {known}"
        raise ValueError(msg)
    if len(tokenizer) > text["vocab_size"]:
        msg = f"tokenizer has {len(tokenizer)} tokens, more than vocab_size={text['vocab_size']}"
        raise ValueError(msg)
    ids = tokenizer.convert_tokens_to_ids
    tie = text.pop("tie_word_embeddings")
    text |= {"bos_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>")}
    text |= {"pad_token_id": ids("<|endoftext|>"), "dtype": dtype}
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision | {"dtype": dtype},
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=tie,
        dtype=dtype,
    )


def build_tiny_qwen25vl(
    out_dir: Path, *, full_size: str | None = None, seed: int = 0, read_options: bool | None = None
) -> Path:
    """Write a random Qwen2.5-VL model folder to ``out_dir`` and return ``out_dir``.

    Args:
        out_dir: destination folder; an existing one is replaced. The folder is written to a
            temporary sibling first and renamed into place, so readers never see half a model.
        full_size: ``None`` for the tiny model (~187k parameters, ~0.8 MB, float32),
            ``"small"`` for its wider offline sibling (~0.9M parameters, float32), or
            ``"3b"``/``"7b"`` for the real architecture with random bf16 weights (GBs: meant
            for GPU throughput benchmarks, never for tests).
        seed: seeds the weights; the same seed gives byte-identical files.
        read_options: run the option-reading pre-training
            (:mod:`training.offline_pretrain`, text-only Yes/No drills, ~2 minutes on 2 CPU
            cores) before saving, and write what it measured to ``offline_pretraining.json``
            in the folder. ``None`` (the default) means yes for ``"small"`` (the demo's model
            stands in for an instruction-tuned base model) and no for the others.

    Returns:
        ``out_dir``, loadable with
        :func:`iad_pipeline.models.processors.load_model_and_processor` (or ``AutoProcessor``
        and ``AutoModelForImageTextToText`` once that module is imported).
    """
    out_dir = Path(out_dir)
    real = full_size in FULL_SIZES
    tokenizer = build_tokenizer(first_added_id=QWEN_FIRST_ADDED_ID if real else None)
    config = model_config(tokenizer, full_size)
    pixels = QWEN_PIXELS if real else TINY_PIXELS
    processor = Qwen2_5_VLImageOnlyProcessor(
        image_processor=Qwen2VLImageProcessorPil(**pixels),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if real else torch.float32
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
    )

    extra = {}
    if read_options if read_options is not None else full_size == "small":
        from training.offline_pretrain import pretrain_option_reading

        logger.info("pre-training %s on option-reading drills", out_dir.name)
        report = pretrain_option_reading(model, tokenizer, seed=seed)
        logger.info(
            "option reading: held-out drill accuracy %.1f%% -> %.1f%%",
            100 * report["accuracy_before"],
            100 * report["accuracy_after"],
        )
        extra[PRETRAINING_FILE] = json.dumps(report, indent=1) + "\n"
    return save_model_folder(model, processor, out_dir, extra=extra)


def save_model_folder(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    out_dir: Path,
    extra: dict[str, str] | None = None,
) -> Path:
    """Save a built model and its processor to ``out_dir`` (and ``extra`` text files, name to
    content): written to a temporary folder beside it, then renamed into place (an older
    folder is replaced)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %s (%s parameters)", out_dir, f"{model.num_parameters():,}")
    return out_dir


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing an older ``dst``."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        dst.rename(old)
    src.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

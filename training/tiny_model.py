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

The processor pitfall. Without torchvision, transformers cannot build the stock
``Qwen2_5_VLProcessor``: its ``__init__`` type-checks a video processor against a class
that only exists with torchvision (``AttributeError: VIDEO_PROCESSOR_MAPPING has no
_extra_content``). ``AutoProcessor`` then falls back, silently, to a bare tokenizer and TRL
trains the model as text-only. This module defines ``Qwen2_5_VLImageOnlyProcessor``, the
stock processor minus video, saves the folders with it as ``processor_class`` and registers
it with ``AutoProcessor`` **on import**. So: import ``training.tiny_model`` (or call
``load_model_and_processor``, which does) before ``AutoProcessor.from_pretrained(folder)``.
With torchvision installed the subclass works the same (only video inputs are missing).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationConfig,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

logger = logging.getLogger(__name__)

# Qwen2.5-VL's added tokens in id order (151643 onwards in the real tokenizer). The first 14
# are special (skipped when decoding); the tool-call and fill-in-the-middle ones are not.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
NON_SPECIAL_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
QWEN_FIRST_ADDED_ID = 151643  # id of <|endoftext|> in every Qwen2/2.5 tokenizer

# Enough text for a few hundred BPE merges over the words the tests and prompts use.
CORPUS = (
    "You are a helpful assistant. You are an industrial inspector who checks products by images.",
    "Is there any anomaly in the image? Answer with the letter of the correct option.",
    "Is there any defect in the object? A. Yes. B. No. C. Scratch. D. Crack.",
    "There is a defect in the object. What is the type of the defect? Where is the defect?",
    "Options: top left, top, top right, left, center, right, bottom left, bottom, bottom right.",
    "<think>The surface of the bottle shows a small scratch at the top.</think><answer>A</answer>",
    "<think>The screw looks normal, the thread is intact and clean.</think><answer>B</answer>",
    "The capsule, the carpet, the cable, the hazelnut and the metal nut are inspected 1234567890.",
    "Reasoning first, then the final answer inside answer tags: A, B, C or D.",
)
TINY_TRAINED_VOCAB = 420  # BPE vocabulary incl. the 256 byte symbols; 22 added tokens follow
TINY_PIXELS = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16}
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


# Found by name when a folder's processor_config.json names this class (see module docstring).
AutoProcessor.register(Qwen2_5_VLConfig, Qwen2_5_VLImageOnlyProcessor, exist_ok=True)


def _chat_template() -> str:
    """Qwen2.5-VL's chat template (TRL bundles a copy identical to the Hub's)."""
    return (resources.files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_text(
        encoding="utf-8"
    )


def _train_bpe(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges of a byte-level BPE trained on ``CORPUS`` with Qwen2's pre-split."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def build_tokenizer(*, first_added_id: int | None = None) -> Qwen2Tokenizer:
    """A ``Qwen2Tokenizer`` over a locally trained BPE plus Qwen2.5-VL's 22 added tokens.

    ``first_added_id`` places ``<|endoftext|>`` (and the 21 tokens after it) at that id by
    padding the vocabulary with unreachable filler entries (``QWEN_FIRST_ADDED_ID`` gives
    Qwen's real ids); by default they follow the trained vocabulary directly.
    """
    vocab, merges = _train_bpe(TINY_TRAINED_VOCAB)
    start = len(vocab) if first_added_id is None else first_added_id
    if start < len(vocab):
        msg = f"first_added_id={start} would overlap the trained vocabulary of {len(vocab)} tokens"
        raise ValueError(msg)
    # Fillers are never produced: no merge builds them and no pre-token contains "<|filler".
    vocab.update({f"<|filler_{i}|>": i for i in range(len(vocab), start)})
    added = SPECIAL_TOKENS + NON_SPECIAL_ADDED_TOKENS
    vocab.update({tok: start + i for i, tok in enumerate(added)})
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=32768,
        errors="replace",
        split_special_tokens=False,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tokenizer.add_tokens(list(NON_SPECIAL_ADDED_TOKENS))
    tokenizer.chat_template = _chat_template()
    return tokenizer


def model_config(tokenizer: Qwen2Tokenizer, full_size: str | None = None) -> Qwen2_5_VLConfig:
    """The tiny config, or the real 3B/7B one; token ids are taken from ``tokenizer``."""
    if full_size is None:
        text, vision, dtype = dict(TINY_TEXT), dict(TINY_VISION), "float32"
    elif full_size in FULL_SIZES:
        text = QWEN_TEXT_COMMON | FULL_SIZES[full_size]["text"]
        vision = QWEN_VISION_COMMON | FULL_SIZES[full_size]["vision"]
        dtype = "bfloat16"
    else:
        msg = f"full_size={full_size!r} is unknown; expected None or one of {sorted(FULL_SIZES)}"
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


def build_tiny_qwen25vl(out_dir: Path, *, full_size: str | None = None, seed: int = 0) -> Path:
    """Write a random Qwen2.5-VL model folder to ``out_dir`` and return ``out_dir``.

    Args:
        out_dir: destination folder; an existing one is replaced. The folder is written to a
            temporary sibling first and renamed into place, so readers never see half a model.
        full_size: ``None`` for the tiny model (~187k parameters, ~0.8 MB, float32), or
            ``"3b"``/``"7b"`` for the real architecture with random bf16 weights (GBs: meant
            for GPU throughput benchmarks, never for tests).
        seed: seeds the weights; the same seed gives byte-identical files.

    Returns:
        ``out_dir``, loadable with ``load_model_and_processor`` or with ``AutoProcessor`` and
        ``AutoModelForImageTextToText`` once this module is imported.
    """
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(first_added_id=QWEN_FIRST_ADDED_ID if full_size else None)
    config = model_config(tokenizer, full_size)
    pixels = QWEN_PIXELS if full_size else TINY_PIXELS
    processor = Qwen2_5_VLImageOnlyProcessor(
        image_processor=Qwen2VLImageProcessorPil(**pixels),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if full_size else torch.float32
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
    )

    return save_model_folder(model, processor, out_dir)


def save_model_folder(model: PreTrainedModel, processor: ProcessorMixin, out_dir: Path) -> Path:
    """Save a built model and its processor to ``out_dir``: written to a temporary folder
    beside it, then renamed into place (an older folder is replaced)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
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

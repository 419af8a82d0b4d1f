"""The tokenizer and processor of the offline tiny Qwen2.5-VL, without its weights.

A byte-level BPE trained here, with the ``tokenizers`` library, on a few built-in sentences,
plus Qwen2.5-VL's 22 added tokens (at Qwen's real ids on request) and Qwen2.5-VL's chat
template: what ``training.tiny_model`` saves beside random weights, and what ``iad prompt``
renders with when no model is named (:func:`tiny_processor`, built in memory).
"""

from __future__ import annotations

import json
from importlib import resources

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from iad_pipeline.models.processors import Qwen2_5_VLImageOnlyProcessor

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


def chat_template() -> str:
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
    tokenizer.chat_template = chat_template()
    return tokenizer


def tiny_processor() -> Qwen2_5_VLImageOnlyProcessor:
    """The tiny Qwen2.5-VL's processor, in memory: its tokenizer, image processor and chat
    template (the text a Qwen2.5-VL receives, rendered offline)."""
    tokenizer = build_tokenizer()
    return Qwen2_5_VLImageOnlyProcessor(
        image_processor=Qwen2VLImageProcessorPil(**TINY_PIXELS),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )

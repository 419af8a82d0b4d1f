"""A local Hugging Face VLM: batched greedy generation, or one forward pass scoring letters.

MMAD's own script asks one question per ``generate`` call. Here a batch of prompts goes
through the processor's chat template as the protocol renders it
(:func:`eval.prompting.chat_text`: the content blocks in the protocol's order, ``{"type":
"image"}`` where an image goes, MMAD's ``add_vision_id``, the protocol's system prompt) with
the protocol's image pixel bounds (:func:`eval.prompting.image_size_kwargs`, MMAD's
64-1280 x 28 x 28), is left-padded and generated together; only the new tokens are decoded.
The runner puts the questions of one image next to each other, so a batch usually holds a
few images many times over, and each distinct image is used once:

- **preprocessing**: the processor's image processor sees each distinct image of a batch
  once (:class:`SharedImageProcessor`); its patches are repeated for every occurrence;
- **vision encoding**: when the model accepts pre-encoded images (transformers' generic
  ``mm_encoder_outputs`` argument, Qwen2-VL and Qwen2.5-VL among others), the vision tower
  runs on the distinct images only and their embeddings are handed to every occurrence.

A model without ``mm_encoder_outputs`` falls back to encoding every occurrence; an image
processor whose output is not ``pixel_values`` + ``image_grid_thw`` falls back to processing
every occurrence. Answers are the same either way (tested).

``mode="letter_logits"`` generates nothing: one forward pass over the prompt plus the
generation prompt (``<|im_start|>assistant\\n`` for Qwen) gives the next-token logits at the
answer position, the last one of every row thanks to left padding. Each option letter is
encoded on its own, without a leading space (the answer starts a fresh line, where MMAD asks
for "the option's letter ... directly"), and its first token is scored; the letter with the
highest logit is the response. In Qwen's byte-level BPE every capital letter is one token;
letters whose first tokens collide are an error. Scoring by letters removes decoding time
and unparseable answers (anchors.md, section B), but is its own protocol: its run id differs
(backend name ``transformers-letter_logits``).
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature
from transformers.modeling_outputs import BaseModelOutputWithPooling

from eval.backends import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    BackendError,
)
from eval.prompting import PromptSpec, chat_text, image_size_kwargs
from iad_pipeline.models.emit import add_hint_placeholder, find_emit_module, load_emit_model
from iad_pipeline.models.processors import load_internvl_processor, load_processor

log = logging.getLogger(__name__)

Mode = Literal["generate", "letter_logits"]


def processor_loader(model_type: str) -> Callable[[str | Path], Any]:
    """The processor loader of a model family (a config's ``model_type``), left-padded.

    InternVL (transformers' native classes, e.g. InternVL3-hf and the tiny InternVL3) loads
    image-only: its stock processor wants a video processor, which real checkpoints do not
    ship without torchvision. Every other family goes through the generic
    :func:`iad_pipeline.models.processors.load_processor`.

    >>> processor_loader("internvl").__name__
    'load_internvl_processor'
    >>> processor_loader("qwen2_5_vl").__name__
    'load_processor'
    """
    if model_type == "internvl":
        return load_internvl_processor
    return load_processor


MODES = ("generate", "letter_logits")


class SharedImageProcessor:
    """An image processor that processes each distinct image of one call once.

    Set :attr:`occurrences` (one key per image of the next call, equal keys for the same
    image) before calling the processor; the wrapped image processor then runs on the first
    occurrence of each key and its ``pixel_values`` rows (``image_grid_thw`` gives each
    image's row count) are repeated for the others. :attr:`distinct` keeps the distinct
    images' output and :attr:`index` maps every occurrence to its distinct image, so the
    vision tower can run on the distinct ones only. Everything else is forwarded.
    """

    KEYS = frozenset({"pixel_values", "image_grid_thw"})

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.occurrences: list[str] | None = None
        self.distinct: Mapping[str, Any] | None = None
        self.index: list[int] = []
        self.calls: list[int] = []  # images processed per call (read by tests)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, unpickling): no recursion into ourselves
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, images: Any, *args: Any, **kwargs: Any) -> Any:
        keys, self.occurrences, self.distinct = self.occurrences, None, None
        images = list(images) if isinstance(images, list | tuple) else images
        if not isinstance(images, list) or keys is None or len(keys) != len(images):
            self.calls.append(len(images) if isinstance(images, list) else 1)
            return self.inner(images, *args, **kwargs)
        first: dict[str, int] = {}  # key -> index of its distinct image
        for key in keys:
            first.setdefault(key, len(first))
        index = [first[k] for k in keys]
        firsts = [keys.index(k) for k in first]
        out = self.inner([images[i] for i in firsts], *args, **kwargs)
        self.calls.append(len(firsts))
        grid = out.get("image_grid_thw") if set(out.keys()) == self.KEYS else None
        pixels = out.get("pixel_values")
        if not isinstance(grid, torch.Tensor | np.ndarray) or type(pixels) is not type(grid):
            log.debug("image processor output %s: processing every occurrence", sorted(out))
            self.calls.append(len(images))
            return self.inner(images, *args, **kwargs)
        rows = [int(n) for n in np.asarray(grid).prod(-1)]
        starts = np.concatenate([[0], np.cumsum(rows)])
        parts = [pixels[starts[j] : starts[j + 1]] for j in index]
        cat = torch.cat if isinstance(pixels, torch.Tensor) else np.concatenate
        self.distinct, self.index = out, index
        return BatchFeature({"pixel_values": cat(parts), "image_grid_thw": grid[index]})


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            msg = f"dtype={dtype!r}: not a torch dtype; expected e.g. 'bfloat16' or 'float32'"
            raise BackendError(msg)
        return value
    return dtype


def _greedy(config: Any, max_new_tokens: int, pad_token_id: int | None) -> Any:
    """The checkpoint's generation config made greedy (its repetition penalty is kept)."""
    gen = copy.deepcopy(config)
    gen.do_sample, gen.num_beams, gen.max_new_tokens = False, 1, max_new_tokens
    gen.temperature = gen.top_p = gen.top_k = None
    if gen.pad_token_id is None:
        gen.pad_token_id = pad_token_id
    return gen


class TransformersBackend:
    """Answer prompts with a local transformers VLM.

    Args:
        model_path: a model folder (the tiny model of :mod:`training.tiny_model` or a real
            checkpoint); loaded with ``AutoModelForImageTextToText`` (through
            :func:`iad_pipeline.models.emit.load_emit_model`: with EMIT's comparison module when
            the folder holds ``emit_module.safetensors``; ``load_warnings`` lists what went
            wrong, e.g. a run's checkpoint without them) and the left-padded processor its
            family's loader gives (:func:`processor_loader`).
        batch_size: prompts per forward pass.
        max_new_tokens: generation limit (MMAD: 128).
        mode: ``"generate"`` (greedy decoding) or ``"letter_logits"`` (see the module doc).
        dtype: torch dtype or its name; default bfloat16 on CUDA, float32 on CPU.
        device: default CUDA when available.
        share_images: preprocess and encode each distinct image of a batch once.
        attn_implementation: passed to ``from_pretrained`` (e.g. ``"flash_attention_2"``).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        mode: Mode = "generate",
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        share_images: bool = True,
        attn_implementation: str | None = None,
    ) -> None:
        device_ = _resolve_device(device)
        dtype_ = _resolve_dtype(dtype, device_)
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        try:
            # EMIT's comparison module comes along when the checkpoint holds its weights
            model, emit = load_emit_model(
                model_path, dtype=dtype_, device_map=str(device_), **extra
            )
            processor = processor_loader(model.config.model_type)(model_path)
        except (OSError, ValueError) as exc:
            msg = (
                f"{model_path}: cannot load a vision-language model ({exc}); expected a "
                "transformers model folder with its processor"
            )
            raise BackendError(msg) from exc
        self._setup(model, processor, str(model_path), batch_size, max_new_tokens, mode)
        self.load_warnings = [emit.warning] if emit.warning else []
        self.share_images = share_images

    @classmethod
    def from_loaded(
        cls,
        model: Any,
        processor: Any,
        *,
        model_name: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        mode: Mode = "generate",
        share_images: bool = True,
    ) -> TransformersBackend:
        """A backend over a model and processor already in memory.

        The processor is changed in place: left padding, and its image processor wrapped in a
        :class:`SharedImageProcessor`.
        """
        self = cls.__new__(cls)
        self._setup(model, processor, model_name, batch_size, max_new_tokens, mode)
        self.share_images = share_images
        return self

    def _setup(
        self,
        model: Any,
        processor: Any,
        model_name: str,
        batch_size: int,
        max_new_tokens: int,
        mode: str,
    ) -> None:
        if mode not in MODES:
            msg = f"TransformersBackend: mode={mode!r}; expected one of {MODES}"
            raise BackendError(msg)
        for what, value in (("batch_size", batch_size), ("max_new_tokens", max_new_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"TransformersBackend: {what}={value!r}; expected an integer >= 1"
                raise BackendError(msg)
        self.model = model_name
        self.mode = mode
        self.name = "transformers" if mode == "generate" else f"transformers-{mode}"
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.hf_model = model.eval()
        self.load_warnings: list[str] = []
        self.emit = find_emit_module(model)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        inner = processor.image_processor
        self.images = (
            inner if isinstance(inner, SharedImageProcessor) else SharedImageProcessor(inner)
        )
        processor.image_processor = self.images
        forward = set(inspect.signature(model.forward).parameters)
        # EMIT's heat map needs the vision tower's layers: no pre-encoded images with the module
        self._pre_encoded = (
            "mm_encoder_outputs" in forward
            and hasattr(model, "get_image_features")
            and self.emit is None
        )
        self._logits_to_keep = "logits_to_keep" in forward
        self._letter_ids: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"TransformersBackend({self.model!r}, mode={self.mode!r}, batch={self.batch_size})"

    @property
    def device(self) -> torch.device:
        return self.hf_model.device

    def answer(
        self, prompts: Sequence[PromptSpec], max_new_tokens: int | None = None
    ) -> list[str | None]:
        """One response per prompt: decoded new tokens, or the best letter in letter mode."""
        if self.mode == "letter_logits":
            return [max(s, key=s.__getitem__) for s in self.letter_scores(prompts)]
        out: list[str | None] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            with torch.inference_mode():
                out += self._generate(chunk, max_new_tokens or self.max_new_tokens)
        return out

    def _inputs(self, prompts: Sequence[PromptSpec]) -> dict[str, Any]:
        """Model inputs of a batch, with shared images where the model allows it."""
        texts = [chat_text(self.processor, self._with_hints(p)) for p in prompts]
        keys = [str(path) for p in prompts for path in p.images]
        loaded = {key: _open_rgb(key) for key in dict.fromkeys(keys)}
        kwargs: dict[str, Any] = {"padding": True, "return_tensors": "pt"}
        if keys:
            kwargs |= image_size_kwargs(self.images.inner, prompts)
        if keys:
            self.images.occurrences = keys if self.share_images else None
            kwargs["images"] = [loaded[k] for k in keys]
        inputs = dict(self.processor(text=texts, **kwargs).to(self.device))
        distinct = self.images.distinct
        if keys and self.share_images and self._pre_encoded and distinct is not None:
            inputs.pop("pixel_values")
            pixels = torch.as_tensor(distinct["pixel_values"]).to(self.device, self.hf_model.dtype)
            grid = torch.as_tensor(distinct["image_grid_thw"]).to(self.device)
            features = self.hf_model.get_image_features(pixels, grid, return_dict=True)
            embeds = features.pooler_output
            shared = tuple(embeds[j] for j in self.images.index)
            inputs["mm_encoder_outputs"] = {
                "image": BaseModelOutputWithPooling(pooler_output=shared)
            }
        return inputs

    def _with_hints(self, prompt: PromptSpec) -> PromptSpec:
        """The prompt, with EMIT's placeholder in its content when the model has the module."""
        if self.emit is None:
            return prompt
        blocks = add_hint_placeholder(
            prompt.content_blocks,
            task=prompt.question_type,
            n_images=len(prompt.images),
            settings=self.emit.settings,
        )
        return prompt if blocks is prompt.content_blocks else replace(prompt, content_blocks=blocks)

    def _generate(self, prompts: Sequence[PromptSpec], max_new_tokens: int) -> list[str | None]:
        inputs = self._inputs(prompts)
        config = _greedy(
            self.hf_model.generation_config, max_new_tokens, self.tokenizer.pad_token_id
        )
        module = find_emit_module(self.hf_model) if self.emit is not None else None
        if module is not None:  # a sampled hint slot would be taken for one
            config.suppress_tokens = [module.placeholder_id]
        generated = self.hf_model.generate(**inputs, generation_config=config)
        new = generated[:, inputs["input_ids"].shape[1] :]
        return list(
            self.tokenizer.batch_decode(
                new, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        )

    def letter_id(self, letter: str) -> int:
        """The first token id of ``letter`` written alone (see the module docstring)."""
        if letter not in self._letter_ids:
            ids = self.tokenizer.encode(letter, add_special_tokens=False)
            if not ids:
                msg = f"{self.model}: the tokenizer encodes {letter!r} as no token at all"
                raise BackendError(msg)
            self._letter_ids[letter] = ids[0]
        return self._letter_ids[letter]

    def letter_scores(self, prompts: Sequence[PromptSpec]) -> list[dict[str, float]]:
        """The next-token logit of each option letter at the answer position, per prompt.

        One forward pass per batch, nothing generated (see the module docstring); the best
        letter is what ``mode="letter_logits"`` answers, the scores serve calibration.
        """
        scores: list[dict[str, float]] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            with torch.inference_mode():
                inputs = self._inputs(chunk)
                if self._logits_to_keep:
                    inputs["logits_to_keep"] = 1
                logits = self.hf_model(**inputs, use_cache=False).logits[:, -1, :].float()
            for row, prompt in zip(logits.cpu(), chunk, strict=True):
                letters = list(prompt.options)
                ids = [self.letter_id(letter) for letter in letters]
                if len(set(ids)) != len(ids):
                    msg = (
                        f"{self.model}: option letters {letters} share first tokens {ids}; "
                        "letter_logits cannot tell them apart, use mode='generate'"
                    )
                    raise BackendError(msg)
                scores.append({k: float(row[i]) for k, i in zip(letters, ids, strict=True)})
        return scores


def _open_rgb(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot read this image ({exc}); expected an image file the prompt names"
        raise BackendError(msg) from exc

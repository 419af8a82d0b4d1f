"""vLLM on GPU machines: continuous batching, prefix caching, data-parallel replicas.

An optional extra (``pip install -e '.[gpu]'``); vLLM is imported only when the backend is
built, and building it without vLLM raises :class:`~eval.backends.BackendError` saying so.

Prompts are rendered with the model's own processor through :func:`eval.prompting.chat_text`
(as :class:`~eval.backends.transformers_backend.TransformersBackend` does: the protocol's
content order, vision ids and system prompt), so both backends send the same tokens; the
images go in ``multi_modal_data`` in prompt order, with the protocol's pixel bounds as
``mm_processor_kwargs``. Generation is greedy (temperature 0) with ``max_new_tokens`` tokens.

- **Prefix caching** is on: the questions of one image share everything up to the question
  list (instruction, templates, query image), and the runner asks them together, so that
  prefix is prefilled about once per image instead of once per question (anchors.md, B).
- **Data parallel**: ``data_parallel_size`` replicas, each in its own process on its own
  ``tensor_parallel_size`` GPUs (vLLM's recipes prefer data over tensor parallelism for 7B
  VL models). A call's prompts are cut into contiguous shards, one per replica, so the
  questions of an image stay on one replica and keep sharing its prefix cache.
- ``mode="letter_logits"`` generates one token restricted to the option letters'
  first tokens (``allowed_token_ids``), greedy: the letter with the highest logit, as the
  transformers backend scores it.

vLLM batches continuously within one call, so give :func:`eval.runner.evaluate` a large
``batch_size`` (a few hundred questions; it is also how much a kill can lose), not the
transformers backend's 8.

Untested here: CI has neither a GPU nor vLLM; only the missing-extra error is tested.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing as mp
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eval.backends import DEFAULT_MAX_NEW_TOKENS, BackendError
from eval.prompting import PromptSpec, chat_text

log = logging.getLogger(__name__)

MISSING_VLLM = (
    "vllm is not installed; the vllm backend is the optional GPU extra: install it with "
    "pip install -e '.[gpu]' on a CUDA machine, or use the transformers backend"
)
MODES = ("generate", "letter_logits")


def _require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise BackendError(MISSING_VLLM)


# One request crossing to a replica: (prompt text, image paths, allowed token ids or None).
Request = tuple[str, list[str], list[int] | None, dict[str, int]]


def _engine(options: dict[str, Any]) -> Any:
    from vllm import LLM  # imported here: the extra is optional

    return LLM(**options)


def _generate(llm: Any, requests: Sequence[Request], max_tokens: int) -> list[str]:
    from PIL import Image
    from vllm import SamplingParams

    inputs, params = [], []
    for text, images, allowed, pixels in requests:
        item: dict[str, Any] = {"prompt": text}
        if images:
            item["multi_modal_data"] = {"image": [Image.open(p).convert("RGB") for p in images]}
            if pixels:  # the protocol's bounds (MMAD: 64-1280 x 28 x 28), per request
                item["mm_processor_kwargs"] = pixels
        inputs.append(item)
        if allowed is None:
            params.append(SamplingParams(temperature=0.0, max_tokens=max_tokens))
        else:
            params.append(SamplingParams(temperature=0.0, max_tokens=1, allowed_token_ids=allowed))
    outputs = llm.generate(inputs, params, use_tqdm=False)
    return [o.outputs[0].text for o in outputs]


def _replica(devices: str, options: dict[str, Any], jobs: Any, results: Any) -> None:
    """A data-parallel replica: one engine on ``devices``, answering jobs until ``None``."""
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    llm = _engine(options)
    results.put(("ready", None))
    while (job := jobs.get()) is not None:
        requests, max_tokens = job
        try:
            results.put(("ok", _generate(llm, requests, max_tokens)))
        except Exception as exc:  # reported to the parent, which raises BackendError
            results.put(("error", f"{type(exc).__name__}: {exc}"))


@dataclass(frozen=True)
class VllmEngine:
    """The vLLM engines of a backend.

    Args:
        data_parallel_size: engine replicas, each in its own process.
        tensor_parallel_size: GPUs per replica.
        enable_prefix_caching: reuse the KV cache of shared prompt prefixes.
        gpu_memory_utilization, max_model_len, dtype: vLLM engine options.
        max_images: images per prompt vLLM must accept (``limit_mm_per_prompt``; shots + 1).
        options: further ``vllm.LLM`` arguments.
    """

    data_parallel_size: int = 1
    tensor_parallel_size: int = 1
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    dtype: str = "auto"
    max_images: int = 2
    options: Mapping[str, Any] = field(default_factory=dict)

    def llm_options(self, model: str) -> dict[str, Any]:
        """The ``vllm.LLM`` arguments of one replica."""
        options: dict[str, Any] = {
            "model": model,
            "tensor_parallel_size": self.tensor_parallel_size,
            "enable_prefix_caching": self.enable_prefix_caching,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "dtype": self.dtype,
            "limit_mm_per_prompt": {"image": self.max_images},
            "seed": 0,
        }
        if self.max_model_len is not None:
            options["max_model_len"] = self.max_model_len
        return options | dict(self.options)


class VllmBackend:
    """Answer prompts with vLLM.

    Args:
        model_path: a model folder or hub id vLLM can load.
        max_new_tokens: generation limit (MMAD: 128).
        mode: ``"generate"`` or ``"letter_logits"``.
        engine: replicas, GPUs and engine options (:class:`VllmEngine`).

    Raises:
        BackendError: vLLM is not installed, or an argument is out of range.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        mode: Literal["generate", "letter_logits"] = "generate",
        engine: VllmEngine | None = None,
    ) -> None:
        _require_vllm()
        engine = engine or VllmEngine()
        dp, tp = engine.data_parallel_size, engine.tensor_parallel_size
        if mode not in MODES:
            msg = f"VllmBackend: mode={mode!r}; expected one of {MODES}"
            raise BackendError(msg)
        if dp < 1 or tp < 1:
            msg = (
                f"VllmBackend: data_parallel_size={dp}, tensor_parallel_size={tp}; expected "
                "integers >= 1"
            )
            raise BackendError(msg)
        from iad_pipeline.models.processors import load_processor

        self.model = str(model_path)
        self.mode = mode
        self.name = "vllm" if mode == "generate" else f"vllm-{mode}"
        self.max_new_tokens = max_new_tokens
        self.processor = load_processor(model_path)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        options = engine.llm_options(str(model_path))
        self._llm = None
        self._replicas: list[tuple[Any, Any, Any]] = []
        if dp == 1:
            self._llm = _engine(options)
        else:
            self._start_replicas(options, dp, tp)

    def _start_replicas(self, options: dict[str, Any], dp: int, tp: int) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(dp * tp)]
        if len(gpus) < dp * tp:
            msg = f"VllmBackend: {dp} replicas x {tp} GPUs need {dp * tp} GPUs, found {gpus}"
            raise BackendError(msg)
        context = mp.get_context("spawn")
        for r in range(dp):
            jobs, results = context.Queue(), context.Queue()
            devices = ",".join(gpus[r * tp : (r + 1) * tp])
            process = context.Process(
                target=_replica, args=(devices, options, jobs, results), daemon=True
            )
            process.start()
            self._replicas.append((process, jobs, results))
        for _, _, results in self._replicas:
            results.get()  # "ready": every engine has loaded

    def close(self) -> None:
        """Stop the replica processes (a single engine is freed with the backend)."""
        for process, jobs, _ in self._replicas:
            jobs.put(None)
            process.join(timeout=60)
        self._replicas = []

    def _request(self, prompt: PromptSpec) -> Request:
        text = chat_text(self.processor, prompt)
        allowed = None
        if self.mode == "letter_logits":
            allowed = [
                self.tokenizer.encode(k, add_special_tokens=False)[0] for k in prompt.options
            ]
        pixels = {
            k: v
            for k, v in (("min_pixels", prompt.min_pixels), ("max_pixels", prompt.max_pixels))
            if v is not None
        }
        return text, [str(p) for p in prompt.images], allowed, pixels

    def answer(
        self, prompts: Sequence[PromptSpec], max_new_tokens: int | None = None
    ) -> list[str | None]:
        """One response per prompt (letter mode: the decoded letter token)."""
        requests = [self._request(p) for p in prompts]
        limit = max_new_tokens or self.max_new_tokens
        if not requests:
            return []
        if self._llm is not None:
            return list(_generate(self._llm, requests, limit))
        size = -(-len(requests) // len(self._replicas))
        shards = [requests[i : i + size] for i in range(0, len(requests), size)]
        for shard, (_, jobs, _) in zip(shards, self._replicas, strict=False):
            jobs.put((shard, limit))
        out: list[str | None] = []
        for _shard, (_, _, results) in zip(shards, self._replicas, strict=False):
            status, value = results.get()
            if status != "ok":
                msg = f"vllm replica failed: {value}"
                raise BackendError(msg)
            out += value
        return out

"""Backends answer prompts: a local transformers model (in process or on Ray actors), an
OpenAI-compatible server, vLLM.

Every backend follows :class:`Backend`: a ``name`` (part of the run id, so answers of
different backends never mix), the ``model`` it asks, and ``answer(prompts)``, which returns
one response per :class:`~eval.prompting.PromptSpec`, in order. ``None`` marks a prompt
that got no answer (a request that failed after its retries); the runner stores nothing for
it, so the next run asks it again.

The backends import their heavy dependencies (torch, openai, vllm) only when built:
:func:`make_backend` picks one by name.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from iad_pipeline.errors import IadError

if TYPE_CHECKING:
    from eval.prompting import PromptSpec

# MMAD's evaluation generates at most 128 new tokens (qwen2_5_vl_query.py).
DEFAULT_MAX_NEW_TOKENS = 128
DEFAULT_BATCH_SIZE = 8

# name -> (module, class); imported on use.
BACKENDS: dict[str, tuple[str, str]] = {
    "transformers": ("eval.backends.transformers_backend", "TransformersBackend"),
    "openai": ("eval.backends.openai_backend", "OpenAIBackend"),
    "vllm": ("eval.backends.vllm_backend", "VllmBackend"),
    # the transformers backend on Ray actors (a Ray Data pipeline); needs ray installed
    "ray": ("eval.backends.ray_backend", "RayBackend"),
}


class BackendError(IadError, RuntimeError):
    """A backend that cannot be built or that answered something unusable."""


@runtime_checkable
class Backend(Protocol):
    """What the runner needs of a backend."""

    name: str
    model: str

    def answer(
        self, prompts: Sequence[PromptSpec], max_new_tokens: int | None = None
    ) -> list[str | None]:
        """One response per prompt, in order (``None``: no answer, ask again next run).

        ``max_new_tokens`` overrides the backend's own limit (default
        :data:`DEFAULT_MAX_NEW_TOKENS`).
        """
        ...


def make_backend(name: str, **config: Any) -> Backend:
    """Build the backend called ``name`` with ``config`` (its constructor's arguments).

    >>> make_backend("tgi")
    Traceback (most recent call last):
    ...
    eval.backends.BackendError: unknown backend 'tgi'; valid backends: ...
    """
    if name not in BACKENDS:
        msg = f"unknown backend {name!r}; valid backends: {', '.join(sorted(BACKENDS))}"
        raise BackendError(msg)
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(**config)


def close_backend(backend: Backend) -> None:
    """Release what ``backend`` holds, where it holds something: vLLM's replica processes,
    the OpenAI client's connections, the Ray driver's connection to its cluster (a driver
    left connected to a cluster that stops ends its process a minute later)."""
    close = getattr(backend, "close", None)
    if callable(close):
        close()


def check_answers(backend: str, prompts: Sequence[Any], answers: Sequence[Any]) -> None:
    """Raise :class:`BackendError` unless there is one answer (a string or ``None``) per prompt."""
    if len(answers) != len(prompts):
        msg = f"{backend}: {len(answers)} answers for {len(prompts)} prompts; expected one each"
        raise BackendError(msg)
    bad = [type(a).__name__ for a in answers if a is not None and not isinstance(a, str)]
    if bad:
        msg = f"{backend}: answers of type {bad[0]}; expected strings (or None for no answer)"
        raise BackendError(msg)

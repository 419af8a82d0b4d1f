"""What a chat run is made of: requests, their results, and the run's report.

A :class:`ChatRequest` is a prompt text and image paths under a stable key; a
:class:`ChatResult` is its outcome (``ok``, ``failed`` or ``skipped_budget``; only ``ok``
carries text); a :class:`RunReport` holds a run's results in request order and what it spent.
Every provider (:mod:`~iad_pipeline.knowledge.providers`) answers with these.

A request is sent as one user message: the images as ``image_url`` parts (PNG data URLs,
long side at most ``max_side``, see :mod:`~iad_pipeline.knowledge.images`) followed by the
text; or, with ``interleaved=True``, text and images in the order of the text's ``<image>``
markers (an evaluation protocol's order); a ``system`` prompt goes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.settings import ChatConfigError

# The image marker of interleaved requests (prompts.IMAGE_PLACEHOLDER).
IMAGE_MARKER = "<image>"


class KnowledgeError(IadError):
    """Base class of the knowledge package's errors."""


Status = Literal["ok", "failed", "skipped_budget"]
STATUSES: tuple[str, ...] = ("ok", "failed", "skipped_budget")
# The columns of every table row a chat call made (knowledge, text samples): the outcome of
# the call and who answered it.
CALL_SCHEMA: dict[str, pl.DataType] = {
    "status": pl.String(),
    "error": pl.String(),
    "provider": pl.String(),
    "model": pl.String(),
    "cached": pl.Boolean(),
}


@dataclass(frozen=True)
class ChatRequest:
    """One chat request: a stable ``key`` naming it, the prompt text and image paths.

    ``images`` are sent in order before the text; those also listed in ``masks`` are
    binarised to 0/255 before sending (see :func:`~iad_pipeline.knowledge.images.png_bytes`).
    """

    key: tuple[str, ...]
    text: str
    images: tuple[str, ...] = ()
    masks: tuple[str, ...] = ()
    interleaved: bool = False
    system: str | None = None

    def content(self, urls: Sequence[str]) -> list[dict[str, Any]]:
        """The user message's parts, given one data URL per image.

        Without ``interleaved``: every image, then the text. With it: the text is cut at its
        ``<image>`` markers and image ``i`` goes where marker ``i`` was.

        >>> ChatRequest(("k",), "a <image> b", ("x.png",), interleaved=True).content(["u"])
        [{'type': 'text', 'text': 'a '}, {'type': 'image_url', 'image_url': {'url': 'u'}}, \
{'type': 'text', 'text': ' b'}]
        """
        images = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
        if not self.interleaved:
            return [*images, {"type": "text", "text": self.text}]
        pieces = self.text.split(IMAGE_MARKER)
        if len(pieces) != len(images) + 1:
            msg = (
                f"request {self.key}: {len(pieces) - 1} {IMAGE_MARKER!r} markers for "
                f"{len(images)} images; expected one marker per image"
            )
            raise ChatConfigError(msg)
        parts: list[dict[str, Any]] = []
        for i, piece in enumerate(pieces):
            if i:
                parts.append(images[i - 1])
            if piece:
                parts.append({"type": "text", "text": piece})
        return parts

    def cache_text(self) -> str:
        """The text the cache key is made of: the text, and the layout and system if set."""
        if not self.interleaved and self.system is None:
            return self.text
        return f"{self.text}\x00interleaved={self.interleaved}\x00system={self.system}"


@dataclass(frozen=True)
class ChatResult:
    """The outcome of one request; ``text`` is set only when ``status == "ok"``."""

    request: ChatRequest
    text: str | None
    error: str | None
    cached: bool
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    status: Status


@dataclass(frozen=True)
class RunReport:
    """Results (in request order) and what the run spent.

    ``requests_made`` counts requests started (not retries), ``retries`` the extra attempts;
    tokens count only the requests made by this run (a cached result keeps its original
    usage in its row but costs nothing now); ``cost`` is ``None`` without prices.
    """

    results: tuple[ChatResult, ...]
    requests_made: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    budget_stopped: bool = False
    failures: int = 0
    retries: int = 0
    skipped: int = 0

    def merge(self, other: RunReport) -> RunReport:
        """Both runs' results and sums (``cost`` stays ``None`` only if both are).

        >>> a = RunReport((), requests_made=2, cost=0.5)
        >>> b = RunReport((), requests_made=1, budget_stopped=True)
        >>> m = a.merge(b)
        >>> m.requests_made, m.cost, m.budget_stopped
        (3, 0.5, True)
        """
        cost = None
        if self.cost is not None or other.cost is not None:
            cost = (self.cost or 0.0) + (other.cost or 0.0)
        return RunReport(
            self.results + other.results,
            self.requests_made + other.requests_made,
            self.cache_hits + other.cache_hits,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            cost,
            self.budget_stopped or other.budget_stopped,
            self.failures + other.failures,
            self.retries + other.retries,
            self.skipped + other.skipped,
        )

    def summary(self) -> dict[str, Any]:
        """The counts as plain values (for logs and asset metadata)."""
        return {
            "results": len(self.results),
            "requests_made": self.requests_made,
            "cache_hits": self.cache_hits,
            "failures": self.failures,
            "skipped_budget": self.skipped,
            "retries": self.retries,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "budget_stopped": self.budget_stopped,
        }


def build_report(
    results: Sequence[ChatResult],
    *,
    requests_made: int = 0,
    retries: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost: float | None = None,
    budget_stopped: bool = False,
) -> RunReport:
    """A :class:`RunReport` whose hit, failure and skip counts come from ``results``."""
    return RunReport(
        tuple(results),
        requests_made=requests_made,
        cache_hits=sum(r.cached for r in results),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost,
        budget_stopped=budget_stopped,
        failures=sum(r.status == "failed" for r in results),
        retries=retries,
        skipped=sum(r.status == "skipped_budget" for r in results),
    )


def failed(request: ChatRequest, error: str, attempts: int = 0) -> ChatResult:
    """A ``failed`` result that never carries text."""
    return ChatResult(request, None, error, False, attempts, 0, 0, "failed")


def answer_text(response: Any) -> tuple[str | None, str]:
    """The answer text of a completion, or ``None`` and why it is unusable."""
    choices = getattr(response, "choices", None)
    if not choices:
        return None, "malformed answer: no choices"
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        return None, f"malformed answer: message content is {type(content).__name__}, not text"
    if not content.strip():
        return None, "empty answer: the message content is empty"
    return content.strip(), ""


def usage(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )

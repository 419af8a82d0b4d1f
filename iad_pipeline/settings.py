"""Each stage's configuration: one typed object per concern, each default defined here once.

- :class:`AnnotationSettings`: how defect fragments are grouped into boxes;
- :class:`ChatSettings`: how :class:`~iad_pipeline.knowledge.client.ChatClient` reaches a chat
  model and what it may spend; :class:`KnowledgeSettings` adds the provider and the knowledge
  checks' limits.

(Paths have :class:`~iad_pipeline.paths.Layout`; training its recipe,
:mod:`training.config`.) The Dagster resources (:mod:`iad_pipeline.resources`) and the CLI take
their defaults from these classes (a field's default is the class attribute:
``KnowledgeSettings.model``) and pass one object down, whole. This module imports nothing
heavy, so the CLI can build its options from it without loading the stages.

The API key is never a setting: it is read from ``OPENAI_API_KEY`` in the environment only.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

from iad_pipeline.errors import IadError

PROVIDERS = ("auto", "openai", "mmad", "template")
MAX_SIDE = 512
"""Longest image side sent to a chat model, in pixels (EMIT's choice)."""


class ChatConfigError(IadError, ValueError):
    """A chat client or knowledge provider configured with values it cannot run with."""


def check_params(dilate_px: int, min_area_px: int) -> None:
    """Reject grouping parameters that are not non-negative integers.

    >>> check_params(-1, 4)
    Traceback (most recent call last):
    ...
    ValueError: dilate_px must be an integer >= 0 (0: no dilation), found -1
    """
    for name, value, hint in (
        ("dilate_px", dilate_px, " (0: no dilation)"),
        ("min_area_px", min_area_px, " (0 or 1: keep every group)"),
    ):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
            msg = f"{name} must be an integer >= 0{hint}, found {value!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class AnnotationSettings:
    """How defect fragments are grouped into boxes (see :mod:`~iad_pipeline.annotate.boxes`).

    Attributes:
        dilate_px: Diameter of the elliptical dilation kernel that merges nearby defect
            fragments into one box (0: no dilation).
        min_area_px: Smallest defect group kept, in pixels.

    >>> AnnotationSettings()
    AnnotationSettings(dilate_px=15, min_area_px=4)
    """

    dilate_px: int = 15
    min_area_px: int = 4

    def __post_init__(self) -> None:
        check_params(self.dilate_px, self.min_area_px)


@dataclass(frozen=True)
class ChatSettings:
    """How to reach a chat model and how much it may cost.

    Attributes:
        base_url: The server's ``/v1`` URL; ``None`` reads ``OPENAI_BASE_URL`` (else OpenAI).
        model: The model name sent with every request (EMIT asked gpt-4-turbo).
        concurrency: Requests in flight at most.
        timeout: Seconds to wait for the connection and for each read (a whole attempt is
            bounded by ``call_deadline``).
        max_retries: Retries after the first attempt (see :mod:`iad_pipeline.retry`).
        max_requests: Requests one run may start (``None``: no limit).
        max_tokens: Prompt plus completion tokens one run may spend (``None``: no limit).
        price_per_1k_input: Price of 1,000 prompt tokens (for ``RunReport.cost``).
        price_per_1k_output: Price of 1,000 completion tokens.
        provider_name: Part of the cache key (``openai`` for any OpenAI-compatible server).
        max_side: Longest image side sent, in pixels (EMIT: 512).
        call_deadline: Seconds one attempt may take in total (``None``:
            ``IAD_LLM_CALL_DEADLINE``, see :mod:`iad_pipeline.limits`).
        retry_deadline: Seconds one request may take with all its retries (``None``:
            ``IAD_LLM_RETRY_DEADLINE``).

    Raises:
        ChatConfigError: A limit or count that is not positive, or no model.

    >>> ChatSettings(concurrency=0)
    Traceback (most recent call last):
    ...
    iad_pipeline.settings.ChatConfigError: ChatSettings: concurrency=0; expected an \
integer >= 1
    """

    base_url: str | None = None
    model: str = "gpt-4-turbo"
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 4
    max_requests: int | None = None
    max_tokens: int | None = None
    price_per_1k_input: float | None = None
    price_per_1k_output: float | None = None
    provider_name: str = "openai"
    max_side: int = MAX_SIDE
    call_deadline: float | None = None
    retry_deadline: float | None = None

    def __post_init__(self) -> None:
        counts = {
            "concurrency": (self.concurrency, 1),
            "max_retries": (self.max_retries, 0),
            "max_requests": (self.max_requests, 0),
            "max_tokens": (self.max_tokens, 0),
            "max_side": (self.max_side, 1),
        }
        for name, (value, low) in counts.items():
            if value is not None and (not isinstance(value, int) or value < low):
                msg = f"ChatSettings: {name}={value!r}; expected an integer >= {low}"
                raise ChatConfigError(msg)
        seconds = {
            "timeout": self.timeout,
            "call_deadline": self.call_deadline,
            "retry_deadline": self.retry_deadline,
        }
        for name, value in seconds.items():
            if value is not None and not (isinstance(value, int | float) and value > 0):
                msg = f"ChatSettings: {name}={value!r}; expected seconds > 0"
                raise ChatConfigError(msg)
        if not self.model:
            msg = "ChatSettings: model is empty; pass the model name the server serves"
            raise ChatConfigError(msg)


@dataclass(frozen=True)
class KnowledgeSettings(ChatSettings):
    """The knowledge stage: a provider, the chat settings it uses, and the checks' limits.

    Attributes:
        provider: ``auto`` (``openai`` when ``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` is set,
            else ``template``), ``openai`` (any OpenAI-compatible endpoint), ``mmad`` (MMAD's
            released ``domain_knowledge.json``) or ``template`` (offline texts).
        mmad_json: The ``mmad`` provider's file (``None``: the installed MMAD's).
        text_samples_per_category: Normal train images described per category (EMIT: 5).
        failure_max_fraction: The knowledge checks fail above this fraction of failed rows.

    >>> KnowledgeSettings(provider="gpt")
    Traceback (most recent call last):
    ...
    iad_pipeline.settings.ChatConfigError: KnowledgeSettings: provider='gpt'; \
expected one of auto, openai, mmad, template
    """

    provider: str = "auto"
    mmad_json: str | None = None
    text_samples_per_category: int = 5
    failure_max_fraction: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.provider not in PROVIDERS:
            msg = (
                f"KnowledgeSettings: provider={self.provider!r}; expected one of "
                f"{', '.join(PROVIDERS)}"
            )
            raise ChatConfigError(msg)
        if not isinstance(self.text_samples_per_category, int) or (
            self.text_samples_per_category < 1
        ):
            msg = (
                f"KnowledgeSettings: text_samples_per_category="
                f"{self.text_samples_per_category!r}; expected an integer >= 1"
            )
            raise ChatConfigError(msg)

"""Where knowledge texts come from: a chat model, MMAD's released file, or templates.

A :class:`KnowledgeProvider` answers :class:`~iad_pipeline.knowledge.client.ChatRequest` s
with a :class:`~iad_pipeline.knowledge.client.RunReport` (one result per request, in order):

- ``openai`` (:class:`OpenAIProvider`): any OpenAI-compatible server through
  :class:`~iad_pipeline.knowledge.client.ChatClient` (OpenAI, vLLM, Ollama, ...).
- ``mmad`` (:class:`MmadKnowledge`): MMAD's ``domain_knowledge.json``, imported as is. Our
  dataset keys map to MMAD's names (``mvtec_ad`` and ``DS-MVTec`` to ``MVTec``,
  ``mvtec_loco`` to ``MVTec-LOCO``, ``visa`` to ``VisA``, ``goodsad`` to ``GoodsAD``; see
  :data:`~iad_pipeline.questions.schema.KNOWLEDGE_DATASETS`); a category or key the file
  lacks is a ``failed`` row saying so. Its texts are already in the stored shape
  (``final_texts``), so they are not wrapped again.
- ``template`` (:class:`TemplateProvider`): deterministic texts built from the names in the
  request key, for demos and tests without a model; every row says ``provider="template"``.

Request keys (built by :mod:`~iad_pipeline.knowledge.generate`, read by the template and
mmad providers): ``("knowledge", dataset, category, label)`` with ``label`` a defect name or
``"good"`` and ``dataset`` our dataset key (for MMAD's own samples, the query set), and
``("text", dataset, category, sample_id, defect, location)`` with ``defect`` and
``location`` empty for a plain normal description.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from iad_pipeline.knowledge.client import ChatClient
from iad_pipeline.knowledge.results import (
    ChatRequest,
    ChatResult,
    KnowledgeError,
    RunReport,
    build_report,
    failed,
)
from iad_pipeline.paths import Layout
from iad_pipeline.questions.schema import KNOWLEDGE_DATASETS
from iad_pipeline.settings import KnowledgeSettings

log = logging.getLogger(__name__)

KNOWLEDGE, TEXT = "knowledge", "text"
TEMPLATE_MODEL = "template-v1"


class ProviderError(KnowledgeError, ValueError):
    """An unusable provider source file (MMAD's ``domain_knowledge.json``)."""


@runtime_checkable
class KnowledgeProvider(Protocol):
    """Answers chat requests; ``final_texts``: answers are already in the stored shape."""

    name: str
    model: str
    final_texts: bool

    def complete(
        self, requests: Sequence[ChatRequest], *, spent: RunReport | None = None
    ) -> RunReport:
        """One result per request, in order; ``spent`` counts against the budget."""
        ...


def human(name: str) -> str:
    """A folder name as words: ``_`` to spaces.

    >>> human("broken_large"), human("pcb1")
    ('broken large', 'pcb1')
    """
    return name.replace("_", " ").strip()


class OpenAIProvider:
    """A chat model behind an OpenAI-compatible API (see :class:`ChatClient`)."""

    name = "openai"
    final_texts = False

    def __init__(self, client: ChatClient, *, progress: bool = False) -> None:
        self.client = client
        self.model = client.model
        self.progress = progress

    def complete(
        self, requests: Sequence[ChatRequest], *, spent: RunReport | None = None
    ) -> RunReport:
        return self.client.run(requests, self.progress, spent=spent)


def _ok(request: ChatRequest, text: str) -> ChatResult:
    return ChatResult(request, text, None, False, 0, 0, 0, "ok")


class TemplateProvider:
    """Deterministic texts from the names in each request's key: no model, no network.

    >>> from iad_pipeline.knowledge.client import ChatRequest
    >>> req = ChatRequest(("text", "visa", "pcb1", "visa/pcb1/train/good/0", "bad", "top left"),
    ...                   "prompt")
    >>> TemplateProvider().complete([req]).results[0].text
    'A "pcb1" with a "bad" defect in the top left part of the image; elsewhere it looks like...'
    """

    name = "template"
    model = TEMPLATE_MODEL
    final_texts = False

    def complete(
        self, requests: Sequence[ChatRequest], *, spent: RunReport | None = None
    ) -> RunReport:
        results = []
        for request in requests:
            text = template_text(request.key)
            if text is None:
                shown = "/".join(request.key)
                results.append(failed(request, f"template provider: unknown request key {shown}"))
            else:
                results.append(_ok(request, text))
        return build_report(results)


def template_text(key: Sequence[str]) -> str | None:
    """The template text of a request key, or ``None`` for a key of unknown shape.

    >>> template_text(("knowledge", "mvtec_ad", "bottle", "broken_large"))[:56]
    'A "bottle" with a "broken large" defect shows broken lar'
    >>> template_text(("knowledge", "mvtec_ad", "bottle", "good"))[:41]
    'A standard "bottle" is complete and undam'
    """
    if len(key) == 4 and key[0] == KNOWLEDGE:
        obj, label = human(key[2]), key[3]
        if label == "good":
            return (
                f'A standard "{obj}" is complete and undamaged, with the shape, colour and '
                "surface texture shared by every normal example and none of the listed defects."
            )
        defect = human(label)
        return (
            f'A "{obj}" with a "{defect}" defect shows {defect} on the object: a region whose '
            f'shape, colour or texture differs from the same region of a normal "{obj}".'
        )
    if len(key) == 6 and key[0] == TEXT:
        obj, defect, location = human(key[2]), human(key[4]), key[5]
        if not defect:
            return f'A "{obj}" in good condition: complete, clean and without any defect.'
        return (
            f'A "{obj}" with a "{defect}" defect in the {location} part of the image; '
            f'elsewhere it looks like a normal "{obj}".'
        )
    return None


class MmadKnowledge:
    """MMAD's ``domain_knowledge.json`` as a provider: ``{dataset: {category: {key: text}}}``.

    Raises:
        ProviderError: The file is missing, not JSON, or not of that shape.
    """

    name = "mmad"
    model = "mmad-domain-knowledge"
    final_texts = True

    def __init__(self, path: Path | str, names: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.names = {**KNOWLEDGE_DATASETS, **(names or {})}
        try:
            if self.path.exists() and not self.path.is_file():  # a FIFO would block
                raise OSError(f"{self.path} is not a regular file")
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = (
                f"{self.path}: cannot read MMAD's domain knowledge ({exc}); expected the JSON "
                "file domain_knowledge.json of MMAD's release; fetch the mmad dataset first"
            )
            raise ProviderError(msg) from exc
        if not _is_knowledge(data):
            msg = (
                f"{self.path}: not domain knowledge; expected {{dataset: {{category: "
                "{key: text}}}} as in MMAD's domain_knowledge.json; pass that file"
            )
            raise ProviderError(msg)
        self.data: dict[str, dict[str, dict[str, str]]] = data

    def lookup(self, dataset: str, category: str, key: str) -> tuple[str | None, str | None]:
        """``(text, None)``, or ``(None, why not)`` when the file lacks it."""
        where = self.names.get(dataset, dataset)
        if where not in self.data:
            return None, (
                f"{self.path.name} has no dataset {where!r} (for {dataset!r}); "
                f"it has {', '.join(sorted(self.data))}"
            )
        if category not in self.data[where]:
            return None, (
                f"{self.path.name} has no category {category!r} under {where!r}; "
                f"it has {', '.join(sorted(self.data[where]))}"
            )
        entry = self.data[where][category]
        if key not in entry:
            return None, (
                f"{self.path.name} has no {key!r} for {where}/{category}; "
                f"it has {', '.join(sorted(entry))}"
            )
        return entry[key], None

    def complete(
        self, requests: Sequence[ChatRequest], *, spent: RunReport | None = None
    ) -> RunReport:
        results = []
        for request in requests:
            k = request.key
            if len(k) != 4 or k[0] != KNOWLEDGE:
                why = "the mmad provider only imports domain knowledge, not text samples"
                results.append(failed(request, f"{why}; use the openai or template provider"))
                continue
            text, why = self.lookup(k[1], k[2], k[3])
            results.append(_ok(request, text) if text is not None else failed(request, why or ""))
        return build_report(results)


def _is_knowledge(data: Any) -> bool:
    return isinstance(data, dict) and all(
        isinstance(cats, dict)
        and all(
            isinstance(entry, dict) and all(isinstance(t, str) for t in entry.values())
            for entry in cats.values()
        )
        for cats in data.values()
    )


def make_provider(
    settings: KnowledgeSettings, layout: Layout, *, progress: bool = False
) -> KnowledgeProvider:
    """The provider ``settings.provider`` names, configured by ``settings`` as a whole.

    - ``openai``: a :class:`ChatClient` with ``settings`` (its cache in ``layout.llm_cache``).
    - ``mmad``: ``settings.mmad_json``, else the installed MMAD's ``domain_knowledge.json``.
    - ``template``: offline texts.
    - ``auto``: ``openai`` when ``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` is set, else
      ``template``; the choice is logged.

    >>> from pathlib import Path
    >>> make_provider(KnowledgeSettings(provider="template"), Layout(Path("/h"))).name
    'template'
    """
    name = settings.provider
    if name == "auto":
        if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
            log.info("knowledge provider auto: OPENAI_BASE_URL or OPENAI_API_KEY set, openai")
            name = "openai"
        else:
            log.info("knowledge provider auto: no OPENAI_BASE_URL or OPENAI_API_KEY, templates")
            name = "template"
    if name == "template":
        return TemplateProvider()
    if name == "mmad":
        return MmadKnowledge(settings.mmad_json or layout.mmad_root() / "domain_knowledge.json")
    return OpenAIProvider(ChatClient(settings, layout.llm_cache), progress=progress)

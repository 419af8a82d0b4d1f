"""Domain knowledge and text samples written by a language model, EMIT style.

- :mod:`~iad_pipeline.knowledge.results`: requests, results and run reports
- :mod:`~iad_pipeline.knowledge.client`: :class:`ChatClient`, chat requests with a cache,
  bounded concurrency, retries and a budget, against any OpenAI-compatible server
- :mod:`~iad_pipeline.knowledge.providers`: ``openai``, ``mmad`` (MMAD's released
  ``domain_knowledge.json``) and ``template`` providers, :func:`make_provider`
- :mod:`~iad_pipeline.knowledge.generate`: :func:`generate_domain_knowledge` (EMIT's defect
  and normal texts, as a table and in MMAD's json shape) and :func:`generate_text_samples`
  (in :mod:`~iad_pipeline.knowledge.text_samples`: descriptions of normal images as if
  defective)
- :mod:`~iad_pipeline.knowledge.images`: images as PNG data URLs, at most 512 px
"""

from iad_pipeline.knowledge.cache import ResponseCache, cache_key
from iad_pipeline.knowledge.client import ChatClient
from iad_pipeline.knowledge.generate import (
    KNOWLEDGE_SCHEMA,
    KnowledgeResult,
    generate_domain_knowledge,
    knowledge_requests,
    mmad_knowledge_json,
    normal_requests,
)
from iad_pipeline.knowledge.images import data_url, png_bytes
from iad_pipeline.knowledge.providers import (
    KnowledgeProvider,
    MmadKnowledge,
    OpenAIProvider,
    ProviderError,
    TemplateProvider,
    make_provider,
)
from iad_pipeline.knowledge.results import ChatRequest, ChatResult, KnowledgeError, RunReport
from iad_pipeline.knowledge.text_samples import (
    TEXT_SAMPLES_SCHEMA,
    TextSampleResult,
    generate_text_samples,
    observed_locations,
)
from iad_pipeline.settings import ChatConfigError, ChatSettings, KnowledgeSettings

__all__ = [
    "KNOWLEDGE_SCHEMA",
    "TEXT_SAMPLES_SCHEMA",
    "ChatClient",
    "ChatConfigError",
    "ChatRequest",
    "ChatResult",
    "ChatSettings",
    "KnowledgeError",
    "KnowledgeProvider",
    "KnowledgeResult",
    "KnowledgeSettings",
    "MmadKnowledge",
    "OpenAIProvider",
    "ProviderError",
    "ResponseCache",
    "RunReport",
    "TemplateProvider",
    "TextSampleResult",
    "cache_key",
    "data_url",
    "generate_domain_knowledge",
    "generate_text_samples",
    "knowledge_requests",
    "make_provider",
    "mmad_knowledge_json",
    "normal_requests",
    "observed_locations",
    "png_bytes",
]

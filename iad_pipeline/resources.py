"""Dagster resources: the typed configuration every asset shares."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from iad_pipeline.errors import IadError
from iad_pipeline.paths import PROFILES, Layout
from iad_pipeline.settings import AnnotationSettings, KnowledgeSettings

__all__ = ["PROFILES", "IadConfig", "KnowledgeConfig", "TrainingLauncher"]


def _default(settings: type, name: str) -> Field:
    """A resource field whose default is the settings class's, never restated here."""
    return Field(default=getattr(settings, name), description=_DESCRIPTIONS[name])


_DESCRIPTIONS = {
    "provider": "auto, openai, mmad or template",
    "base_url": "default $OPENAI_BASE_URL",
    "model": "chat model the server serves (default: EMIT's)",
    "concurrency": "requests in flight at most",
    "timeout": "seconds per request",
    "max_retries": "retries after the first attempt",
    "max_requests": "budget per materialization",
    "max_tokens": "token budget per materialization",
    "price_per_1k_input": "for cost metadata",
    "price_per_1k_output": "for cost metadata",
    "mmad_json": "mmad provider: the json path",
    "text_samples_per_category": "normal images described",
    "failure_max_fraction": "failure rows tolerated",
    "dilate_px": "dilation that groups defect fragments into one box (0: none)",
    "min_area_px": "smallest defect group, in pixels",
}


class IadConfig(dg.ConfigurableResource):
    """Where the pipeline keeps its files and how strict it is.

    ``profile`` ``demo`` installs synthetic datasets written in each real layout (no network,
    no licence gate) under ``$IAD_HOME/demo``; ``real`` downloads the real datasets under
    ``$IAD_HOME``. Unset fields fall back to the environment (``IAD_HOME``, ``IAD_PROFILE``,
    ``IAD_ACCEPT_LICENSES``), so the UI, ``make demo`` and the CLI agree.
    """

    home: str | None = Field(default=None, description="data root (default $IAD_HOME or ./.iad)")
    profile: str | None = Field(
        default=None, description="demo or real (default $IAD_PROFILE or demo)"
    )
    accept_licenses: bool | None = Field(
        default=None, description="accept non-commercial licences (default $IAD_ACCEPT_LICENSES)"
    )
    quarantine_max_fraction: float = Field(
        default=0.05,
        description="the quarantine check fails above this fraction of a dataset's images",
    )
    synthetic_per_class: int = Field(default=3, description="demo: images per label folder")
    seed: int = Field(default=0, description="seed of synthetic data, options and splits")
    workers: int | None = Field(default=None, description="reader processes (default one per core)")
    dilate_px: int = _default(AnnotationSettings, "dilate_px")
    min_area_px: int = _default(AnnotationSettings, "min_area_px")
    template_backend: str = Field(
        default="pixels", description="reference image retriever: pixels, clip or random"
    )
    allow_leaks: bool = Field(
        default=False,
        description="explicit override: keep training images that also appear in an evaluation set",
    )

    def layout(self) -> Layout:
        """Every path of this (home, profile): the one place paths are built."""
        try:
            return Layout.resolve(self.home, self.profile)
        except IadError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc

    def annotation_settings(self) -> AnnotationSettings:
        """The annotation stage's settings object (fields mapped by name)."""
        try:
            return AnnotationSettings(self.dilate_px, self.min_area_px)
        except ValueError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc

    def resolved_profile(self) -> str:
        return self.layout().profile

    def home_dir(self) -> Path:
        return self.layout().home

    def licences_accepted(self) -> bool:
        if self.accept_licenses is not None:
            return self.accept_licenses
        return os.environ.get("IAD_ACCEPT_LICENSES", "").lower() in ("1", "true", "yes")


class RaySection(dg.Config):
    """Where a Ray launch runs and on what: the ``ray`` section of the launcher and of the
    evaluation configuration. ``address``: ``auto`` joins the cluster ``ray start`` started on
    this machine, a dashboard URL (``http://HOST:8265``, a KubeRay head service) joins that
    one, ``None`` starts a local cluster for the run (the demo)."""

    address: str | None = Field(
        default="auto", description="auto, http://HOST:8265, or null for a local cluster"
    )
    num_workers: int = Field(default=1, description="Ray Train workers / Ray Data actors")
    use_gpu: bool = Field(default=False, description="one GPU per worker (NCCL for training)")
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict, description='per worker, e.g. {"CPU": 4, "GPU": 1}'
    )


class TrainingLauncher(dg.ConfigurableResource):
    """How ``grpo_run`` starts training/grpo.py: plain python (CPU, one GPU), ``accelerate
    launch`` over N processes, or a Ray job on N Ray Train workers (the ``ray`` section)."""

    launcher: str = Field(default="python", description="python, accelerate or ray")
    num_processes: int = Field(default=1, description="accelerate: processes (GPUs)")
    extra_args: list[str] = Field(
        default_factory=list, description="accelerate launch options, e.g. --mixed_precision bf16"
    )
    max_steps: int | None = Field(default=None, description="override the recipe's steps")
    ray: RaySection = Field(default_factory=RaySection, description="launcher ray: the cluster")


class KnowledgeConfig(dg.ConfigurableResource):
    """The domain-knowledge provider: ``auto`` (openai when ``OPENAI_BASE_URL`` or
    ``OPENAI_API_KEY`` is set, else offline template texts), ``openai`` (any
    OpenAI-compatible endpoint: OpenAI, a local vLLM or Ollama), ``mmad`` (MMAD's released
    domain_knowledge.json) or ``template``. The API key comes from ``OPENAI_API_KEY`` in the
    environment only: it is never part of this configuration, logs or metadata. Fields and
    defaults are :class:`~iad_pipeline.settings.KnowledgeSettings`'s."""

    provider: str = _default(KnowledgeSettings, "provider")
    base_url: str | None = _default(KnowledgeSettings, "base_url")
    model: str = _default(KnowledgeSettings, "model")
    concurrency: int = _default(KnowledgeSettings, "concurrency")
    timeout: float = _default(KnowledgeSettings, "timeout")
    max_retries: int = _default(KnowledgeSettings, "max_retries")
    max_requests: int | None = _default(KnowledgeSettings, "max_requests")
    max_tokens: int | None = _default(KnowledgeSettings, "max_tokens")
    price_per_1k_input: float | None = _default(KnowledgeSettings, "price_per_1k_input")
    price_per_1k_output: float | None = _default(KnowledgeSettings, "price_per_1k_output")
    mmad_json: str | None = _default(KnowledgeSettings, "mmad_json")
    text_samples_per_category: int = _default(KnowledgeSettings, "text_samples_per_category")
    failure_max_fraction: float = _default(KnowledgeSettings, "failure_max_fraction")

    def settings(self) -> KnowledgeSettings:
        """The one settings object every layer below takes (fields mapped by name)."""
        names = [f.name for f in dataclasses.fields(KnowledgeSettings)]
        values = {name: getattr(self, name) for name in names if name in type(self).model_fields}
        try:
            return KnowledgeSettings(**values)
        except IadError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc

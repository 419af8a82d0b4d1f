"""Dagster resources: the typed configuration every asset shares."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from iad_pipeline.paths import iad_home

PROFILES = ("demo", "real")


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
    dilate_px: int = Field(
        default=15, description="dilation that groups defect fragments into one box (0: none)"
    )
    min_area_px: int = Field(default=4, description="smallest defect group, in pixels")
    template_backend: str = Field(
        default="pixels", description="reference image retriever: pixels, clip or random"
    )
    allow_leaks: bool = Field(
        default=False,
        description="explicit override: keep training images that also appear in an evaluation set",
    )

    def resolved_profile(self) -> str:
        profile = self.profile or os.environ.get("IAD_PROFILE") or "demo"
        if profile not in PROFILES:
            msg = f"profile must be one of {PROFILES}, got {profile!r} (check IAD_PROFILE)"
            raise dg.Failure(msg, allow_retries=False)
        return profile

    def root(self) -> Path:
        home = Path(self.home).expanduser().resolve() if self.home else iad_home()
        return home / "demo" if self.resolved_profile() == "demo" else home

    def data_dir(self) -> Path:
        return self.root() / "data"

    def tables_dir(self) -> Path:
        return self.root() / "tables"

    def synthetic_dir(self) -> Path:
        return self.root() / "synthetic"

    def licences_accepted(self) -> bool:
        if self.accept_licenses is not None:
            return self.accept_licenses
        return os.environ.get("IAD_ACCEPT_LICENSES", "").lower() in ("1", "true", "yes")

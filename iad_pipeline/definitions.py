"""The Dagster code location of iad-pipeline: one Definitions object."""

from __future__ import annotations

import dagster as dg

from assets import ingest
from iad_pipeline.resources import IadConfig

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("ingest"),
    description="Install datasets and build their samples tables, one run per dataset.",
)

defs = dg.Definitions(
    assets=[ingest.raw_dataset, ingest.samples],
    jobs=[ingest_job],
    resources={"iad": IadConfig()},
)

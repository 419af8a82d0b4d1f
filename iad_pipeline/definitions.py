"""The Dagster code location of iad-pipeline: one Definitions object."""

import dagster as dg

from assets import annotations, ingest, questions
from iad_pipeline.resources import IadConfig

datasets_job = dg.define_asset_job(
    "datasets",
    selection=dg.AssetSelection.groups("ingest", "annotate")
    | dg.AssetSelection.assets(questions.question_bank),
    description="Per dataset: install it, build its samples, annotations and question bank.",
)
training_sets_job = dg.define_asset_job(
    "training_sets",
    selection=dg.AssetSelection.assets(questions.training_set),
    description="Per recipe: split, select, leakage-guard and export a training set.",
)

defs = dg.Definitions(
    assets=[
        ingest.raw_dataset,
        ingest.samples,
        annotations.annotations,
        questions.question_bank,
        questions.training_set,
    ],
    jobs=[datasets_job, training_sets_job],
    resources={"iad": IadConfig()},
)

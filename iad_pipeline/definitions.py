"""The Dagster code location of iad-pipeline: one Definitions object."""

import dagster as dg

from assets import annotations, evaluation, ingest, knowledge, questions, training
from iad_pipeline.resources import IadConfig, KnowledgeConfig, TrainingLauncher

datasets_job = dg.define_asset_job(
    "datasets",
    selection=dg.AssetSelection.groups("ingest", "annotate", "knowledge")
    | dg.AssetSelection.assets(questions.question_bank),
    description="Per dataset: install it, build its samples, annotations, domain knowledge, "
    "text samples and question bank.",
)
training_sets_job = dg.define_asset_job(
    "training_sets",
    selection=dg.AssetSelection.assets(questions.training_set),
    description="Per training set: split, select, leakage-guard and export for TRL.",
)
training_job = dg.define_asset_job(
    "training",
    selection=dg.AssetSelection.assets(training.grpo_run),
    description="Per recipe: GRPO training through Dagster Pipes (the gpu pool runs one).",
)

defs = dg.Definitions(
    assets=[
        ingest.raw_dataset,
        ingest.samples,
        annotations.annotations,
        knowledge.domain_knowledge,
        knowledge.text_samples,
        questions.question_bank,
        questions.training_set,
        training.grpo_run,
        evaluation.mmad_eval,
        evaluation.cross_dataset_eval,
    ],
    sensors=[evaluation.checkpoint_sensor],
    schedules=[evaluation.nightly_reevaluation],
    jobs=[
        datasets_job,
        training_sets_job,
        training_job,
        evaluation.mmad_eval_job,
        evaluation.cross_eval_job,
    ],
    resources={
        "iad": IadConfig(),
        "knowledge": KnowledgeConfig(),
        "launcher": TrainingLauncher(),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    },
)

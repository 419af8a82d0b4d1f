"""The pipeline's stages as plain functions: table in, table out, files written atomically.

The Dagster assets and the ``iad`` CLI both call these, so the UI and the command line
produce the same files. Every path comes from a :class:`~iad_pipeline.paths.Layout`::

    tables/samples/<dataset>.parquet            tables/quarantine/samples/<dataset>.parquet
    tables/annotations/<dataset>.parquet        tables/quarantine/annotations/<dataset>.parquet
    tables/previews/annotations/<dataset>.png
    tables/questions/<dataset>.parquet
    tables/training_sets/<recipe>/{train,eval,leaks}.parquet, hf/ (a datasets.Dataset)

A CLI ``--out FILE`` writes the same table to FILE instead (its quarantine table beside it
as ``FILE.quarantine.parquet``).
"""

from iad_pipeline.stages.knowledge import (
    knowledge_entries,
    write_domain_knowledge,
    write_text_samples,
)
from iad_pipeline.stages.tables import (
    STYLES,
    build_question_bank,
    read_table,
    reference_images,
    write_annotations,
    write_question_bank,
    write_samples_table,
)
from iad_pipeline.stages.training_sets import (
    CROSS_DATASET_EVAL,
    GUARDS,
    SHUFFLED_KNOWLEDGE,
    TRAINING_SETS,
    LeakageGuard,
    TrainingSet,
    TrainingSetSpec,
    write_training_set,
)

__all__ = [
    "CROSS_DATASET_EVAL",
    "GUARDS",
    "SHUFFLED_KNOWLEDGE",
    "STYLES",
    "TRAINING_SETS",
    "LeakageGuard",
    "TrainingSet",
    "TrainingSetSpec",
    "build_question_bank",
    "knowledge_entries",
    "read_table",
    "reference_images",
    "write_annotations",
    "write_domain_knowledge",
    "write_question_bank",
    "write_samples_table",
    "write_text_samples",
    "write_training_set",
]

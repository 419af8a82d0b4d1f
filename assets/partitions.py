"""Partitions shared by the asset modules."""

import dagster as dg

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.stages import TRAINING_SETS

datasets_partitions = dg.StaticPartitionsDefinition(list(DATASET_KEYS))
training_sets_partitions = dg.StaticPartitionsDefinition(list(TRAINING_SETS))

"""Partitions shared by the asset modules."""

import dagster as dg

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.stages import RECIPE_STYLES

datasets_partitions = dg.StaticPartitionsDefinition(list(DATASET_KEYS))
recipes_partitions = dg.StaticPartitionsDefinition(list(RECIPE_STYLES))

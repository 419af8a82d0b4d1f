"""iad-pipeline: industrial anomaly detection with reasoning vision-language models.

The domain core lives here (datasets, annotations, knowledge, questions, synthetic data,
model folders, the ``iad`` command's framework). Only ``definitions.py`` and ``resources.py``
(with the ``assets`` package) import Dagster, and nothing here imports ``training`` or
``eval``: everything else runs and is tested without the orchestrator.
"""

__version__ = "0.1.0"

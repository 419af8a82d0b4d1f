"""iad-pipeline: industrial anomaly detection with reasoning vision-language models.

The domain core lives here (datasets, annotations, knowledge, questions, synthetic data).
Only ``definitions.py``, ``resources.py`` and ``demo.py`` import Dagster; everything else
runs and is tested without the orchestrator.
"""

__version__ = "0.1.0"

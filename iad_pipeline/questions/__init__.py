"""Question banks: multiple-choice questions about samples, MMAD's json, and HF export.

- :func:`build_questions` (``builders``): EMIT-style questions (anomaly detection, defect
  classification, defect localization, object classification) in the styles emit,
  anomalyr1 and mmad, and binary questions in the styles lr_iad and adfm.
- :func:`read_mmad_json` / :func:`write_mmad_json` (``mmad_json``): MMAD's benchmark file.
- :func:`render_prompt` (``prompts``): the one renderer training and evaluation share; the
  protocol strings live in ``protocol_strings`` (data) and nowhere else.
- ``export.to_hf_dataset`` / ``export.save_hf_dataset``: the table as a ``datasets.Dataset``
  (imported from ``iad_pipeline.questions.export``, so this package does not load
  ``datasets`` until it is needed).
"""

from iad_pipeline.questions.builders import build_questions
from iad_pipeline.questions.mmad_json import read_mmad_json, write_mmad_json
from iad_pipeline.questions.prompts import render_prompt
from iad_pipeline.questions.schema import QUESTIONS_SCHEMA, QuestionError

__all__ = [
    "QUESTIONS_SCHEMA",
    "QuestionError",
    "build_questions",
    "read_mmad_json",
    "render_prompt",
    "write_mmad_json",
]

"""The question table: one row per multiple-choice (or binary) question.

Columns (:data:`QUESTIONS_SCHEMA`):

- ``question_id``: first 16 hex digits of sha1 over ``style|task|sample_id|variant``
- ``sample_id``, ``dataset``, ``category``, ``source``: from the samples table
- ``task``: anomaly_detection, defect_classification, defect_localization,
  object_classification, binary_anomaly (LR-IAD / AD-FM); imported MMAD rows of the other
  types get their type in snake case (defect_description, object_structure, ...)
- ``style``: emit, anomalyr1, lr_iad, adfm, mmad
- ``mmad_type``: MMAD's reported column for the question (Object Structure and Object Details
  merged into Object Analysis; the raw type of imported rows is the tag ``raw_type:...``)
- ``question``: the question text with its options laid out as the protocol does
- ``options``: option texts in letter order; ``answer``: the correct letter (AD-FM: a / b)
- ``image_path``, ``reference_image`` (normal template or null)
- ``knowledge_key``: ``<knowledge dataset>/<category>`` as in MMAD's domain_knowledge.json
- ``boxes``: AD-FM ground-truth boxes ``[x1, y1, x2, y2]`` in model-input pixels;
  ``model_hw``: ``[h, w]`` of that input (both empty elsewhere)
- ``split``: train, eval or "" (unassigned); ``recipe_tags``; ``annotation`` (MMAD's flag)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.questions.validate import invalid_questions

QUESTIONS_SCHEMA: dict[str, pl.DataType] = {
    "question_id": pl.String(),
    "sample_id": pl.String(),
    "dataset": pl.String(),
    "category": pl.String(),
    "source": pl.String(),
    "task": pl.String(),
    "style": pl.String(),
    "mmad_type": pl.String(),
    "question": pl.String(),
    "options": pl.List(pl.String()),
    "answer": pl.String(),
    "image_path": pl.String(),
    "reference_image": pl.String(),
    "knowledge_key": pl.String(),
    "boxes": pl.List(pl.List(pl.Int32())),
    "model_hw": pl.List(pl.Int32()),
    "split": pl.String(),
    "recipe_tags": pl.List(pl.String()),
    "annotation": pl.Boolean(),
}

CHOICE_TASKS = (
    "anomaly_detection",
    "defect_classification",
    "defect_localization",
    "object_classification",
)
TASKS = (*CHOICE_TASKS, "binary_anomaly")

# The MMAD column each of our tasks is reported under.
MMAD_TYPE_OF_TASK = {
    "anomaly_detection": "Anomaly Detection",
    "defect_classification": "Defect Classification",
    "defect_localization": "Defect Localization",
    "object_classification": "Object Classification",
    "binary_anomaly": "Anomaly Detection",
}

# Dataset keys and MMAD query sets -> the top-level key of domain_knowledge.json.
KNOWLEDGE_DATASETS = {
    "mvtec_ad": "MVTec",
    "DS-MVTec": "MVTec",
    "mvtec_loco": "MVTec-LOCO",
    "MVTec-LOCO": "MVTec-LOCO",
    "visa": "VisA",
    "VisA": "VisA",
    "goodsad": "GoodsAD",
    "GoodsAD": "GoodsAD",
}


class QuestionError(IadError, ValueError):
    """A question table, or an input to one, that breaks the table's rules."""


def question_id(style: str, task: str, sample_id: str, variant: str = "") -> str:
    """Stable id of a question: 16 hex digits of sha1 over ``style|task|sample_id|variant``.

    >>> question_id("emit", "anomaly_detection", "mvtec_ad/bottle/test/good/000")
    '53ef75e1738a773a'
    """
    key = f"{style}|{task}|{sample_id}|{variant}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def knowledge_key(
    dataset: str, source: str, category: str, names: Mapping[str, str] | None = None
) -> str:
    """``<knowledge dataset>/<category>``; MMAD rows are named after their query set.

    ``names`` maps dataset keys (or MMAD query sets) to knowledge names, over the defaults.

    >>> knowledge_key("mmad", "DS-MVTec", "bottle"), knowledge_key("visa", "visa", "pcb1")
    ('MVTec/bottle', 'VisA/pcb1')
    >>> knowledge_key("mpdd", "mpdd", "tubes")
    'mpdd/tubes'
    """
    table = {**KNOWLEDGE_DATASETS, **(names or {})}
    key = source if dataset == "mmad" else dataset
    return f"{table.get(key, key)}/{category}"


def check_questions(questions: pl.DataFrame, where: str = "question table") -> None:
    """Raise :class:`QuestionError` naming the first bad rows: fewer than 2 options, repeated
    options, or an answer that is not an option's letter (see
    :func:`~iad_pipeline.questions.validate.invalid_questions`)."""
    missing = [c for c in QUESTIONS_SCHEMA if c not in questions.columns]
    if missing:
        msg = (
            f"{where}: missing columns {missing}; expected the columns of QUESTIONS_SCHEMA; "
            "build the table with build_questions or read_mmad_json"
        )
        raise QuestionError(msg)
    bad = pl.concat(
        [questions.filter(pl.col("options").list.len() < 2), invalid_questions(questions)]
    )
    if bad.height:
        shown = ", ".join(bad["question_id"].unique(maintain_order=True).head(5))
        msg = (
            f"{where}: {bad.height} invalid questions (first ids: {shown}); expected 2+ unique "
            "options and an answer letter among them; rebuild the questions or drop those rows"
        )
        raise QuestionError(msg)

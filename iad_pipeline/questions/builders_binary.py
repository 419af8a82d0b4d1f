"""Binary anomaly questions: LR-IAD's A/B prompt and AD-FM's a/b prompt with boxes.

- **lr_iad**: LR-IAD's prompt with the category as object name (underscores as spaces);
  options ``defect`` (A) and ``normal`` (B), never shuffled, since the prompt fixes them.
- **adfm**: our AD-FM prompt (see :data:`~iad_pipeline.questions.prompts.ADFM_PROMPT`) with
  answer ``a`` (anomalous) or ``b`` (normal). ``model_hw`` is the model input size
  ``smart_resize(h, w, max_pixels=model_max_pixels)`` for every sample (the prompt states it);
  localizable anomalous samples carry their ground-truth boxes mapped into that space, other
  anomalous samples are still asked, without boxes and with the tag ``no_boxes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iad_pipeline.questions.prompts import (
    ADFM_OPTIONS,
    ADFM_PROMPT,
    LR_IAD_OPTIONS,
    LR_IAD_TEMPLATE,
)
from iad_pipeline.questions.schema import QuestionError


def object_name(category: str) -> str:
    """A category as LR-IAD's and our AD-FM prompt name the object.

    >>> object_name("metal_nut")
    'metal nut'
    """
    return category.replace("_", " ")


def lr_iad_question(row: Mapping[str, Any]) -> dict[str, Any]:
    """LR-IAD's question: A = defect, B = normal.

    >>> q = lr_iad_question({"category": "metal_nut", "is_anomalous": True})
    >>> q["question"][:40], q["options"], q["answer"]
    ('This is an image containing a metal nut.', ['defect', 'normal'], 'A')
    """
    return {
        "question": LR_IAD_TEMPLATE.format(object_name=object_name(row["category"])),
        "options": list(LR_IAD_OPTIONS),
        "answer": "A" if row["is_anomalous"] else "B",
    }


def _size(row: Mapping[str, Any]) -> tuple[int, int]:
    height, width = row.get("height"), row.get("width")
    if not height or not width:
        msg = (
            f"sample {row['sample_id']!r}: found width={width!r}, height={height!r}; AD-FM "
            "questions need the image size; use the samples table's width and height"
        )
        raise QuestionError(msg)
    return int(height), int(width)


def adfm_question(row: Mapping[str, Any], model_max_pixels: int) -> dict[str, Any]:
    """Our AD-FM question, with ground-truth boxes in model-input pixels when localizable."""
    from iad_pipeline.annotate.coords import smart_resize, to_model_space

    orig_hw = _size(row)
    model_hw = tuple(int(v) for v in smart_resize(*orig_hw, max_pixels=model_max_pixels))
    anomalous = bool(row["is_anomalous"])
    gt = row.get("gt_boxes") or []
    boxes: list[list[int]] = []
    tags: list[str] = []
    if anomalous and row.get("localizable") and gt:
        mapped = to_model_space([list(b) for b in gt], orig_hw, model_hw)
        boxes = [[int(v) for v in box] for box in mapped]
    elif anomalous:
        tags.append("no_boxes")
    question = ADFM_PROMPT.format(
        object_name=object_name(row["category"]), width=model_hw[1], height=model_hw[0]
    )
    return {
        "question": question,
        "options": list(ADFM_OPTIONS),
        "answer": "a" if anomalous else "b",
        "boxes": boxes,
        "model_hw": list(model_hw),
        "recipe_tags": tags,
    }


def binary_question(style: str, row: Mapping[str, Any], model_max_pixels: int) -> dict[str, Any]:
    """The binary question of one sample in ``style`` (``lr_iad`` or ``adfm``)."""
    if style == "lr_iad":
        return lr_iad_question(row)
    return adfm_question(row, model_max_pixels)

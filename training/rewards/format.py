"""Format rewards: EMIT's strict think-then-answer check and AD-FM's multi-stage structure score."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iad_pipeline.answers import boxes_from_text, first_tag
from training.rewards.base import Reward, texts

# ms-swift's Format ORM, which EMIT trains with: the whole completion is one think block,
# optional whitespace, one answer block, and nothing after it.
_THINK_ANSWER = re.compile(
    r"^<think>.*?</think>\s*<answer>.*?</answer>(?![\s\S])", re.DOTALL | re.MULTILINE
)
# AD-FM's plugin: boxes in the think block count as "in the original 512x512 image" below this.
_ADFM_COORD_LIMIT = 505


def think_answer_format(text: str) -> float:
    """1.0 when the completion is ``<think>...</think>`` then ``<answer>...</answer>``, else 0.0.

    EMIT's format reward (ms-swift ``Format``), LR-IAD's eq. (3) ``R_format`` in {0, 1}:
    ``re.match(r'^<think>.*?</think>\\s*<answer>.*?</answer>(?![\\s\\S])', text,
    re.DOTALL | re.MULTILINE)``. Nothing may precede ``<think>`` or follow ``</answer>``
    (not even whitespace); tags are case-sensitive.

    Args:
        text: the completion text.

    Returns:
        1.0 or 0.0.

    Example:
        >>> think_answer_format("<think>scratch at top</think>\\n<answer>B</answer>")
        1.0
        >>> think_answer_format("<think>x</think><answer>B</answer>\\n")
        0.0
    """
    return 1.0 if isinstance(text, str) and _THINK_ANSWER.match(text) else 0.0


def multi_stage_format_score(text: str) -> float:
    """AD-FM's structure score for ``<think>`` (boxes), ``<rethink>``, ``<answer>`` (a / b).

    The released plugin's ``AnomalyCoTFormat`` (AD-FM's multi-stage reasoning, section 3.2;
    the paper gives no formula, so the values are the code's). Tags match case-insensitively and
    only the first block of each tag counts:

    - think, stripped: non-empty +0.3, longer than 10 characters +0.1;
    - rethink, stripped: non-empty +0.2, longer than 10 characters +0.1;
    - answer (a real ``<answer>`` tag, stripped, lower-cased): exactly ``a`` or ``b`` +0.2,
      else containing an ``a`` or a ``b`` +0.1 (``"anomalous"`` does);
    - only with a non-empty think: a box ``[x1, y1, x2, y2]`` of non-negative numbers in it
      +0.2, and +0.1 more when every coordinate of every box is below 505 (the plugin's test
      for a 512x512 input); without a box, a ``[`` and a ``]`` anywhere in it +0.1.

    The maximum is 1.2 (0.4 + 0.3 + 0.2 + 0.3); the "max 1.3" of our reference notes does not
    add up. The points are added in the plugin's order, so the floats agree to the last bit. A
    box whose number overflows a float counts as no box (the plugin would give it +0.2).

    Args:
        text: the completion text.

    Returns:
        A score between 0.0 and 1.2.

    Example:
        >>> c = ("<think>Scratch near [120, 40, 180, 96].</think>"
        ...      "<rethink>The mark is a real scratch.</rethink><answer>a</answer>")
        >>> round(multi_stage_format_score(c), 6)
        1.2
        >>> round(multi_stage_format_score("<think>looks fine</think><answer>normal</answer>"), 6)
        0.4
    """
    think_block = first_tag(text, "think")
    think = think_block.strip() if think_block is not None else ""
    score = 0.0
    if think:
        score += 0.3
        if len(think) > 10:
            score += 0.1
    rethink_block = first_tag(text, "rethink")
    if rethink_block is not None:
        rethink = rethink_block.strip()
        if rethink:
            score += 0.2
            if len(rethink) > 10:
                score += 0.1
    answer_block = first_tag(text, "answer")
    answer = answer_block.strip().lower() if answer_block is not None else ""
    if answer in ("a", "b"):
        score += 0.2
    elif "a" in answer or "b" in answer:
        score += 0.1
    if think:
        boxes = boxes_from_text(think, strict=True)
        if boxes:
            score += 0.2
            if all(coord < _ADFM_COORD_LIMIT for box in boxes for coord in box):
                score += 0.1
        elif "[" in think and "]" in think:
            score += 0.1
    return score


@dataclass(frozen=True)
class Format(Reward):
    """``format``: :func:`think_answer_format` per completion (EMIT, LR-IAD eq. 3); no params.

    Example:
        >>> Format()(["<think>ok</think><answer>A</answer>", "A"])
        [1.0, 0.0]
    """

    name = "format"

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return [think_answer_format(t) for t in texts(completions)]


@dataclass(frozen=True)
class MultiStageFormat(Reward):
    """``multi_stage_format``: :func:`multi_stage_format_score` per completion (AD-FM); no params.

    Example:
        >>> MultiStageFormat()([[{"role": "assistant", "content": "<answer>b</answer>"}]])
        [0.2]
    """

    name = "multi_stage_format"

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return [multi_stage_format_score(t) for t in texts(completions)]

"""Boxes written in model output: AD-FM's pattern, and a tolerant scan for JSON-like boxes.

Part of the one answer parser (:mod:`iad_pipeline.answers`): :func:`boxes_from_text`
accepts anything and never raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

# AD-FM (scripts/grpo/plugin_adfm.py, parse_bbox_list): four non-negative numbers in brackets.
_NUMBER = r"\s*(\d+(?:\.\d+)?)\s*"
_ADFM_BOX = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")
# Our tolerant scan for JSON-like boxes: a box key, a colon, then a bracketed list whose items
# may be quoted or written with exponents ({"bbox_2d": [..]}, {'Position': [..]}).
_KEYED_BOX = re.compile(
    r"""["']?(?:bbox_2d|bbox|box|position)["']?\s*:\s*\[([^\[\]]*)\]""", re.IGNORECASE
)
_JSON_NUMBER = re.compile(
    r"""\s*["']?\s*(\+?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*["']?\s*"""
)


def _finite_box(values: Sequence[str]) -> list[float] | None:
    try:
        box = [float(v) for v in values]
    except ValueError:
        return None
    if len(box) != 4 or not all(math.isfinite(v) and v >= 0 for v in box):
        return None
    return box


def boxes_from_text(text: Any, *, strict: bool = False) -> list[list[float]]:
    """Boxes ``[x1, y1, x2, y2]`` written in the text, in order of appearance.

    AD-FM's pattern (``parse_bbox_list`` in ``scripts/grpo/plugin_adfm.py``) finds every
    bracketed list of four non-negative decimal numbers, ``\\[\\s*(\\d+(?:\\.\\d+)?)\\s*,``
    four times then ``\\]``: ``[-62, 231, 61, 382]`` and ``[1e2, 0, 5, 5]`` are not boxes.
    Unless ``strict``, a tolerant scan then adds boxes given as a JSON-like key and value
    (``bbox_2d``, ``bbox``, ``box`` or ``position``, any case, quoted or not) whose four numbers
    AD-FM's pattern misses: quoted (``"12"``), with an exponent or a bare decimal point; they
    must still be non-negative. Numbers that overflow to infinity are dropped with their box.

    Args:
        text: the text to scan (e.g. the first ``<think>`` block).
        strict: only AD-FM's pattern (what the localization reward reads).

    Returns:
        The boxes as floats, ``[]`` when none are found.

    Example:
        >>> boxes_from_text("defect at [10, 20, 30.5, 40] and [1,2,3]")
        [[10.0, 20.0, 30.5, 40.0]]
        >>> boxes_from_text('{"bbox_2d": ["1", "2", "3e1", "4"]}')
        [[1.0, 2.0, 30.0, 4.0]]
        >>> boxes_from_text('{"bbox_2d": ["1", "2", "3e1", "4"]}', strict=True)
        []
    """
    if not isinstance(text, str):
        return []
    found: list[tuple[int, list[float]]] = []
    spans: set[int] = set()
    for match in _ADFM_BOX.finditer(text):
        box = _finite_box(match.groups())
        spans.add(match.start())
        if box is not None:
            found.append((match.start(), box))
    if not strict:
        for match in _KEYED_BOX.finditer(text):
            if match.start(1) - 1 in spans:  # AD-FM's pattern already read this list
                continue
            items = match.group(1).split(",")
            numbers = [_JSON_NUMBER.fullmatch(item) for item in items]
            if len(items) == 4 and all(numbers):
                box = _finite_box([n.group(1) for n in numbers if n])
                if box is not None:
                    found.append((match.start(1) - 1, box))
        found.sort(key=lambda pair: pair[0])
    return [box for _, box in found]

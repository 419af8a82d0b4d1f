"""AD-FM's fine-grained localization reward: GIoU of Hungarian-matched boxes plus a count term.

The boxes a completion proposes are read from its first ``<think>`` block (AD-FM's stage 1,
"initial spatial analysis") and compared with the sample's ground-truth boxes, both in the
model's input pixels. Constants and edge cases follow the released plugin
(hanawall/AD-FM ``scripts/grpo/plugin_adfm.py``, ``AnomalyLocReward``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from iad_pipeline.answers import boxes_from_text, first_tag
from training.rewards.base import (
    Reward,
    RewardInputError,
    check_bool,
    check_float,
    column,
    optional_column,
    texts,
)

# The plugin's normalisation range: r_loc in [-0.5, 1.0] maps onto [0, 1] (then clipped).
_R_MIN, _R_MAX = -0.5, 1.0
# Coordinates are clamped here so that no area can overflow to infinity; real boxes are pixels.
_COORD_LIMIT = 1e150


def giou_matrix(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> np.ndarray:
    """Generalized IoU of every predicted box (rows) with every ground-truth box (columns).

    ``GIoU = IoU - (|C| - |A u B|) / |C|`` with ``C`` the smallest enclosing box (AD-FM's
    ``C_ij = 1 - GIoU`` of section 3.3). Areas are clamped, ``max(0, x2 - x1) * max(0, y2 - y1)``,
    so an inverted box has area 0; IoU is 0 when the union is 0; GIoU is the IoU when the
    enclosing area is 0 (all as the plugin's ``calculate_generalized_iou``).

    Args:
        pred: ``m`` boxes ``[x1, y1, x2, y2]``.
        gt: ``n`` boxes ``[x1, y1, x2, y2]``.

    Returns:
        An ``(m, n)`` float64 array with values in ``[-1, 1]``.

    Example:
        >>> giou_matrix([[0, 0, 2, 2]], [[0, 0, 2, 2], [1, 1, 3, 3]]).round(4).tolist()
        [[1.0, -0.0794]]
    """
    p = np.clip(np.asarray(pred, dtype=np.float64).reshape(-1, 4), -_COORD_LIMIT, _COORD_LIMIT)
    g = np.clip(np.asarray(gt, dtype=np.float64).reshape(-1, 4), -_COORD_LIMIT, _COORD_LIMIT)
    px1, py1, px2, py2 = (p[:, i, None] for i in range(4))
    gx1, gy1, gx2, gy2 = (g[None, :, i] for i in range(4))
    inter = np.maximum(0.0, np.minimum(px2, gx2) - np.maximum(px1, gx1)) * np.maximum(
        0.0, np.minimum(py2, gy2) - np.maximum(py1, gy1)
    )
    area_p = np.maximum(0.0, px2 - px1) * np.maximum(0.0, py2 - py1)
    area_g = np.maximum(0.0, gx2 - gx1) * np.maximum(0.0, gy2 - gy1)
    union = area_p + area_g - inter
    iou = np.divide(inter, union, out=np.zeros_like(union), where=union > 0)
    enclosing = np.maximum(0.0, np.maximum(px2, gx2) - np.minimum(px1, gx1)) * np.maximum(
        0.0, np.maximum(py2, gy2) - np.minimum(py1, gy1)
    )
    penalty = np.divide(
        enclosing - union, enclosing, out=np.zeros_like(enclosing), where=enclosing > 0
    )
    return iou - penalty


def giou(a: Sequence[float], b: Sequence[float]) -> float:
    """Generalized IoU of two boxes ``[x1, y1, x2, y2]`` (see :func:`giou_matrix`).

    Example:
        >>> giou([0, 0, 1, 1], [0, 0, 1, 1]), giou([0, 0, 1, 1], [2, 0, 3, 1])
        (1.0, -0.3333333333333333)
    """
    return float(giou_matrix([a], [b])[0, 0])


def matched_giou(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> list[float]:
    """Per predicted box, the GIoU with its ground-truth match (0.0 when unmatched).

    The Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on the cost ``-GIoU``
    pairs ``min(m, n)`` boxes so that the summed GIoU is largest; with more predictions than
    ground truth, the extra predictions stay unmatched and contribute 0.0. The plugin keeps the
    matrix in float32; we keep float64, so values may differ in the 8th digit.

    Example:
        >>> pred, gt = [[0, 0, 9, 9], [10, 10, 20, 20]], [[10, 10, 20, 20]]
        >>> [round(v, 4) for v in matched_giou(pred, gt)]
        [0.0, 1.0]
    """
    if len(pred) == 0 or len(gt) == 0:
        return [0.0] * len(pred)
    matrix = giou_matrix(pred, gt)
    rows, cols = linear_sum_assignment(-matrix)
    scores = [0.0] * len(pred)
    for r, c in zip(rows, cols, strict=True):
        scores[int(r)] = float(matrix[r, c])
    return scores


def count_reward(m: int, n: int) -> float:
    """AD-FM's eq. (5): 1 when ``m == n``, 0.5 when they differ by one, else -0.1.

    Example:
        >>> [count_reward(m, 2) for m in (2, 1, 3, 0, 4, 5)]
        [1.0, 0.5, 0.5, -0.1, -0.1, -0.1]
    """
    gap = abs(m - n)
    return 1.0 if gap == 0 else 0.5 if gap == 1 else -0.1


def focus_reward(m: int) -> float:
    """AD-FM's eq. (6) for normal samples: 0 for no box, 0.5 for one, -0.1 for more.

    Example:
        >>> [focus_reward(m) for m in (0, 1, 2, 7)]
        [0.0, 0.5, -0.1, -0.1]
    """
    return 0.0 if m == 0 else 0.5 if m == 1 else -0.1


def localization_score(
    text: str,
    gt_boxes: Sequence[Sequence[float]],
    anomalous: bool,
    *,
    alpha: float = 0.3,
    normalize: bool = True,
) -> float:
    """AD-FM's ``r_loc`` (eq. 4) of one completion, as the released plugin computes it.

    ``m`` boxes are parsed from the first ``<think>`` block (case-insensitive) with AD-FM's
    pattern (:func:`~iad_pipeline.answers.boxes_from_text`, ``strict=True``); ``n`` is the number
    of ground-truth boxes.

    - Normal sample, or no ground-truth box: ``r_focus(m)`` (eq. 6), returned as is: the
      plugin does not normalise it, in either mode.
    - Anomalous with ``m = 0``: 0.0.
    - Otherwise ``r = mean GIoU + alpha * r_count(m, n)`` (eqs. 4, 5), the mean taken over the
      ``m`` *predicted* boxes with unmatched ones at 0 (the plugin's choice; eq. 4 writes the
      mean over the matched pairs). With ``normalize`` (default, the plugin),
      ``clip((r + 0.5) / 1.5, 0, 1)``; without, the raw ``r`` of the paper.

    Args:
        text: the completion text.
        gt_boxes: the sample's ground-truth boxes in the model's input pixels.
        anomalous: whether the sample is anomalous (``solution`` ``"a"``/``"A"``).
        alpha: the weight of the count reward (AD-FM: 0.3).
        normalize: map onto ``[0, 1]`` as the plugin does.

    Returns:
        The reward.

    Example:
        >>> c = "<think>Dent at [10, 10, 50, 50].</think><answer>a</answer>"
        >>> localization_score(c, [[10, 10, 50, 50]], True)
        1.0
        >>> round(localization_score(c, [[10, 10, 50, 50]], True, normalize=False), 6)
        1.3
        >>> localization_score(c, [], False)
        0.5
    """
    think = first_tag(text, "think")
    pred = boxes_from_text(think, strict=True) if think is not None else []
    m, n = len(pred), len(gt_boxes)
    if not anomalous or n == 0:
        return focus_reward(m)
    if m == 0:
        return 0.0
    scores = matched_giou(pred, gt_boxes)
    r = sum(scores) / m + alpha * count_reward(m, n)
    if not normalize:
        return r
    return min(1.0, max(0.0, (r - _R_MIN) / (_R_MAX - _R_MIN)))


def _gt_boxes(value: Any, reward: str) -> list[list[float]]:
    """One row of the ``boxes`` column as a list of finite 4-number boxes."""
    if value is None:
        return []
    try:
        boxes = [[float(v) for v in box] for box in value]
    except (TypeError, ValueError) as exc:
        msg = f"reward {reward!r}: ground-truth boxes {value!r} are not lists of numbers ({exc})"
        raise RewardInputError(msg) from exc
    if any(len(b) != 4 or not all(math.isfinite(v) for v in b) for b in boxes):
        msg = (
            f"reward {reward!r}: ground-truth boxes {value!r}; expected [x1, y1, x2, y2] of "
            "finite numbers per box (an empty list for a normal sample)"
        )
        raise RewardInputError(msg)
    return boxes


@dataclass(frozen=True)
class Localization(Reward):
    """``localization``: :func:`localization_score` per completion (AD-FM).

    Columns: ``boxes`` (ground-truth boxes per row, ``[]`` for a normal sample; required) and
    ``solution`` (``"a"``/``"A"`` marks an anomalous sample, as AD-FM's ``answer``). Without a
    ``solution`` column a row is anomalous when it has boxes. A row whose ``boxes`` value is
    ``None`` gets ``None`` (not applicable, e.g. a multiple-choice row in a mixed batch).

    Args:
        alpha: the weight of the count reward in eq. (4) (AD-FM: 0.3).
        normalize: map the anomalous branch onto ``[0, 1]`` as the plugin does.

    Example:
        >>> r = Localization()
        >>> r(["<think>[0, 0, 10, 10]</think>"] * 2, boxes=[[[0, 0, 10, 10]], []],
        ...   solution=["a", "b"])
        [1.0, 0.5]
    """

    name = "localization"
    alpha: float = 0.3
    normalize: bool = True

    def __post_init__(self) -> None:
        self._set(
            alpha=check_float(self.name, "alpha", self.alpha),
            normalize=check_bool(self.name, "normalize", self.normalize),
        )

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        n = len(completions)
        gts = column(columns, "boxes", n, self.name)
        solutions = optional_column(columns, "solution", n, self.name)
        out: list[float | None] = []
        for text, gt, sol in zip(texts(completions), gts, solutions, strict=True):
            if gt is None:
                out.append(None)
                continue
            boxes = _gt_boxes(gt, self.name)
            anomalous = bool(boxes) if sol is None else str(sol).strip().lower() == "a"
            out.append(
                localization_score(
                    text, boxes, anomalous, alpha=self.alpha, normalize=self.normalize
                )
            )
        return out

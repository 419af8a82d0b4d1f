"""EMIT's 3x3 location rule: which ninths of the image a defect touches, most pixels first.

EMIT (``traindata_gen``, ``get_white_areas``) splits the mask at rows ``h//3`` and
``(2*h)//3`` and columns ``w//3`` and ``(2*w)//3`` (not ``2*(h//3)``), counts the non-zero
pixels of each ninth, and lists the touched ninths by count, descending; ties keep the fixed
order of :data:`REGIONS`. The first is the sample's location label. Any non-zero pixel
counts, so a value of 1 counts like 255. Unlike EMIT, an empty mask is reported (``[]``),
never turned into a normal sample.
"""

from __future__ import annotations

import cv2
import numpy as np

from iad_pipeline.annotate.boxes import foreground

REGIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)


def region_counts(fg: np.ndarray) -> list[int]:
    """Defect pixels per ninth of a 2-D mask, in :data:`REGIONS` order.

    ``fg`` is 2-D; any non-zero pixel counts. With fewer than 3 rows or columns some ninths
    are empty slices and count 0.

    >>> region_counts(np.ones((2, 2), np.uint8))   # rows split at 0 and 1
    [0, 0, 0, 0, 1, 1, 0, 1, 1]
    """
    h, w = fg.shape
    rows = (0, h // 3, (2 * h) // 3, h)
    cols = (0, w // 3, (2 * w) // 3, w)
    counts = []
    for r in range(3):
        for c in range(3):
            part = fg[rows[r] : rows[r + 1], cols[c] : cols[c + 1]]
            # OpenCV crashes on empty arrays; an empty slice has no defect pixel anyway.
            counts.append(cv2.countNonZero(part) if part.size else 0)
    return counts


def regions_from_counts(counts: list[int]) -> list[str]:
    """Touched regions by count, descending; ties in :data:`REGIONS` order (a stable sort).

    >>> regions_from_counts([0, 5, 0, 5, 9, 0, 0, 0, 1])
    ['center', 'top', 'left', 'bottom right']
    """
    order = sorted(range(len(REGIONS)), key=lambda i: -counts[i])
    return [REGIONS[i] for i in order if counts[i] > 0]


def grid_regions(mask: np.ndarray) -> list[str]:
    """The 3x3 regions a mask's defect touches, most defect pixels first (EMIT's rule).

    Args:
        mask: A mask as decoded; any non-zero pixel is a defect (see :func:`binarize`).

    Returns:
        Region names from :data:`REGIONS`; ``[]`` for an empty mask.

    Example:
        >>> m = np.zeros((9, 9), np.uint8)
        >>> m[0:2, 3:6] = 255     # 6 pixels in "top"
        >>> m[4, 0:3] = 1         # 3 pixels in "left"
        >>> m[8, 8] = 7           # 1 pixel in "bottom right"
        >>> grid_regions(m)
        ['top', 'left', 'bottom right']
    """
    return regions_from_counts(region_counts(foreground(mask)))


def grid_label(mask: np.ndarray) -> str | None:
    """The region holding most defect pixels, or ``None`` for an empty mask.

    >>> grid_label(np.eye(9, dtype=np.uint8))   # 3 pixels each on the diagonal: tie
    'top left'
    >>> grid_label(np.zeros((4, 4), np.uint8)) is None
    True
    """
    regions = grid_regions(mask)
    return regions[0] if regions else None

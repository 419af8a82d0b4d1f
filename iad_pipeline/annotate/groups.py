"""Dilation-grouped defect components, exact and fast: the engine behind ``mask_boxes``.

The definition: dilate the defect pixels with ``cv2.getStructuringElement(MORPH_ELLIPSE,
(d, d))`` (``d <= 1``: no dilation), take the 8-connected components of the dilated mask,
and describe each by the tight box and the count of the *original* defect pixels inside it.

Doing exactly that on a 1024x1024 mask costs about 9 ms (dilation plus labelling), twice the
time of decoding the PNG. The same answer comes from three cheaper steps:

1. **XY cut.** Row and column projections split the defect pixels along empty bands wider
   than the dilation can bridge, recursively, into tiles. A pixel spreads ``d // 2`` one way
   and ``d - 1 - d // 2`` the other, so rows a < b can only touch after dilation when
   ``b - a <= max(d, 1)``: pixels of different tiles never share a group.
2. **Components.** Each tile is labelled (8-connected, no dilation). One component is one
   group, whatever the dilation; that is the common case and costs one labelling pass.
3. **Merging.** Components of one tile whose boxes lie within ``d`` pixels are candidate
   pairs; each pair is tested exactly by dilating the two components inside the small window
   where they could meet (8-adjacent or overlapping after dilation), and union-find joins
   them. Unusual tiles (very many components or candidate pairs, or windows as large as the
   tile) fall back to dilating and labelling the whole tile crop.

The tests compare every path against the plain full-image definition on random masks.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from iad_pipeline.settings import AnnotationSettings

# (x1, y1, x2, y2, area): a group's tight box over its original pixels (x2, y2 exclusive)
# and the number of those pixels.
Group = tuple[int, int, int, int, int]
Tile = tuple[int, int, int, int]  # y0, y1, x0, x1 (exclusive ends)

# Above these, pairwise merging costs more than dilating the tile crop once.
MAX_COMPONENTS = 64
MAX_PAIRS = 32
# ... and when the pair windows add up to more than this share of the tile.
WINDOW_SHARE = 0.5
# Up to this many components, per-label boxes come from one compare and boundingRect each;
# beyond, from one labelling pass with statistics.
LOOP_COMPONENTS = 8
_ADJACENT = np.ones((3, 3), np.uint8)


@functools.lru_cache(maxsize=16)
def kernel(dilate_px: int) -> np.ndarray | None:
    """The elliptical dilation kernel, or ``None`` for no dilation (``dilate_px <= 1``).

    >>> kernel(3).tolist()
    [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    >>> kernel(1) is None and kernel(0) is None   # 1x1 is the identity, 0x0 is invalid
    True
    """
    if dilate_px <= 1:
        return None
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilate_px, dilate_px))


def _split(proj: np.ndarray, gap: int) -> tuple[int, int, list[tuple[int, int]]]:
    """First and last+1 non-zero index of a projection, and its runs split at gaps > gap."""
    idx = np.flatnonzero(proj)
    if idx.size == 0:
        return 0, 0, []
    cuts = np.flatnonzero(np.diff(idx) > gap)
    starts = idx[np.concatenate(([0], cuts + 1))].tolist()
    stops = (idx[np.concatenate((cuts, [idx.size - 1]))] + 1).tolist()
    return int(idx[0]), int(idx[-1]) + 1, list(zip(starts, stops, strict=True))


def tiles(fg: np.ndarray, gap: int) -> list[Tile]:
    """Tight boxes of the defect pixel sets that empty bands wider than ``gap`` separate.

    >>> fg = np.zeros((10, 10), np.uint8); fg[0, 0] = fg[0, 9] = fg[9, 0] = 1
    >>> sorted(tiles(fg, gap=3))
    [(0, 1, 0, 1), (0, 1, 9, 10), (9, 10, 0, 1)]
    """
    found: list[Tile] = []
    stack = [(0, fg.shape[0], 0, fg.shape[1])]
    while stack:
        y0, y1, x0, x1 = stack.pop()
        sub = fg[y0:y1, x0:x1]
        r0, r1, row_runs = _split(sub.max(axis=1), gap)
        if not row_runs:
            continue
        if len(row_runs) > 1:
            stack.extend((y0 + a, y0 + b, x0, x1) for a, b in row_runs)
            continue
        c0, c1, col_runs = _split(sub[r0:r1].max(axis=0), gap)
        if len(col_runs) > 1:
            stack.extend((y0 + r0, y0 + r1, x0 + a, x0 + b) for a, b in col_runs)
        else:
            found.append((y0 + r0, y0 + r1, x0 + c0, x0 + c1))
    return found


def _components(
    sub: np.ndarray, labels: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, and per component 1..n-1 its box ``[x1, y1, x2, y2]`` (tile pixels) and area."""
    if n - 1 <= LOOP_COMPONENTS:
        boxes, areas = [], []
        for k in range(1, n):
            member = np.equal(labels, k).view(np.uint8)
            x, y, w, h = cv2.boundingRect(member)
            boxes.append((x, y, x + w, y + h))
            areas.append(cv2.countNonZero(member))
        return labels, np.array(boxes, np.int64), np.array(areas, np.int64)
    labels, stats = _stats_labelling(sub)
    st = stats[1:].astype(np.int64)
    boxes = np.stack([st[:, 0], st[:, 1], st[:, 0] + st[:, 2], st[:, 1] + st[:, 3]], axis=1)
    return labels, boxes, st[:, 4]


def _stats_labelling(sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and statistics in one pass (same components, possibly other numbers).

    OpenCV's default algorithm computes statistics about three times slower than Grana's.
    """
    _, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        sub, 8, cv2.CV_32S, cv2.CCL_GRANA
    )
    return labels, stats


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _touch(
    labels: np.ndarray,
    tile: Tile,
    shape: tuple[int, ...],
    pair: tuple[int, int],
    boxes: np.ndarray,
    d: int,
) -> bool:
    """Whether components ``pair`` (0-based) of a tile touch after dilation (exact)."""
    i, j = pair
    y0, _, x0, _ = tile
    # Touching pixels lie within d of each other: both sit in the overlap of the boxes
    # grown by d + 1, and their dilations stay within d of that overlap.
    lo = np.maximum(boxes[i, :2], boxes[j, :2]) - (d + 1)
    hi = np.minimum(boxes[i, 2:], boxes[j, 2:]) + (d + 1)
    wx0, wy0 = max(int(lo[0]) - d + x0, 0), max(int(lo[1]) - d + y0, 0)
    wx1, wy1 = min(int(hi[0]) + d + x0, shape[1]), min(int(hi[1]) + d + y0, shape[0])
    th, tw = labels.shape
    sx0, sy0 = max(wx0 - x0, 0), max(wy0 - y0, 0)  # the window's part inside the tile
    sx1, sy1 = min(wx1 - x0, tw), min(wy1 - y0, th)
    if sx1 <= sx0 or sy1 <= sy0:
        return False
    part = labels[sy0:sy1, sx0:sx1]
    k = kernel(d)
    grown = []
    for label in (i + 1, j + 1):
        window = np.zeros((wy1 - wy0, wx1 - wx0), np.uint8)
        window[sy0 + y0 - wy0 : sy1 + y0 - wy0, sx0 + x0 - wx0 : sx1 + x0 - wx0] = part == label
        grown.append(cv2.dilate(window, k))
    near = cv2.dilate(grown[0], _ADJACENT)
    return cv2.countNonZero(cv2.bitwise_and(near, grown[1])) > 0


def _merge_pairwise(
    fg: np.ndarray, tile: Tile, labels: np.ndarray, boxes: np.ndarray, d: int
) -> list[int] | None:
    """Group index of each component via exact pair tests, or None when a crop is cheaper."""
    m = len(boxes)
    gap_x = np.maximum(boxes[:, None, 0] - boxes[None, :, 2], boxes[None, :, 0] - boxes[:, None, 2])
    gap_y = np.maximum(boxes[:, None, 1] - boxes[None, :, 3], boxes[None, :, 1] - boxes[:, None, 3])
    near = np.triu((gap_x < d + 1) & (gap_y < d + 1), k=1)
    pairs = np.argwhere(near)
    if len(pairs) > MAX_PAIRS:
        return None
    lo = np.maximum(boxes[pairs[:, 0], :2], boxes[pairs[:, 1], :2])
    hi = np.minimum(boxes[pairs[:, 0], 2:], boxes[pairs[:, 1], 2:])
    windows = np.prod(np.maximum(hi - lo, 0) + 4 * d + 2, axis=1).sum()
    if windows > WINDOW_SHARE * labels.size:
        return None
    parent = list(range(m))
    for i, j in pairs.tolist():
        ri, rj = _find(parent, i), _find(parent, j)
        if ri != rj and _touch(labels, tile, fg.shape, (i, j), boxes, d):
            parent[rj] = ri
    return [_find(parent, i) for i in range(m)]


def _merge_by_crop(
    fg: np.ndarray, tile: Tile, labels: np.ndarray, boxes: np.ndarray, d: int
) -> list[int]:
    """Group index of each component from labelling the dilated tile crop."""
    y0, y1, x0, x1 = tile
    h, w = fg.shape
    cy0, cx0 = max(0, y0 - d), max(0, x0 - d)
    # The crop reaches as far as the kernel does; other tiles lie farther away.
    crop = fg[cy0 : min(h, y1 + d), cx0 : min(w, x1 + d)]
    _, grouped = cv2.connectedComponents(cv2.dilate(crop, kernel(d)), connectivity=8)
    out = []
    for k, (bx1, by1, bx2, _) in enumerate(boxes.tolist(), start=1):
        # The component has a pixel in its box's first row: any of them gives its group.
        x = bx1 + int(np.argmax(labels[by1, bx1:bx2] == k))
        out.append(int(grouped[by1 + y0 - cy0, x + x0 - cx0]))
    return out


def _tile_groups(fg: np.ndarray, tile: Tile, dilate_px: int) -> list[Group]:
    y0, y1, x0, x1 = tile
    sub = fg[y0:y1, x0:x1]
    n, labels = cv2.connectedComponents(sub, connectivity=8)
    if n == 2:  # background + one component: one group, whatever the dilation
        return [(x0, y0, x1, y1, cv2.countNonZero(sub))]
    labels, boxes, areas = _components(sub, labels, n)
    if kernel(dilate_px) is None:
        group = list(range(n - 1))
    else:
        group = None
        if n - 1 <= MAX_COMPONENTS:
            group = _merge_pairwise(fg, tile, labels, boxes, dilate_px)
        if group is None:
            group = _merge_by_crop(fg, tile, labels, boxes, dilate_px)
    merged: dict[int, list[int]] = {}
    for g, (bx1, by1, bx2, by2), area in zip(group, boxes.tolist(), areas.tolist(), strict=True):
        acc = merged.get(g)
        if acc is None:
            merged[g] = [bx1, by1, bx2, by2, area]
        else:
            acc[0], acc[1] = min(acc[0], bx1), min(acc[1], by1)
            acc[2], acc[3] = max(acc[2], bx2), max(acc[3], by2)
            acc[4] += area
    return [(a + x0, b + y0, c + x0, e + y0, s) for a, b, c, e, s in merged.values()]


def defect_groups(fg: np.ndarray, dilate_px: int = AnnotationSettings.dilate_px) -> list[Group]:
    """Every group of a binarised mask as ``(x1, y1, x2, y2, area)``, sorted by (y1, x1).

    ``fg`` is a 2-D uint8 array whose non-zero pixels are defects (see ``binarize``);
    ``area`` counts the group's original defect pixels. No area filter is applied.

    >>> fg = np.zeros((8, 8), np.uint8); fg[1, 1] = fg[1, 3] = fg[6, 6] = 1
    >>> defect_groups(fg, dilate_px=3)
    [(1, 1, 4, 2, 2), (6, 6, 7, 7, 1)]
    """
    if fg.size == 0:
        return []
    gap = max(dilate_px, 1)
    groups = [g for t in tiles(fg, gap) for g in _tile_groups(fg, t, dilate_px)]
    groups.sort(key=lambda g: (g[1], g[0], g[3], g[2]))
    return groups

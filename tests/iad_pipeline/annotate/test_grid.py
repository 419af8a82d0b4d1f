"""EMIT's 3x3 rule: hand cases, and on random masks a reference that states the rule per
pixel (comparisons with the third lines), not as the implementation's slice bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iad_pipeline.annotate import REGIONS, grid_label, grid_regions

NAMES = [
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
]


def band(i: int, n: int) -> int:
    """Which third (0, 1, 2) of ``n`` rows holds row ``i``, by comparing with the third lines.

    EMIT cuts at ``n//3`` and ``(2*n)//3``. Stated per row instead of as slice bounds: row
    ``i`` lies wholly above the line at ``n/3`` when its lower edge ``i + 1`` is at most
    ``n/3`` (``3 * (i + 1) <= n``), wholly above ``2n/3`` when ``3 * (i + 1) <= 2 * n``; a row
    the line cuts through falls below it (11 rows: row 3 spans 3..4 and ``11/3`` is 3.67,
    so it is a middle row).
    """
    if 3 * (i + 1) <= n:
        return 0
    if 3 * (i + 1) <= 2 * n:
        return 1
    return 2


def reference(mask: np.ndarray) -> list[str]:
    """The rule stated pixel by pixel: each defect pixel votes for its ninth; most votes first,
    ties in reading order (top left to bottom right)."""
    m = np.asarray(mask)
    h, w = m.shape[:2]
    votes = [0] * 9
    for y in range(h):
        for x in range(w):
            if np.any(m[y, x]):
                votes[3 * band(y, h) + band(x, w)] += 1
    ranked = sorted((-votes[k], k) for k in range(9) if votes[k])
    return [NAMES[k] for _, k in ranked]


# band(i, n) by hand: the rows of each third for a few heights (n//3 and (2*n)//3 cuts)
BANDS = [
    (1, [2]),  # cuts at 0 and 0: the only row is below both
    (2, [1, 2]),  # cuts at 0 and 1
    (3, [0, 1, 2]),
    (7, [0, 0, 1, 1, 2, 2, 2]),  # cuts at 2 and 4
    (10, [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]),  # cuts at 3 and 6
    (11, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]),  # cuts at 3 and 7 (not 2 * 3 = 6)
]


@pytest.mark.parametrize(("n", "bands"), BANDS, ids=[str(n) for n, _ in BANDS])
def test_reference_bands_by_hand(n: int, bands: list[int]) -> None:
    assert [band(i, n) for i in range(n)] == bands


def test_regions_constant_is_emits_order() -> None:
    assert tuple(NAMES) == REGIONS


def mask_with(h: int, w: int, pixels: list[tuple[int, int]], value: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    for y, x in pixels:
        m[y, x] = value
    return m


# name -> mask, expected regions (worked out by hand)
CASES = [
    ("empty", np.zeros((9, 9), np.uint8), []),
    # 9x9: splits at 3 and 6; one pixel in the middle ninth.
    ("center_only", mask_with(9, 9, [(4, 4)]), ["center"]),
    # Equal counts in top (0, 4) and left (4, 0): the fixed order puts top first.
    ("tie_top_left", mask_with(9, 9, [(0, 4), (4, 0)]), ["top", "left"]),
    # Equal counts in bottom right and top left: top left first.
    ("tie_corners", mask_with(9, 9, [(8, 8), (0, 0)]), ["top left", "bottom right"]),
    # More pixels win over the fixed order: 2 in bottom, 1 in top left.
    ("count_beats_order", mask_with(9, 9, [(8, 4), (7, 4), (0, 0)]), ["bottom", "top left"]),
    # Every ninth touched once: all nine, in the fixed order.
    ("all_nine", mask_with(9, 9, [(y, x) for y in (0, 4, 8) for x in (0, 4, 8)]), NAMES),
    # Value 1 counts like 255 (any non-zero pixel).
    ("value_one", mask_with(9, 9, [(8, 0)], value=1), ["bottom left"]),
    # 10 rows: splits at 10//3 = 3 and 20//3 = 6 (not 2*(10//3) = 6: same here) ...
    ("h10_row6", mask_with(10, 9, [(6, 4)]), ["bottom"]),
    # ... 11 rows: 11//3 = 3, 22//3 = 7, whereas 2*(11//3) = 6: row 6 is still middle.
    ("h11_row6_is_middle", mask_with(11, 9, [(6, 4)]), ["center"]),
    # 7x5 (h=7, w=5): rows split at 2, 4; columns at 1, 3. Pixel (4, 3) -> bottom right.
    ("odd_7x5", mask_with(7, 5, [(4, 3)]), ["bottom right"]),
    # 1xN: rows split at 0 and 0, so the only row is the bottom third.
    ("one_row", np.full((1, 9), 255, np.uint8), ["bottom left", "bottom", "bottom right"]),
    # Nx1: likewise the only column is the right third.
    ("one_col", np.full((9, 1), 255, np.uint8), ["top right", "right", "bottom right"]),
    # 2x2: splits at 0 and 1: the top row and left column are empty slices.
    ("two_by_two", np.ones((2, 2), np.uint8), ["center", "right", "bottom", "bottom right"]),
]


@pytest.mark.parametrize(("mask", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_grid_regions_hand_cases(mask: np.ndarray, expected: list[str]) -> None:
    assert grid_regions(mask) == expected
    assert reference(mask) == expected
    assert grid_label(mask) == (expected[0] if expected else None)


def test_rgb_mask_counts_any_channel() -> None:
    m = np.zeros((9, 9, 3), np.uint8)
    m[0, 8] = (0, 0, 1)
    assert grid_regions(m) == ["top right"]


def test_zero_sized_mask() -> None:
    assert grid_regions(np.zeros((0, 4), np.uint8)) == []
    assert grid_label(np.zeros((3, 0), np.uint8)) is None


@st.composite
def masks(draw: st.DrawFn) -> np.ndarray:
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    # Few distinct values and sparse pixels, so ties between ninths are frequent.
    elements = st.sampled_from([0, 0, 0, 0, 0, 0, 1, 255])
    return draw(hnp.arrays(np.uint8, (h, w), elements=elements))


@settings(max_examples=400, deadline=None)
@given(mask=masks())
def test_grid_regions_match_reference(mask: np.ndarray) -> None:
    assert grid_regions(mask) == reference(mask)


@settings(max_examples=100, deadline=None)
@given(
    counts=st.lists(st.integers(0, 3), min_size=9, max_size=9),
    scale=st.integers(1, 4),
)
def test_ties_keep_fixed_order(counts: list[int], scale: int) -> None:
    # A 9s x 9s mask (s = scale) with counts[k] pixels in ninth k: every split at a multiple
    # of 3s, so the ninths are exactly the 3s x 3s blocks.
    s = 3 * scale
    m = np.zeros((3 * s, 3 * s), np.uint8)
    for k, n in enumerate(counts):
        r, c = divmod(k, 3)
        for i in range(n):
            m[r * s + i // s, c * s + i % s] = 1
    # most pixels first; equal counts in reading order (the smaller ninth index)
    expected = [NAMES[k] for _, k in sorted((-n, k) for k, n in enumerate(counts) if n)]
    assert grid_regions(m) == expected

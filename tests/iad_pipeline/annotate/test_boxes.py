"""Defect boxes: hand-made masks with known answers, mask decoding, and the fast grouping
checked against the plain full-image definition."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iad_pipeline.annotate import MaskError, binarize, mask_boxes, read_mask
from iad_pipeline.annotate import groups as groups_mod
from iad_pipeline.annotate.groups import defect_groups
from iad_pipeline.errors import IadError


def canvas(h: int = 64, w: int = 64) -> np.ndarray:
    return np.zeros((h, w), np.uint8)


def blobs(*rects: tuple[int, int, int, int], h: int = 64, w: int = 64, value: int = 255):
    """A mask with filled rectangles (x1, y1, x2, y2), ends exclusive."""
    m = canvas(h, w)
    for x1, y1, x2, y2 in rects:
        m[y1:y2, x1:x2] = value
    return m


# name -> mask, kwargs, expected boxes (worked out by hand beside each case)
CASES = [
    # 3x3 squares with columns 8..16 empty between them: columns 7 and 17 are 10 apart,
    # within reach of a 15 px ellipse (7 px each way), so they merge; the box stays tight.
    ("near_blobs_merge", blobs((5, 5, 8, 8), (17, 5, 20, 8)), {}, [[5, 5, 20, 8]]),
    # 30 px apart: two groups, sorted by (y1, x1).
    (
        "far_blobs_split",
        blobs((40, 5, 43, 8), (5, 40, 8, 43)),
        {},
        [[40, 5, 43, 8], [5, 40, 8, 43]],
    ),
    # Same two near squares without dilation: two 8-connected components.
    (
        "near_blobs_no_dilation",
        blobs((5, 5, 8, 8), (17, 5, 20, 8)),
        {"dilate_px": 0},
        [[5, 5, 8, 8], [17, 5, 20, 8]],
    ),
    # Diagonal neighbours are 8-connected: one group even without dilation.
    (
        "diagonal_touch",
        blobs((5, 5, 6, 6), (6, 6, 7, 7)),
        {"dilate_px": 0, "min_area_px": 1},
        [[5, 5, 7, 7]],
    ),
    # A single-pixel speck: 1 original pixel < min_area_px=4, dropped ...
    ("speck_dropped", blobs((30, 30, 31, 31)), {}, []),
    # ... and kept with min_area_px=1, as a 1x1 box [x, y, x+1, y+1].
    ("speck_kept", blobs((30, 30, 31, 31)), {"min_area_px": 1}, [[30, 30, 31, 31]]),
    # A 2x2 blob has exactly 4 pixels: kept at min_area_px=4, dropped at 5.
    ("area_boundary_kept", blobs((10, 10, 12, 12)), {"min_area_px": 4}, [[10, 10, 12, 12]]),
    ("area_boundary_dropped", blobs((10, 10, 12, 12)), {"min_area_px": 5}, []),
    # The speck next to a blob is merged into the blob's group and widens its box.
    ("speck_merged_into_blob", blobs((10, 10, 14, 14), (20, 12, 21, 13)), {}, [[10, 10, 21, 14]]),
    # Touching the image border: boxes end at the image size (x2 == w, y2 == h).
    ("border", blobs((0, 0, 3, 2), (60, 58, 64, 64)), {}, [[0, 0, 3, 2], [60, 58, 64, 64]]),
    # A 1-pixel-wide vertical line: x2 = x1 + 1 (exclusive end), y2 = last row + 1.
    ("thin_line", blobs((20, 3, 21, 50)), {}, [[20, 3, 21, 50]]),
    # Index-valued mask (VisA): values 1 and 2 are both defects.
    (
        "index_values",
        blobs((2, 2, 6, 6), value=1) + blobs((50, 50, 54, 54), value=2),
        {},
        [[2, 2, 6, 6], [50, 50, 54, 54]],
    ),
    # Empty mask: no boxes.
    ("empty", canvas(), {}, []),
    # Full mask: one box covering the image.
    ("full", np.full((9, 7), 255, np.uint8), {}, [[0, 0, 7, 9]]),
]


@pytest.mark.parametrize(
    ("mask", "kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_mask_boxes_hand_cases(mask: np.ndarray, kwargs: dict, expected: list) -> None:
    assert mask_boxes(mask, **kwargs) == expected


def test_dilation_radius_decides_merging() -> None:
    # Squares 10 px apart (x=7 last pixel, x=18 first): rows touch after dilation iff
    # 18 - 7 = 11 <= d, so 11 merges and 10 does not.
    m = blobs((4, 4, 8, 8), (18, 4, 22, 8))
    assert mask_boxes(m, dilate_px=11) == [[4, 4, 22, 8]]
    assert mask_boxes(m, dilate_px=10) == [[4, 4, 8, 8], [18, 4, 22, 8]]


def test_rgb_mask_any_channel() -> None:
    m = np.zeros((32, 32, 3), np.uint8)
    m[2:5, 2:5, 2] = 255  # red only (BGR)
    m[20:24, 20:24, 0] = 1  # blue = 1 only: a gray conversion would round it to 0
    assert mask_boxes(m) == [[2, 2, 5, 5], [20, 20, 24, 24]]


def test_bool_and_uint16_masks() -> None:
    m = np.zeros((20, 20), bool)
    m[3:6, 4:8] = True
    assert mask_boxes(m) == [[4, 3, 8, 6]]
    assert mask_boxes(m.astype(np.uint16) * 1000) == [[4, 3, 8, 6]]


# dtype / array -> binarised values
BINARIZE_CASES = [
    ("uint8_255", np.array([[0, 255]], np.uint8), [[0, 1]]),
    ("loco_values", np.array([[37, 0, 74]], np.uint8), [[1, 0, 1]]),
    ("uint16_one", np.array([[1, 0]], np.uint16), [[1, 0]]),
    ("int32_negative", np.array([[-3, 0]], np.int32), [[1, 0]]),
    ("bool", np.array([[True, False]]), [[1, 0]]),
    ("float_small", np.array([[0.0, 0.25]]), [[0, 1]]),
    ("single_channel_3d", np.array([[[0], [9]]], np.uint8), [[0, 1]]),
    # BGRA: alpha (last channel) ignored, an opaque background stays background.
    ("bgra_opaque", np.array([[[0, 0, 0, 255], [0, 0, 5, 255]]], np.uint8), [[0, 1]]),
    # gray + alpha
    ("ga", np.array([[[0, 255], [3, 255]]], np.uint8), [[0, 1]]),
]


@pytest.mark.parametrize(
    ("arr", "expected"), [c[1:] for c in BINARIZE_CASES], ids=[c[0] for c in BINARIZE_CASES]
)
def test_binarize(arr: np.ndarray, expected: list) -> None:
    out = binarize(arr)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous
    assert out.tolist() == expected


@pytest.mark.parametrize(
    "bad", [np.array([["a"]]), np.zeros(5, np.uint8), np.zeros((2, 2, 2, 2), np.uint8)]
)
def test_binarize_rejects(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected"):
        binarize(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dilate_px": -1}, "dilate_px must be an integer >= 0"),
        ({"min_area_px": -2}, "min_area_px must be an integer >= 0"),
        ({"dilate_px": 2.5}, "dilate_px"),
        ({"dilate_px": True}, "dilate_px"),
    ],
)
def test_mask_boxes_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mask_boxes(canvas(), **kwargs)


@pytest.mark.parametrize("d", [2, 3, 4, 15, 16])
def test_even_and_odd_kernels_work(d: int) -> None:
    assert mask_boxes(blobs((10, 10, 13, 13)), dilate_px=d) == [[10, 10, 13, 13]]


def test_empty_and_degenerate_shapes() -> None:
    assert mask_boxes(np.zeros((0, 5), np.uint8)) == []
    assert mask_boxes(np.ones((1, 1), np.uint8), min_area_px=1) == [[0, 0, 1, 1]]


# ---- reading mask files ----------------------------------------------------------------


def write(path: Path, arr: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), arr)
    return path


def test_read_mask_ors_loco_region_files(tmp_path: Path) -> None:
    # MVTec LOCO: one file per region, region values 37 and 74 instead of 255.
    a = write(tmp_path / "000.png", blobs((2, 2, 6, 6), value=37, h=32, w=32))
    b = write(tmp_path / "001.png", blobs((20, 20, 25, 25), value=74, h=32, w=32))
    union = read_mask([a, b])
    assert union.dtype == np.uint8 and set(np.unique(union)) == {0, 1}
    assert int(union.sum()) == 16 + 25
    assert mask_boxes(union) == [[2, 2, 6, 6], [20, 20, 25, 25]]


def test_read_mask_keeps_16_bit_and_rgb(tmp_path: Path) -> None:
    deep = write(tmp_path / "deep.png", blobs((1, 1, 3, 3), value=1, h=8, w=8).astype(np.uint16))
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[5, 5] = (0, 1, 0)
    colour = write(tmp_path / "rgb.png", rgb)
    assert int(read_mask(deep).sum()) == 4  # value 1 in 16 bits still counts
    assert int(read_mask([colour]).sum()) == 1


def test_read_mask_unreadable_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(MaskError, match=r"broken\.png") as info:
        read_mask([bad])
    assert isinstance(info.value, IadError)
    with pytest.raises(MaskError, match="does not exist"):
        read_mask([tmp_path / "missing.png"])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(MaskError, match="empty"):
        read_mask(empty)


def test_read_mask_size_mismatch_names_both_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.png", canvas(16, 16))
    b = write(tmp_path / "b.png", canvas(16, 20))
    with pytest.raises(MaskError, match=r"b.png: mask is 20x16 but .*a.png is 16x16"):
        read_mask([a, b])


def test_read_mask_needs_a_path() -> None:
    with pytest.raises(ValueError, match="at least one"):
        read_mask([])


# ---- the fast grouping equals the plain definition ---------------------------------------


def reference_groups(fg: np.ndarray, d: int) -> list[tuple[int, ...]]:
    """Straight from the definition: dilate the whole mask, label, box original pixels."""
    dilated = cv2.dilate(fg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))) if d else fg
    n, labels = cv2.connectedComponents(dilated, connectivity=8)
    out = []
    for k in range(1, n):
        ys, xs = np.nonzero((labels == k) & (fg > 0))
        if ys.size:
            out.append(
                (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, int(ys.size))
            )
    return sorted(out, key=lambda g: (g[1], g[0], g[3], g[2]))


def random_mask(seed: int, h: int, w: int, density: float, shapes: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fg = (rng.random((h, w)) < density).astype(np.uint8)
    for _ in range(shapes):  # lines and blobs make components of many sizes and shapes
        p = rng.integers(0, max(h, w), 4).tolist()
        if rng.random() < 0.5:
            cv2.line(fg, (p[0], p[1]), (p[2], p[3]), 1, int(rng.integers(1, 4)))
        else:
            cv2.circle(fg, (p[0], p[1]), int(rng.integers(1, 12)), 1, -1)
    return fg


MASKS = st.builds(
    random_mask,
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 120),
    w=st.integers(1, 120),
    density=st.sampled_from([0.0, 0.0005, 0.003, 0.02, 0.1]),
    shapes=st.integers(0, 6),
)


@settings(max_examples=300, deadline=None)
@given(fg=MASKS, d=st.integers(0, 24))
def test_fast_grouping_equals_definition(fg: np.ndarray, d: int) -> None:
    assert defect_groups(fg, d) == reference_groups(fg, d)


PATHS = [
    # name, limits forcing the path, the function that path must call
    ("crop", {"MAX_PAIRS": -1}, "_merge_by_crop"),
    ("many_components", {"MAX_COMPONENTS": 0}, "_merge_by_crop"),
    ("stats", {"LOOP_COMPONENTS": 0}, "_stats_labelling"),
    (
        "pairwise_only",
        {"MAX_PAIRS": 10**6, "MAX_COMPONENTS": 200, "WINDOW_SHARE": float("inf")},
        "_touch",
    ),
]


@pytest.mark.parametrize(("limits", "spied"), [p[1:] for p in PATHS], ids=[p[0] for p in PATHS])
def test_every_grouping_path_equals_definition(monkeypatch, limits: dict, spied: str) -> None:
    for name, value in limits.items():
        monkeypatch.setattr(groups_mod, name, value)
    calls = []
    real = getattr(groups_mod, spied)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(groups_mod, spied, spy)
    for seed in range(60):
        rng = np.random.default_rng(seed)
        h, w = (int(v) for v in rng.integers(8, 160, 2))
        fg = random_mask(seed, h, w, float(rng.choice([0.001, 0.01, 0.05])), 5)
        d = int(rng.integers(0, 30))
        assert defect_groups(fg, d) == reference_groups(fg, d), (seed, d)
    assert calls, f"{spied} never ran: the limits did not force its path"


@pytest.mark.slow
def test_grouping_on_large_masks_equals_definition() -> None:
    for seed in range(6):
        fg = random_mask(seed, 1024, 1024, 0.00002, 8)
        assert defect_groups(fg, 15) == reference_groups(fg, 15)


def test_ellipse_kernels_contain_their_anchor() -> None:
    # The tiling and the tests assume dilation never removes an original pixel.
    for d in range(2, 65):
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))
        assert k[d // 2, d // 2] == 1, d


def test_foreground_uses_8_bit_masks_as_decoded() -> None:
    from iad_pipeline.annotate.boxes import foreground

    m = np.array([[0, 37], [74, 0]], np.uint8)
    assert foreground(m) is m  # no copy: OpenCV treats any non-zero value as foreground
    assert foreground(m.astype(np.uint16)).tolist() == [[0, 1], [1, 0]]
    assert defect_groups(m, 3) == defect_groups(binarize(m), 3)

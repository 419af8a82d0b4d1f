"""Coordinates: Qwen2-VL's resize rule by hand, scaling, clamping and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iad_pipeline.annotate import (
    from_norm1000,
    smart_resize,
    to_model_space,
    to_norm1000,
    to_original_space,
)

# (height, width, kwargs) -> (h, w), worked out by hand with factor 28,
# min_pixels 3136 (56*56) and max_pixels 1_003_520 (28*28*1280) unless given.
RESIZE_CASES = [
    # round(1024/28) = round(36.57) = 37 -> 1036; 1036^2 = 1_073_296 > max, so
    # beta = sqrt(1024^2 / 1_003_520) = 1.02220, 1024 / beta = 1001.76,
    # floor(1001.76 / 28) = 35 -> 980. (1008 = 36*28 would give 1_016_064 > max.)
    ("mvtec_1024", 1024, 1024, {}, (980, 980)),
    # 448 = 16*28 exactly; 448^2 = 200_704 within bounds: unchanged.
    ("exact_multiple", 448, 448, {}, (448, 448)),
    # 700/28 = 25 -> 700; 900/28 = 32.14 -> 32*28 = 896; 627_200 within bounds.
    ("rounding", 700, 900, {}, (700, 896)),
    # 42/28 = 1.5: Python's round goes to the even 2 -> 56; 70/28 = 2.5 -> 2 -> 56.
    # 56*56 = 3136 is not below min_pixels: kept.
    ("banker_rounding", 42, 70, {}, (56, 56)),
    # 20x30 -> 28x28 = 784 < 3136: beta = sqrt(3136/600) = 2.2862;
    # ceil(45.72/28) = 2 -> 56, ceil(68.59/28) = 3 -> 84.
    ("upscale", 20, 30, {}, (56, 84)),
    # VisA 1500x1000 (h=1000, w=1500): 36*28 = 1008 and round(53.57)=54 -> 1512;
    # 1008*1512 = 1_524_096 > max: beta = sqrt(1_500_000/1_003_520) = 1.22262;
    # 1000/beta = 817.9 -> floor(29.21) = 29 -> 812; 1500/beta = 1226.9 -> 43 -> 1204.
    ("visa_1500x1000", 1000, 1500, {}, (812, 1204)),
    # A larger budget: MVTec 1024 fits 1036x1036 = 1_073_296 <= 12_845_056.
    ("processor_default_max", 1024, 1024, {"max_pixels": 12_845_056}, (1036, 1036)),
    # Aspect ratio exactly 200 is allowed: 28x5600 = 156_800 within bounds.
    ("ratio_200", 28, 5600, {}, (28, 5600)),
]


@pytest.mark.parametrize(
    ("h", "w", "kwargs", "expected"),
    [c[1:] for c in RESIZE_CASES],
    ids=[c[0] for c in RESIZE_CASES],
)
def test_smart_resize_hand_cases(h: int, w: int, kwargs: dict, expected: tuple) -> None:
    assert smart_resize(h, w, **kwargs) == expected


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((10, 2001), "aspect ratio"),
        ((0, 10), "height must be a positive integer"),
        ((10, -1), "width must be a positive integer"),
        ((10.0, 10), "height"),
    ],
)
def test_smart_resize_rejects(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        smart_resize(*args)


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 4000), w=st.integers(1, 4000))
def test_smart_resize_invariants(h: int, w: int) -> None:
    if max(h, w) / min(h, w) > 200:
        return
    rh, rw = smart_resize(h, w)
    assert rh % 28 == 0 and rw % 28 == 0
    assert rh >= 28 and rw >= 28
    assert rh * rw <= 28 * 28 * 1280


# boxes, orig (h, w), model (h, w) -> model-space boxes (by hand)
MODEL_CASES = [
    # 1024 -> 980: factor 0.957; 100 -> 95.7 -> 96; 200 -> 191.4 -> 191; 300 -> 287.1 -> 287.
    ("downscale", [[100, 200, 300, 300]], (1024, 1024), (980, 980), [[96, 191, 287, 287]]),
    # Non-square: x by 1204/1500 = 0.80267, y by 812/1000 = 0.812.
    # x 750 -> 602.0, 1500 -> 1204; y 500 -> 406, 1000 -> 812.
    ("non_square", [[750, 500, 1500, 1000]], (1000, 1500), (812, 1204), [[602, 406, 1204, 812]]),
    # Out of bounds coordinates are clamped into the target image.
    ("clamp", [[-10, -5, 2000, 1100]], (1000, 1000), (500, 500), [[0, 0, 500, 500]]),
    # A 1-pixel box shrunk by 10: 0.1 px wide rounds to nothing, widened to 1 px.
    ("keep_width", [[55, 55, 56, 56]], (1000, 1000), (100, 100), [[6, 6, 7, 7]]),
    # ... at the far border it grows inwards instead.
    ("keep_width_border", [[999, 999, 1000, 1000]], (1000, 1000), (100, 100), [[99, 99, 100, 100]]),
    # A zero-width input box stays zero-width.
    ("zero_width", [[10, 10, 10, 20]], (100, 100), (200, 200), [[20, 20, 20, 40]]),
    # Float inputs (model answers) are accepted; 2.5 rounds half up to 3.
    ("floats", [[0.5, 1.25, 10.0, 20.0]], (100, 100), (500, 500), [[3, 6, 50, 100]]),
    ("empty", [], (10, 10), (20, 20), []),
]


@pytest.mark.parametrize(
    ("boxes", "orig", "model", "expected"),
    [c[1:] for c in MODEL_CASES],
    ids=[c[0] for c in MODEL_CASES],
)
def test_to_model_space_hand_cases(boxes, orig, model, expected) -> None:
    assert to_model_space(boxes, orig, model) == expected


def test_to_original_space_is_vlm_r1_rescaling() -> None:
    # VLM-R1: x * W / (grid_w * 14), with grid_w * 14 = 980 for a 1024-wide image.
    # 490 * 1024 / 980 = 512; 245 -> 256; 980 -> 1024.
    assert to_original_space([[490, 245, 980, 980]], (1024, 1024), (980, 980)) == [
        [512, 256, 1024, 1024]
    ]


# boxes, (h, w) -> 0..1000 boxes (by hand)
NORM_CASES = [
    # 640x480: x * 1000/640, y * 1000/480. 64 -> 100, 48 -> 100, 640 -> 1000, 480 -> 1000.
    ("whole", [[64, 48, 640, 480]], (480, 640), [[100, 100, 1000, 1000]]),
    # 1 px in 4000 is 0.25 units: widened to 1 unit.
    ("tiny", [[2000, 2000, 2001, 2001]], (4000, 4000), [[500, 500, 501, 501]]),
]


@pytest.mark.parametrize(
    ("boxes", "hw", "expected"), [c[1:] for c in NORM_CASES], ids=[c[0] for c in NORM_CASES]
)
def test_to_norm1000_hand_cases(boxes, hw, expected) -> None:
    assert to_norm1000(boxes, hw) == expected


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: to_model_space([[1, 2, 3]], (10, 10), (5, 5)), "has 3 values"),
        (lambda: to_model_space([[5, 0, 1, 1]], (10, 10), (5, 5)), "x2 < x1"),
        (lambda: to_model_space([[0, 0, 1, 1]], (10, 0), (5, 5)), "orig_hw"),
        (lambda: to_original_space([[0, 0, 1, 1]], (10, 10), (5,)), "model_hw"),
        (lambda: from_norm1000([[0, 0, 1, 1]], (True, 10)), "orig_hw"),
    ],
)
def test_mapping_rejects_bad_input(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@st.composite
def box_and_size(draw: st.DrawFn) -> tuple[list[int], tuple[int, int]]:
    h = draw(st.integers(16, 3000))
    w = draw(st.integers(16, 3000))
    x1 = draw(st.integers(0, w - 1))
    y1 = draw(st.integers(0, h - 1))
    x2 = draw(st.integers(x1 + 1, w))
    y2 = draw(st.integers(y1 + 1, h))
    return [x1, y1, x2, y2], (h, w)


def check_round_trip(box, back, out_hw, tol: float) -> None:
    assert all(abs(a - b) <= tol for a, b in zip(box, back, strict=True)), (box, back)
    x1, y1, x2, y2 = back
    assert 0 <= x1 < x2 <= out_hw[1] and 0 <= y1 < y2 <= out_hw[0]


@settings(max_examples=400, deadline=None)
@given(case=box_and_size())
def test_model_space_round_trip(case) -> None:
    box, hw = case
    model_hw = smart_resize(*hw) if max(hw) / min(hw) <= 200 else hw
    there = to_model_space([box], hw, model_hw)[0]
    x1, y1, x2, y2 = there
    assert 0 <= x1 < x2 <= model_hw[1] and 0 <= y1 < y2 <= model_hw[0]
    back = to_original_space([there], hw, model_hw)[0]
    # Error: half a model pixel in original pixels plus rounding, one more pixel when a
    # collapsed side was widened; about 1-2 px for upscaling, the scale factor otherwise.
    tol = max(hw[1] / model_hw[1], hw[0] / model_hw[0]) * 1.5 + 1
    check_round_trip(box, back, hw, tol)


@settings(max_examples=400, deadline=None)
@given(case=box_and_size())
def test_norm1000_round_trip(case) -> None:
    box, hw = case
    there = to_norm1000([box], hw)[0]
    assert all(0 <= v <= 1000 for v in there)
    back = from_norm1000([there], hw)[0]
    tol = max(hw) / 1000 * 1.5 + 1
    check_round_trip(box, back, hw, tol)


@pytest.mark.parametrize("hw", [(1024, 1024), (900, 700), (480, 640)])
def test_round_trip_within_two_pixels_at_dataset_sizes(hw: tuple[int, int]) -> None:
    # At MVTec / VisA sizes the model frame is about as fine as the image: 1-2 px error.
    boxes = [[x, y, x + s, y + s] for x in (0, 37, 301) for y in (5, 250) for s in (3, 40, 300)]
    boxes = [[min(v, hw[1] if i % 2 == 0 else hw[0]) for i, v in enumerate(b)] for b in boxes]
    model_hw = smart_resize(*hw)
    back = to_original_space(to_model_space(boxes, hw, model_hw), hw, model_hw)
    for b, r in zip(boxes, back, strict=True):
        assert max(abs(u - v) for u, v in zip(b, r, strict=True)) <= 2, (b, r)
    back1000 = from_norm1000(to_norm1000(boxes, hw), hw)
    for b, r in zip(boxes, back1000, strict=True):
        assert max(abs(u - v) for u, v in zip(b, r, strict=True)) <= 2, (b, r)

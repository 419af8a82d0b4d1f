"""Boxes between the original image and what a model sees.

Annotations keep boxes in original pixels. A model answers in its own frame:

- **Qwen2-VL / Qwen2.5-VL** resize each image to :func:`smart_resize`'s size (multiples of
  the 28-pixel patch-merge factor) and answer in pixels of that resized image; VLM-R1 maps
  answers back with ``x * W / (grid_w * 14)``, which is :func:`to_original_space`.
- **Visual-RFT** prompts ask for integers between 0 and 1000 on each axis:
  :func:`to_norm1000` and :func:`from_norm1000`.

Boxes are ``[x1, y1, x2, y2]`` with x2, y2 exclusive; sizes are ``(height, width)``, the
order of ``ndarray.shape``. Every mapping scales, rounds half up, clamps into the target
image, and keeps a box that had width and height at least one pixel wide and high.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Size = tuple[int, int]

QWEN_FACTOR = 28
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 28 * 28 * 1280
MAX_ASPECT_RATIO = 200
NORM = 1000


def smart_resize(
    height: int,
    width: int,
    factor: int = QWEN_FACTOR,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> Size:
    """The ``(height, width)`` Qwen2-VL's processor resizes an image to.

    The rule (Qwen2-VL and Qwen2.5-VL image processors):

    1. each side is rounded to the nearest multiple of ``factor`` (Python's ``round``, so
       an exact half goes to the even multiple), and is at least ``factor``;
    2. if that area exceeds ``max_pixels``, both original sides are divided by
       ``beta = sqrt(height * width / max_pixels)`` and floored to a multiple of ``factor``
       (at least ``factor``);
    3. else if the area is below ``min_pixels``, both original sides are multiplied by
       ``beta = sqrt(min_pixels / (height * width))`` and ceiled to a multiple of ``factor``.

    Args:
        height, width: Original size in pixels (positive).
        factor: Patch size times the spatial merge size (14 * 2 for Qwen2/2.5-VL).
        min_pixels, max_pixels: Bounds of the resized area; the defaults are the processor's
            minimum and the common ``max_pixels=1280*28*28`` setting.

    Raises:
        ValueError: A non-positive size or factor, or an aspect ratio above 200.

    Example:
        >>> smart_resize(1024, 1024)    # 37*28 = 1036 per side is too many pixels
        (980, 980)
        >>> smart_resize(700, 900)      # 25*28 and 32.1*28 -> 32*28, within bounds
        (700, 896)
        >>> smart_resize(20, 30)        # 28x28 is below 56*56: scaled up, then ceiled
        (56, 84)
    """
    for name, value in (("height", height), ("width", width), ("factor", factor)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            msg = f"smart_resize: {name} must be a positive integer, found {value!r}"
            raise ValueError(msg)
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        msg = (
            f"smart_resize: aspect ratio of {width}x{height} is "
            f"{max(height, width) / min(height, width):.1f}; expected at most "
            f"{MAX_ASPECT_RATIO}; crop or pad the image first"
        )
        raise ValueError(msg)
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def _check_size(name: str, hw: Sequence[int]) -> Size:
    if len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in hw):
        msg = f"{name} must be (height, width) of positive integers, found {hw!r}"
        raise ValueError(msg)
    return int(hw[0]), int(hw[1])


def _half_up(v: float) -> int:
    return math.floor(v + 0.5)


def _scale_axis(a: float, b: float, s: float, size: int) -> tuple[int, int]:
    lo = min(max(_half_up(a * s), 0), size)
    hi = min(max(_half_up(b * s), 0), size)
    if b > a and hi <= lo:  # a real extent collapsed by rounding or clamping: one pixel
        if lo < size:
            hi = lo + 1
        else:
            lo, hi = size - 1, size
    return lo, hi


def _scale(boxes: Sequence[Sequence[float]], sx: float, sy: float, hw: Size) -> list[list[int]]:
    out = []
    for box in boxes:
        if len(box) != 4:
            msg = f"box {box!r} has {len(box)} values; expected [x1, y1, x2, y2]"
            raise ValueError(msg)
        x1, y1, x2, y2 = box
        if x2 < x1 or y2 < y1:
            msg = f"box {list(box)!r} has x2 < x1 or y2 < y1; expected [x1, y1, x2, y2] in order"
            raise ValueError(msg)
        ax, bx = _scale_axis(x1, x2, sx, hw[1])
        ay, by = _scale_axis(y1, y2, sy, hw[0])
        out.append([ax, ay, bx, by])
    return out


def to_model_space(
    boxes: Sequence[Sequence[float]], orig_hw: Sequence[int], model_hw: Sequence[int]
) -> list[list[int]]:
    """Boxes in original pixels -> pixels of the image the model sees (e.g. smart_resize's).

    >>> to_model_space([[0, 0, 1024, 512], [100, 200, 101, 201]], (1024, 1024), (980, 980))
    [[0, 0, 980, 490], [96, 191, 97, 192]]
    """
    oh, ow = _check_size("orig_hw", orig_hw)
    mh, mw = _check_size("model_hw", model_hw)
    return _scale(boxes, mw / ow, mh / oh, (mh, mw))


def to_original_space(
    boxes: Sequence[Sequence[float]], orig_hw: Sequence[int], model_hw: Sequence[int]
) -> list[list[int]]:
    """Boxes in the model's pixels -> original pixels (VLM-R1's ``x * W / (grid_w * 14)``).

    >>> to_original_space([[96, 191, 97, 192]], (1024, 1024), (980, 980))
    [[100, 200, 101, 201]]
    """
    oh, ow = _check_size("orig_hw", orig_hw)
    mh, mw = _check_size("model_hw", model_hw)
    return _scale(boxes, ow / mw, oh / mh, (oh, ow))


def to_norm1000(boxes: Sequence[Sequence[float]], orig_hw: Sequence[int]) -> list[list[int]]:
    """Boxes in original pixels -> Visual-RFT's integer 0..1000 scale on each axis.

    >>> to_norm1000([[0, 0, 640, 240], [320, 120, 321, 121]], (480, 640))
    [[0, 0, 1000, 500], [500, 250, 502, 252]]
    """
    oh, ow = _check_size("orig_hw", orig_hw)
    return _scale(boxes, NORM / ow, NORM / oh, (NORM, NORM))


def from_norm1000(boxes: Sequence[Sequence[float]], orig_hw: Sequence[int]) -> list[list[int]]:
    """Boxes on the 0..1000 scale -> original pixels.

    >>> from_norm1000([[0, 0, 1000, 500], [500, 250, 502, 252]], (480, 640))
    [[0, 0, 640, 240], [320, 120, 321, 121]]
    """
    oh, ow = _check_size("orig_hw", orig_hw)
    return _scale(boxes, ow / NORM, oh / NORM, (oh, ow))

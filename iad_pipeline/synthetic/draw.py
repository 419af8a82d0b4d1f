"""Procedural images: shaded objects on plain backgrounds, or periodic textures.

A category gets a fixed :class:`Style` (shape, colour, texture pattern) derived from a stable
hash of its name, so every image of a category looks alike while each image varies a little
(position, size, angle, pattern phase, noise). Defects are planted by
:mod:`iad_pipeline.synthetic.defects`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

HOLE = (18, 16, 14)
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (200, 40, 40)),
    ("orange", (230, 130, 30)),
    ("yellow", (225, 200, 50)),
    ("green", (60, 160, 70)),
    ("teal", (40, 150, 150)),
    ("blue", (50, 90, 200)),
    ("purple", (130, 60, 170)),
    ("brown", (130, 85, 50)),
    ("beige", (215, 195, 160)),
    ("silver", (190, 195, 200)),
    ("black", (45, 45, 50)),
    ("pink", (225, 140, 170)),
)
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((40, 42, 45), (200, 200, 195), (120, 125, 130))
SHAPES = ("ellipse", "rounded_rect", "polygon")
PATTERNS = ("stripes", "grid", "checker", "weave", "dots", "noise")
# Keywords of texture names (MVTec AD textures, DTD-Synthetic) -> pattern; others by hash.
_PATTERN_WORDS = (
    ("grid", "grid"),
    ("mesh", "grid"),
    ("tile", "checker"),
    ("wood", "stripes"),
    ("fibrous", "stripes"),
    ("stratified", "stripes"),
    ("woven", "weave"),
    ("carpet", "weave"),
    ("perforated", "dots"),
    ("leather", "noise"),
    ("blotchy", "noise"),
    ("marbled", "noise"),
    ("matted", "noise"),
)


def stable_int(text: str) -> int:
    """A hash of ``text`` that is the same in every process (unlike :func:`hash`).

    >>> stable_int("bottle") == stable_int("bottle"), stable_int("a") != stable_int("b")
    (True, True)
    """
    return zlib.crc32(text.encode("utf-8"))


def luminance(rgb: Sequence[int]) -> float:
    """ITU-R 601 luma of an RGB colour (what a grayscale conversion keeps).

    >>> round(luminance((255, 255, 255)))
    255
    """
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


@dataclass(frozen=True)
class Style:
    """The look of one category.

    Attributes:
        shape: ``ellipse``, ``rounded_rect``, ``polygon`` or ``texture``.
        colour: Main RGB colour of the object or texture.
        colour_name: Name of that colour (``grey`` for grayscale categories).
        background: RGB colour behind an object (unused for textures).
        pattern: Texture pattern (textures only).
        gray: ``True`` when images are stored as single-channel grayscale.
        vertices: Polygon corner count.
        period: Texture period in pixels at 128 px.
        angle: Base angle in degrees (object orientation or stripe direction).
    """

    shape: str
    colour: tuple[int, int, int]
    colour_name: str
    background: tuple[int, int, int]
    pattern: str = ""
    gray: bool = False
    vertices: int = 6
    period: float = 12.0
    angle: float = 0.0


def style_for(category: str, *, texture: bool, gray: bool = False) -> Style:
    """The fixed style of a category, derived from a stable hash of its name.

    >>> style_for("grid", texture=True).pattern
    'grid'
    >>> style_for("bottle", texture=False) == style_for("bottle", texture=False)
    True
    """
    h = stable_int(category)
    name, colour = PALETTE[h % len(PALETTE)]
    far = [bg for bg in BACKGROUNDS if abs(luminance(bg) - luminance(colour)) >= 60]
    background = far[(h >> 8) % len(far)]
    lowered = category.lower()
    pattern = next((p for word, p in _PATTERN_WORDS if word in lowered), "")
    pattern = pattern or PATTERNS[(h >> 4) % len(PATTERNS)]
    return Style(
        shape="texture" if texture else SHAPES[(h >> 12) % len(SHAPES)],
        colour=colour,
        colour_name="grey" if gray else name,
        background=background,
        pattern=pattern if texture else "",
        gray=gray,
        vertices=5 + (h >> 16) % 4,
        period=8.0 + (h >> 20) % 9,
        angle=float((h >> 24) % 180),
    )


@dataclass
class Scene:
    """A defect-free image and the layers a defect needs.

    Attributes:
        image: RGB uint8 image (H, W, 3).
        under: What lies beneath the object (background, or a hole colour for textures).
        allowed: Where defects may be drawn (the object, or everything for textures).
        colour: Flat colour of the object for extra material.
        parts: LOCO only: masks of the small parts placed on the object.
        plain: LOCO only: the image before the parts were drawn.
        part_colour: LOCO only: colour of the parts.
    """

    image: np.ndarray
    under: np.ndarray
    allowed: np.ndarray
    colour: tuple[int, int, int]
    parts: list[np.ndarray] = field(default_factory=list)
    plain: np.ndarray | None = None
    part_colour: tuple[int, int, int] = (0, 0, 0)


def _noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    return rng.normal(0.0, sigma, (size, size, 1))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _object_mask(style: Style, size: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cx, cy = size / 2 + rng.uniform(-size / 25, size / 25, 2)
    a = size * 0.30 * rng.uniform(0.94, 1.06)
    b = size * 0.22 * rng.uniform(0.94, 1.06)
    angle = style.angle + rng.uniform(-12, 12)
    if style.shape == "ellipse":
        cv2.ellipse(mask, (round(cx), round(cy)), (round(a), round(b)), angle, 0, 360, 255, -1)
    elif style.shape == "rounded_rect":
        radius = max(2, round(size * 0.06))
        box = cv2.boxPoints(((cx, cy), (2 * (a - radius), 2 * (b - radius)), angle))
        cv2.fillPoly(mask, [np.rint(box).astype(np.int32)], 255)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, kernel)
    else:
        n = style.vertices
        angles = np.deg2rad(angle) + 2 * np.pi * (np.arange(n) + rng.uniform(-0.15, 0.15, n)) / n
        radii = a * rng.uniform(0.9, 1.05, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.rint(pts).astype(np.int32)], 255)
    return mask > 0


def render_object(style: Style, size: int, rng: np.random.Generator) -> Scene:
    """A shaded object with an inner outline on a plain, mildly noisy background."""
    obj = _object_mask(style, size, rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    light = 1.08 - 0.3 * (xx + yy) / 2 + 0.05 * np.sin(2 * np.pi * xx)
    shaded = np.asarray(style.colour, np.float32) * light[..., None]
    square = np.ones((3, 3), np.uint8)
    inner = cv2.erode(obj.astype(np.uint8), square, iterations=max(2, size // 12))
    ring = (inner > 0) & ~(cv2.erode(inner, square) > 0)
    shaded[ring] *= 0.8
    background = np.asarray(style.background, np.float32) + _noise(rng, size, 2.0)
    under = _to_uint8(background)
    image = np.where(obj[..., None], _to_uint8(shaded + _noise(rng, size, 2.5)), under)
    return Scene(image=image, under=under, allowed=obj, colour=style.colour)


def render_texture(style: Style, size: int, rng: np.random.Generator) -> Scene:
    """A periodic or noisy texture filling the whole image."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = style.period * size / 128
    theta = np.deg2rad(style.angle)
    ox, oy = rng.uniform(0, period, 2)
    x, y = xx + ox, yy + oy
    if style.pattern == "stripes":
        u = x * np.cos(theta) + y * np.sin(theta) + 2.5 * np.sin(2 * np.pi * y / (size / 2))
        t = 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    elif style.pattern == "grid":
        width = max(1.0, period / 5)
        t = np.where(((x % period) < width) | ((y % period) < width), 1.0, 0.3)
    elif style.pattern == "checker":
        t = np.where(((x // period) + (y // period)) % 2 == 0, 0.8, 0.35)
    elif style.pattern == "weave":
        t = 0.5 + 0.25 * np.sin(2 * np.pi * x / period) * np.sign(np.sin(np.pi * y / period))
        t += 0.25 * np.sin(2 * np.pi * y / period)
    elif style.pattern == "dots":
        dx, dy = (x % period) - period / 2, (y % period) - period / 2
        t = np.where(dx * dx + dy * dy < (period / 4) ** 2, 0.1, 0.8)
    else:
        cells = size // 16 + 2
        t = cv2.resize(
            rng.random((cells, cells)).astype(np.float32),
            (size, size),
            interpolation=cv2.INTER_CUBIC,
        )
    tone = 0.55 + 0.6 * np.clip(t, 0, 1).astype(np.float32)
    image = _to_uint8(np.asarray(style.colour, np.float32) * tone[..., None] + _noise(rng, size, 4))
    under = np.empty_like(image)
    under[:] = HOLE
    return Scene(image=image, under=under, allowed=np.ones((size, size), bool), colour=style.colour)


def render(style: Style, size: int, rng: np.random.Generator) -> Scene:
    """The scene of one image of a category (object or texture by the style's shape)."""
    if style.shape == "texture":
        return render_texture(style, size, rng)
    return render_object(style, size, rng)


def add_parts(scene: Scene, rng: np.random.Generator, count: int = 3) -> Scene:
    """Place ``count`` small round parts on the object (MVTec LOCO-like assemblies)."""
    size = scene.image.shape[0]
    radius = max(4, size // 16)
    spots = spread_points(scene.allowed, count, radius, rng)
    colour = contrast_colour(scene.colour, np.random.default_rng(stable_int(str(scene.colour))), 60)
    image = scene.image.copy()
    parts = []
    for x, y in spots:
        part = np.zeros(scene.allowed.shape, np.uint8)
        cv2.circle(part, (x, y), radius, 255, -1)
        part_mask = (part > 0) & scene.allowed
        image[part_mask] = colour
        parts.append(part_mask)
    return Scene(
        image=image,
        under=scene.under,
        allowed=scene.allowed,
        colour=scene.colour,
        parts=parts,
        plain=scene.image,
        part_colour=colour,
    )


def spread_points(
    area: np.ndarray, count: int, radius: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """``count`` (x, y) points of ``area``, ``radius`` clear of its border, spread apart.

    Each point is the best of 24 random candidates by distance to the points chosen so far.
    """
    inner = cv2.erode(area.astype(np.uint8), np.ones((2 * radius + 3, 2 * radius + 3), np.uint8))
    ys, xs = np.nonzero(inner if inner.any() else area)
    chosen: list[tuple[int, int]] = []
    for _ in range(count):
        best, best_gap = (int(xs[0]), int(ys[0])), -1.0
        for i in rng.integers(0, len(xs), 24):
            point = (int(xs[i]), int(ys[i]))
            gaps = [np.hypot(point[0] - p[0], point[1] - p[1]) for p in chosen]
            gap = min(gaps) if gaps else 0.0
            if gap > best_gap:
                best, best_gap = point, gap
        chosen.append(best)
    return chosen


def contrast_colour(
    base: Sequence[int], rng: np.random.Generator, gap: float = 80
) -> tuple[int, int, int]:
    """A palette colour whose luminance differs from ``base`` by at least ``gap``."""
    far = [c for _, c in PALETTE if abs(luminance(c) - luminance(base)) >= gap]
    if not far:
        return (250, 250, 245) if luminance(base) < 128 else (10, 10, 12)
    return far[int(rng.integers(len(far)))]


def view(image: np.ndarray, gray: bool) -> np.ndarray:
    """The stored form of an RGB image: (H, W) uint8 when ``gray``, else (H, W, 3)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if gray else image

"""Defects with exact masks: scratches, blobs, missing pieces, extra material, LOCO parts.

:func:`plant` draws one region per requested kind into a :class:`~.draw.Scene`. A region's
mask is the set of pixels whose *stored* value changed (compared after the grayscale
conversion where the image is grayscale), so masks are exact before any lossy encoding
(JPEG blurs the change; the mask is what was drawn).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from iad_pipeline.errors import IadError
from iad_pipeline.synthetic.draw import Scene, contrast_colour, luminance, view

MIN_PIXELS = 20
GAP = 2  # pixels kept free between two regions of one image
# Defect-name keywords -> defect kind; the first match wins, anything else is a blob.
_KIND_WORDS = (
    ("missing", "missing"),
    ("broken", "missing"),
    ("hole", "missing"),
    ("misplaced", "missing"),
    ("chip", "missing"),
    ("chunk", "missing"),
    ("breakage", "missing"),
    ("open", "missing"),
    ("flip", "missing"),
    ("swap", "missing"),
    ("squeeze", "missing"),
    ("deformation", "missing"),
    ("corner", "missing"),
    ("extra", "extra"),
    ("stuck", "extra"),
    ("scratch", "scratch"),
    ("crack", "scratch"),
    ("cut", "scratch"),
    ("thread", "scratch"),
    ("bent", "scratch"),
    ("bend", "scratch"),
    ("fold", "scratch"),
    ("poke", "scratch"),
    ("rough", "scratch"),
    ("split", "scratch"),
    ("stroke", "scratch"),
)
_GENERIC = frozenset({"bad", "defect", "defective", "anomalous"})
_SQUARE = np.ones((3, 3), np.uint8)


def defect_kind(name: str) -> str:
    """How a defect is drawn, from keywords of its name: scratch, blob, missing or extra.

    >>> [defect_kind(n) for n in ("broken_large", "scratch_neck", "glue", "stuck_together")]
    ['missing', 'scratch', 'blob', 'extra']
    """
    lowered = name.lower()
    return next((kind for word, kind in _KIND_WORDS if word in lowered), "blob")


def defect_kinds(name: str, index: int) -> tuple[str, ...]:
    """The regions to plant for image ``index`` of a defect (every third image gets two).

    Names that say nothing about the defect (``bad``, ``defect``...) cycle through the kinds.

    >>> defect_kinds("combined", 0), defect_kinds("crack", 0), defect_kinds("crack", 1)
    (('scratch', 'blob'), ('scratch',), ('scratch', 'scratch'))
    >>> [defect_kinds("bad", i) for i in range(3)]
    [('blob',), ('scratch', 'scratch'), ('missing',)]
    """
    if name == "combined":
        return ("scratch", "blob")
    if name in _GENERIC:
        return (("blob",), ("scratch", "scratch"), ("missing",))[index % 3]
    kind = defect_kind(name)
    return (kind, kind) if index % 3 == 1 else (kind,)


def _blob(
    size: int, centre: tuple[int, int], radius: float, rng: np.random.Generator
) -> np.ndarray:
    n = 12
    angles = 2 * np.pi * (np.arange(n) + rng.uniform(-0.3, 0.3, n)) / n
    radii = radius * rng.uniform(0.65, 1.3, n)
    pts = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
    out = np.zeros((size, size), np.uint8)
    cv2.fillPoly(out, [np.rint(pts).astype(np.int32)], 255)
    return out > 0


def _scratch(
    size: int, centre: tuple[int, int], length: float, rng: np.random.Generator
) -> np.ndarray:
    """A wavy polyline of about ``length`` pixels whose middle is ``centre``."""
    heading = rng.uniform(0, 2 * np.pi)
    pts = [np.zeros(2)]
    for _ in range(3):
        heading += rng.uniform(-0.5, 0.5)
        pts.append(pts[-1] + length / 3 * np.array([np.cos(heading), np.sin(heading)]))
    line = np.asarray(pts) - np.mean(pts, axis=0) + np.asarray(centre)
    out = np.zeros((size, size), np.uint8)
    cv2.polylines(out, [np.rint(line).astype(np.int32)], False, 255, max(2, round(size / 64)))
    return out > 0


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), _SQUARE, iterations=pixels) > 0


def _pick(area: np.ndarray, free: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A random pixel of ``area``, preferring ones in ``free``."""
    ys, xs = np.nonzero(area & free) if (area & free).any() else np.nonzero(area)
    i = int(rng.integers(len(xs)))
    return int(xs[i]), int(ys[i])


def _extra_part(scene: Scene, free: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One more part, clear of the others and of earlier regions, on the object if it fits."""
    size = scene.image.shape[0]
    radius = max(4, size // 16)
    blocked = np.logical_or.reduce([*scene.parts, ~free]).astype(np.uint8)
    clearance = cv2.distanceTransform(1 - blocked, cv2.DIST_L2, 3) > radius + GAP + 1
    clearance[:radius, :] = clearance[-radius:, :] = False
    clearance[:, :radius] = clearance[:, -radius:] = False
    inside = clearance & scene.allowed
    pool = inside if inside.any() else clearance if clearance.any() else scene.allowed
    x, y = _pick(pool, clearance, rng)
    extra = np.zeros((size, size), np.uint8)
    cv2.circle(extra, (x, y), radius, 255, -1)
    return extra > 0


def _shape(
    scene: Scene,
    kind: str,
    rng: np.random.Generator,
    scale: float,
    region: np.ndarray | None,
    free: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | tuple]:
    """Pixels one region of ``kind`` paints, and what it paints them with (layer or colour)."""
    size = scene.image.shape[0]
    allowed = scene.allowed if region is None else region
    textured = bool(scene.allowed.all())
    if kind == "missing_part" and scene.parts and scene.plain is not None:
        usable = [p for p in scene.parts if (p & free).all()] or scene.parts
        return usable[int(rng.integers(len(usable)))], scene.plain
    if kind == "extra_part" and scene.parts:
        return _extra_part(scene, free, rng), scene.part_colour
    if kind in ("missing", "missing_part"):
        edge = allowed & ~(cv2.erode(allowed.astype(np.uint8), _SQUARE) > 0)
        anchor = _pick(allowed if textured or region is not None else edge, free, rng)
        return _blob(size, anchor, size * 0.09 * scale, rng) & allowed, scene.under
    if kind in ("extra", "extra_part"):
        ring = _grow(allowed, 2) & ~allowed if region is None and not textured else allowed
        anchor = _pick(ring if ring.any() else allowed, free, rng)
        lump = _blob(size, anchor, size * 0.06 * scale, rng)
        return (lump if region is None else lump & region), scene.colour
    interior = cv2.erode(allowed.astype(np.uint8), _SQUARE, iterations=max(1, size // 24)) > 0
    interior = interior if interior.any() else allowed
    if kind == "scratch":
        line = _scratch(size, _pick(interior, free, rng), size * 0.25 * scale, rng) & allowed
        return line, (20, 18, 16) if luminance(scene.colour) > 110 else (245, 245, 240)
    spot = _blob(size, _pick(interior, free, rng), size * 0.06 * scale, rng) & allowed
    return spot, contrast_colour(scene.colour, rng, 90 if textured else 80)


def plant(
    scene: Scene,
    kinds: Sequence[str],
    rng: np.random.Generator,
    *,
    gray: bool = False,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Plant one defect region per entry of ``kinds``; return the stored image and region masks.

    Each region changes at least :data:`MIN_PIXELS` stored pixels and stays :data:`GAP`
    pixels away from earlier regions (so two regions are two separate fragments). Each mask
    is exactly the set of stored pixels its region changed; their union is every changed
    pixel. ``region`` restricts drawing to an area (DAGM's ellipse).

    >>> from iad_pipeline.synthetic.draw import render, style_for
    >>> rng = np.random.default_rng(0)
    >>> scene = render(style_for("bottle", texture=False), 64, rng)
    >>> image, masks = plant(scene, ("blob", "scratch"), rng)
    >>> changed = (image != view(scene.image, False)).any(-1)
    >>> bool((changed == (masks[0] | masks[1])).all()), len(masks)
    (True, 2)
    """
    current = scene.image.copy()
    union = np.zeros(current.shape[:2], bool)
    masks: list[np.ndarray] = []
    for kind in kinds:
        keepout = _grow(union, GAP)
        free = ~_grow(union, max(GAP, current.shape[0] // 8))
        for attempt in range(40):
            painted, paint = _shape(scene, kind, rng, 1.0 + 0.05 * attempt, region, free)
            painted = painted & ~keepout
            candidate = current.copy()
            candidate[painted] = paint[painted] if isinstance(paint, np.ndarray) else paint
            changed = view(candidate, gray) != view(current, gray)
            changed = changed if changed.ndim == 2 else changed.any(-1)
            if changed.sum() >= MIN_PIXELS:
                current, union = candidate, union | changed
                masks.append(changed)
                break
        else:
            msg = (
                f"could not place a {kind!r} defect of at least {MIN_PIXELS} pixels apart "
                f"from {len(masks)} earlier region(s) in a {current.shape[0]} px image; "
                "use a larger size"
            )
            raise IadError(msg)
    return view(current, gray), masks


def grid_cell(mask: np.ndarray) -> str:
    """Where a mask's centre of mass lies on a 3x3 grid (``top-left`` ... ``bottom-right``).

    >>> m = np.zeros((9, 9), bool); m[7, 1] = True
    >>> grid_cell(m), grid_cell(np.ones((9, 9), bool))
    ('bottom-left', 'center')
    """
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    row = ("top", "middle", "bottom")[min(2, int(3 * ys.mean() / h))]
    col = ("left", "middle", "right")[min(2, int(3 * xs.mean() / w))]
    return "center" if row == col == "middle" else f"{row}-{col}"

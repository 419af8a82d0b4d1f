"""One defective sample's masks -> its boxes, mask area, 3x3 grid regions and status.

A job is a sample's mask paths and the image size the samples table gives; its outcome is a
plain tuple (what a worker process returns). :mod:`~iad_pipeline.annotate.table` runs the
jobs in batches and assembles the annotations table from the outcomes.
"""

from __future__ import annotations

import cv2
import numpy as np

from iad_pipeline.annotate.boxes import MaskError, decode_mask, foreground
from iad_pipeline.annotate.boxes import defect_groups as _defect_groups
from iad_pipeline.annotate.grid import region_counts, regions_from_counts

# How the masks are read for the 3x3 grid labels:
# - "grayscale" (default, EMIT's rule): ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` as EMIT's
#   ``get_white_areas`` reads it (traindata_gen/make_jonsl.py, guanwei49/EMIT 01dc319): an RGB
#   or palette mask is converted to luma first (a dark colour can round to 0), a 16-bit mask
#   is scaled down to 8 bits (values below 256 become 0);
# - "any_channel" (ours): any non-zero value in any colour channel counts, as for the boxes.
# Both agree on the usual 8-bit single-channel masks, which are decoded once either way.
GRID_READS = ("grayscale", "any_channel")

# A mask job: (paths, width, height) of one defective sample.
Job = tuple[list[str], int | None, int | None]
# A worker's answer: (boxes, area fraction, grid regions, status, problem path, detail).
Outcome = tuple[list[list[int]], float | None, list[str], str, str | None, str | None]


def _grayscale(path: str, raw: np.ndarray) -> np.ndarray:
    """The mask as ``cv2.IMREAD_GRAYSCALE`` reads it (EMIT); 8-bit gray masks as decoded."""
    if raw.ndim == 2 and raw.dtype == np.uint8:
        return raw
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:  # decoded a moment ago: the file changed under us
        msg = f"{path}: cannot read the mask in grayscale; expected an image file"
        raise MaskError(msg)
    return gray


def _load(
    job: Job, grid_read: str = "grayscale"
) -> tuple[tuple[np.ndarray, np.ndarray] | None, Outcome | None]:
    """The union of a job's masks and the union the grid counts, or why there is none.

    The grid's union is the same array unless ``grid_read="grayscale"`` met a mask that is
    not 8-bit gray (see :data:`GRID_READS`).
    """
    paths, width, height = job
    union = grid = None
    for path in paths:
        try:
            raw = decode_mask(path)
            part = foreground(raw)
            gray = foreground(_grayscale(path, raw)) if grid_read == "grayscale" else part
        except (MaskError, ValueError) as exc:
            return None, ([], None, [], "unreadable_mask", path, str(exc))
        h, w = part.shape
        if width is not None and height is not None and (w, h) != (width, height):
            detail = f"mask is {w}x{h}, the samples table says the image is {width}x{height}"
            return None, ([], None, [], "mask_size_mismatch", path, detail)
        if union is None:
            union = part
            grid = gray if gray is not part else None
        elif part.shape != union.shape:  # only when the row has no size to compare with
            detail = f"mask is {w}x{h}, {paths[0]} is {union.shape[1]}x{union.shape[0]}"
            return None, ([], None, [], "mask_size_mismatch", path, detail)
        else:
            if grid is None and gray is not part:
                grid = union.copy()  # the gray union so far equals the plain one
            if grid is not None:
                grid = np.bitwise_or(grid, gray)
            np.bitwise_or(union, part, out=union)
    if union is None:
        return None, None
    return (union, union if grid is None else grid), None


def _describe(
    unions: tuple[np.ndarray, np.ndarray], job: Job, dilate_px: int, min_area_px: int
) -> Outcome:
    """Boxes, area, grid regions and status of a decoded mask union (and the grid's union)."""
    union, grid = unions
    counts = region_counts(union)
    pixels = sum(counts)
    area = pixels / union.size if union.size else 0.0
    regions = regions_from_counts(counts if grid is union else region_counts(grid))
    groups = _defect_groups(union, dilate_px) if pixels else []
    boxes = [[x1, y1, x2, y2] for x1, y1, x2, y2, a in groups if a >= min_area_px]
    if boxes:
        return boxes, area, regions, "ok", None, None
    if pixels == 0:
        detail = "mask has no defect pixel (every value is 0); expected a defect region"
    else:
        detail = (
            f"mask has {pixels} defect pixels in {len(groups)} groups, each below "
            f"min_area_px={min_area_px}"
        )
    return [], area, regions, "empty_mask", job[0][0], detail


def annotate_one(
    job: Job, dilate_px: int, min_area_px: int, grid_read: str = "grayscale"
) -> Outcome:
    """Boxes, area, grid regions and status of one defective sample's masks."""
    union, failed = _load(job, grid_read)
    return failed or _describe(union, job, dilate_px, min_area_px)


def annotate_batch(
    jobs: list[Job], dilate_px: int, min_area_px: int, grid_read: str = "grayscale"
) -> list[Outcome]:
    """:func:`annotate_one` of every job, in order (what a worker process runs)."""
    out = []
    union = None
    for job in jobs:
        # Rebinding ``union`` frees the previous mask only once the next one is decoded, so
        # malloc reuses its pages; freeing it first lets glibc hand them back to the kernel
        # and fault fresh ones in, about 0.9 ms per 1024x1024 mask (measured: 480 page
        # faults per mask instead of 2). decode_batch keeps masks alive the same way.
        union, failed = _load(job, grid_read)
        out.append(failed or _describe(union, job, dilate_px, min_area_px))
    return out


def decode_batch(jobs: list[Job]) -> list[int]:
    """Decode every mask and nothing else: the baseline the annotation cost is measured on.

    Same pool, batches and allocation pattern as the annotation (see :func:`annotate_batch`).
    """
    sizes = []
    decoded: list = []
    for paths, _, _ in jobs:
        decoded = [cv2.imread(p, cv2.IMREAD_UNCHANGED) for p in paths]
        sizes.append(sum(0 if m is None else m.size for m in decoded))
    return sizes

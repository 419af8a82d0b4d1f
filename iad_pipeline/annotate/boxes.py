"""Defect boxes from ground-truth masks: binarise, group nearby defect pixels, box each group.

The grouping follows AD-FM's description (it ships no code for it): dilate the defect
pixels with an elliptical kernel of ``dilate_px`` pixels, take the 8-connected components of
the dilated mask as groups, and box each group tightly around its *original* defect pixels
(the dilation decides only which pixels belong together, never the box size). Groups with
fewer than ``min_area_px`` original pixels are dropped. Boxes are ``[x1, y1, x2, y2]`` in
pixels with ``x2`` and ``y2`` exclusive, so ``x2 - x1`` is the width.

Speed: grouping a 1024x1024 mask costs about 0.5 ms here (see
:mod:`~iad_pipeline.annotate.groups` for how), against about 4 ms to decode its PNG and
about 9 ms for the plain dilate-and-label over the whole image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from iad_pipeline.annotate.groups import defect_groups
from iad_pipeline.errors import IadError
from iad_pipeline.settings import AnnotationSettings, check_params


class MaskError(IadError):
    """A mask file that cannot be decoded, or the masks of one sample differ in size."""


def binarize(mask: np.ndarray) -> np.ndarray:
    """The defect pixels of ``mask`` as a uint8 0/1 array of shape ``(H, W)``.

    Any non-zero value is a defect: 255 (MVTec AD), index values 1, 2, ... (VisA), region
    values such as 37 or 74 (MVTec LOCO). A 3-D ``(H, W, C)`` mask (MMAD's RGB masks) marks
    a pixel when any colour channel is non-zero; with 2 or 4 channels the last one is alpha
    and is ignored, because an opaque alpha would otherwise mark every pixel.

    Args:
        mask: 2-D array, or 3-D with channels last, of an integer, bool or float dtype.

    Returns:
        A new C-contiguous uint8 array of 0 and 1.

    Raises:
        ValueError: The array is not 2-D or 3-D, or its dtype is not numeric.

    Example:
        >>> binarize(np.array([[0, 37], [74, 0]], dtype=np.uint8)).tolist()
        [[0, 1], [1, 0]]
        >>> binarize(np.array([[[0, 0, 0], [0, 9, 0]]], dtype=np.uint8)).tolist()
        [[0, 1]]
    """
    arr = np.asarray(mask)
    kind = arr.dtype.kind
    if kind not in "biuf":
        msg = (
            f"mask of dtype {arr.dtype} found; expected an integer, bool or float array; "
            "decode the mask with cv2.imread(path, cv2.IMREAD_UNCHANGED) or read_mask()"
        )
        raise ValueError(msg)
    if arr.ndim == 2:
        return np.not_equal(arr, 0).view(np.uint8)
    if arr.ndim == 3 and arr.shape[2] >= 1:
        channels = arr.shape[2] - 1 if arr.shape[2] in (2, 4) else arr.shape[2]
        out = np.not_equal(arr[:, :, 0], 0)
        for c in range(1, channels):
            out |= np.not_equal(arr[:, :, c], 0)
        return out.view(np.uint8)
    msg = f"mask of shape {arr.shape} found; expected (H, W) or (H, W, C) with C >= 1"
    raise ValueError(msg)


def foreground(mask: np.ndarray) -> np.ndarray:
    """A 2-D uint8 array whose non-zero pixels are the defects, without a copy when possible.

    A decoded 8-bit single-channel mask already is one (OpenCV's labelling, counting and
    dilation all treat any non-zero value as foreground), so it is returned as is; anything
    else goes through :func:`binarize`. Saves a full-image pass per mask in the table.

    >>> m = np.array([[0, 37]], np.uint8)
    >>> foreground(m) is m, foreground(m.astype(np.uint16)).tolist()
    (True, [[0, 1]])
    """
    if isinstance(mask, np.ndarray) and mask.dtype == np.uint8 and mask.ndim == 2:
        return mask
    return binarize(mask)


def decode_mask(path: Path | str) -> np.ndarray:
    """Decode one mask file as stored (``cv2.IMREAD_UNCHANGED``: bit depth and channels kept).

    Raises:
        MaskError: The file is missing or OpenCV cannot decode it.
    """
    try:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raw, why = None, f"OpenCV failed: {str(exc).strip().splitlines()[-1]}"
    else:
        why = "OpenCV cannot decode it"
    if raw is None:
        p = Path(path)
        if not p.is_file():
            why = "the file does not exist"
        elif p.stat().st_size == 0:
            why = "the file is empty"
        msg = (
            f"{path}: cannot read mask ({why}); expected an image file (PNG, BMP, TIFF); "
            "re-extract the dataset or remove the sample"
        )
        raise MaskError(msg)
    return raw


def read_mask(paths: Sequence[Path | str] | Path | str) -> np.ndarray:
    """Decode one or several mask files of one sample and OR their defect pixels.

    MVTec LOCO stores one file per annotated region; the union is the sample's defect.

    Args:
        paths: The mask files (a single path is accepted too).

    Returns:
        uint8 0/1 array of shape ``(H, W)``.

    Raises:
        MaskError: A file cannot be decoded, or the files differ in size.
        ValueError: ``paths`` is empty.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        msg = "read_mask got no mask path; expected at least one file"
        raise ValueError(msg)
    union: np.ndarray | None = None
    for path in paths:
        part = binarize(decode_mask(path))
        if union is None:
            union, first = part, path
        elif part.shape != union.shape:
            msg = (
                f"{path}: mask is {part.shape[1]}x{part.shape[0]} but {first} is "
                f"{union.shape[1]}x{union.shape[0]}; masks of one sample must share the "
                "image's size; fix or remove the odd file"
            )
            raise MaskError(msg)
        else:
            np.bitwise_or(union, part, out=union)
    return union


def mask_boxes(
    mask: np.ndarray,
    dilate_px: int = AnnotationSettings.dilate_px,
    min_area_px: int = AnnotationSettings.min_area_px,
) -> list[list[int]]:
    """Boxes of the defects of ``mask``: dilation-grouped components, tight on the defect.

    Args:
        mask: A mask as decoded (any non-zero pixel is a defect, see :func:`binarize`).
        dilate_px: Diameter of the elliptical dilation kernel that merges nearby defect
            pixels into one group; 0 (or 1) groups 8-connected pixels only.
        min_area_px: Groups with fewer original defect pixels are dropped.

    Returns:
        ``[x1, y1, x2, y2]`` boxes (x2, y2 exclusive), sorted by (y1, x1); ``[]`` for an
        empty mask.

    Raises:
        ValueError: A negative or non-integer parameter, or a mask that is not an image.

    Example:
        >>> m = np.zeros((40, 60), np.uint8)
        >>> m[5:8, 5:8] = 255; m[5:8, 14:17] = 255   # 6 px apart: merged by dilate_px=15
        >>> m[30:33, 50:53] = 255                     # far away: its own box
        >>> m[20, 30] = 255                           # a 1-pixel speck: below min_area_px
        >>> mask_boxes(m)
        [[5, 5, 17, 8], [50, 30, 53, 33]]
        >>> mask_boxes(m, dilate_px=0, min_area_px=1)
        [[5, 5, 8, 8], [14, 5, 17, 8], [30, 20, 31, 21], [50, 30, 53, 33]]
    """
    check_params(dilate_px, min_area_px)
    groups = defect_groups(foreground(mask), int(dilate_px))
    return [[x1, y1, x2, y2] for x1, y1, x2, y2, area in groups if area >= min_area_px]

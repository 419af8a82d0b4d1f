"""Grid labels read masks as EMIT does (grayscale) unless asked otherwise; golden cases.

``golden/emit_grid.json``: EMIT's ``get_white_areas`` run outside the repository on generated
mask PNGs (RGB, palette, 16-bit and 8-bit gray); the cases where reading every colour channel
gives other regions are most of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest
from PIL import Image

from iad_pipeline.annotate import annotate_samples
from iad_pipeline.annotate.table import _annotate_batch


def annotate_one(job, dilate_px: int, min_area_px: int, grid_read: str = "grayscale"):
    """The outcome of one job through the batch path that annotate_samples runs."""
    return _annotate_batch([job], dilate_px, min_area_px, grid_read)[0]


GOLDEN = json.loads((Path(__file__).parent / "golden" / "emit_grid.json").read_text())["cases"]


def write_mask(path: Path, case: dict) -> None:
    pixels = np.array(case["pixels"])
    if case["kind"] in ("gray8", "bgr8"):
        cv2.imwrite(str(path), pixels.astype(np.uint8))
    elif case["kind"] == "gray16":
        cv2.imwrite(str(path), pixels.astype(np.uint16))
    else:
        image = Image.fromarray(pixels.astype(np.uint8), mode="P")
        image.putpalette([v for rgb in case["palette"] for v in rgb])
        image.save(path)


@pytest.mark.parametrize("case", GOLDEN, ids=[f"{c['kind']}-{i}" for i, c in enumerate(GOLDEN)])
def test_grid_regions_equal_emits_get_white_areas(tmp_path: Path, case: dict) -> None:
    path = tmp_path / "mask.png"
    write_mask(path, case)
    job = ([str(path)], None, None)
    assert annotate_one(job, 0, 1)[2] == case["regions"]
    assert annotate_one(job, 0, 1, grid_read="any_channel")[2] == case["any_channel"]


def test_golden_cases_hold_disagreements() -> None:
    assert sum(c["regions"] != c["any_channel"] for c in GOLDEN) >= 50


def test_sixteen_bit_values_below_256_vanish_in_grayscale(tmp_path: Path) -> None:
    mask = np.zeros((9, 9), np.uint16)
    mask[0, 0] = 255  # 255 >> 8 == 0: EMIT sees nothing here
    mask[8, 8] = 256  # 256 >> 8 == 1: EMIT sees this
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    job = ([str(tmp_path / "m.png")], None, None)
    assert annotate_one(job, 0, 1)[2] == ["bottom right"]
    assert annotate_one(job, 0, 1, grid_read="any_channel")[2] == ["top left", "bottom right"]


def test_union_of_several_masks_reads_each_in_grayscale(tmp_path: Path) -> None:
    gray = np.zeros((9, 9), np.uint8)
    gray[4, 4] = 255
    dark = np.zeros((9, 9, 3), np.uint8)
    dark[0, 0] = (1, 0, 0)  # blue 1: luma rounds to 0
    cv2.imwrite(str(tmp_path / "a.png"), gray)
    cv2.imwrite(str(tmp_path / "b.png"), dark)
    job = ([str(tmp_path / "a.png"), str(tmp_path / "b.png")], 9, 9)
    boxes, _, regions, status, *_ = annotate_one(job, 0, 1)
    assert (regions, status, len(boxes)) == (["center"], "ok", 2)  # boxes keep every channel


def test_unknown_grid_read_is_rejected() -> None:
    samples = pl.DataFrame(
        {
            "sample_id": [],
            "dataset": [],
            "category": [],
            "split": [],
            "label": [],
            "is_anomalous": [],
            "mask_paths": [],
            "width": [],
            "height": [],
        }
    )
    with pytest.raises(ValueError, match="grid_read='rgb'"):
        annotate_samples(samples, grid_read="rgb")

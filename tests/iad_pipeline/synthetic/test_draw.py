"""Drawing and defects: masks are exactly the changed pixels, regions stay apart."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from iad_pipeline.errors import IadError
from iad_pipeline.synthetic.defects import MIN_PIXELS, defect_kind, grid_cell, plant
from iad_pipeline.synthetic.draw import add_parts, render, style_for, view

KIND_CASES = [
    # name -> kind, by keyword (first match wins; unknown names are blobs)
    ("broken_large", "missing"),
    ("hole", "missing"),
    ("misplaced", "missing"),
    ("cap_half_open", "missing"),
    ("scratch_neck", "scratch"),
    ("cut_inner_insulation", "scratch"),
    ("thread_top", "scratch"),
    ("bent_lead", "scratch"),
    ("contamination", "blob"),
    ("color", "blob"),
    ("glue_strip", "blob"),
    ("stuck_together", "extra"),
    ("défaut", "blob"),
]


@pytest.mark.parametrize(("name", "kind"), KIND_CASES)
def test_defect_kind_by_keyword(name: str, kind: str) -> None:
    assert defect_kind(name) == kind


SCENES = [
    ("bottle", False, False),
    ("grid", True, True),
    ("screw", False, True),
    ("wood", True, False),
]
KINDS = [
    ("scratch",),
    ("blob",),
    ("missing",),
    ("extra",),
    ("scratch", "blob"),
    ("missing", "missing"),
    ("extra", "scratch"),
]


@pytest.mark.parametrize(("category", "texture", "gray"), SCENES)
@pytest.mark.parametrize("kinds", KINDS)
def test_masks_are_exactly_the_changed_pixels(
    category: str, texture: bool, gray: bool, kinds: tuple[str, ...]
) -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        scene = render(style_for(category, texture=texture, gray=gray), 96, rng)
        image, masks = plant(scene, kinds, rng, gray=gray)
        base = view(scene.image, gray)
        assert image.shape == base.shape and image.ndim == (2 if gray else 3)
        changed = image != base
        changed = changed if changed.ndim == 2 else changed.any(-1)
        assert len(masks) == len(kinds)
        assert (np.logical_or.reduce(masks) == changed).all()
        assert all(m.sum() >= MIN_PIXELS for m in masks)
        if len(masks) == 2:
            near = cv2.dilate(masks[0].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            assert not (near & masks[1]).any()


def test_loco_parts_missing_and_extra() -> None:
    rng = np.random.default_rng(1)
    scene = add_parts(render(style_for("pushpins", texture=False), 128, rng), rng)
    assert len(scene.parts) == 3 and scene.plain is not None
    image, (missing, extra) = plant(scene, ("missing_part", "extra_part"), rng)
    assert any((missing == part).all() or (missing <= part).all() for part in scene.parts)
    assert (image[extra] == scene.part_colour).all()


def test_dagm_region_contains_the_defect() -> None:
    rng = np.random.default_rng(2)
    scene = render(style_for("Class3", texture=True, gray=True), 128, rng)
    area = np.zeros((128, 128), np.uint8)
    cv2.ellipse(area, (64, 64), (20, 10), 30, 0, 360, 255, -1)
    image, masks = plant(scene, ("scratch",), rng, gray=True, region=area > 0)
    assert (masks[0] <= (area > 0)).all()
    assert (image[area == 0] == view(scene.image, True)[area == 0]).all()


def test_impossible_defect_raises() -> None:
    rng = np.random.default_rng(0)
    scene = render(style_for("bottle", texture=False), 64, rng)
    tiny = np.zeros((64, 64), bool)
    tiny[10, 10] = True
    with pytest.raises(IadError, match="could not place a 'blob' defect"):
        plant(scene, ("blob",), rng, region=tiny)


def test_styles_are_stable_and_distinct() -> None:
    assert style_for("bottle", texture=False) == style_for("bottle", texture=False)
    assert style_for("carpet", texture=True).shape == "texture"
    assert style_for("screw", texture=False, gray=True).colour_name == "grey"


@pytest.mark.parametrize(
    ("row", "col", "cell"),
    [
        (0, 0, "top-left"),
        (0, 4, "top-middle"),
        (4, 4, "center"),
        (4, 8, "middle-right"),
        (8, 8, "bottom-right"),
    ],
)
def test_grid_cell(row: int, col: int, cell: str) -> None:
    mask = np.zeros((9, 9), bool)
    mask[row, col] = True
    assert grid_cell(mask) == cell

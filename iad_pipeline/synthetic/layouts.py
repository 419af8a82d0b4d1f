"""Writers of the MVTec-like layouts: MVTec AD, MPDD, GoodsAD, DTD-Synthetic, MVTec 3D-AD.

Each ``write_<key>(writer, categories)`` writes the whole tree of one dataset key under
``writer.root`` and returns what it wrote, in order. Per category: ``2 * per_class`` train
images, ``per_class`` validation images where the layout has them, ``per_class`` good test
images and ``per_class`` images of every defect named in the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from iad_pipeline.datasets.catalog import (
    DTD_SYNTHETIC_DEFECTS,
    GOODSAD_DEFECTS,
    MPDD_DEFECTS,
    MVTEC_3D_DEFECTS,
    MVTEC_AD_DEFECTS,
)
from iad_pipeline.synthetic.defects import defect_kinds, plant
from iad_pipeline.synthetic.draw import Style, render, style_for
from iad_pipeline.synthetic.report import SynthImage
from iad_pipeline.synthetic.writer import Drawn, Writer, binary, licence_files

MVTEC_TEXTURES = frozenset({"carpet", "grid", "leather", "tile", "wood"})
MVTEC_GRAY = frozenset({"grid", "screw", "zipper"})


def three_digits(i: int) -> str:
    """MVTec-style stem.

    >>> three_digits(7)
    '007'
    """
    return f"{i:03d}"


@dataclass(frozen=True)
class Tree:
    """Naming rules of an MVTec-like tree.

    Attributes:
        ext: Image suffix (``.png``, ``.jpg``, ``.JPG``).
        mask_suffix: Added to the image stem for the mask (``_mask`` or ``""``).
        stem: Stem of the i-th image of a folder.
        validation: ``True`` when the layout has ``validation/good``.
    """

    ext: str = ".png"
    mask_suffix: str = "_mask"
    stem: Callable[[int], str] = three_digits
    validation: bool = False


def mvtec_style(category: str) -> Style:
    """MVTec AD's look: textures for the five texture classes, grayscale for grid/screw/zipper."""
    return style_for(category, texture=category in MVTEC_TEXTURES, gray=category in MVTEC_GRAY)


def write_category(
    w: Writer,
    prefix: str,
    category: str,
    style: Style,
    defects: Sequence[str],
    tree: Tree,
    *,
    train: int | None = None,
) -> list[Drawn]:
    """One category of an MVTec-like tree rooted at ``prefix`` (root-relative folder).

    ``train`` overrides the number of train images (MMAD needs at least three templates).
    """
    pc = w.per_class
    out: list[Drawn] = []
    folders = [("train", "train", 2 * pc if train is None else train)]
    if tree.validation:
        folders.append(("validation", "val", pc))
    folders.append(("test", "test", pc))
    for folder, split, count in folders:
        for i in range(count):
            stem = tree.stem(i)
            rel = w.save(
                f"{prefix}/{folder}/good/{stem}{tree.ext}",
                w.good(style, category, folder, "good", i),
            )
            out.append(Drawn(SynthImage(category, split, "good", stem, rel, ()), style))
    for defect in defects:
        for i in range(pc):
            stem = tree.stem(i)
            kinds = defect_kinds(defect, i)
            image, regions = w.defective(style, defect, i, category, "test", defect, i, kinds=kinds)
            rel = w.save(f"{prefix}/test/{defect}/{stem}{tree.ext}", image)
            mask = w.save(
                f"{prefix}/ground_truth/{defect}/{stem}{tree.mask_suffix}.png",
                binary(np.logical_or.reduce(regions)),
            )
            entry = SynthImage(category, "test", defect, stem, rel, (mask,))
            out.append(Drawn(entry, style, defect, kinds, regions))
    return out


def write_mvtec_ad(w: Writer, categories: Iterable[str]) -> list[Drawn]:
    """``<cat>/{train,test}/<label>/000.png``, ``ground_truth/<defect>/000_mask.png``, licence."""
    licence_files(w, "MVTec AD")
    out: list[Drawn] = []
    for cat in categories:
        out += write_category(w, cat, cat, mvtec_style(cat), MVTEC_AD_DEFECTS[cat], Tree())
    return out


def write_mpdd(w: Writer, categories: Iterable[str]) -> list[Drawn]:
    """MPDD: the MVTec AD tree with MPDD's categories (all objects, RGB, no licence files)."""
    out: list[Drawn] = []
    for cat in categories:
        style = style_for(cat, texture=False)
        out += write_category(w, cat, cat, style, MPDD_DEFECTS[cat], Tree())
    return out


def goodsad_tree(category: str) -> Tree:
    """GoodsAD naming: ``.jpg`` images, 6-digit stems (goods type + serial), masks by stem.

    The goods type is the category's 1-based position in the catalog.

    >>> goodsad_tree("drink_bottle").stem(4)
    '002004'
    """
    goods_type = list(GOODSAD_DEFECTS).index(category) + 1
    return Tree(ext=".jpg", mask_suffix="", stem=lambda i: f"{goods_type:03d}{i:03d}")


def write_goodsad(w: Writer, categories: Iterable[str]) -> list[Drawn]:
    """``<cat>/test/<defect>/001000.jpg`` with masks ``ground_truth/<defect>/001000.png``."""
    out: list[Drawn] = []
    for cat in categories:
        style = style_for(cat, texture=False)
        out += write_category(w, cat, cat, style, GOODSAD_DEFECTS[cat], goodsad_tree(cat))
    return out


def write_dtd_synthetic(w: Writer, categories: Iterable[str]) -> list[Drawn]:
    """``<Cat>/test/bad/000.png`` with ``ground_truth/bad/000_mask.png``; every class a texture."""
    out: list[Drawn] = []
    for cat in categories:
        style = style_for(cat, texture=True)
        out += write_category(w, cat, cat, style, DTD_SYNTHETIC_DEFECTS[cat], Tree())
    return out


def point_map(
    obj: np.ndarray, regions: Sequence[np.ndarray], kinds: Sequence[str], rng: np.random.Generator
) -> np.ndarray:
    """A float32 (H, W, 3) x/y/z map in metres: a dome where the object is, zeros elsewhere.

    Defect regions dent (scratch, missing) or raise (blob, extra) the surface.
    """
    size = obj.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r2 = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size / 2) ** 2
    z = 0.6 + 0.02 * np.clip(1 - r2, 0, 1) + rng.normal(0, 2e-4, (size, size))
    present = obj.copy()
    for region, kind in zip(regions, kinds, strict=True):
        if kind == "missing":
            present &= ~region
        else:
            present |= region
            z[region] += 0.004 if kind in ("blob", "extra") else -0.004
    xyz = np.stack([(xx - size / 2) * 1e-3, (yy - size / 2) * 1e-3, z], axis=-1)
    return np.where(present[..., None], xyz, 0).astype(np.float32)


def write_mvtec_3d(w: Writer, categories: Iterable[str]) -> list[Drawn]:
    """``<cat>/<split>/<label>/{rgb/000.png, xyz/000.tiff}`` plus ``gt/000.png`` in test."""
    licence_files(w, "MVTec 3D-AD")
    out: list[Drawn] = []
    pc = w.per_class
    for cat in categories:
        style = style_for(cat, texture=False)
        plan = [
            ("train", "train", "good", 2 * pc),
            ("validation", "val", "good", pc),
            ("test", "test", "good", pc),
        ]
        plan += [("test", "test", defect, pc) for defect in MVTEC_3D_DEFECTS[cat]]
        for folder, split, label, count in plan:
            for i in range(count):
                out.append(_write_3d(w, cat, style, folder, split, label, i))
    return out


def _write_3d(
    w: Writer, cat: str, style: Style, folder: str, split: str, label: str, i: int
) -> Drawn:
    stem = three_digits(i)
    base = f"{cat}/{folder}/{label}"
    rng = w.rng(cat, folder, label, i)
    scene = render(style, w.size, rng)
    kinds = () if label == "good" else defect_kinds(label, i)
    image, regions = plant(scene, kinds, rng) if kinds else (scene.image, [])
    rel = w.save(f"{base}/rgb/{stem}.png", image)
    w.save(f"{base}/xyz/{stem}.tiff", point_map(scene.allowed, regions, kinds, rng))
    masks: tuple[str, ...] = ()
    if folder == "test":
        union = np.logical_or.reduce(regions) if regions else np.zeros(image.shape[:2], bool)
        gt = w.save(f"{base}/gt/{stem}.png", binary(union))
        masks = (gt,) if regions else ()
    return Drawn(
        SynthImage(cat, split, label, stem, rel, masks),
        style,
        "" if label == "good" else label,
        kinds,
        regions,
    )

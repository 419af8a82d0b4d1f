"""Writers of the layouts that are not plain MVTec trees: raw VisA, MVTec LOCO AD and DAGM 2007.

- VisA (raw archive): ``Data/Images/{Normal,Anomaly}`` JPEGs, index-valued masks (pixel =
  1-based defect id of the category), ``image_anno.csv`` and ``split_csv/1cls.csv``.
- MVTec LOCO AD: one mask folder per anomalous image, one file per region, each region's
  pixels carrying its defect's ``pixel_value`` from ``defects_config.json`` (never 255).
- DAGM 2007: ``ClassN/{Train,Test}`` grayscale ``.PNG`` with ``Label/Labels.txt`` and ellipse
  label images; the defect is drawn inside the ellipse, the ellipse is the (weak) mask.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from iad_pipeline.datasets.catalog import MVTEC_LOCO_CONFIG_DEFECTS, VISA_DEFECTS
from iad_pipeline.synthetic.defects import defect_kind, plant
from iad_pipeline.synthetic.draw import PATTERNS, Style, add_parts, render, style_for, view
from iad_pipeline.synthetic.report import SynthImage
from iad_pipeline.synthetic.writer import Drawn, Writer, binary, licence_files

# LOCO: one pixel value per config defect name (37, 74, ... 185), and which one each kind uses.
LOCO_PIXEL_VALUES = {name: 37 * (i + 1) for i, name in enumerate(MVTEC_LOCO_CONFIG_DEFECTS)}
LOCO_CONFIG_NAME = {
    "missing_part": "missing_part",
    "extra_part": "extra_part",
    "blob": "contamination",
    "scratch": "damage",
}
LOCO_KINDS = {
    "logical_anomalies": (("missing_part",), ("missing_part", "extra_part"), ("extra_part",)),
    "structural_anomalies": (("blob",), ("scratch", "blob"), ("scratch",)),
}


def csv_text(rows: Sequence[Sequence[str]]) -> str:
    """Rows as CSV with ``\\n`` line ends; fields with commas are quoted.

    >>> csv_text([["image", "label"], ["a.JPG", "spot,crack"]])
    'image,label\\na.JPG,"spot,crack"\\n'
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def visa_plan(category: str, per_class: int) -> list[tuple[str, ...]]:
    """Defect names of each anomaly image of a category, in file order.

    ``per_class`` images per defect; every third one also carries the next defect of the
    category (two regions, two ids in its mask).

    >>> visa_plan("pcb1", 2)[:3]
    [('bent',), ('bent', 'melt'), ('melt',)]
    """
    defects = VISA_DEFECTS[category]
    plan = []
    for j, defect in enumerate(defects):
        for i in range(per_class):
            second = defects[(j + 1) % len(defects)]
            plan.append((defect, second) if i % 3 == 1 and second != defect else (defect,))
    return plan


def visa_anomaly(
    w: Writer, category: str, style: Style, k: int, names: tuple[str, ...]
) -> tuple[np.ndarray, list[np.ndarray], tuple[str, ...]]:
    """The k-th anomaly image of a VisA category: image, one region per name, region kinds."""
    kinds = tuple(defect_kind(name) for name in names)
    image, regions = w.defective(style, names[0], k, category, "anomaly", k, kinds=kinds)
    return image, regions, kinds


def write_visa(w: Writer, categories: Iterable[str]) -> list[Drawn]:
    """Raw VisA: images, index-valued masks, ``image_anno.csv`` per category, ``1cls.csv``."""
    out: list[Drawn] = []
    split_rows = [["object", "split", "label", "image", "mask"]]
    for cat in categories:
        style = style_for(cat, texture=False)
        anno = [["image", "label", "mask"]]
        for i in range(3 * w.per_class):
            stem = f"{i:04d}"
            split = "train" if i < 2 * w.per_class else "test"
            rel = w.save(f"{cat}/Data/Images/Normal/{stem}.JPG", w.good(style, cat, "normal", i))
            anno.append([rel, "normal", ""])
            split_rows.append([cat, split, "normal", rel, ""])
            out.append(Drawn(SynthImage(cat, split, "good", stem, rel, ()), style))
        ids = {name: n + 1 for n, name in enumerate(VISA_DEFECTS[cat])}
        for k, names in enumerate(visa_plan(cat, w.per_class)):
            stem = f"{k:03d}"
            image, regions, kinds = visa_anomaly(w, cat, style, k, names)
            index_mask = np.zeros(image.shape[:2], np.uint8)
            for name, region in zip(names, regions, strict=True):
                index_mask[region] = ids[name]
            rel = w.save(f"{cat}/Data/Images/Anomaly/{stem}.JPG", image)
            mask = w.save(f"{cat}/Data/Masks/Anomaly/{stem}.png", index_mask)
            anno.append([rel, ",".join(names), mask])
            split_rows.append([cat, "test", "anomaly", rel, mask])
            entry = SynthImage(cat, "test", "bad", stem, rel, (mask,))
            out.append(Drawn(entry, style, names[0], kinds, regions))
        w.save_text(f"{cat}/image_anno.csv", csv_text(anno))
    w.save_text("split_csv/1cls.csv", csv_text(split_rows))
    return out


def loco_config() -> list[dict[str, object]]:
    """The ``defects_config.json`` of every synthetic LOCO category.

    >>> [(d["defect_name"], d["pixel_value"]) for d in loco_config()][:2]
    [('missing_part', 37), ('extra_part', 74)]
    """
    return [
        {
            "defect_name": name,
            "pixel_value": value,
            "saturation_threshold": 1 if name.endswith(("part", "position")) else 400,
            "relative_saturation": name.endswith(("part", "position")),
        }
        for name, value in LOCO_PIXEL_VALUES.items()
    ]


def write_loco_category(
    w: Writer, prefix: str, category: str, *, validation: bool, train: int | None = None
) -> list[Drawn]:
    """One LOCO category under ``prefix``: an object carrying three small parts.

    Logical anomalies remove a part or add one; structural ones are scratches and blobs.
    """
    style = style_for(category, texture=False)
    pc = w.per_class
    out: list[Drawn] = []
    folders = [("train", "train", 2 * pc if train is None else train)]
    folders += [("validation", "val", pc)] if validation else []
    folders += [("test", "test", pc)]
    for folder, split, count in folders:
        for i in range(count):
            stem = f"{i:03d}"
            rng = w.rng(category, folder, "good", i)
            image = view(add_parts(render(style, w.size, rng), rng).image, style.gray)
            rel = w.save(f"{prefix}/{folder}/good/{stem}.png", image)
            out.append(Drawn(SynthImage(category, split, "good", stem, rel, ()), style))
    for label, cycle in LOCO_KINDS.items():
        for i in range(pc):
            stem = f"{i:03d}"
            kinds = cycle[i % len(cycle)]
            rng = w.rng(category, "test", label, i)
            scene = add_parts(render(style, w.size, rng), rng)
            image, regions = plant(scene, kinds, rng, gray=style.gray)
            rel = w.save(f"{prefix}/test/{label}/{stem}.png", image)
            masks = []
            for j, (kind, region) in enumerate(zip(kinds, regions, strict=True)):
                value = LOCO_PIXEL_VALUES[LOCO_CONFIG_NAME[kind]]
                masks.append(
                    w.save(
                        f"{prefix}/ground_truth/{label}/{stem}/{j:03d}.png",
                        np.where(region, value, 0).astype(np.uint8),
                    )
                )
            entry = SynthImage(category, "test", label, stem, rel, tuple(masks))
            out.append(Drawn(entry, style, LOCO_CONFIG_NAME[kinds[0]], kinds, regions))
    return out


def write_mvtec_loco(w: Writer, categories: Iterable[str]) -> list[Drawn]:
    """LOCO tree with ``validation/good``, per-image mask folders and ``defects_config.json``."""
    licence_files(w, "MVTec LOCO AD")
    out: list[Drawn] = []
    for cat in categories:
        w.save_json(f"{cat}/defects_config.json", loco_config())
        out += write_loco_category(w, cat, cat, validation=True)
    return out


def ellipse(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random filled ellipse well inside the image (DAGM's weak label)."""
    out = np.zeros((size, size), np.uint8)
    centre = np.rint(rng.uniform(0.3, 0.7, 2) * size).astype(int)
    axes = np.rint([size * rng.uniform(0.12, 0.2), size * rng.uniform(0.07, 0.12)]).astype(int)
    cv2.ellipse(
        out,
        (int(centre[0]), int(centre[1])),
        (int(axes[0]), int(axes[1])),
        float(rng.uniform(0, 180)),
        0,
        360,
        255,
        -1,
    )
    return out > 0


def write_dagm(w: Writer, categories: Iterable[str]) -> list[Drawn]:
    """``ClassN/{Train,Test}/0001.PNG`` with ``Label/Labels.txt`` and ``Label/0002_label.PNG``.

    Per folder ``3 * per_class`` images, every third (0002, 0005...) defective.
    """
    out: list[Drawn] = []
    for cat in categories:
        number = int(cat.removeprefix("Class"))
        style = dataclasses.replace(
            style_for(cat, texture=True, gray=True), pattern=PATTERNS[(number - 1) % len(PATTERNS)]
        )
        for folder, split in (("Train", "train"), ("Test", "test")):
            rows = ["1"]
            for i in range(3 * w.per_class):
                number_id, name = i + 1, f"{i + 1:04d}"
                rel = f"{cat}/{folder}/{name}.PNG"
                if i % 3 != 1:
                    w.save(rel, w.good(style, cat, folder, i))
                    rows.append(f"{number_id}\t0\t{name}.PNG\t0\t0")
                    out.append(Drawn(SynthImage(cat, split, "good", name, rel, ()), style))
                    continue
                rng = w.rng(cat, folder, i)
                scene = render(style, w.size, rng)
                area = ellipse(w.size, rng)
                kinds = ("scratch",) if (i // 3) % 2 == 0 else ("blob",)
                image, regions = plant(scene, kinds, rng, gray=True, region=area)
                w.save(rel, image)
                label = w.save(f"{cat}/{folder}/Label/{name}_label.PNG", binary(area))
                rows.append(f"{number_id}\t1\t{name}.PNG\t0\t{name}_label.PNG")
                entry = SynthImage(cat, split, "defect", name, rel, (label,))
                out.append(Drawn(entry, style, "defect", kinds, regions))
            w.save_text(f"{cat}/{folder}/Label/Labels.txt", "\n".join(rows) + "\n")
    return out

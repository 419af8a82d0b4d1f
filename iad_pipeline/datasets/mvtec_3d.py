"""MVTec 3D-AD (RGB only): 10 categories of food and industrial objects.

Reference: Bergmann et al., "The MVTec 3D-AD Dataset for Unsupervised 3D Anomaly Detection
and Localization", VISAPP 2022. https://www.mvtec.com/company/research/datasets/mvtec-3d-ad
Licence: CC BY-NC-SA 4.0 (acceptance required).

Download: the link anomalib uses since its PR #3673 (2026-07, "update mvtec link": the older
mydrive shares answer 403/404), with the md5 anomalib publishes for the archive
(``src/anomalib/data/datamodules/depth/mvtec_3d.py``, ``DOWNLOAD_INFO.hashsum``). MVTec's
links move: override with ``--url`` / ``IAD_MVTEC_3D_URL`` (and ``--md5``/``--sha256``).

Layout: ``<cat>/{train,validation}/good/{rgb,xyz}/000.*`` and
``<cat>/test/<good|defect>/{rgb/000.png, gt/000.png, xyz/000.tiff}``. Only ``rgb`` images and
``gt`` masks (same stem) are read; ``xyz`` point maps are left alone. Known non-image content
is skipped without a quarantine row: each category's ``calibration/`` folder (camera
parameters) and the text/json files beside the categories and inside them (``readme.txt``,
``license.txt``, ``class_ids.json``). ``gt`` masks may carry class-id values (e.g. 253-255)
rather than 255 only: like every mask of the pipeline, any non-zero pixel is defect, so they
read as binary masks.

Defects per category (``catalog.MVTEC_3D_DEFECTS``) are the archive's ``test/`` folder names;
only ``tire``'s are checked against files of the dataset (see the catalog's comment for the
source and for what the other categories rest on).
"""

from __future__ import annotations

from pathlib import Path

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES, MVTEC_3D_DEFECTS
from iad_pipeline.datasets.layout import (
    GOOD,
    Candidate,
    LayoutScan,
    Reason,
    RequireCategoryFolders,
    is_image,
    list_dir,
)
from iad_pipeline.datasets.spec import DatasetSpec, Resource

KEY = "mvtec_3d"
URL = (
    "https://www.mydrive.ch/shares/150646/25de33f1276dd418cd856f2f48a84cdb/download/"
    "428824485-1643299897/mvtec_3d_anomaly_detection.tar.xz"
)
MD5 = "d8bb2800fbf3ac88e798da6ae10dc819"  # anomalib's published digest of the archive
# folders inside a category that hold no images of the benchmark
NON_IMAGE_FOLDERS = frozenset({"calibration"})
SPLITS = {"train": "train", "validation": "val", "test": "test"}
MODALITIES = frozenset({"rgb", "gt", "xyz"})


def scan(root: Path) -> LayoutScan:
    """Candidates from ``<cat>/<split>/<label>/rgb`` with masks from the sibling ``gt``."""
    out = LayoutScan(KEY, root)
    for cat in list_dir(root)[0]:
        cat_dir = Path(cat.path)
        splits = [d for d in list_dir(cat_dir)[0]]
        if not any(d.name in SPLITS for d in splits):
            out.problem(cat_dir, Reason.UNKNOWN_FOLDER, "not a category: no train/ or test/ folder")
            continue
        before = len(out.candidates)
        for split_dir in splits:
            if split_dir.name in NON_IMAGE_FOLDERS:
                continue
            if split_dir.name not in SPLITS:
                out.problem(split_dir.path, Reason.UNKNOWN_FOLDER, "unexpected folder in category")
                continue
            for label_dir in list_dir(Path(split_dir.path))[0]:
                _scan_label(out, cat.name, SPLITS[split_dir.name], Path(label_dir.path))
        if len(out.candidates) == before:
            out.problem(cat_dir, Reason.EMPTY_CATEGORY, f"category {cat.name!r} has no images")
    return out


def _scan_label(out: LayoutScan, category: str, split: str, label_dir: Path) -> None:
    label = label_dir.name
    modalities = {d.name for d in list_dir(label_dir)[0]}
    for extra in sorted(modalities - MODALITIES):
        out.problem(label_dir / extra, Reason.UNKNOWN_FOLDER, "expected rgb/, gt/ or xyz/")
    gt = (
        {Path(f.name).stem: Path(f.path) for f in list_dir(label_dir / "gt")[1]}
        if ("gt" in modalities)
        else {}
    )
    rgb_dir = label_dir / "rgb"
    if not rgb_dir.is_dir():
        return
    stems: set[str] = set()
    for f in list_dir(rgb_dir)[1]:
        if not is_image(f.name):
            continue
        stem = Path(f.name).stem
        stems.add(stem)
        masks = (gt[stem],) if label != GOOD and stem in gt else ()
        out.candidates.append(
            Candidate(KEY, category, split, label, Path(f.path), masks, source=KEY, root=out.root)
        )
    if label != GOOD:
        for stem in sorted(set(gt) - stems):
            out.problem(gt[stem], Reason.ORPHAN_MASK, f"gt mask without rgb/{stem}.png")


SPEC = DatasetSpec(
    key=KEY,
    name="MVTec 3D-AD (RGB)",
    licence="CC BY-NC-SA 4.0",
    needs_acceptance=True,
    manual=False,
    size="about 13 GB",
    homepage="https://www.mvtec.com/company/research/datasets/mvtec-3d-ad",
    resources=(Resource(ARCHIVE_NAMES[KEY], URL, None, md5=MD5),),
    scan=scan,
    required=RequireCategoryFolders(("train/good/rgb", "test")),
    categories=tuple(MVTEC_3D_DEFECTS),
    notes="Verified by anomalib's published md5; the sha256 is recorded on download.",
)

"""VisA: Visual Anomaly dataset, 12 categories (PCBs, capsules, food).

Reference: Zou et al., "SPot-the-Difference Self-Supervised Pre-training for Anomaly
Detection and Segmentation", ECCV 2022. https://github.com/amazon-science/spot-diff
Licence: CC BY 4.0 (spot-diff's LICENSE-DATASET; anomalib's docstring says CC BY-NC-SA,
which looks wrong). No acceptance needed.

Raw layout (the archive): ``<cat>/Data/Images/{Normal,Anomaly}/*.JPG``,
``<cat>/Data/Masks/Anomaly/*.png`` (index-valued: pixel = defect-class id, binarise with
``> 0``), ``split_csv/1cls.csv`` (``object,split,label,image,mask``). After the 1cls split
the tree is MVTec-like with label ``bad``; both are read. 10,821 images.
"""

from __future__ import annotations

import csv
from pathlib import Path

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES, VISA_DEFECTS
from iad_pipeline.datasets.layout import (
    Candidate,
    LayoutScan,
    Reason,
    RequireCategoryFolders,
    is_image,
    scan_mvtec_like,
)
from iad_pipeline.datasets.spec import DatasetSpec, Resource

KEY = "visa"
URL = "https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar"
SHA256 = "2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362"
SPLIT_CSV = "split_csv/1cls.csv"
CSV_HEADER = ["object", "split", "label", "image", "mask"]
LABELS = {"normal": "good", "anomaly": "bad"}


def scan(root: Path) -> LayoutScan:
    """Read raw VisA (through ``split_csv/1cls.csv``) or a 1cls MVTec-like tree."""
    if (root / SPLIT_CSV).is_file():
        return scan_raw(root)
    return scan_mvtec_like(root, KEY)


def scan_raw(root: Path) -> LayoutScan:
    """Candidates from ``split_csv/1cls.csv``; images on disk the csv does not list are reported."""
    out = LayoutScan(KEY, root)
    csv_path = root / SPLIT_CSV
    listed: set[Path] = set()
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if [h.strip() for h in header] != CSV_HEADER:
            out.problem(
                csv_path, Reason.BAD_MANIFEST_ROW, f"header is {header}, expected {CSV_HEADER}"
            )
            return out
        for lineno, row in enumerate(reader, start=2):
            _add_row(out, root, csv_path, lineno, row, listed)
    for cat_dir in sorted(p for p in root.iterdir() if (p / "Data" / "Images").is_dir()):
        for path in sorted((cat_dir / "Data" / "Images").rglob("*")):
            if path.is_file() and is_image(path.name) and path not in listed:
                out.problem(path, Reason.UNLISTED_IMAGE, f"image not listed in {SPLIT_CSV}")
    return out


def _add_row(
    out: LayoutScan, root: Path, csv_path: Path, lineno: int, row: list[str], listed: set[Path]
) -> None:
    where = f"{csv_path}:{lineno}"
    if len(row) != len(CSV_HEADER) or row[2] not in LABELS or row[1] not in ("train", "test"):
        out.problem(where, Reason.BAD_MANIFEST_ROW, f"cannot use row {row}")
        return
    category, split, label, image, mask = row
    image_path = root / image
    listed.add(image_path)
    if not image_path.is_file():
        out.problem(image_path, Reason.MISSING_IMAGE, f"listed at {where} but not on disk")
        return
    masks: tuple[Path, ...] = ()
    if mask:
        mask_path = root / mask
        if not mask_path.is_file():
            out.problem(
                mask_path,
                Reason.MISSING_MASK,
                f"listed at {where} but not on disk",
                f"{KEY}/{category}/{split}/{LABELS[label]}/{image_path.stem}",
            )
            return
        masks = (mask_path,)
    out.candidates.append(
        Candidate(KEY, category, split, LABELS[label], image_path, masks, source=KEY, root=root)
    )


def required(root: Path) -> list[str]:
    """Missing parts of a raw VisA tree (or of a 1cls tree when no split csv is present)."""
    if (root / SPLIT_CSV).is_file():
        return []
    if root.is_dir() and any((p / "Data" / "Images").is_dir() for p in root.iterdir()):
        return [SPLIT_CSV]
    return RequireCategoryFolders()(root)


SPEC = DatasetSpec(
    key=KEY,
    name="VisA",
    licence="CC BY 4.0",
    needs_acceptance=False,
    manual=False,
    size="unknown",
    homepage="https://github.com/amazon-science/spot-diff",
    resources=(Resource(ARCHIVE_NAMES[KEY], URL, SHA256),),
    scan=scan,
    required=required,
    categories=tuple(VISA_DEFECTS),
    notes="Masks are index maps (defect-class ids); anomalies are labelled 'bad' as in 1cls.",
)

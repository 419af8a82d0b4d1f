"""Walking a dataset folder: candidates (images with their masks) and structural problems.

A layout reader only looks at names on disk; it never opens an image. It returns a
:class:`LayoutScan` whose candidates :func:`iad_pipeline.datasets.samples.build_samples` then
inspects (header, content hash, truncation, mask sizes) in parallel. Keeping the two apart
makes every reader a short, pure directory walk, and the expensive part one shared loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
GOOD = "good"


class Reason:
    """Reason codes of quarantine rows (one column, stable strings users can filter on)."""

    UNREADABLE_IMAGE = "unreadable_image"
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    LINK_OUTSIDE_DATASET = "link_outside_dataset"
    IMAGE_TOO_LARGE = "image_too_large"
    TRUNCATED_IMAGE = "truncated_image"
    MISSING_IMAGE = "missing_image"
    MISSING_MASK = "missing_mask"
    UNREADABLE_MASK = "unreadable_mask"
    MASK_SIZE_MISMATCH = "mask_size_mismatch"
    ORPHAN_MASK = "orphan_mask"
    UNKNOWN_FOLDER = "unknown_folder"
    EMPTY_CATEGORY = "empty_category"
    DUPLICATE_SAMPLE = "duplicate_sample"
    LABEL_MISMATCH = "label_mismatch"
    BAD_MANIFEST_ROW = "bad_manifest_row"
    UNLISTED_IMAGE = "unlisted_image"


@dataclass(slots=True)
class Candidate:
    """An image found by a layout reader, not yet opened."""

    dataset: str
    category: str
    split: str
    label: str
    image_path: Path
    mask_paths: tuple[Path, ...] = ()
    source: str = ""
    root: Path | None = None

    @property
    def is_anomalous(self) -> bool:
        return self.label != GOOD

    @property
    def stem(self) -> str:
        return self.image_path.stem

    @property
    def sample_id(self) -> str:
        """``<dataset>/<category>/<split>/<label>/<stem>``: the stable id of a sample."""
        return f"{self.dataset}/{self.category}/{self.split}/{self.label}/{self.stem}"


@dataclass(slots=True)
class Problem:
    """Something wrong with a dataset folder; becomes one quarantine row."""

    dataset: str
    path: str
    reason: str
    detail: str
    sample_id: str = ""


@dataclass
class LayoutScan:
    """What a layout reader found: candidates to inspect and problems to quarantine."""

    dataset: str
    root: Path
    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def problem(self, path: Path | str, reason: str, detail: str, sample_id: str = "") -> None:
        self.problems.append(Problem(self.dataset, str(path), reason, detail, sample_id))


def is_image(name: str) -> bool:
    """``True`` for file names with an image suffix (any case).

    >>> is_image("000.JPG"), is_image("000_mask.png"), is_image("readme.txt")
    (True, True, False)
    """
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def list_dir(path: Path) -> tuple[list[os.DirEntry[str]], list[os.DirEntry[str]]]:
    """Sorted (folders, files) of ``path``, hidden entries left out."""
    dirs: list[os.DirEntry[str]] = []
    files: list[os.DirEntry[str]] = []
    with os.scandir(path) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            (dirs if entry.is_dir() else files).append(entry)
    dirs.sort(key=lambda e: e.name)
    files.sort(key=lambda e: e.name)
    return dirs, files


def index_masks(
    mask_root: Path, suffixes: Iterable[str] = ("_mask", "")
) -> dict[str, tuple[Path, ...]]:
    """Map image stems to their mask files inside one ``ground_truth/<label>/`` folder.

    A file ``000_mask.png`` (or ``000.png``) pairs with stem ``000``; a folder ``000/`` (MVTec
    LOCO: one mask per annotated region) pairs with stem ``000`` and contributes all its images.
    """
    index: dict[str, tuple[Path, ...]] = {}
    if not mask_root.is_dir():
        return index
    dirs, files = list_dir(mask_root)
    for entry in files:
        if not is_image(entry.name):
            continue
        stem = os.path.splitext(entry.name)[0]
        for suffix in suffixes:
            if suffix and stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        index[stem] = (*index.get(stem, ()), Path(entry.path))
    for entry in dirs:
        _, inner = list_dir(Path(entry.path))
        index[entry.name] = tuple(Path(f.path) for f in inner if is_image(f.name))
    return index


@dataclass(frozen=True)
class MvtecLikeReader:
    """A picklable layout reader for MVTec-like trees of one dataset key."""

    dataset: str

    def __call__(self, root: Path) -> LayoutScan:
        return scan_mvtec_like(root, self.dataset)


@dataclass(frozen=True)
class RequireCategoryFolders:
    """Checks that a tree has categories and that each has the given sub-folders.

    Returns the missing paths (relative to the root), empty when the layout is complete.
    """

    subfolders: tuple[str, ...] = ("train/good", "test")
    marker: tuple[str, ...] = ("train", "test")

    def __call__(self, root: Path) -> list[str]:
        if not root.is_dir():
            return [f"{root} (the dataset folder itself)"]
        cats = [
            d for d in list_dir(root)[0] if any((Path(d.path) / m).is_dir() for m in self.marker)
        ]
        if not cats:
            return [
                f"<category>/{s}/ (no category folder found in {root})" for s in self.subfolders
            ]
        return [
            f"{c.name}/{s}/"
            for c in cats
            for s in self.subfolders
            if not (Path(c.path) / s).is_dir()
        ]


def scan_mvtec_like(
    root: Path,
    dataset: str,
    *,
    splits: Mapping[str, str] | None = None,
    mask_folder: str = "ground_truth",
    allowed_extra: frozenset[str] = frozenset(),
) -> LayoutScan:
    """Read an MVTec-like tree: ``<cat>/<split>/<label>/<img>`` + ``<cat>/ground_truth/<label>/``.

    Used by MVTec AD, MPDD, GoodsAD, DTD-Synthetic, VisA after its 1cls split and MVTec LOCO
    (whose masks are one folder per image). Masks pair with images by stem (``000.png`` with
    ``000_mask.png``, ``000.png`` or ``000/``); every unpaired mask is reported. A folder that is
    neither a split nor the mask folder is reported as unknown; a category without images as
    empty. Files beside the categories (licence, readme, json configs) are ignored.
    """
    splits = dict(splits or {"train": "train", "test": "test", "validation": "val", "val": "val"})
    scan = LayoutScan(dataset, root)
    category_dirs, _ = list_dir(root)
    for cat_entry in category_dirs:
        if cat_entry.name in allowed_extra:
            continue
        cat_dir = Path(cat_entry.path)
        sub_dirs, _ = list_dir(cat_dir)
        names = {d.name for d in sub_dirs}
        if not names & set(splits):
            scan.problem(
                cat_dir,
                Reason.UNKNOWN_FOLDER,
                f"not a category: no {'/'.join(sorted(splits))} folder inside",
            )
            continue
        _scan_category(scan, cat_dir, sub_dirs, splits, mask_folder)
    return scan


def _scan_category(
    scan: LayoutScan,
    cat_dir: Path,
    sub_dirs: list[os.DirEntry[str]],
    splits: Mapping[str, str],
    mask_folder: str,
) -> None:
    category = cat_dir.name
    masks: dict[str, dict[str, tuple[Path, ...]]] = {}
    mask_dir = cat_dir / mask_folder
    if mask_dir.is_dir():
        label_dirs, _ = list_dir(mask_dir)
        masks = {d.name: index_masks(Path(d.path)) for d in label_dirs}
    used: set[tuple[str, str]] = set()
    found = 0
    for split_entry in sub_dirs:
        if split_entry.name == mask_folder:
            continue
        if split_entry.name not in splits:
            scan.problem(
                split_entry.path,
                Reason.UNKNOWN_FOLDER,
                f"unexpected folder in category {category!r}",
            )
            continue
        split = splits[split_entry.name]
        label_dirs, _ = list_dir(Path(split_entry.path))
        for label_entry in label_dirs:
            found += _scan_label(
                scan, category, split, label_entry, masks.get(label_entry.name, {}), used
            )
    if found == 0:
        scan.problem(cat_dir, Reason.EMPTY_CATEGORY, f"category {category!r} has no images")
    _report_orphan_masks(scan, cat_dir / mask_folder, masks, used)


def _scan_label(
    scan: LayoutScan,
    category: str,
    split: str,
    label_entry: os.DirEntry[str],
    masks: Mapping[str, tuple[Path, ...]],
    used: set[tuple[str, str]],
) -> int:
    """Add the images of one ``<split>/<label>/`` folder, paired with their masks by stem.

    Returns the number of images found; the masks paired are added to ``used``.
    """
    label = label_entry.name
    nested, files = list_dir(Path(label_entry.path))
    for extra in nested:
        scan.problem(extra.path, Reason.UNKNOWN_FOLDER, "unexpected folder inside a label folder")
    found = 0
    for f in files:
        if not is_image(f.name):
            continue
        found += 1
        stem = os.path.splitext(f.name)[0]
        mask_paths: tuple[Path, ...] = ()
        if label != GOOD:
            mask_paths = masks.get(stem, ())
            if mask_paths:
                used.add((label, stem))
        scan.candidates.append(
            Candidate(
                scan.dataset,
                category,
                split,
                label,
                Path(f.path),
                mask_paths,
                source=scan.dataset,
                root=scan.root,
            )
        )
    return found


def _report_orphan_masks(
    scan: LayoutScan,
    mask_dir: Path,
    masks: Mapping[str, Mapping[str, tuple[Path, ...]]],
    used: set[tuple[str, str]],
) -> None:
    """Report every mask of an anomalous label that no image was paired with."""
    for label, by_stem in masks.items():
        for stem, paths in by_stem.items():
            if (label, stem) not in used and label != GOOD:
                scan.problem(
                    paths[0] if paths else mask_dir / label / stem,
                    Reason.ORPHAN_MASK,
                    f"mask without an image test/{label}/{stem}.*",
                )

"""DAGM 2007: 10 synthetic texture classes with weakly labelled (ellipse) defects.

Reference: Wieler & Hahn, "Weakly Supervised Learning for Industrial Optical Inspection",
DAGM 2007 competition. https://hci.iwr.uni-heidelberg.de/content/dagm-2007-dataset
Licence: research use per the HCI page (unverified), so acceptance is required. Manual
download (HCI page, Zenodo record 12750201, or the AdaCLIP mirror).

Layout: ``Class{1..10}/{Train,Test}/0001.PNG`` (512x512 grayscale),
``.../Label/<id>_label.PNG`` (ellipse masks, defective images only) and ``.../Label/Labels.txt``
(``id flag image 0 labelfile``). Labels come from the mask files, as AnomalyCLIP does; rows
of Labels.txt that disagree are reported. Defective images are labelled ``defect``. Masks are
coarse ellipses: pixel metrics on DAGM carry that caveat.
"""

from __future__ import annotations

import re
from pathlib import Path

from iad_pipeline.datasets.catalog import ARCHIVE_NAMES, DAGM_DEFECTS
from iad_pipeline.datasets.layout import Candidate, LayoutScan, Reason, is_image, list_dir
from iad_pipeline.datasets.spec import DatasetSpec, Resource

KEY = "dagm"
CLASS_DIR = re.compile(r"^Class\d+$")
SPLITS = {"Train": "train", "Test": "test"}
LABEL_SUFFIX = "_label"


def scan(root: Path) -> LayoutScan:
    """Candidates from every ``ClassN/{Train,Test}`` folder."""
    out = LayoutScan(KEY, root)
    for cat in list_dir(root)[0]:
        if not CLASS_DIR.match(cat.name):
            out.problem(cat.path, Reason.UNKNOWN_FOLDER, "expected Class1 ... Class10 folders")
            continue
        before = len(out.candidates)
        for split_dir in list_dir(Path(cat.path))[0]:
            if split_dir.name not in SPLITS:
                out.problem(split_dir.path, Reason.UNKNOWN_FOLDER, "expected Train/ or Test/")
                continue
            _scan_split(out, cat.name, SPLITS[split_dir.name], Path(split_dir.path))
        if len(out.candidates) == before:
            out.problem(cat.path, Reason.EMPTY_CATEGORY, f"class {cat.name!r} has no images")
    return out


def read_labels_txt(path: Path) -> dict[str, bool]:
    """``{image stem: defective}`` from a Labels.txt; header-like or short lines are skipped.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "Labels.txt"
    >>> _ = p.write_text("1\\n1\\t0\\t0001.PNG\\t0\\t0\\n2\\t1\\t0002.PNG\\t0\\t0002_label.PNG\\n")
    >>> read_labels_txt(p)
    {'0001': False, '0002': True}
    """
    flags: dict[str, bool] = {}
    if not path.is_file():
        return flags
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in ("0", "1"):
            flags[Path(parts[2]).stem] = parts[1] == "1"
    return flags


def _scan_split(out: LayoutScan, category: str, split: str, split_dir: Path) -> None:
    label_dir = split_dir / "Label"
    masks: dict[str, Path] = {}
    if label_dir.is_dir():
        for f in list_dir(label_dir)[1]:
            stem = Path(f.name).stem
            if is_image(f.name) and stem.endswith(LABEL_SUFFIX):
                masks[stem[: -len(LABEL_SUFFIX)]] = Path(f.path)
    flags = read_labels_txt(label_dir / "Labels.txt")
    dirs, files = list_dir(split_dir)
    for extra in dirs:
        if extra.name != "Label":
            out.problem(extra.path, Reason.UNKNOWN_FOLDER, "expected only a Label/ folder here")
    stems: set[str] = set()
    for f in files:
        if not is_image(f.name):
            continue
        path = Path(f.path)
        stem = path.stem
        stems.add(stem)
        has_mask = stem in masks
        flagged = flags.get(stem)
        sid = f"{KEY}/{category}/{split}/{'defect' if has_mask else 'good'}/{stem}"
        if flagged is not None and flagged != has_mask:
            what = "defective without a *_label.PNG" if flagged else "normal, yet has a mask"
            out.problem(path, Reason.LABEL_MISMATCH, f"Labels.txt marks it {what}", sid)
            continue
        label = "defect" if has_mask else "good"
        out.candidates.append(
            Candidate(
                KEY,
                category,
                split,
                label,
                path,
                (masks[stem],) if has_mask else (),
                source=KEY,
                root=out.root,
            )
        )
    for stem in sorted(set(masks) - stems):
        out.problem(masks[stem], Reason.ORPHAN_MASK, f"label mask without image {stem}.PNG")


def required(root: Path) -> list[str]:
    """At least one ``ClassN`` folder, each with ``Train/`` and ``Test/``."""
    if not root.is_dir():
        return [f"{root} (the dataset folder itself)"]
    classes = [d for d in list_dir(root)[0] if CLASS_DIR.match(d.name)]
    if not classes:
        return ["Class1/ ... Class10/ (no ClassN folder found)"]
    return [f"{c.name}/{s}/" for c in classes for s in SPLITS if not (Path(c.path) / s).is_dir()]


SPEC = DatasetSpec(
    key=KEY,
    name="DAGM 2007",
    licence="research use (HCI Heidelberg terms; unverified)",
    needs_acceptance=True,
    manual=True,
    size="unknown",
    homepage="https://hci.iwr.uni-heidelberg.de/content/dagm-2007-dataset",
    resources=(Resource(ARCHIVE_NAMES[KEY]),),
    scan=scan,
    required=required,
    categories=tuple(DAGM_DEFECTS),
    manual_instructions=(
        "Download Class1..Class10 from the HCI Heidelberg page (or Zenodo record 12750201), "
        "extract them into one folder, then run: iad datasets fetch dagm --from PATH "
        "--accept-license"
    ),
    notes="Masks are coarse ellipses.",
)

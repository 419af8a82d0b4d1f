"""Putting a dataset in place: archive roots, the layout check and the staging folder.

Archives are extracted into a hidden staging folder beside ``<data-dir>/<key>``
(``.<key>.<8 hex>.staging``), their dataset root found (the folder itself or one wrapper
folder), plain resources added, the layout checked, and the root renamed into place, so a
dataset folder is never half written. A killed fetch's staging folders are removed by the
next one (:func:`remove_stale_staging`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from iad_pipeline.datasets.extract import check_links_within, list_members, safe_extract
from iad_pipeline.datasets.layout import list_dir
from iad_pipeline.datasets.members import PACKING_ARTEFACTS, check_members
from iad_pipeline.datasets.spec import DatasetSpec
from iad_pipeline.errors import LayoutError
from iad_pipeline.fsutil import temp_sibling
from iad_pipeline.paths import Layout

log = logging.getLogger(__name__)


def remove_stale_staging(data_dir: Path, key: str) -> None:
    """Remove the hidden staging folders and link names a killed fetch of ``key`` left.

    Called under the dataset's lock, so no live fetch owns them. Only names we create
    (:func:`~iad_pipeline.fsutil.temp_sibling` of ``<data-dir>/<key>``) are touched; a
    staging name that is a symlink is unlinked, never followed.
    """
    pattern = re.compile(rf"\.{re.escape(key)}\.[0-9a-f]{{8}}\.(staging|link)")
    for entry in os.scandir(data_dir):
        if not pattern.fullmatch(entry.name):
            continue
        if entry.is_dir(follow_symlinks=False):
            log.warning("%s: removing the staging folder of an interrupted fetch", entry.path)
            shutil.rmtree(entry.path)
        else:
            Path(entry.path).unlink(missing_ok=True)


def find_root(spec: DatasetSpec, folder: Path) -> tuple[Path, list[str]]:
    """The dataset root in ``folder`` (itself, or a single wrapper folder) and what it lacks."""
    missing = spec.required(folder)
    if not missing:
        return folder, []
    dirs, files = list_dir(folder)
    dirs = [d for d in dirs if d.name not in PACKING_ARTEFACTS]
    if len(dirs) == 1 and not files:
        inner = Path(dirs[0].path)
        if not spec.required(inner):
            return inner, []
    return folder, missing


def layout_error(spec: DatasetSpec, where: Path, missing: list[str]) -> LayoutError:
    shown = "; ".join(missing[:12]) + (
        f"; and {len(missing) - 12} more" if len(missing) > 12 else ""
    )
    msg = f"{where} is not a complete {spec.name} folder; missing: {shown}"
    return LayoutError(msg)


def unwrap(spec: DatasetSpec, folder: Path) -> Path:
    """The single wrapper folder of an archive whose plain resources are added later (MMAD's
    ``ALL_DATA/``), or ``folder`` itself."""
    dirs, files = list_dir(folder)
    dirs = [d for d in dirs if d.name not in PACKING_ARTEFACTS]
    if len(dirs) == 1 and not files and dirs[0].name not in spec.archive_folders:
        return Path(dirs[0].path)
    return folder


def check_archive_members(spec: DatasetSpec, archive: Path) -> None:
    """The main archive's member list against its expected top level, before extracting."""
    if spec.archive_folders:
        check_members(archive, list_members(archive), spec.archive_folders, spec.name)


def extract_into_place(
    spec: DatasetSpec, archives: list[Path], plain: list[Path], target: Path, data_dir: Path
) -> None:
    """Extract archives into a staging folder, add plain files, check, rename to ``target``."""
    staging = temp_sibling(target, ".staging")
    staging.mkdir()
    try:
        first = safe_extract(archives[0], staging / "x") if archives else staging / "x"
        first.mkdir(exist_ok=True)
        for artefact in PACKING_ARTEFACTS:  # __MACOSX/ beside the data: not part of it
            shutil.rmtree(first / artefact, ignore_errors=True)
        root, _ = find_root(spec, first)
        if root == first and spec.archive_folders:
            root = unwrap(spec, first)
        for extra in archives[1:]:
            extracted = safe_extract(extra, staging / f"x{len(list(staging.iterdir()))}")
            for item in extracted.iterdir():
                if item.name not in PACKING_ARTEFACTS:
                    os.replace(item, root / item.name)
        for path in plain:
            if not (root / path.name).exists():
                shutil.copyfile(path, root / path.name)
        missing = spec.required(root)
        if missing:
            raise layout_error(spec, archives[0] if archives else root, missing)
        # Links were checked against each archive's own root; the wrapper folder is gone
        # now, so check them again against the folder that becomes the dataset.
        check_links_within(root, archives[0] if archives else root)
        os.replace(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "installed %s into %s (archives kept in %s)",
        spec.key,
        target,
        Layout.of_data(data_dir).downloads,
    )

"""The samples table: one row per usable image, and the quarantine table beside it.

Columns of ``samples`` (see :data:`SAMPLES_SCHEMA`):

- ``sample_id``: ``<dataset>/<category>/<split>/<label>/<stem>``, stable across runs
- ``dataset``, ``category``, ``split`` (train/val/test), ``label`` (good or the defect name),
  ``is_anomalous``
- ``source``: the dataset key, or for MMAD the query set (DS-MVTec, MVTec-LOCO, VisA, GoodsAD)
- ``image_path`` (absolute), ``relpath`` (relative to the dataset root, posix),
  ``mask_paths`` (absolute; several for MVTec LOCO, empty for good samples)
- ``width``, ``height`` (from the header), ``sha256`` (of the file's bytes)

``quarantine`` has ``dataset, sample_id, path, reason, detail``: every image that was not
admitted (unreadable, truncated, defective without mask, mask of another size...) and every
structural problem (unknown folder, empty category, orphan mask). Nothing is deleted: the
files stay where they are, the table says why they were left out.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from iad_pipeline import limits
from iad_pipeline.datasets.imageinfo import ImageFault, inspect
from iad_pipeline.datasets.layout import Candidate, LayoutScan, Problem, Reason
from iad_pipeline.limits import MAX_IMAGE_PIXELS

SAMPLES_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "dataset": pl.String(),
    "category": pl.String(),
    "split": pl.String(),
    "label": pl.String(),
    "is_anomalous": pl.Boolean(),
    "source": pl.String(),
    "image_path": pl.String(),
    "relpath": pl.String(),
    "mask_paths": pl.List(pl.String()),
    "width": pl.Int32(),
    "height": pl.Int32(),
    "sha256": pl.String(),
}

# Candidates per task: large enough that the pool's per-task cost is noise, small enough
# that the progress bar moves.
BATCH = 256
# Below this many batches, starting worker processes costs more than it saves.
PARALLEL_MIN_BATCHES = 8

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "dataset": pl.String(),
    "sample_id": pl.String(),
    "path": pl.String(),
    "reason": pl.String(),
    "detail": pl.String(),
}


@dataclass(frozen=True)
class SamplesResult:
    samples: pl.DataFrame
    quarantine: pl.DataFrame

    @property
    def quarantine_fraction(self) -> float:
        """Quarantined rows over all rows seen (admitted + quarantined)."""
        total = self.samples.height + self.quarantine.height
        return self.quarantine.height / total if total else 0.0


_FAULT_REASONS = {
    "truncated": Reason.TRUNCATED_IMAGE,
    "not_regular": Reason.NOT_A_REGULAR_FILE,
    "outside": Reason.LINK_OUTSIDE_DATASET,
    "too_large": Reason.IMAGE_TOO_LARGE,
}


def _check(
    cand: Candidate, masks_required: bool, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[dict | None, Problem | None]:
    """Inspect one candidate: a samples row, or the problem that keeps it out."""
    sid = cand.sample_id

    def bad(reason: str, detail: str, path: Path | None = None) -> tuple[None, Problem]:
        return None, Problem(cand.dataset, str(path or cand.image_path), reason, detail, sid)

    try:
        info = inspect(cand.image_path, root=cand.root, max_pixels=max_pixels)
    except ImageFault as fault:
        reason = _FAULT_REASONS.get(fault.kind, Reason.UNREADABLE_IMAGE)
        if fault.kind == "unreadable" and not cand.image_path.exists():
            reason = Reason.MISSING_IMAGE
        return bad(reason, fault.detail)
    if cand.is_anomalous and not cand.mask_paths and masks_required:
        return bad(Reason.MISSING_MASK, "defective image without a mask")
    for mask in cand.mask_paths:
        try:
            minfo = inspect(mask, want_hash=False, root=cand.root, max_pixels=max_pixels)
        except ImageFault as fault:
            return bad(Reason.UNREADABLE_MASK, fault.detail, mask)
        if (minfo.width, minfo.height) != (info.width, info.height):
            return bad(
                Reason.MASK_SIZE_MISMATCH,
                f"mask is {minfo.width}x{minfo.height}, image is {info.width}x{info.height}",
                mask,
            )
    root = cand.root
    relpath = cand.image_path.relative_to(root).as_posix() if root else cand.image_path.name
    row = {
        "sample_id": sid,
        "dataset": cand.dataset,
        "category": cand.category,
        "split": cand.split,
        "label": cand.label,
        "is_anomalous": cand.is_anomalous,
        "source": cand.source or cand.dataset,
        "image_path": str(cand.image_path),
        "relpath": relpath,
        "mask_paths": [str(m) for m in cand.mask_paths],
        "width": info.width,
        "height": info.height,
        "sha256": info.sha256,
    }
    return row, None


def _check_batch(batch: list[Candidate], masks_required: bool, max_pixels: int) -> list[tuple]:
    return [_check(c, masks_required, max_pixels) for c in batch]


def build_samples(
    scan: LayoutScan,
    *,
    masks_required: bool = True,
    workers: int | None = None,
    progress: bool = False,
    max_pixels: int | None = None,
) -> SamplesResult:
    """Inspect every candidate of ``scan`` and split them into samples and quarantine.

    Most of the per-image work is Python (header parsing, path handling), so threads contend
    for the GIL and run slower than one thread; batches of candidates go to a process pool
    instead (one process per core by default; ``workers=1`` stays in this process).

    Only regular files inside the dataset folder are read (FIFOs and devices are quarantined
    as ``not_a_regular_file``, links out of the folder as ``link_outside_dataset``), and
    images of more than ``max_pixels`` pixels (``None``: ``IAD_MAX_IMAGE_PIXELS``, see
    :mod:`iad_pipeline.limits`) as ``image_too_large``.
    """
    workers = workers or os.cpu_count() or 1
    max_pixels = limits.max_image_pixels() if max_pixels is None else max_pixels
    rows: list[dict] = []
    problems: list[Problem] = list(scan.problems)
    seen: set[str] = set()
    unique: list[Candidate] = []
    for cand in scan.candidates:
        if cand.sample_id in seen:
            problems.append(
                Problem(
                    cand.dataset,
                    str(cand.image_path),
                    Reason.DUPLICATE_SAMPLE,
                    "another image has the same sample id",
                    cand.sample_id,
                )
            )
            continue
        seen.add(cand.sample_id)
        unique.append(cand)
    batches = [unique[i : i + BATCH] for i in range(0, len(unique), BATCH)]
    check = functools.partial(_check_batch, masks_required=masks_required, max_pixels=max_pixels)
    bar = tqdm(total=len(unique), desc=f"samples {scan.dataset}", unit="img", disable=not progress)
    parallel = workers > 1 and len(batches) >= PARALLEL_MIN_BATCHES
    context = multiprocessing.get_context("forkserver") if parallel else None
    with ProcessPoolExecutor(workers, mp_context=context) if parallel else nullcontext() as pool:
        results: Iterable = pool.map(check, batches) if pool else map(check, batches)
        for checked in results:
            for row, problem in checked:
                if row is not None:
                    rows.append(row)
                else:
                    problems.append(problem)
            bar.update(len(checked))
    bar.close()
    samples = pl.DataFrame(rows, schema=SAMPLES_SCHEMA).sort("sample_id")
    quarantine = pl.DataFrame(
        [
            {
                "dataset": p.dataset,
                "sample_id": p.sample_id,
                "path": p.path,
                "reason": p.reason,
                "detail": p.detail,
            }
            for p in problems
        ],
        schema=QUARANTINE_SCHEMA,
    ).sort(["reason", "path"])
    return SamplesResult(samples, quarantine)

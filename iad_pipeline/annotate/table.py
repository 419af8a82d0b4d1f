"""The annotations table: boxes, 3x3 grid regions and mask area of every sample.

Columns of ``annotations`` (see :data:`ANNOTATIONS_SCHEMA`), one row per samples row, sorted
by ``sample_id``:

- ``sample_id``, ``dataset``, ``category``, ``split``, ``label``, ``is_anomalous``,
  ``width``, ``height``: copied from the samples table
- ``boxes``: ``[x1, y1, x2, y2]`` in original pixels, x2/y2 exclusive (see
  :func:`~iad_pipeline.annotate.boxes.mask_boxes`); ``box_count``: their number
- ``mask_area_fraction``: defect pixels over ``width * height`` (null when the mask could not
  be read)
- ``grid_regions``: touched 3x3 regions, most pixels first (EMIT's rule, see
  :mod:`~iad_pipeline.annotate.grid`), empty unless localizable; ``grid_label``: the first,
  null unless localizable. The pixels counted depend on ``grid_read`` (see
  :data:`GRID_READS`): by default the mask read as EMIT reads it, in grayscale
- ``status``: ``normal`` (good sample, masks not read), ``ok``, or the problem:
  ``empty_mask`` (defective but no defect pixel, or every group below ``min_area_px``),
  ``no_mask`` (defective without a mask file), ``mask_size_mismatch`` (a mask's size differs
  from the samples row's), ``unreadable_mask``
- ``localizable``: ``status == "ok"``

Samples with a problem keep their label (EMIT silently turns an empty mask into a normal
sample; we report it) and get a ``quarantine`` row: ``dataset, sample_id, path, reason,
detail``.

Speed: decoding a mask PNG dominates (about 4 ms at 1024x1024); grouping and grid counting
add about 0.6 ms (see :mod:`~iad_pipeline.annotate.groups`). Each mask is decoded once, in a
worker process, and used as decoded (no binarised copy for 8-bit masks); workers return
plain tuples. ``bench/bench_annotate.py`` measures the step against decoding alone.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import polars as pl
from tqdm.auto import tqdm

from iad_pipeline.annotate.boxes import MaskError, check_params, decode_mask, foreground
from iad_pipeline.annotate.boxes import defect_groups as _defect_groups
from iad_pipeline.annotate.grid import region_counts, regions_from_counts

ANNOTATIONS_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "dataset": pl.String(),
    "category": pl.String(),
    "split": pl.String(),
    "label": pl.String(),
    "is_anomalous": pl.Boolean(),
    "width": pl.Int32(),
    "height": pl.Int32(),
    "boxes": pl.List(pl.List(pl.Int32())),
    "box_count": pl.Int32(),
    "mask_area_fraction": pl.Float64(),
    "grid_regions": pl.List(pl.String()),
    "grid_label": pl.String(),
    "status": pl.String(),
    "localizable": pl.Boolean(),
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "dataset": pl.String(),
    "sample_id": pl.String(),
    "path": pl.String(),
    "reason": pl.String(),
    "detail": pl.String(),
}

REQUIRED_COLUMNS = (
    "sample_id",
    "dataset",
    "category",
    "split",
    "label",
    "is_anomalous",
    "mask_paths",
    "width",
    "height",
)

# Most masks per pool task; smaller batches when there are few masks, so every worker gets
# several tasks and none idles at the end.
BATCH = 128
TASKS_PER_WORKER = 4
# Below this many masks, starting worker processes (about 0.3 s) costs more than it saves.
PARALLEL_MIN_MASKS = 128

# How the masks are read for the 3x3 grid labels:
# - "grayscale" (default, EMIT's rule): ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` as EMIT's
#   ``get_white_areas`` reads it (traindata_gen/make_jonsl.py, guanwei49/EMIT 01dc319): an RGB
#   or palette mask is converted to luma first (a dark colour can round to 0), a 16-bit mask
#   is scaled down to 8 bits (values below 256 become 0);
# - "any_channel" (ours): any non-zero value in any colour channel counts, as for the boxes.
# Both agree on the usual 8-bit single-channel masks, which are decoded once either way.
GRID_READS = ("grayscale", "any_channel")

# A mask job: (paths, width, height) of one defective sample.
Job = tuple[list[str], int | None, int | None]
# A worker's answer: (boxes, area fraction, grid regions, status, problem path, detail).
Outcome = tuple[list[list[int]], float | None, list[str], str, str | None, str | None]


@dataclass(frozen=True)
class AnnotationResult:
    """The annotations table (one row per sample) and the quarantine table of its problems."""

    annotations: pl.DataFrame
    quarantine: pl.DataFrame


def _grayscale(path: str, raw: np.ndarray) -> np.ndarray:
    """The mask as ``cv2.IMREAD_GRAYSCALE`` reads it (EMIT); 8-bit gray masks as decoded."""
    if raw.ndim == 2 and raw.dtype == np.uint8:
        return raw
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:  # decoded a moment ago: the file changed under us
        msg = f"{path}: cannot read the mask in grayscale; expected an image file"
        raise MaskError(msg)
    return gray


def _load(
    job: Job, grid_read: str = "grayscale"
) -> tuple[tuple[np.ndarray, np.ndarray] | None, Outcome | None]:
    """The union of a job's masks and the union the grid counts, or why there is none.

    The grid's union is the same array unless ``grid_read="grayscale"`` met a mask that is
    not 8-bit gray (see :data:`GRID_READS`).
    """
    paths, width, height = job
    union = grid = None
    for path in paths:
        try:
            raw = decode_mask(path)
            part = foreground(raw)
            gray = foreground(_grayscale(path, raw)) if grid_read == "grayscale" else part
        except (MaskError, ValueError) as exc:
            return None, ([], None, [], "unreadable_mask", path, str(exc))
        h, w = part.shape
        if width is not None and height is not None and (w, h) != (width, height):
            detail = f"mask is {w}x{h}, the samples table says the image is {width}x{height}"
            return None, ([], None, [], "mask_size_mismatch", path, detail)
        if union is None:
            union = part
            grid = gray if gray is not part else None
        elif part.shape != union.shape:  # only when the row has no size to compare with
            detail = f"mask is {w}x{h}, {paths[0]} is {union.shape[1]}x{union.shape[0]}"
            return None, ([], None, [], "mask_size_mismatch", path, detail)
        else:
            if grid is None and gray is not part:
                grid = union.copy()  # the gray union so far equals the plain one
            if grid is not None:
                grid = np.bitwise_or(grid, gray)
            np.bitwise_or(union, part, out=union)
    if union is None:
        return None, None
    return (union, union if grid is None else grid), None


def _describe(
    unions: tuple[np.ndarray, np.ndarray], job: Job, dilate_px: int, min_area_px: int
) -> Outcome:
    """Boxes, area, grid regions and status of a decoded mask union (and the grid's union)."""
    union, grid = unions
    counts = region_counts(union)
    pixels = sum(counts)
    area = pixels / union.size if union.size else 0.0
    regions = regions_from_counts(counts if grid is union else region_counts(grid))
    groups = _defect_groups(union, dilate_px) if pixels else []
    boxes = [[x1, y1, x2, y2] for x1, y1, x2, y2, a in groups if a >= min_area_px]
    if boxes:
        return boxes, area, regions, "ok", None, None
    if pixels == 0:
        detail = "mask has no defect pixel (every value is 0); expected a defect region"
    else:
        detail = (
            f"mask has {pixels} defect pixels in {len(groups)} groups, each below "
            f"min_area_px={min_area_px}"
        )
    return [], area, regions, "empty_mask", job[0][0], detail


def _annotate_batch(
    jobs: list[Job], dilate_px: int, min_area_px: int, grid_read: str = "grayscale"
) -> list[Outcome]:
    out = []
    union = None
    for job in jobs:
        # Rebinding ``union`` frees the previous mask only once the next one is decoded, so
        # malloc reuses its pages; freeing it first lets glibc hand them back to the kernel
        # and fault fresh ones in, about 0.9 ms per 1024x1024 mask (measured: 480 page
        # faults per mask instead of 2). decode_batch keeps masks alive the same way.
        union, failed = _load(job, grid_read)
        out.append(failed or _describe(union, job, dilate_px, min_area_px))
    return out


def decode_batch(jobs: list[Job]) -> list[int]:
    """Decode every mask and nothing else: the baseline the annotation cost is measured on.

    Same pool, batches and allocation pattern as the annotation (see ``_annotate_batch``).
    """
    sizes = []
    decoded: list = []
    for paths, _, _ in jobs:
        decoded = [cv2.imread(p, cv2.IMREAD_UNCHANGED) for p in paths]
        sizes.append(sum(0 if m is None else m.size for m in decoded))
    return sizes


def _worker_init() -> None:
    # One OpenCV thread per worker process: the pool already uses every core.
    cv2.setNumThreads(1)


def run_batches(
    func: Callable[[list[Any]], list[Any]],
    items: Sequence[Any],
    *,
    workers: int = 1,
    progress: bool = False,
    desc: str = "annotate",
) -> list[Any]:
    """``func`` over batches of ``items``, in order; in a forkserver pool when worthwhile.

    ``func`` must be picklable (a module-level function or a ``functools.partial`` of one);
    ``workers=1`` or fewer than :data:`PARALLEL_MIN_MASKS` items run in this process.
    """
    parallel = workers > 1 and len(items) >= max(PARALLEL_MIN_MASKS, 1)
    tasks = workers * TASKS_PER_WORKER if parallel else 1
    size = max(1, min(BATCH, math.ceil(len(items) / tasks)))
    batches = [list(items[i : i + size]) for i in range(0, len(items), size)]
    context = multiprocessing.get_context("forkserver") if parallel else None
    out: list[Any] = []
    bar = tqdm(total=len(items), desc=desc, unit="mask", disable=not progress)
    pool_cm = (
        ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init)
        if parallel
        else nullcontext()
    )
    with pool_cm as pool:
        results: Iterable = pool.map(func, batches) if pool else map(func, batches)
        for done in results:
            out.extend(done)
            bar.update(len(done))
    bar.close()
    return out


def _check_samples(samples: pl.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
    if missing:
        msg = (
            f"samples table lacks columns {missing}; expected at least "
            f"{', '.join(REQUIRED_COLUMNS)}; build it with iad_pipeline.datasets.samples"
        )
        raise ValueError(msg)


def annotate_samples(
    samples: pl.DataFrame,
    *,
    dilate_px: int = 15,
    min_area_px: int = 4,
    workers: int | None = None,
    progress: bool = False,
    grid_read: str = "grayscale",
) -> AnnotationResult:
    """Annotate every sample: boxes, grid regions, mask area, status; problems quarantined.

    Args:
        samples: The samples table (see :mod:`iad_pipeline.datasets.samples`); needs at
            least :data:`REQUIRED_COLUMNS`, and ``image_path`` names the file of a
            ``no_mask`` quarantine row when present.
        dilate_px, min_area_px: Box grouping, see
            :func:`~iad_pipeline.annotate.boxes.mask_boxes`.
        workers: Processes decoding masks (default: one per core; 1 stays in this process).
        progress: Show a progress bar.
        grid_read: How masks are read for the grid labels: ``"grayscale"`` (EMIT's
            ``cv2.IMREAD_GRAYSCALE``) or ``"any_channel"`` (see :data:`GRID_READS`).

    Returns:
        The annotations table (one row per sample, sorted by ``sample_id``) and the
        quarantine table (sorted by reason, then sample id).

    Raises:
        ValueError: Bad parameters, or a samples table without the needed columns.
    """
    check_params(dilate_px, min_area_px)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        msg = f"workers must be a positive integer or None (one per core), found {workers!r}"
        raise ValueError(msg)
    if grid_read not in GRID_READS:
        msg = f"grid_read={grid_read!r}; expected one of {GRID_READS}"
        raise ValueError(msg)
    _check_samples(samples)
    df = samples.sort("sample_id")
    anomalous = df["is_anomalous"].fill_null(False).to_list()
    mask_paths = df["mask_paths"].to_list()
    widths, heights = df["width"].to_list(), df["height"].to_list()
    todo = [i for i, (a, m) in enumerate(zip(anomalous, mask_paths, strict=True)) if a and m]
    jobs = [(list(mask_paths[i]), widths[i], heights[i]) for i in todo]
    func = functools.partial(
        _annotate_batch,
        dilate_px=int(dilate_px),
        min_area_px=int(min_area_px),
        grid_read=grid_read,
    )
    done = dict(zip(todo, run_batches(func, jobs, workers=workers, progress=progress), strict=True))
    image_paths = df["image_path"].to_list() if "image_path" in df.columns else [None] * df.height
    outcomes: list[Outcome] = []
    for i, is_anomalous in enumerate(anomalous):
        if i in done:
            outcomes.append(done[i])
        elif is_anomalous:
            detail = "defective sample without a mask file; expected at least one mask"
            outcomes.append(([], None, [], "no_mask", image_paths[i], detail))
        else:
            outcomes.append(([], 0.0, [], "normal", None, None))
    return _tables(df, outcomes)


def _tables(df: pl.DataFrame, outcomes: list[Outcome]) -> AnnotationResult:
    columns = [list(c) for c in zip(*outcomes, strict=True)] if outcomes else [[]] * 6
    boxes, area, regions, status, path, detail = columns
    computed = pl.DataFrame(
        {
            "boxes": boxes,
            "mask_area_fraction": area,
            "grid_regions": regions,
            "status": status,
            "_path": path,
            "_detail": detail,
        },
        schema={
            "boxes": ANNOTATIONS_SCHEMA["boxes"],
            "mask_area_fraction": pl.Float64(),
            "grid_regions": ANNOTATIONS_SCHEMA["grid_regions"],
            "status": pl.String(),
            "_path": pl.String(),
            "_detail": pl.String(),
        },
    )
    ok = pl.col("status") == "ok"
    full = pl.concat([df.select(REQUIRED_COLUMNS), computed], how="horizontal")
    annotations = full.with_columns(
        box_count=pl.col("boxes").list.len().cast(pl.Int32),
        grid_regions=pl.when(ok)
        .then(pl.col("grid_regions"))
        .otherwise(pl.lit([], pl.List(pl.String))),
        grid_label=pl.when(ok).then(pl.col("grid_regions").list.first()),
        localizable=ok,
    ).select([pl.col(c).cast(t) for c, t in ANNOTATIONS_SCHEMA.items()])
    quarantine = (
        full.filter(~pl.col("status").is_in(["ok", "normal"]))
        .select(
            "dataset",
            "sample_id",
            pl.col("_path").alias("path"),
            pl.col("status").alias("reason"),
            pl.col("_detail").alias("detail"),
        )
        .cast(QUARANTINE_SCHEMA)
        .sort(["reason", "sample_id"])
    )
    return AnnotationResult(annotations, quarantine)


def summarize_grid(annotations: pl.DataFrame) -> pl.DataFrame:
    """Localizable samples per grid label (most first), with their share, for metadata.

    >>> df = pl.DataFrame({"grid_label": ["top", "top", None, "center"],
    ...                    "localizable": [True, True, False, True]})
    >>> summarize_grid(df).rows()
    [('top', 2, 0.666...), ('center', 1, 0.333...)]
    """
    located = annotations.filter(pl.col("localizable"))
    return (
        located.group_by("grid_label")
        .len("samples")
        .with_columns(share=pl.col("samples") / max(located.height, 1))
        .sort(["samples", "grid_label"], descending=[True, False])
    )

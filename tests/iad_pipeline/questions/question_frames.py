"""Hand-built samples and annotations frames for the question tests (no files needed)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

from iad_pipeline.annotate.table import ANNOTATIONS_SCHEMA
from iad_pipeline.datasets.samples import SAMPLES_SCHEMA


def sample(
    dataset: str,
    category: str,
    label: str,
    stem: str = "000",
    *,
    source: str | None = None,
    width: int = 64,
    height: int = 64,
    split: str = "test",
) -> dict:
    """One samples row; ``sample_id`` is ``<dataset>/<category>/<split>/<label>/<stem>``."""
    sid = f"{dataset}/{category}/{split}/{label}/{stem}"
    return {
        "sample_id": sid,
        "dataset": dataset,
        "category": category,
        "split": split,
        "label": label,
        "is_anomalous": label != "good",
        "source": source or dataset,
        "image_path": f"/data/{sid}.png",
        "relpath": f"{sid}.png",
        "mask_paths": [] if label == "good" else [f"/data/{sid}_mask.png"],
        "width": width,
        "height": height,
        "sha256": "0" * 64,
    }


def samples_frame(rows: Iterable[dict]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SAMPLES_SCHEMA)


def annotation(
    row: dict,
    regions: Sequence[str] = (),
    boxes: Sequence[Sequence[int]] = (),
    *,
    localizable: bool | None = None,
) -> dict:
    """The annotations row of a samples row: regions touched (label first) and boxes."""
    anomalous = row["is_anomalous"]
    if localizable is None:
        localizable = anomalous and bool(regions)
    status = "ok" if localizable else ("empty_mask" if anomalous else "normal")
    return {
        "sample_id": row["sample_id"],
        "dataset": row["dataset"],
        "category": row["category"],
        "split": row["split"],
        "label": row["label"],
        "is_anomalous": anomalous,
        "width": row["width"],
        "height": row["height"],
        "boxes": [list(b) for b in boxes],
        "box_count": len(boxes),
        "mask_area_fraction": 0.01 if regions else 0.0,
        "grid_regions": list(regions),
        "grid_label": regions[0] if regions and localizable else None,
        "status": status,
        "localizable": localizable,
    }


def annotations_frame(rows: Iterable[dict]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=ANNOTATIONS_SCHEMA)

"""Annotation assets: boxes, 3x3 grid regions and mask areas of every sample."""

import base64

import dagster as dg
import polars as pl

from assets.failures import iad_errors_fail_the_step
from assets.ingest import samples
from assets.partitions import datasets_partitions
from iad_pipeline.annotate.preview import preview_jpeg
from iad_pipeline.markdown import markdown_table
from iad_pipeline.resources import IadConfig
from iad_pipeline.stages import write_annotations


def _preview_markdown(path) -> str:
    data = preview_jpeg(path)
    if not data:
        return f"Preview: `{path}`"
    return f"![boxes and grid](data:image/jpeg;base64,{base64.b64encode(data).decode()})"


def boxes_outside(df: pl.DataFrame) -> int:
    """Boxes whose corners leave the image (x2/y2 exclusive, so x2 <= width is inside)."""
    if df.is_empty():
        return 0
    boxes = df.select("width", "height", pl.col("boxes")).explode("boxes").drop_nulls("boxes")
    if boxes.is_empty():
        return 0
    b = pl.col("boxes")
    bad = (
        (b.list.get(0) < 0)
        | (b.list.get(1) < 0)
        | (b.list.get(2) > pl.col("width"))
        | (b.list.get(3) > pl.col("height"))
        | (b.list.get(2) <= b.list.get(0))
        | (b.list.get(3) <= b.list.get(1))
    )
    return boxes.filter(bad).height


def dominant_grid_share(df: pl.DataFrame) -> float:
    """Share of localizable samples whose grid label is the most common one."""
    labels = df.filter(pl.col("localizable"))["grid_label"]
    if labels.is_empty():
        return 0.0
    return float(labels.value_counts(sort=True)["count"][0] / labels.len())


@dg.asset(
    partitions_def=datasets_partitions,
    deps=[samples],
    group_name="annotate",
    kinds={"opencv", "parquet"},
    description="Per sample: defect boxes (dilation-grouped connected components), touched "
    "3x3 grid regions (EMIT's rule), box count and mask area; problems quarantined.",
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec("boxes_inside_image_bounds", asset="annotations", blocking=True),
        dg.AssetCheckSpec(
            "every_anomalous_sample_has_a_box_or_a_reason", asset="annotations", blocking=True
        ),
        dg.AssetCheckSpec("grid_labels_are_not_degenerate", asset="annotations"),
    ],
)
def annotations(context: dg.AssetExecutionContext, iad: IadConfig) -> dg.MaterializeResult:
    key = context.partition_key
    with iad_errors_fail_the_step():
        result, paths = write_annotations(
            key,
            iad.layout(),
            settings=iad.annotation_settings(),
            workers=iad.workers,
        )
    df, quarantine = result.annotations, result.quarantine
    anomalous = df.filter(pl.col("is_anomalous"))
    unexplained = anomalous.filter((pl.col("box_count") == 0) & (pl.col("status") == "ok"))
    outside = boxes_outside(df)
    share = dominant_grid_share(df)
    localizable = int(df["localizable"].sum())
    checks = [
        dg.AssetCheckResult(
            check_name="boxes_inside_image_bounds",
            passed=outside == 0,
            metadata={"boxes_outside": outside},
        ),
        dg.AssetCheckResult(
            check_name="every_anomalous_sample_has_a_box_or_a_reason",
            passed=unexplained.is_empty(),
            metadata={
                "anomalous": anomalous.height,
                "localizable": localizable,
                "quarantined": quarantine.height,
                "unexplained": unexplained.height,
            },
        ),
        dg.AssetCheckResult(
            check_name="grid_labels_are_not_degenerate",
            passed=localizable < 20 or share <= 0.9,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"dominant_label_share": round(share, 3), "localizable": localizable},
        ),
    ]
    status = df.group_by("status").len("samples").sort("status")
    grid = (
        df.filter(pl.col("localizable"))
        .group_by("grid_label")
        .len("samples")
        .sort("samples", descending=True)
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "path": dg.MetadataValue.path(str(paths["annotations"])),
            "quarantine_path": dg.MetadataValue.path(str(paths["quarantine"])),
            "boxes": int(df["box_count"].sum()),
            "localizable": localizable,
            "quarantine_rows": quarantine.height,
            "status": dg.MetadataValue.md(markdown_table(status, 20)),
            "grid_labels": dg.MetadataValue.md(markdown_table(grid, 20)),
            "preview": dg.MetadataValue.md(_preview_markdown(paths["preview"])),
        },
        check_results=checks,
    )

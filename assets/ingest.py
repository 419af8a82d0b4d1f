"""Ingest assets: the raw dataset folders and the samples tables, one partition per dataset."""

import dagster as dg

from assets.failures import iad_errors_fail_the_step
from assets.partitions import datasets_partitions
from iad_pipeline.datasets.checks import (
    anomalous_without_mask,
    counts_markdown,
    preview_records,
)
from iad_pipeline.datasets.fetch import install_for_profile
from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.resources import IadConfig
from iad_pipeline.stages import write_samples_table


@dg.asset(
    partitions_def=datasets_partitions,
    group_name="ingest",
    kinds={"python"},
    description="A dataset installed under the data root: downloaded or taken from --from, "
    "sha256-verified, safely extracted (demo: a synthetic copy in the real layout).",
    code_version="1",
)
def raw_dataset(context: dg.AssetExecutionContext, iad: IadConfig) -> dg.MaterializeResult:
    key = context.partition_key
    with iad_errors_fail_the_step():
        record = install_for_profile(
            key,
            profile=iad.resolved_profile(),
            data_dir=iad.layout().data,
            work_dir=iad.layout().synthetic,
            accept_license=iad.licences_accepted(),
            per_class=iad.synthetic_per_class,
            seed=iad.seed,
        )
    for warning in record.warnings:
        context.log.warning(warning)
    main = record.resources[0] if record.resources else {}
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(record.path),
            "licence": record.licence,
            "mode": record.mode,
            "source": record.source,
            "synthetic": record.synthetic,
            "sha256": main.get("sha256") or "",
            "installed_at": record.installed_at,
            "warnings": len(record.warnings),
        },
        data_version=dg.DataVersion(main.get("sha256") or record.installed_at),
    )


@dg.asset(
    partitions_def=datasets_partitions,
    deps=[raw_dataset],
    group_name="ingest",
    kinds={"polars", "parquet"},
    description="One row per usable image (sample_id, split, label, mask paths, size, sha256), "
    "with a quarantine table of every file left out and why.",
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec("samples_not_empty", asset="samples", blocking=True),
        dg.AssetCheckSpec("every_anomalous_sample_has_a_mask", asset="samples", blocking=True),
        dg.AssetCheckSpec("quarantine_below_threshold", asset="samples"),
    ],
)
def samples(context: dg.AssetExecutionContext, iad: IadConfig) -> dg.MaterializeResult:
    key = context.partition_key
    with iad_errors_fail_the_step():
        result, paths = write_samples_table(key, iad.layout(), workers=iad.workers)
        spath, qpath = paths["samples"], paths["quarantine"]
    df, quarantine = result.samples, result.quarantine
    no_mask = anomalous_without_mask(df)
    masks_required = get_spec(key).masks_required
    fraction = result.quarantine_fraction
    limit = iad.quarantine_max_fraction
    checks = [
        dg.AssetCheckResult(
            check_name="samples_not_empty", passed=df.height > 0, metadata={"rows": df.height}
        ),
        dg.AssetCheckResult(
            check_name="every_anomalous_sample_has_a_mask",
            passed=no_mask == 0 or not masks_required,
            severity=dg.AssetCheckSeverity.ERROR if masks_required else dg.AssetCheckSeverity.WARN,
            metadata={"anomalous_without_mask": no_mask, "masks_required": masks_required},
        ),
        dg.AssetCheckResult(
            check_name="quarantine_below_threshold",
            passed=fraction <= limit,
            metadata={
                "quarantine_rows": quarantine.height,
                "fraction": round(fraction, 4),
                "max_fraction": limit,
            },
        ),
    ]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "path": dg.MetadataValue.path(str(spath)),
            "quarantine_path": dg.MetadataValue.path(str(qpath)),
            "quarantine_rows": quarantine.height,
            "anomalous": int(df["is_anomalous"].sum()),
            "categories": df["category"].n_unique(),
            "licence": get_spec(key).licence,
            "counts": dg.MetadataValue.md(counts_markdown(df)),
            "preview": dg.MetadataValue.md(preview_records(df)),
            "quarantine_preview": dg.MetadataValue.md(preview_records(quarantine)),
        },
        check_results=checks,
    )

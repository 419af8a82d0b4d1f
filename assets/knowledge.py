"""Knowledge assets: EMIT's domain knowledge and text samples, per dataset."""

import dagster as dg
import polars as pl

from assets.annotations import annotations
from assets.failures import iad_errors_fail_the_step
from assets.ingest import samples
from assets.partitions import datasets_partitions
from iad_pipeline.knowledge import make_provider
from iad_pipeline.markdown import markdown_table
from iad_pipeline.resources import IadConfig, KnowledgeConfig
from iad_pipeline.stages import read_table, write_domain_knowledge, write_text_samples


def missing_knowledge(samples_df: pl.DataFrame, table: pl.DataFrame) -> list[str]:
    """``category/key`` pairs (every defect label, and ``good``) without an ok, non-empty text."""
    wanted = {(c, lab) for c, lab in samples_df.select("category", "label").unique().iter_rows()}
    wanted |= {(c, "good") for c in samples_df["category"].unique()}
    ok = table.filter((pl.col("status") == "ok") & (pl.col("text").str.strip_chars() != ""))
    have = set(ok.select("category", "key").iter_rows())
    return sorted(f"{c}/{k}" for c, k in wanted - have)


def _provider(iad: IadConfig, knowledge: KnowledgeConfig):
    return make_provider(knowledge.settings(), iad.layout())


def _usage(report, provider) -> dict:
    s = report.summary()
    return {
        "provider": provider.name,
        "model": provider.model,
        "requests": s["requests_made"],
        "cache_hits": s["cache_hits"],
        "failures": s["failures"],
        "skipped_budget": s["skipped_budget"],
        "prompt_tokens": s["prompt_tokens"],
        "completion_tokens": s["completion_tokens"],
        "cost": s["cost"] if s["cost"] is not None else "not priced",
        "budget_stopped": s["budget_stopped"],
    }


@dg.asset(
    partitions_def=datasets_partitions,
    deps=[samples],
    group_name="knowledge",
    kinds={"openai", "parquet"},
    description="Per (category, defect) and per category: EMIT's domain-knowledge texts from an "
    "OpenAI-compatible model, MMAD's json, or offline templates; cached, budgeted.",
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec("every_category_and_defect_has_knowledge", asset="domain_knowledge"),
        dg.AssetCheckSpec("knowledge_failures_below_threshold", asset="domain_knowledge"),
    ],
)
def domain_knowledge(
    context: dg.AssetExecutionContext, iad: IadConfig, knowledge: KnowledgeConfig
) -> dg.MaterializeResult:
    key = context.partition_key
    with iad_errors_fail_the_step():
        df = read_table(iad.layout(), "samples", key, made_by="samples")
        provider = _provider(iad, knowledge)
        result, paths = write_domain_knowledge(
            key,
            df,
            iad.layout(),
            provider,
            template_backend=iad.template_backend,
            seed=iad.seed,
        )
    table = result.table
    missing = missing_knowledge(df, table)
    failed = table.filter(pl.col("status") != "ok").height
    fraction = failed / table.height if table.height else 0.0
    sample = table.filter(pl.col("status") == "ok").select("category", "key", "text")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "path": dg.MetadataValue.path(str(paths["table"])),
            "mmad_json": dg.MetadataValue.path(str(paths["json"])),
            **_usage(result.report, provider),
            "sample": dg.MetadataValue.md(markdown_table(sample, 8)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_category_and_defect_has_knowledge",
                passed=not missing,
                metadata={"missing": len(missing), "first_missing": ", ".join(missing[:10]) or "-"},
            ),
            dg.AssetCheckResult(
                check_name="knowledge_failures_below_threshold",
                passed=fraction <= knowledge.failure_max_fraction,
                metadata={"failure_rows": failed, "fraction": round(fraction, 4)},
            ),
        ],
    )


@dg.asset(
    partitions_def=datasets_partitions,
    deps=[samples, annotations, domain_knowledge],
    group_name="knowledge",
    kinds={"openai", "pillow"},
    description="EMIT's substitute for missing defect images: descriptions of normal images as "
    "if they had defect D at grid location L, plus plain descriptions, rendered to images.",
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec("text_sample_failures_below_threshold", asset="text_samples"),
        dg.AssetCheckSpec("every_text_sample_is_rendered", asset="text_samples"),
    ],
)
def text_samples(
    context: dg.AssetExecutionContext, iad: IadConfig, knowledge: KnowledgeConfig
) -> dg.MaterializeResult:
    key = context.partition_key
    layout = iad.layout()
    with iad_errors_fail_the_step():
        df = read_table(layout, "samples", key, made_by="samples")
        ann = read_table(layout, "annotations", key, made_by="annotations")
        provider = _provider(iad, knowledge)
        result, table, path = write_text_samples(
            key,
            df,
            ann,
            layout,
            provider,
            per_category=knowledge.text_samples_per_category,
            seed=iad.seed,
        )
    ok = table.filter(pl.col("status") == "ok")
    failed = table.height - ok.height
    fraction = failed / table.height if table.height else 0.0
    unrendered = ok.filter(pl.col("rendered_path").is_null()).height
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "path": dg.MetadataValue.path(str(path)),
            **_usage(result.report, provider),
            "sample": dg.MetadataValue.md(
                markdown_table(ok.select("category", "defect", "location", "text"), 6)
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="text_sample_failures_below_threshold",
                passed=fraction <= knowledge.failure_max_fraction,
                metadata={"failure_rows": failed, "fraction": round(fraction, 4)},
            ),
            dg.AssetCheckResult(
                check_name="every_text_sample_is_rendered",
                passed=unrendered == 0,
                metadata={"unrendered": unrendered},
            ),
        ],
    )

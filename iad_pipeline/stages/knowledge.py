"""Domain knowledge and text samples of a dataset (see :mod:`iad_pipeline.stages`)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from iad_pipeline.fsutil import write_parquet
from iad_pipeline.paths import Layout
from iad_pipeline.settings import KnowledgeSettings
from iad_pipeline.stages.tables import reference_images


def write_domain_knowledge(
    key: str,
    samples: pl.DataFrame,
    layout: Layout,
    provider,
    *,
    template_backend: str = "pixels",
    seed: int = 0,
):
    """EMIT's defect and normal texts for every category of ``key``: parquet + MMAD json."""
    from iad_pipeline.fsutil import write_json
    from iad_pipeline.knowledge import generate_domain_knowledge

    refs = reference_images(samples, backend=template_backend, seed=seed)
    result = generate_domain_knowledge(samples, provider, references=refs, dataset=key)
    paths = {
        "table": layout.table("knowledge", key),
        "json": layout.knowledge_json(key),
    }
    from iad_pipeline.tablepaths import relative_paths

    write_parquet(relative_paths(result.table, layout), paths["table"])
    write_json(paths["json"], result.mmad_json)
    return result, paths


def write_text_samples(
    key: str,
    samples: pl.DataFrame,
    annotations: pl.DataFrame | None,
    layout: Layout,
    provider,
    *,
    per_category: int = KnowledgeSettings.text_samples_per_category,
    seed: int = 0,
):
    """EMIT's text samples of ``key`` (descriptions as if defective), rendered to images."""
    from iad_pipeline.knowledge import generate_text_samples, observed_locations
    from iad_pipeline.knowledge.render import render_text_samples

    locations = observed_locations(annotations) if annotations is not None else None
    result = generate_text_samples(
        samples, provider, per_category=per_category, seed=seed, locations=locations
    )
    table = render_text_samples(result.table, layout.text_sample_images(key))
    path = layout.table("text_samples", key)
    from iad_pipeline.tablepaths import relative_paths

    write_parquet(relative_paths(table, layout), path)
    return result, table, path


def knowledge_entries(layout: Layout, keys: Sequence[str]) -> dict[str, list[str]]:
    """``{knowledge_key: entries}`` from the knowledge json files that exist: a category's
    defect texts and its normal text, in the file's order (MMAD's evaluation joins them by
    newlines in that order; :func:`~iad_pipeline.questions.export.join_knowledge`)."""
    import json

    out: dict[str, list[str]] = {}
    for key in keys:
        path = layout.knowledge_json(key)
        if not path.is_file():
            continue
        for dataset, categories in json.loads(path.read_text(encoding="utf-8")).items():
            for category, texts in categories.items():
                out[f"{dataset}/{category}"] = list(texts.values())
    return out

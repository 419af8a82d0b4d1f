"""Samples, annotations and question banks: tables in, tables out (:mod:`iad_pipeline.stages`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.fsutil import write_parquet
from iad_pipeline.paths import Layout
from iad_pipeline.settings import AnnotationSettings

# Question styles built for every image dataset: each recipe trains on one of them.
STYLES = ("emit", "anomalyr1", "lr_iad", "adfm")

# The CLI verb that writes each kind of table (for "run this first" messages).
_MADE_BY = {
    "samples": "iad samples {key} (asset: samples)",
    "annotations": "iad annotate {key} (asset: annotations)",
    "questions": "iad questions {key} (asset: question_bank)",
}


def _outputs(layout: Layout, kind: str, key: str, out: Path | None) -> dict[str, Path]:
    """The table, quarantine and preview paths: the layout's, or beside a CLI ``--out``."""
    if out is None:
        return {
            kind: layout.table(kind, key),
            "quarantine": layout.quarantine(kind, key),
            "preview": layout.preview(kind, key),
        }
    out = Path(out)
    return {
        kind: out,
        "quarantine": out.with_name(f"{out.stem}.quarantine.parquet"),
        "preview": out.with_name(f"{out.stem}.preview.png"),
    }


def read_table(layout: Layout, kind: str, key: str, *, made_by: str) -> pl.DataFrame:
    """Read a table a previous stage wrote, or say which stage to run first."""
    path = layout.table(kind, key)
    if not path.is_file():
        how = _MADE_BY.get(kind, "{made_by}").format(key=key, made_by=made_by)
        msg = f"{path} does not exist; run {how} first"
        raise IadError(msg)
    from iad_pipeline.tablepaths import resolve_paths

    return resolve_paths(pl.read_parquet(path), layout, source=path)


def write_samples_table(
    key: str,
    layout: Layout,
    *,
    workers: int | None = None,
    progress: bool = False,
    out: Path | None = None,
):
    """The samples and quarantine tables of the installed dataset ``key``."""
    from iad_pipeline.datasets.ingest import read_samples
    from iad_pipeline.tablepaths import relative_paths

    paths = _outputs(layout, "samples", key, out)
    result = read_samples(key, layout.data, workers=workers, progress=progress)
    write_parquet(relative_paths(result.samples, layout), paths["samples"])
    write_parquet(relative_paths(result.quarantine, layout), paths["quarantine"])
    return result, {"samples": paths["samples"], "quarantine": paths["quarantine"]}


def write_annotations(
    key: str,
    layout: Layout,
    *,
    settings: AnnotationSettings | None = None,
    workers: int | None = None,
    progress: bool = False,
    out: Path | None = None,
) -> tuple[object, dict[str, Path]]:
    """Boxes, grid regions and mask areas for every sample of ``key``."""
    from iad_pipeline.annotate import annotate_samples, draw_preview
    from iad_pipeline.tablepaths import relative_paths

    samples = read_table(layout, "samples", key, made_by="samples")
    result = annotate_samples(samples, settings=settings, workers=workers, progress=progress)
    paths = _outputs(layout, "annotations", key, out)
    write_parquet(relative_paths(result.annotations, layout), paths["annotations"])
    write_parquet(relative_paths(result.quarantine, layout), paths["quarantine"])
    draw_preview(result.annotations, samples, paths["preview"])
    return result, paths


def reference_images(
    samples: pl.DataFrame, *, backend: str = "pixels", seed: int = 0
) -> dict[str, str]:
    """The most similar normal training image of the same category, per sample (EMIT)."""
    from iad_pipeline.questions.templates import retrieve

    pool = samples.filter(~pl.col("is_anomalous") & (pl.col("split") == "train"))
    found = retrieve(samples, pool, k=1, backend=backend, seed=seed)
    return {sid: paths[0] for sid, paths in found.items() if paths}


def build_question_bank(
    key: str,
    layout: Layout,
    *,
    styles: Sequence[str] = STYLES,
    tasks: Sequence[str] | None = None,
    seed: int = 0,
    template_backend: str = "pixels",
) -> pl.DataFrame:
    """The multiple-choice questions of ``key`` (MMAD: its own benchmark questions)."""
    from iad_pipeline.questions.builders import build_questions
    from iad_pipeline.questions.mmad_json import read_mmad_json

    if key == "mmad":
        root = layout.mmad_root().absolute()
        questions = read_mmad_json(root / "mmad.json", root)
        if tasks:
            questions = questions.filter(pl.col("task").is_in(list(tasks)))
        return questions
    samples = read_table(layout, "samples", key, made_by="samples")
    annotations = read_table(layout, "annotations", key, made_by="annotations")
    refs = reference_images(samples, backend=template_backend, seed=seed)
    kwargs = {"tasks": tuple(tasks)} if tasks else {}
    return build_questions(
        samples, annotations, styles=styles, seed=seed, reference_images=refs, **kwargs
    )


def write_question_bank(
    key: str, layout: Layout, *, out: Path | None = None, **build
) -> tuple[pl.DataFrame, Path]:
    """Build the question bank of ``key`` (``build``: :func:`build_question_bank`'s options)
    and write it (the layout's table, or ``out``)."""
    from iad_pipeline.tablepaths import relative_paths

    questions = build_question_bank(key, layout, **build)
    path = Path(out) if out is not None else layout.table("questions", key)
    write_parquet(relative_paths(questions, layout), path)
    return questions, path

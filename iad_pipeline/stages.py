"""The pipeline's stages as plain functions: table in, table out, files written atomically.

The Dagster assets and the ``iad`` CLI both call these, so the UI and the command line
produce the same files. Tables live under one folder (``$IAD_HOME/tables`` by default)::

    samples/<dataset>.parquet            quarantine/samples/<dataset>.parquet
    annotations/<dataset>.parquet        quarantine/annotations/<dataset>.parquet
    previews/annotations/<dataset>.png
    questions/<dataset>.parquet
    training_sets/<recipe>/questions.parquet, leaks.parquet, hf/ (a datasets.Dataset)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.fsutil import write_parquet

log = logging.getLogger(__name__)

# Question styles built for every image dataset: each recipe trains on one of them.
STYLES = ("emit", "anomalyr1", "lr_iad", "adfm")

# The style each recipe trains with.
RECIPE_STYLES = {
    "adfm_multidomain": "adfm",
    "cross_dataset": "adfm",
    "anomalyr1_fewshot": "anomalyr1",
    "emit": "emit",
}

# Test splits of the cross-dataset protocol: never trained on, by any recipe.
CROSS_DATASET_EVAL = ("visa", "mpdd", "dtd_synthetic", "dagm", "mvtec_3d")


@dataclass(frozen=True)
class LeakageGuard:
    """Which evaluation sets a recipe's training images must stay out of.

    ``mmad`` is the MMAD benchmark (queries and templates), ``cross_dataset`` the test splits
    of :data:`CROSS_DATASET_EVAL`, ``own_eval`` the recipe's own eval split. An evaluation set
    left out is an explicit, documented override, recorded in the training set's metadata.
    """

    sets: tuple[str, ...] = ("mmad", "cross_dataset", "own_eval")
    overrides: dict[str, str] = field(default_factory=dict)


_NOT_CROSS_DATASET = (
    "trains on MPDD, MVTec 3D-AD, DTD-Synthetic and DAGM images (non-MMAD sources, so MMAD "
    "stays clean), which the cross-dataset protocol tests on: evaluate it on MMAD only"
)

GUARDS: dict[str, LeakageGuard] = {
    "adfm_multidomain": LeakageGuard(
        ("own_eval",),
        {
            "mmad": "AD-FM's multi-domain protocol splits MMAD's own source images 20/80; "
            "evaluate such a checkpoint on its 80 % eval split, not on MMAD",
            "cross_dataset": "VisA is a multi-domain training source and a cross-dataset test "
            "set; evaluate on the own eval split only",
        },
    ),
    "cross_dataset": LeakageGuard(
        ("own_eval",),
        {
            "mmad": "trains on MVTec AD test images, which MMAD's DS-MVTec reuses; evaluate on "
            "the cross-dataset sets only",
            "cross_dataset": "the cross-dataset test splits are this recipe's own eval split",
        },
    ),
    "anomalyr1_fewshot": LeakageGuard(("mmad", "own_eval"), {"cross_dataset": _NOT_CROSS_DATASET}),
    "emit": LeakageGuard(("mmad", "own_eval"), {"cross_dataset": _NOT_CROSS_DATASET}),
}


def table_path(tables_dir: Path, kind: str, key: str) -> Path:
    """``<tables>/<kind>/<key>.parquet``.

    Quarantine tables sit in their own tree so a glob over one kind reads one schema.
    """
    return tables_dir / kind / f"{key}.parquet"


def quarantine_path(tables_dir: Path, kind: str, key: str) -> Path:
    """``<tables>/quarantine/<kind>/<key>.parquet``."""
    return tables_dir / "quarantine" / kind / f"{key}.parquet"


def read_table(tables_dir: Path, kind: str, key: str, *, made_by: str) -> pl.DataFrame:
    """Read a table a previous stage wrote, or say which stage to run first."""
    path = table_path(tables_dir, kind, key)
    if not path.is_file():
        msg = f"{path} does not exist; materialize {made_by} for {key!r} first"
        raise IadError(msg)
    return pl.read_parquet(path)


def write_annotations(
    key: str,
    tables_dir: Path,
    *,
    dilate_px: int = 15,
    min_area_px: int = 4,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[object, dict[str, Path]]:
    """Boxes, grid regions and mask areas for every sample of ``key``."""
    from iad_pipeline.annotate import annotate_samples, draw_preview

    samples = read_table(tables_dir, "samples", key, made_by="samples")
    result = annotate_samples(
        samples, dilate_px=dilate_px, min_area_px=min_area_px, workers=workers, progress=progress
    )
    out = table_path(tables_dir, "annotations", key)
    paths = {
        "annotations": out,
        "quarantine": out.with_name(f"{key}.quarantine.parquet"),
        "preview": out.with_name(f"{key}.preview.png"),
    }
    write_parquet(result.annotations, paths["annotations"])
    write_parquet(result.quarantine, paths["quarantine"])
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


def write_question_bank(
    key: str,
    tables_dir: Path,
    data_dir: Path,
    *,
    styles: Sequence[str] = STYLES,
    seed: int = 0,
    template_backend: str = "pixels",
) -> tuple[pl.DataFrame, Path]:
    """The multiple-choice questions of ``key`` (MMAD: its own benchmark questions)."""
    from iad_pipeline.questions.builders import build_questions
    from iad_pipeline.questions.mmad_json import read_mmad_json

    if key == "mmad":
        root = (data_dir / "mmad").absolute()
        questions = read_mmad_json(root / "mmad.json", root)
    else:
        samples = read_table(tables_dir, "samples", key, made_by="samples")
        annotations = read_table(tables_dir, "annotations", key, made_by="annotations")
        refs = reference_images(samples, backend=template_backend, seed=seed)
        questions = build_questions(
            samples, annotations, styles=styles, seed=seed, reference_images=refs
        )
    out = table_path(tables_dir, "questions", key)
    write_parquet(questions, out)
    return questions, out


@dataclass
class TrainingSet:
    """A recipe's training questions, its own eval questions and the leakage report."""

    recipe: str
    style: str
    train: pl.DataFrame
    eval: pl.DataFrame
    leaks: pl.DataFrame
    guarded: tuple[str, ...]
    overrides: dict[str, str]
    unavailable: list[str]
    paths: dict[str, Path]


def _available_samples(tables_dir: Path, keys: Sequence[str]) -> pl.DataFrame:
    frames = [
        pl.read_parquet(p) for k in keys if (p := table_path(tables_dir, "samples", k)).is_file()
    ]
    if not frames:
        msg = f"no samples table under {tables_dir / 'samples'}; materialize samples first"
        raise IadError(msg)
    return pl.concat(frames, how="vertical_relaxed")


def _eval_images(
    guard: LeakageGuard, assigned: pl.DataFrame, tables_dir: Path, data_dir: Path
) -> tuple[pl.DataFrame, list[str]]:
    from iad_pipeline.questions.leakage import mmad_eval_images

    frames: list[pl.DataFrame] = []
    unavailable: list[str] = []
    cols = ["image_path", "sha256"]
    if "own_eval" in guard.sets:
        frames.append(assigned.filter(pl.col("recipe_split") == "eval").select(cols))
    if "cross_dataset" in guard.sets:
        for key in CROSS_DATASET_EVAL:
            path = table_path(tables_dir, "samples", key)
            if path.is_file():
                frames.append(pl.read_parquet(path).filter(pl.col("split") == "test").select(cols))
            else:
                unavailable.append(f"cross_dataset:{key}")
    if "mmad" in guard.sets:
        mmad_root = data_dir / "mmad"
        if (mmad_root / "mmad.json").is_file():
            frames.append(mmad_eval_images(mmad_root).select(cols))
        else:
            unavailable.append("mmad")
    eval_images = (
        pl.concat(frames, how="vertical_relaxed")
        if frames
        else pl.DataFrame(schema={"image_path": pl.String, "sha256": pl.String})
    )
    return eval_images.unique(), unavailable


def write_training_set(
    recipe: str,
    tables_dir: Path,
    data_dir: Path,
    *,
    seed: int = 0,
    allow_leaks: bool = False,
    export_hf: bool = True,
) -> TrainingSet:
    """Split, select the recipe's questions, guard against leakage, export for TRL.

    A leak does not raise here: the tables and the leak list are written so the asset check
    can fail with the list (and nothing downstream trains on it); ``allow_leaks`` records an
    explicit override instead.
    """
    from iad_pipeline.questions.export import save_hf_dataset, to_hf_dataset
    from iad_pipeline.questions.leakage import find_leaks
    from iad_pipeline.questions.splits import assign_split

    if recipe not in RECIPE_STYLES:
        msg = f"unknown recipe {recipe!r}; valid recipes: {', '.join(RECIPE_STYLES)}"
        raise IadError(msg)
    from iad_pipeline.datasets.catalog import DATASET_KEYS

    style = RECIPE_STYLES[recipe]
    guard = GUARDS[recipe]
    samples = _available_samples(tables_dir, [k for k in DATASET_KEYS if k != "mmad"])
    assigned = assign_split(samples, recipe, seed=seed).filter(pl.col("recipe_split").is_not_null())
    used = sorted(set(assigned["dataset"]))
    questions = pl.concat(
        [read_table(tables_dir, "questions", k, made_by="question_bank") for k in used],
        how="vertical_relaxed",
    ).filter(pl.col("style") == style)
    splits = assigned.select("sample_id", pl.col("recipe_split").alias("_split"))
    questions = (
        questions.join(splits, on="sample_id", how="inner")
        .with_columns(pl.col("_split").alias("split"))
        .drop("_split")
        .with_columns(pl.col("recipe_tags").list.concat(pl.lit([recipe])))
    )
    train = questions.filter(pl.col("split") == "train")
    evals = questions.filter(pl.col("split") == "eval")
    eval_images, unavailable = _eval_images(guard, assigned, tables_dir, data_dir)
    train_images = assigned.filter(pl.col("recipe_split") == "train").select(
        "sample_id", "image_path", "sha256"
    )
    leaks = find_leaks(train_images, eval_images)
    folder = tables_dir / "training_sets" / recipe
    paths = {
        "train": folder / "train.parquet",
        "eval": folder / "eval.parquet",
        "leaks": folder / "leaks.parquet",
        "hf": folder / "hf",
    }
    write_parquet(train, paths["train"])
    write_parquet(evals, paths["eval"])
    write_parquet(leaks, paths["leaks"])
    if export_hf and train.height:
        save_hf_dataset(to_hf_dataset(train), paths["hf"])
    if leaks.height and allow_leaks:
        log.warning(
            "%s: %d leaking training images kept by explicit override", recipe, leaks.height
        )
    return TrainingSet(
        recipe, style, train, evals, leaks, guard.sets, guard.overrides, unavailable, paths
    )

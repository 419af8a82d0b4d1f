"""Training sets: each recipe's split, question style and leakage guard, and the stage that
writes them (``tables/training_sets/<recipe>/``; see :mod:`iad_pipeline.stages`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from iad_pipeline.errors import IadError
from iad_pipeline.fsutil import write_parquet
from iad_pipeline.paths import Layout
from iad_pipeline.stages.knowledge import knowledge_entries
from iad_pipeline.stages.tables import read_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSetSpec:
    """A training set: a split recipe (iad_pipeline.questions.splits) and a question style."""

    split: str
    style: str
    note: str = ""


TRAINING_SETS: dict[str, TrainingSetSpec] = {
    "adfm_multidomain": TrainingSetSpec("adfm_multidomain", "adfm"),
    "cross_dataset": TrainingSetSpec("cross_dataset", "adfm"),
    "anomalyr1_fewshot": TrainingSetSpec("anomalyr1_fewshot", "anomalyr1"),
    "emit": TrainingSetSpec("emit", "emit"),
    "lriad": TrainingSetSpec(
        "cross_dataset",
        "lr_iad",
        "LR-IAD trained on all of MVTec AD and VisA and reports accuracy on the same sets; we "
        "use the cross-dataset split instead (20 % of MVTec AD, evaluated on VisA, MPDD, "
        "DTD-Synthetic, DAGM, MVTec 3D-AD) so its scores stay honest.",
    ),
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
GUARDS["lriad"] = GUARDS["cross_dataset"]
# Training sets whose prompts carry the knowledge entries shuffled per question, as their
# authors' data generation does (EMIT's random_join); the others keep MMAD's order.
SHUFFLED_KNOWLEDGE = frozenset({"emit"})


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


def _available_samples(layout: Layout, keys: Sequence[str]) -> pl.DataFrame:
    frames = [
        read_table(layout, "samples", k, made_by="samples")
        for k in keys
        if layout.table("samples", k).is_file()
    ]
    if not frames:
        msg = (
            f"no samples table under {layout.tables / 'samples'}; run iad samples KEY "
            "(or materialize samples) first"
        )
        raise IadError(msg)
    return pl.concat(frames, how="vertical_relaxed")


def _eval_images(
    guard: LeakageGuard, assigned: pl.DataFrame, layout: Layout
) -> tuple[pl.DataFrame, list[str]]:
    from iad_pipeline.questions.leakage import mmad_eval_images

    frames: list[pl.DataFrame] = []
    unavailable: list[str] = []
    cols = ["image_path", "sha256"]
    if "own_eval" in guard.sets:
        frames.append(assigned.filter(pl.col("recipe_split") == "eval").select(cols))
    if "cross_dataset" in guard.sets:
        for key in CROSS_DATASET_EVAL:
            if layout.table("samples", key).is_file():
                test = read_table(layout, "samples", key, made_by="samples")
                frames.append(test.filter(pl.col("split") == "test").select(cols))
            else:
                unavailable.append(f"cross_dataset:{key}")
    if "mmad" in guard.sets:
        mmad_root = layout.mmad_root()
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
    layout: Layout,
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

    if recipe not in TRAINING_SETS:
        msg = f"unknown training set {recipe!r}; valid: {', '.join(TRAINING_SETS)}"
        raise IadError(msg)
    from iad_pipeline.datasets.catalog import DATASET_KEYS

    spec = TRAINING_SETS[recipe]
    style = spec.style
    guard = GUARDS[recipe]
    samples = _available_samples(layout, [k for k in DATASET_KEYS if k != "mmad"])
    assigned = assign_split(samples, spec.split, seed=seed).filter(
        pl.col("recipe_split").is_not_null()
    )
    used = sorted(set(assigned["dataset"]))
    questions = pl.concat(
        [read_table(layout, "questions", k, made_by="question_bank") for k in used],
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
    eval_images, unavailable = _eval_images(guard, assigned, layout)
    train_images = assigned.filter(pl.col("recipe_split") == "train").select(
        "sample_id", "image_path", "sha256"
    )
    leaks = find_leaks(train_images, eval_images)
    folder = layout.training_set(recipe)
    paths = {
        "train": folder / "train.parquet",
        "eval": folder / "eval.parquet",
        "leaks": folder / "leaks.parquet",
        "hf": layout.training_set_hf(recipe),
    }
    from iad_pipeline.tablepaths import relative_paths

    write_parquet(relative_paths(train, layout), paths["train"])
    write_parquet(relative_paths(evals, layout), paths["eval"])
    write_parquet(relative_paths(leaks, layout), paths["leaks"])
    if export_hf and train.height:
        # EMIT's training data shuffles the knowledge entries per question (random_join);
        # the other recipes keep MMAD's order
        shuffle = seed if recipe in SHUFFLED_KNOWLEDGE else None
        knowledge = knowledge_entries(layout, used)
        save_hf_dataset(
            to_hf_dataset(train, knowledge=knowledge, shuffle_knowledge_seed=shuffle), paths["hf"]
        )
    if leaks.height and allow_leaks:
        log.warning(
            "%s: %d leaking training images kept by explicit override", recipe, leaks.height
        )
    return TrainingSet(
        recipe, style, train, evals, leaks, guard.sets, guard.overrides, unavailable, paths
    )

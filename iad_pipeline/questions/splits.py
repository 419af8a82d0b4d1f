"""Which images each recipe trains and evaluates on: seeded, reproducible, stratified.

:func:`assign_split` adds a ``recipe_split`` column to a samples table (several datasets
concatenated): ``"train"``, ``"eval"``, or null for an image the recipe does not use as a
query. Templates (normal reference images) are not part of this column: they are picked from
each dataset's ``train`` split by :mod:`iad_pipeline.questions.templates`.

Reproducibility: an image's place in its stratum is ``blake2b("<recipe>:<seed>:<sample_id>")``,
not its row number, so the same seed gives the same split whatever the row order, and adding
a dataset or a category does not move any image of the others.

Rounding (``train_count``): a stratum of ``n`` images gets ``floor(n * fraction + 1/2)``
training images (half rounds up, computed on the decimal value of ``fraction``, so no float
drift), and never all of them when the recipe also evaluates on the stratum: every non-empty
stratum keeps at least one evaluation image. With 20%, strata of 1-2 images are all
evaluation, 3-7 give 1 training image, 8-12 give 2, 13-17 give 3.

The recipes (see :data:`RECIPES`):

- ``adfm_multidomain``: AD-FM's multi-domain protocol.
- ``cross_dataset``: AD-FM's cross-dataset generalisation.
- ``anomalyr1_fewshot``: AnomalyR1's few-shot training set, from sources MMAD does not use.
- ``emit``: EMIT's training images, again from sources MMAD does not use.

Datasets MMAD's images come from (``MMAD_DERIVED``: MVTec AD, VisA, MVTec LOCO, GoodsAD and
the ``mmad`` copy itself) are evaluation material: a recipe that trains on them (AD-FM's
multi-domain split, by design of the paper) must not be evaluated on MMAD without the leakage
guard (:mod:`iad_pipeline.questions.leakage`) saying so.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import polars as pl

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.errors import IadError

log = logging.getLogger(__name__)

SPLIT_COLUMN = "recipe_split"
REQUIRED_COLUMNS = ("sample_id", "dataset", "category", "split", "label", "is_anomalous")
MMAD_DERIVED = ("mvtec_ad", "visa", "mvtec_loco", "goodsad", "mmad")
NON_MMAD = ("mpdd", "mvtec_3d", "dtd_synthetic", "dagm")
MULTIDOMAIN = ("mvtec_ad", "visa", "mvtec_loco", "goodsad")
CROSS_EVAL = ("visa", "mpdd", "dtd_synthetic", "dagm", "mvtec_3d")


class RecipeError(IadError):
    """An unknown recipe or parameter, or a samples table a recipe cannot split."""


def train_count(n: int, fraction: float, *, keep_eval: bool = True) -> int:
    """Training images of a stratum of ``n``: ``fraction`` rounded half up, leaving one eval.

    >>> [train_count(n, 0.2) for n in (0, 1, 2, 3, 7, 8, 12, 13)]
    [0, 0, 0, 1, 1, 2, 2, 3]
    >>> train_count(10, 0.25), train_count(2, 0.25), train_count(2, 1.0)
    (3, 1, 1)
    >>> train_count(2, 1.0, keep_eval=False)
    2
    """
    exact = Fraction(str(fraction)) * n + Fraction(1, 2)
    count = min(math.floor(exact), n)
    return min(count, n - 1) if keep_eval and n > 0 else count


def rank_key(recipe: str, seed: int, name: str) -> int:
    """An image's (or a class's) place in seeded order: stable across runs and machines.

    >>> rank_key("emit", 0, "a") == rank_key("emit", 0, "a") != rank_key("emit", 1, "a")
    True
    """
    digest = hashlib.blake2b(f"{recipe}:{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _ranked(frame: pl.DataFrame, by: Sequence[str], recipe: str, seed: int) -> pl.DataFrame:
    """``frame`` with ``_rank`` (1..n in seeded order) and ``_n`` within each stratum ``by``."""
    keys = [rank_key(recipe, seed, sid) for sid in frame["sample_id"]]
    return frame.with_columns(pl.Series("_key", keys, dtype=pl.UInt64)).with_columns(
        pl.col("_key").rank("ordinal").over(by).cast(pl.Int64).alias("_rank"),
        pl.len().over(by).cast(pl.Int64).alias("_n"),
    )


def stratified(
    frame: pl.DataFrame,
    by: Sequence[str],
    fraction: float,
    *,
    recipe: str,
    seed: int,
    rest: str | None = "eval",
) -> dict[str, str | None]:
    """``{sample_id: "train" | rest}``: ``train_count`` images of each stratum go to train.

    ``rest=None`` (images not trained on are not used) lets a stratum be trained on whole.
    """
    if frame.height == 0:
        return {}
    ranked = _ranked(frame, by, recipe, seed)
    sizes = ranked.select(pl.col("_n").unique())["_n"].to_list()
    quota = {n: train_count(n, fraction, keep_eval=rest is not None) for n in sizes}
    ranked = ranked.with_columns(pl.col("_n").replace_strict(quota).alias("_quota"))
    picked = ranked.select("sample_id", pl.col("_rank") <= pl.col("_quota")).rows()
    return {sid: "train" if is_train else rest for sid, is_train in picked}


def capped(
    frame: pl.DataFrame, by: Sequence[str], quota: Mapping[tuple, int], *, recipe: str, seed: int
) -> dict[str, str | None]:
    """``{sample_id: "train"}`` for the first ``quota[class]`` images of each class."""
    if frame.height == 0:
        return {}
    ranked = _ranked(frame, by, recipe, seed)
    out = {}
    for row in ranked.iter_rows(named=True):
        if row["_rank"] <= quota[tuple(row[c] for c in by)]:
            out[row["sample_id"]] = "train"
    return out


def _of(
    samples: pl.DataFrame, datasets: Sequence[str], splits: Sequence[str] | None = None
) -> pl.DataFrame:
    cond = pl.col("dataset").is_in(list(datasets))
    if splits is not None:
        cond &= pl.col("split").is_in(list(splits))
    return samples.filter(cond)


def _adfm_multidomain(samples: pl.DataFrame, seed: int, p: dict) -> dict[str, str | None]:
    chosen = _of(samples, p["datasets"], p["splits"])
    by = ["dataset", "category", "is_anomalous"]
    return stratified(chosen, by, p["train_fraction"], recipe="adfm_multidomain", seed=seed)


def _cross_dataset(samples: pl.DataFrame, seed: int, p: dict) -> dict[str, str | None]:
    overlap = sorted(set(p["train_datasets"]) & set(p["eval_datasets"]))
    if overlap:
        msg = (
            f"cross_dataset: datasets {overlap} are in both train_datasets and eval_datasets; "
            "expected disjoint lists (the protocol evaluates on unseen datasets)"
        )
        raise RecipeError(msg)
    train = _of(samples, p["train_datasets"], p["train_splits"])
    by = ["dataset", "category", "is_anomalous"]
    out = stratified(train, by, p["train_fraction"], recipe="cross_dataset", seed=seed, rest=None)
    out.update(dict.fromkeys(_of(samples, p["eval_datasets"], ("test",))["sample_id"], "eval"))
    return out


def fewshot_quota(
    classes: Sequence[tuple], total: int, low: int, high: int, *, recipe: str, seed: int
) -> dict[tuple, int]:
    """Images per class: ``total // len(classes)`` clamped to ``[low, high]``, and one more
    for a seeded choice of classes until ``total`` is reached (when ``high`` allows).

    >>> q = fewshot_quota([(str(i),) for i in range(130)], 600, 2, 5, recipe="r", seed=0)
    >>> sum(q.values()), sorted(set(q.values()))
    (600, [4, 5])
    >>> q = fewshot_quota([(str(i),) for i in range(100)], 600, 2, 5, recipe="r", seed=0)
    >>> sum(q.values()), sorted(set(q.values()))
    (500, [5])
    """
    if not classes:
        return {}
    base = min(max(total // len(classes), low), high)
    extra = max(0, total - base * len(classes)) if base < high else 0
    order = sorted(classes, key=lambda c: rank_key(recipe, seed, "class:" + "/".join(map(str, c))))
    bonus = set(order[:extra])
    return {c: base + (c in bonus) for c in classes}


def _anomalyr1_fewshot(samples: pl.DataFrame, seed: int, p: dict) -> dict[str, str | None]:
    leaky = sorted(set(p["datasets"]) & set(MMAD_DERIVED))
    if leaky:
        log.warning(
            "anomalyr1_fewshot: datasets %s are MMAD sources; a model trained on them and "
            "evaluated on MMAD sees its evaluation images (run the leakage guard)",
            leaky,
        )
    chosen = _of(samples, p["datasets"], p["splits"])
    by = ["dataset", "category", "label"]
    classes = [tuple(r) for r in chosen.select(by).unique().sort(by).rows()]
    quota = fewshot_quota(
        classes,
        p["total"],
        p["min_per_class"],
        p["max_per_class"],
        recipe="anomalyr1_fewshot",
        seed=seed,
    )
    return capped(chosen, by, quota, recipe="anomalyr1_fewshot", seed=seed)


def _emit(samples: pl.DataFrame, seed: int, p: dict) -> dict[str, str | None]:
    leaky = sorted(set(p["datasets"]) & set(MMAD_DERIVED))
    if leaky:
        msg = (
            f"emit: datasets {leaky} are MMAD sources; EMIT uses them only through text "
            f"samples, never as images. Expected datasets among {', '.join(NON_MMAD)}"
        )
        raise RecipeError(msg)
    chosen = _of(samples, p["datasets"], p["splits"])
    by = ["dataset", "category", "label"]
    cap = p["per_class"]
    classes = [tuple(r) for r in chosen.select(by).unique().rows()]
    quota = {c: cap if cap is not None else chosen.height for c in classes}
    return capped(chosen, by, quota, recipe="emit", seed=seed)


@dataclass(frozen=True)
class Recipe:
    """A split recipe: the datasets it reads, its parameters with defaults, the protocol."""

    name: str
    datasets: tuple[str, ...]
    protocol: str
    assign: Callable[[pl.DataFrame, int, dict], dict[str, str | None]]
    defaults: Mapping[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "adfm_multidomain": Recipe(
        "adfm_multidomain",
        MULTIDOMAIN,
        "AD-FM, multi-domain protocol (Sec. 4.1): MVTec AD, VisA, MVTec-LOCO and GoodsAD, as "
        "in MMAD; 'for training, we use 20% of the data, uniformly sampled across object "
        "categories, and reserve the remaining 80% for in-distribution evaluation'. Ours: the "
        "images of each dataset's test split (the only split with anomalies; the train split "
        "is normal-only and supplies templates), stratified per (dataset, category, "
        "is_anomalous), at least one evaluation image per stratum.",
        _adfm_multidomain,
        {"train_fraction": 0.2, "datasets": MULTIDOMAIN, "splits": ("test",)},
    ),
    "cross_dataset": Recipe(
        "cross_dataset",
        ("mvtec_ad", *CROSS_EVAL),
        "AD-FM, cross-dataset generalisation (Sec. 4.1): 'trained exclusively on 20% of the "
        "MVTec dataset and tested on' VisA, MPDD, DTD(-Synthetic) and DAGM, 'on the standard "
        "test split defined by the respective dataset'; we add MVTec 3D-AD (RGB). Ours: 20% "
        "of MVTec AD's test split, stratified per (category, is_anomalous) and rounded half "
        "up (train_fraction=1.0 trains on the whole test split); MVTec AD's train/good images "
        "are templates, not queries; the rest of MVTec AD is unused. Eval: the test split of "
        "every eval dataset.",
        _cross_dataset,
        {
            "train_fraction": 0.2,
            "train_datasets": ("mvtec_ad",),
            "train_splits": ("test",),
            "eval_datasets": CROSS_EVAL,
        },
    ),
    "anomalyr1_fewshot": Recipe(
        "anomalyr1_fewshot",
        NON_MMAD,
        "AnomalyR1 (Sec. 3.5): 'we trained the model on 600 images sourced from traditional "
        "industrial datasets', 2-5 images per class. Their released data is an MMAD few-shot "
        "split, which leaks into MMAD evaluation; ours draws from datasets MMAD does not use "
        "(MPDD, MVTec 3D-AD, DTD-Synthetic, DAGM; any split), class = (dataset, category, "
        "label), total // classes images per class clamped to 2-5, plus one for a seeded "
        "choice of classes to reach the total. Evaluation is MMAD (no eval rows here).",
        _anomalyr1_fewshot,
        {
            "total": 600,
            "min_per_class": 2,
            "max_per_class": 5,
            "datasets": NON_MMAD,
            "splits": None,
        },
    ),
    "emit": Recipe(
        "emit",
        NON_MMAD,
        "EMIT (traindata_gen/): training images from MPDD and Real-IAD (not in our registry), "
        "never MMAD's sources, whose categories enter only as text samples. Ours: MPDD, MVTec "
        "3D-AD, DTD-Synthetic and DAGM, any split, at most per_class images per (dataset, "
        "category, label) (EMIT's make_jonsl.py takes 100 per folder; None = all). MVTec AD, "
        "VisA, MVTec-LOCO, GoodsAD and MMAD rows are null. Evaluation is MMAD.",
        _emit,
        {"per_class": 100, "datasets": NON_MMAD, "splits": None},
    ),
}


def _params(recipe: Recipe, given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(recipe.defaults))
    if unknown:
        msg = (
            f"recipe {recipe.name!r}: unknown parameters {unknown}; valid: "
            f"{', '.join(recipe.defaults)}"
        )
        raise RecipeError(msg)
    params = {**recipe.defaults, **given}
    for key in ("datasets", "train_datasets", "eval_datasets"):
        if key in params:
            if isinstance(params[key], str):
                params[key] = (params[key],)
            bad = sorted(set(params[key]) - set(DATASET_KEYS))
            if bad:
                msg = f"recipe {recipe.name!r}: {key} has unknown datasets {bad}; valid: "
                raise RecipeError(msg + ", ".join(DATASET_KEYS))
    fraction = params.get("train_fraction", 0.5)
    if not 0 < fraction <= 1:
        msg = f"recipe {recipe.name!r}: train_fraction={fraction}; expected 0 < fraction <= 1"
        raise RecipeError(msg)
    return params


def assign_split(
    samples: pl.DataFrame, recipe: str, *, seed: int = 0, **params: Any
) -> pl.DataFrame:
    """``samples`` with a ``recipe_split`` column: ``"train"``, ``"eval"`` or null.

    Args:
        samples: A samples table (one or several datasets); needs ``sample_id`` (unique),
            ``dataset``, ``category``, ``split``, ``label``, ``is_anomalous``.
        recipe: A key of :data:`RECIPES`.
        seed: Same seed, same split (independent of row order).
        **params: Overrides of the recipe's defaults (``Recipe.defaults``).

    Raises:
        RecipeError: unknown recipe or parameter, missing columns, duplicate sample ids.

    >>> import polars as pl
    >>> s = pl.DataFrame({"sample_id": [f"mvtec_ad/bottle/test/good/{i}" for i in range(5)],
    ...     "dataset": "mvtec_ad", "category": "bottle", "split": "test", "label": "good",
    ...     "is_anomalous": False})
    >>> assign_split(s, "adfm_multidomain")["recipe_split"].value_counts(sort=True).rows()
    [('eval', 4), ('train', 1)]
    >>> assign_split(s, "nope")
    Traceback (most recent call last):
    ...
    iad_pipeline.questions.splits.RecipeError: unknown recipe 'nope'; valid: adfm_multidomain, ...
    """
    if recipe not in RECIPES:
        msg = f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}"
        raise RecipeError(msg)
    spec = RECIPES[recipe]
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
    if missing:
        msg = f"{recipe}: samples lack columns {missing}; expected a samples table"
        raise RecipeError(msg)
    if samples["sample_id"].n_unique() != samples.height:
        dupes = samples.filter(pl.col("sample_id").is_duplicated())["sample_id"].unique().head(3)
        msg = f"{recipe}: duplicate sample ids {dupes.to_list()}; expected one row per image"
        raise RecipeError(msg)
    params = _params(spec, params)
    used = {
        d for key in ("datasets", "train_datasets", "eval_datasets") for d in params.get(key, ())
    }
    absent = sorted(used - set(samples["dataset"].unique()))
    if absent:
        log.warning("%s: no samples of %s; the split covers the others only", recipe, absent)
    assigned = spec.assign(samples, seed, params)
    column = pl.col("sample_id").replace_strict(assigned, default=None, return_dtype=pl.String)
    return samples.with_columns(column.alias(SPLIT_COLUMN))

"""Recipe splits: exact per-stratum rounding, seeded and order-free, the right datasets."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.questions.splits import (
    MMAD_DERIVED,
    NON_MMAD,
    RECIPES,
    SPLIT_COLUMN,
    RecipeError,
    assign_split,
    fewshot_quota,
    train_count,
)
from iad_pipeline.synthetic import synthesize

SUBSETS = {
    "mvtec_ad": ["bottle", "grid"],
    "visa": ["candle"],
    "mvtec_loco": ["breakfast_box"],
    "goodsad": ["drink_bottle"],
    "mpdd": ["tubes", "metal_plate"],
    "mvtec_3d": ["bagel"],
    "dtd_synthetic": ["Woven_001"],
    "dagm": ["Class1"],
    "mmad": None,
}
ID_COLUMNS = ("sample_id", "dataset", "category", "split", "label")
STRATUM = ["dataset", "category", "is_anomalous"]
CLASS = ["dataset", "category", "label"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    base = tmp_path_factory.mktemp("splits")
    frames = []
    for key, cats in SUBSETS.items():
        root = synthesize(key, base / key, per_class=3, size=64, categories=cats).root
        spec = get_spec(key)
        frames.append(build_samples(spec.scan(Path(root)), masks_required=False).samples)
    return pl.concat(frames)


def table(strata: dict[tuple[str, str, bool], int], split: str = "test") -> pl.DataFrame:
    """A hand-made samples table: ``n`` images per (dataset, category, is_anomalous)."""
    rows = [
        {
            "sample_id": f"{ds}/{cat}/{split}/{'bad' if bad else 'good'}/{i:03d}",
            "dataset": ds,
            "category": cat,
            "split": split,
            "label": "bad" if bad else "good",
            "is_anomalous": bad,
        }
        for (ds, cat, bad), n in strata.items()
        for i in range(n)
    ]
    return pl.DataFrame(
        rows, schema={**dict.fromkeys(ID_COLUMNS, pl.String), "is_anomalous": pl.Boolean}
    )


def as_dict(frame: pl.DataFrame) -> dict[str, str | None]:
    return dict(frame.select("sample_id", SPLIT_COLUMN).rows())


def counts(frame: pl.DataFrame, by: list[str]) -> dict[tuple, dict[str | None, int]]:
    out: dict[tuple, dict[str | None, int]] = {}
    for row in frame.group_by([*by, SPLIT_COLUMN]).len().iter_rows(named=True):
        out.setdefault(tuple(row[c] for c in by), {})[row[SPLIT_COLUMN]] = row["len"]
    return out


@pytest.mark.parametrize(
    ("n", "fraction", "keep_eval", "expected"),
    [
        (0, 0.2, True, 0),
        (1, 0.2, True, 0),  # 0.2 rounds to 0
        (2, 0.2, True, 0),  # 0.4 -> 0
        (3, 0.2, True, 1),  # 0.6 -> 1
        (7, 0.2, True, 1),  # 1.4 -> 1
        (8, 0.2, True, 2),  # 1.6 -> 2
        (13, 0.2, True, 3),  # 2.6 -> 3
        (100, 0.2, True, 20),
        (2, 0.25, True, 1),  # 0.5 rounds half up -> 1, one left for eval
        (10, 0.25, True, 3),  # 2.5 -> 3
        (1, 1.0, True, 0),  # keeps its one eval image
        (5, 1.0, True, 4),
        (5, 1.0, False, 5),
        (1, 0.5, False, 1),  # 0.5 -> 1 when nothing is kept for eval
        (10, 0.3, True, 3),  # 3.0 exactly, no float drift (0.3 * 10 = 3.0000000000000004)
    ],
)
def test_train_count_rounds_half_up_and_keeps_one_eval(n, fraction, keep_eval, expected):
    assert train_count(n, fraction, keep_eval=keep_eval) == expected


def test_multidomain_is_exact_per_stratum_on_hand_made_strata():
    sizes = {1: 0, 2: 0, 3: 1, 5: 1, 8: 2, 13: 3}  # n -> train images at 20%
    strata = {("mvtec_ad", f"c{n}", bad): n for n in sizes for bad in (False, True)}
    out = assign_split(table(strata), "adfm_multidomain", seed=3)
    for (_, cat, _), got in counts(out, STRATUM).items():
        n = int(cat[1:])
        assert got.get("train", 0) == sizes[n]
        assert got["eval"] == n - sizes[n] >= 1


def test_multidomain_on_synthetic_datasets(samples: pl.DataFrame):
    out = assign_split(samples, "adfm_multidomain")
    assert out.height == samples.height
    assert out.drop(SPLIT_COLUMN).equals(samples)  # rows and order untouched
    used = out.filter(pl.col(SPLIT_COLUMN).is_not_null())
    assert set(used["dataset"]) == {"mvtec_ad", "visa", "mvtec_loco", "goodsad"}
    assert set(used["split"]) == {"test"}
    test = out.filter(pl.col("dataset").is_in(list(RECIPES["adfm_multidomain"].datasets)))
    test = test.filter(pl.col("split") == "test")
    assert test[SPLIT_COLUMN].null_count() == 0
    for _, got in counts(test, STRATUM).items():
        n = sum(got.values())
        assert got.get("train", 0) == train_count(n, 0.2)
        assert got["eval"] >= 1


def test_same_seed_same_split_whatever_the_row_order(samples: pl.DataFrame):
    first = assign_split(samples, "adfm_multidomain", seed=7, train_fraction=0.5)
    shuffled = assign_split(
        samples.sample(fraction=1.0, shuffle=True, seed=1),
        "adfm_multidomain",
        seed=7,
        train_fraction=0.5,
    )
    assert as_dict(first) == as_dict(shuffled)
    other = assign_split(samples, "adfm_multidomain", seed=8, train_fraction=0.5)
    assert as_dict(other) != as_dict(first)
    # a dataset added or removed does not move the images of the others
    alone = assign_split(
        samples.filter(pl.col("dataset") == "visa"), "adfm_multidomain", seed=7, train_fraction=0.5
    )
    assert as_dict(alone).items() <= as_dict(first).items()


def test_cross_dataset_trains_on_mvtec_only(samples: pl.DataFrame):
    out = assign_split(samples, "cross_dataset")
    train = out.filter(pl.col(SPLIT_COLUMN) == "train")
    assert set(train["dataset"]) == {"mvtec_ad"} and set(train["split"]) == {"test"}
    mvtec_test = out.filter((pl.col("dataset") == "mvtec_ad") & (pl.col("split") == "test"))
    for _, got in counts(mvtec_test, STRATUM).items():
        n = sum(got.values())
        assert got.get("train", 0) == train_count(n, 0.2, keep_eval=False)
        assert "eval" not in got  # MVTec AD is never evaluated on
    evals = out.filter(pl.col(SPLIT_COLUMN) == "eval")
    assert set(evals["dataset"]) == {"visa", "mpdd", "dtd_synthetic", "dagm", "mvtec_3d"}
    expected = samples.filter(
        pl.col("dataset").is_in(["visa", "mpdd", "dtd_synthetic", "dagm", "mvtec_3d"])
        & (pl.col("split") == "test")
    )
    assert sorted(evals["sample_id"]) == sorted(expected["sample_id"])
    for ds in ("goodsad", "mvtec_loco", "mmad"):
        assert out.filter(pl.col("dataset") == ds)[SPLIT_COLUMN].null_count() == (
            samples.filter(pl.col("dataset") == ds).height
        )


def test_cross_dataset_whole_test_split_and_overlap_error(samples: pl.DataFrame):
    out = assign_split(samples, "cross_dataset", train_fraction=1.0)
    mvtec_test = out.filter((pl.col("dataset") == "mvtec_ad") & (pl.col("split") == "test"))
    assert set(mvtec_test[SPLIT_COLUMN]) == {"train"}
    with pytest.raises(RecipeError, match="both train_datasets and eval_datasets"):
        assign_split(samples, "cross_dataset", eval_datasets=("visa", "mvtec_ad"))


@pytest.mark.parametrize(
    ("n_classes", "total", "expected_total", "expected_values"),
    [
        (130, 600, 600, {4, 5}),  # 600 // 130 = 4, 80 classes get a fifth
        (150, 600, 600, {4}),  # exactly 4 each
        (100, 600, 500, {5}),  # capped at 5 per class
        (400, 600, 800, {2}),  # at least 2 per class
        (7, 20, 20, {2, 3}),  # 2 each + 6 of 7 classes get a third
        (0, 600, 0, set()),
    ],
)
def test_fewshot_quota(n_classes, total, expected_total, expected_values):
    classes = [("mpdd", f"c{i}", "good") for i in range(n_classes)]
    quota = fewshot_quota(classes, total, 2, 5, recipe="anomalyr1_fewshot", seed=0)
    assert sum(quota.values()) == expected_total
    assert set(quota.values()) == expected_values


def test_anomalyr1_fewshot_draws_from_non_mmad_sources(samples: pl.DataFrame):
    out = assign_split(samples, "anomalyr1_fewshot", total=40)
    assert set(out[SPLIT_COLUMN].drop_nulls()) == {"train"}
    train = out.filter(pl.col(SPLIT_COLUMN) == "train")
    assert set(train["dataset"]) <= set(NON_MMAD)
    chosen = samples.filter(pl.col("dataset").is_in(list(NON_MMAD)))
    classes = [tuple(r) for r in chosen.select(CLASS).unique().rows()]
    quota = fewshot_quota(classes, 40, 2, 5, recipe="anomalyr1_fewshot", seed=0)
    available = {tuple(r[:3]): r[3] for r in chosen.group_by(CLASS).len().rows()}
    got = {key: c.get("train", 0) for key, c in counts(out, CLASS).items() if key in available}
    assert got == {c: min(quota[c], available[c]) for c in classes}
    assert out.filter(pl.col("dataset").is_in(list(MMAD_DERIVED)))[SPLIT_COLUMN].null_count() == (
        samples.filter(pl.col("dataset").is_in(list(MMAD_DERIVED))).height
    )


def test_anomalyr1_fewshot_warns_on_mmad_sources(samples, caplog):
    with caplog.at_level(logging.WARNING, logger="iad_pipeline.questions.splits"):
        out = assign_split(samples, "anomalyr1_fewshot", datasets=("mvtec_ad",))
    assert "MMAD sources" in caplog.text
    assert set(out.filter(pl.col(SPLIT_COLUMN) == "train")["dataset"]) == {"mvtec_ad"}


def test_emit_uses_no_mmad_source_images(samples: pl.DataFrame):
    out = assign_split(samples, "emit", per_class=1)
    train = out.filter(pl.col(SPLIT_COLUMN) == "train")
    assert set(train["dataset"]) == set(NON_MMAD)
    assert train.group_by(CLASS).len()["len"].max() == 1
    everything = assign_split(samples, "emit", per_class=None)
    n_non_mmad = samples.filter(pl.col("dataset").is_in(list(NON_MMAD))).height
    assert everything[SPLIT_COLUMN].drop_nulls().len() == n_non_mmad
    with pytest.raises(RecipeError, match="only through text samples"):
        assign_split(samples, "emit", datasets=("visa",))


@pytest.mark.parametrize(
    ("recipe", "params", "match"),
    [
        ("nope", {}, "unknown recipe 'nope'; valid: adfm_multidomain, cross_dataset"),
        ("emit", {"per_klass": 3}, r"unknown parameters \['per_klass'\]; valid: per_class"),
        ("adfm_multidomain", {"train_fraction": 0}, "expected 0 < fraction <= 1"),
        ("adfm_multidomain", {"train_fraction": 1.5}, "expected 0 < fraction <= 1"),
        ("adfm_multidomain", {"datasets": ("mvtec",)}, r"unknown datasets \['mvtec'\]"),
    ],
)
def test_bad_requests_are_errors(recipe, params, match):
    with pytest.raises(RecipeError, match=match):
        assign_split(table({("mvtec_ad", "bottle", False): 3}), recipe, **params)


def test_bad_tables_are_errors():
    frame = table({("mvtec_ad", "bottle", False): 3})
    with pytest.raises(RecipeError, match=r"lack columns \['label'\]"):
        assign_split(frame.drop("label"), "emit")
    with pytest.raises(RecipeError, match="duplicate sample ids"):
        assign_split(pl.concat([frame, frame.head(1)]), "emit")


def test_empty_table_gets_an_empty_column():
    empty = table({})
    for recipe in RECIPES:
        out = assign_split(empty, recipe)
        assert out.height == 0 and out.schema[SPLIT_COLUMN] == pl.String


def test_every_recipe_is_described():
    assert set(RECIPES) == {"adfm_multidomain", "cross_dataset", "anomalyr1_fewshot", "emit"}
    for name, recipe in RECIPES.items():
        assert recipe.name == name
        assert set(recipe.datasets) <= set(DATASET_KEYS)
        assert len(recipe.protocol) > 100 and recipe.defaults

"""The annotations table on synthetic datasets, planted problems, pools and the preview."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from iad_pipeline.annotate import (
    REGIONS,
    AnnotationResult,
    annotate_samples,
    draw_preview,
    mask_boxes,
    read_mask,
)
from iad_pipeline.annotate import table as table_mod
from iad_pipeline.annotate.table import ANNOTATIONS_SCHEMA, QUARANTINE_SCHEMA, summarize_grid
from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.settings import AnnotationSettings
from iad_pipeline.synthetic import synthesize

SUBSETS = {
    "mvtec_ad": ["bottle", "grid"],
    "mvtec_loco": ["breakfast_box"],
    "visa": ["candle", "pcb1"],
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("annotate_synth")
    return {
        key: synthesize(key, base / key, per_class=2, categories=cats).root
        for key, cats in SUBSETS.items()
    }


def samples_of(key: str, root: Path) -> pl.DataFrame:
    spec = get_spec(key)
    return build_samples(spec.scan(root), masks_required=spec.masks_required).samples


@pytest.fixture(scope="module")
def tables(roots: dict[str, Path]) -> dict[str, tuple[pl.DataFrame, AnnotationResult]]:
    out = {}
    for key, root in roots.items():
        samples = samples_of(key, root)
        out[key] = (samples, annotate_samples(samples, workers=1))
    return out


@pytest.mark.parametrize("key", list(SUBSETS))
def test_every_anomalous_sample_gets_boxes_inside_the_image(tables, key: str) -> None:
    samples, result = tables[key]
    df = result.annotations
    assert df.schema == pl.Schema(ANNOTATIONS_SCHEMA)
    assert df.height == samples.height
    assert df["sample_id"].to_list() == sorted(samples["sample_id"].to_list())
    anomalous = df.filter(pl.col("is_anomalous"))
    assert anomalous.height > 0
    assert (anomalous["box_count"] >= 1).all()
    assert (anomalous["status"] == "ok").all() and anomalous["localizable"].all()
    assert anomalous["grid_label"].is_in(list(REGIONS)).all()
    for row in anomalous.iter_rows(named=True):
        assert row["box_count"] == len(row["boxes"])
        assert row["grid_label"] == row["grid_regions"][0]
        assert 0 < row["mask_area_fraction"] < 1
        for x1, y1, x2, y2 in row["boxes"]:
            assert 0 <= x1 < x2 <= row["width"] and 0 <= y1 < y2 <= row["height"]
    assert result.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert result.quarantine.is_empty()


@pytest.mark.parametrize("key", list(SUBSETS))
def test_normal_samples_are_normal(tables, key: str) -> None:
    _, result = tables[key]
    normal = result.annotations.filter(~pl.col("is_anomalous"))
    assert normal.height > 0
    assert (normal["status"] == "normal").all()
    assert (normal["box_count"] == 0).all() and not normal["localizable"].any()
    assert normal["grid_label"].is_null().all()
    assert (normal["mask_area_fraction"] == 0.0).all()


@pytest.mark.parametrize("key", list(SUBSETS))
def test_table_agrees_with_mask_boxes(tables, key: str) -> None:
    samples, result = tables[key]
    paths = dict(samples.select("sample_id", "mask_paths").iter_rows())
    for row in result.annotations.filter(pl.col("is_anomalous")).iter_rows(named=True):
        union = read_mask(paths[row["sample_id"]])
        assert row["boxes"] == mask_boxes(union)
        assert row["mask_area_fraction"] == pytest.approx(union.sum() / union.size)


def test_loco_samples_with_several_masks(tables) -> None:
    samples, result = tables["mvtec_loco"]
    multi = samples.filter(pl.col("mask_paths").list.len() > 1)
    assert multi.height > 0  # the synthetic LOCO writes several region files
    values = {int(v) for p in multi["mask_paths"][0] for v in np.unique(cv2.imread(p, -1))}
    assert values - {0} and not values & {255}  # region values, not 255
    ann = result.annotations.filter(pl.col("sample_id").is_in(multi["sample_id"].implode()))
    assert (ann["status"] == "ok").all()


def test_visa_index_masks(tables) -> None:
    samples, result = tables["visa"]
    values = set()
    for paths in samples.filter(pl.col("is_anomalous"))["mask_paths"]:
        values |= {int(v) for v in np.unique(cv2.imread(paths[0], -1))}
    assert values <= set(range(256)) and 255 not in values and 1 in values
    assert (result.annotations.filter(pl.col("is_anomalous"))["status"] == "ok").all()


@pytest.fixture()
def planted(roots: dict[str, Path], tmp_path: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    """MVTec AD samples whose files were changed after the samples table was built."""
    root = tmp_path / "mvtec_ad"
    shutil.copytree(roots["mvtec_ad"], root)
    samples = samples_of("mvtec_ad", root)
    anomalous = samples.filter(pl.col("is_anomalous")).sort("sample_id")
    ids = anomalous["sample_id"].to_list()
    masks = anomalous["mask_paths"].to_list()
    plan = {
        "empty_mask": ids[0],
        "mask_size_mismatch": ids[1],
        "unreadable_mask": ids[2],
        "no_mask": ids[3],
        "specks_only": ids[4],
    }
    shape = cv2.imread(masks[0][0], -1).shape
    cv2.imwrite(masks[0][0], np.zeros(shape, np.uint8))
    cv2.imwrite(masks[1][0], np.zeros((shape[0] // 2, shape[1]), np.uint8))
    Path(masks[2][0]).write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 truncated")
    specks = np.zeros(shape, np.uint8)
    specks[5, 5] = specks[60, 60] = 255  # two 1-pixel groups, both below min_area_px=4
    cv2.imwrite(masks[4][0], specks)
    samples = samples.with_columns(
        mask_paths=pl.when(pl.col("sample_id") == ids[3])
        .then(pl.lit([], pl.List(pl.String)))
        .otherwise(pl.col("mask_paths"))
    )
    return samples, plan


def test_planted_problems_are_reported_not_relabelled(planted) -> None:
    samples, plan = planted
    result = annotate_samples(samples, workers=1)
    df = result.annotations
    status = dict(df.select("sample_id", "status").iter_rows())
    for reason, sid in plan.items():
        assert status[sid] == ("empty_mask" if reason == "specks_only" else reason), reason
    bad_ids = list(plan.values())
    bad = df.filter(pl.col("sample_id").is_in(bad_ids))
    assert bad["is_anomalous"].all()  # never relabelled as normal
    assert not bad["localizable"].any()
    assert bad["grid_label"].is_null().all() and (bad["box_count"] == 0).all()
    assert (bad["grid_regions"].list.len() == 0).all()
    fractions = dict(bad.select("sample_id", "mask_area_fraction").iter_rows())
    assert fractions[plan["empty_mask"]] == 0.0
    assert fractions[plan["specks_only"]] > 0.0  # the specks are counted, just not boxed
    assert fractions[plan["unreadable_mask"]] is None
    assert fractions[plan["mask_size_mismatch"]] is None
    # Everything else is untouched.
    others = df.filter(pl.col("is_anomalous") & ~pl.col("sample_id").is_in(bad_ids))
    assert (others["status"] == "ok").all()
    # One quarantine row per problem, with the file and a reason.
    q = result.quarantine
    assert sorted(q["sample_id"].to_list()) == sorted(bad_ids)
    reasons = dict(q.select("sample_id", "reason").iter_rows())
    assert reasons == {sid: status[sid] for sid in bad_ids}
    details = dict(q.select("sample_id", "detail").iter_rows())
    assert "no defect pixel" in details[plan["empty_mask"]]
    assert "below min_area_px=4" in details[plan["specks_only"]]
    # The mask was rewritten at half height: 128 wide, 64 high, against 128x128.
    assert "mask is 128x64" in details[plan["mask_size_mismatch"]]
    assert "cannot read mask" in details[plan["unreadable_mask"]]
    paths = dict(q.select("sample_id", "path").iter_rows())
    assert paths[plan["unreadable_mask"]].endswith(".png")
    image_paths = dict(samples.select("sample_id", "image_path").iter_rows())
    assert paths[plan["no_mask"]] == image_paths[plan["no_mask"]]
    assert q["reason"].to_list() == sorted(q["reason"].to_list())


def test_specks_kept_with_smaller_min_area(planted) -> None:
    samples, plan = planted
    df = annotate_samples(
        samples, workers=1, settings=AnnotationSettings(min_area_px=1)
    ).annotations
    row = df.filter(pl.col("sample_id") == plan["specks_only"]).row(0, named=True)
    assert row["status"] == "ok"
    assert row["boxes"] == [[5, 5, 6, 6], [60, 60, 61, 61]]
    # One pixel each in the top-left and center ninths (size 128: splits at 42, 85): a tie.
    assert row["grid_regions"] == ["top left", "center"] and row["grid_label"] == "top left"


def test_size_mismatch_against_the_samples_row(tables) -> None:
    samples, _ = tables["mvtec_ad"]
    sid = samples.filter(pl.col("is_anomalous"))["sample_id"][0]
    wrong = samples.with_columns(
        width=pl.when(pl.col("sample_id") == sid).then(999).otherwise(pl.col("width"))
    )
    df = annotate_samples(wrong, workers=1).annotations
    assert df.filter(pl.col("sample_id") == sid)["status"].item() == "mask_size_mismatch"


def test_pool_gives_the_same_tables(monkeypatch, planted) -> None:
    samples, _ = planted
    one = annotate_samples(samples, workers=1)
    monkeypatch.setattr(table_mod, "PARALLEL_MIN_MASKS", 0)  # use the pool on a few masks
    two = annotate_samples(samples, workers=2)
    assert one.annotations.equals(two.annotations)
    assert one.quarantine.equals(two.quarantine)


def test_input_order_does_not_matter(tables) -> None:
    samples, result = tables["visa"]
    shuffled = samples.sample(fraction=1.0, shuffle=True, seed=3)
    assert annotate_samples(shuffled, workers=1).annotations.equals(result.annotations)


def test_empty_samples_table(tables) -> None:
    samples, _ = tables["visa"]
    result = annotate_samples(samples.head(0), workers=1)
    assert result.annotations.is_empty() and result.quarantine.is_empty()
    assert result.annotations.schema == pl.Schema(ANNOTATIONS_SCHEMA)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"workers": 0}, "workers must be a positive integer"),
        ({"dilate_px": -3}, "dilate_px"),
        ({"min_area_px": 1.5}, "min_area_px"),
    ],
)
def test_bad_arguments(tables, kwargs: dict, match: str) -> None:
    samples, _ = tables["visa"]
    with pytest.raises(ValueError, match=match):
        if "workers" in kwargs:
            annotate_samples(samples, **kwargs)
        else:
            annotate_samples(samples, settings=AnnotationSettings(**kwargs))


def test_missing_columns_are_named(tables) -> None:
    samples, _ = tables["visa"]
    with pytest.raises(ValueError, match=r"lacks columns \['mask_paths'\]"):
        annotate_samples(samples.drop("mask_paths"), workers=1)


def test_summarize_grid(tables) -> None:
    _, result = tables["mvtec_ad"]
    summary = summarize_grid(result.annotations)
    assert summary.columns == ["grid_label", "samples", "share"]
    assert summary["samples"].sum() == result.annotations["localizable"].sum()
    assert summary["share"].sum() == pytest.approx(1.0)
    assert summary["samples"].to_list() == sorted(summary["samples"].to_list(), reverse=True)


def test_preview_is_a_png_contact_sheet(tables, tmp_path: Path) -> None:
    samples, result = tables["mvtec_ad"]
    out = draw_preview(result.annotations, samples, tmp_path / "sub" / "preview.png", n=4)
    img = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert img is not None
    # 4 tiles, 3 per row: 2 rows of 256 + 22 caption pixels, 3 columns of 256.
    assert img.shape == (2 * 278, 3 * 256, 3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["preview.png"]  # no temp left
    again = draw_preview(result.annotations, samples, tmp_path / "again.png", n=4)
    assert again.read_bytes() == out.read_bytes()  # same seed, same sheet


def test_preview_without_localizable_samples(tables, tmp_path: Path) -> None:
    samples, result = tables["mvtec_ad"]
    normal_only = result.annotations.filter(~pl.col("is_anomalous"))
    out = draw_preview(normal_only, samples, tmp_path / "preview.png")
    img = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert img.shape == (278, 256, 3)

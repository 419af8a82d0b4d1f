"""Every layout reader against its synthetic dataset, and the quarantine of planted faults."""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from iad_pipeline.datasets.catalog import DATASET_KEYS
from iad_pipeline.datasets.layout import Reason
from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import SAMPLES_SCHEMA, build_samples
from iad_pipeline.errors import LayoutError


def read(key: str, root: Path):
    spec = get_spec(key)
    return build_samples(spec.scan(root), masks_required=spec.masks_required)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with its sha256: the user's folder must not change."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("key", DATASET_KEYS)
def test_reader_matches_the_synthetic_manifest(synth, key: str) -> None:
    report = synth.get(key)
    before = snapshot(report.root)
    result = read(key, report.root)
    df = result.samples
    assert result.quarantine.height == 0, result.quarantine.to_dicts()
    assert df.schema == pl.Schema(SAMPLES_SCHEMA)
    assert df.height == len(report.images)
    expected = {f"{key}/{i.category}/{i.split}/{i.label}/{i.stem}": i for i in report.images}
    assert set(df["sample_id"]) == set(expected)
    for row in df.iter_rows(named=True):
        image = expected[row["sample_id"]]
        assert row["relpath"] == image.image
        assert Path(row["image_path"]) == report.root / image.image
        assert sorted(Path(m) for m in row["mask_paths"]) == sorted(
            report.root / m for m in image.masks
        )
        assert row["is_anomalous"] == (image.label != "good")
        assert row["source"] == (image.source or key)
        assert (row["width"], row["height"]) == (128, 128)
        assert row["sha256"] == hashlib.sha256(Path(row["image_path"]).read_bytes()).hexdigest()
    assert snapshot(report.root) == before


def test_mvtec_ad_counts_by_hand(synth) -> None:
    # bottle: train/good 2*2, test/good 2, 3 defects x 2; grid: 4 + 2 + 5 defects x 2
    df = read("mvtec_ad", synth.get("mvtec_ad").root).samples
    counts = dict(df.group_by("category").len().iter_rows())
    assert counts == {"bottle": 4 + 2 + 6, "grid": 4 + 2 + 10}
    bottle = df.filter(pl.col("category") == "bottle")
    assert sorted(bottle.filter(pl.col("split") == "test")["label"].unique()) == [
        "broken_large",
        "broken_small",
        "contamination",
        "good",
    ]
    assert bottle.filter(pl.col("is_anomalous"))["mask_paths"].list.len().to_list() == [1] * 6


def test_visa_raw_uses_the_split_csv_and_index_masks(synth) -> None:
    report = synth.get("visa")
    df = read("visa", report.root).samples
    assert set(df["label"]) == {"good", "bad"}
    # per category: 3*2 normal (4 train, 2 test); per defect 2 anomalies, all test
    candle = df.filter(pl.col("category") == "candle")
    assert candle.filter(pl.col("split") == "train").height == 4
    assert candle.filter(pl.col("split") == "train")["is_anomalous"].sum() == 0
    mask = cv2.imread(
        candle.filter(pl.col("is_anomalous"))["mask_paths"][0][0], cv2.IMREAD_UNCHANGED
    )
    assert 0 < mask.max() < 255  # index-valued, not 0/255


def test_mvtec_loco_keeps_every_region_mask_and_the_val_split(synth) -> None:
    df = read("mvtec_loco", synth.get("mvtec_loco").root).samples
    assert set(df["split"]) == {"train", "val", "test"}
    anomalous = df.filter(pl.col("is_anomalous"))
    assert set(anomalous["label"]) == {"logical_anomalies", "structural_anomalies"}
    assert anomalous["mask_paths"].list.len().min() >= 1
    assert anomalous["mask_paths"].list.len().max() >= 2  # some images have two regions


def test_mmad_rows_are_the_keys_of_mmad_json(synth) -> None:
    report = synth.get("mmad")
    keys = set(json.loads((report.root / "mmad.json").read_text()))
    df = read("mmad", report.root).samples
    assert set(df["relpath"]) == keys
    assert set(df["split"]) == {"test"}
    assert set(df["source"]) == {"DS-MVTec", "MVTec-LOCO", "VisA", "GoodsAD"}


# --- planted faults -------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_mvtec_like_faults_are_quarantined_and_nothing_is_lost(synth, tmp_path) -> None:
    _, root = synth.copy("mvtec_ad", tmp_path / "mvtec_ad")
    bottle = root / "bottle"
    _truncate(bottle / "test" / "good" / "000.png")
    (bottle / "train" / "good" / "001.png").write_bytes(b"not an image at all")
    (bottle / "ground_truth" / "broken_large" / "000_mask.png").unlink()
    small = np.zeros((64, 64), np.uint8)
    small[10:20, 10:20] = 255
    cv2.imwrite(str(bottle / "ground_truth" / "broken_small" / "001_mask.png"), small)
    cv2.imwrite(str(bottle / "ground_truth" / "contamination" / "077_mask.png"), small)
    (bottle / "extra").mkdir()
    (root / "emptycat" / "train" / "good").mkdir(parents=True)
    (root / "notacategory").mkdir()
    before = snapshot(root)

    result = read("mvtec_ad", root)
    q = {
        (Path(r["path"]).relative_to(root).as_posix(), r["reason"])
        for r in result.quarantine.to_dicts()
    }
    assert q == {
        ("bottle/test/good/000.png", Reason.TRUNCATED_IMAGE),
        ("bottle/train/good/001.png", Reason.UNREADABLE_IMAGE),
        ("bottle/test/broken_large/000.png", Reason.MISSING_MASK),
        ("bottle/ground_truth/broken_small/001_mask.png", Reason.MASK_SIZE_MISMATCH),
        ("bottle/ground_truth/contamination/077_mask.png", Reason.ORPHAN_MASK),
        ("bottle/extra", Reason.UNKNOWN_FOLDER),
        ("emptycat", Reason.EMPTY_CATEGORY),
        ("notacategory", Reason.UNKNOWN_FOLDER),
    }
    # the four bad images are left out of the samples table, the rest are kept
    assert result.samples.height == len(synth.get("mvtec_ad").images) - 4
    assert result.quarantine_fraction == pytest.approx(8 / (result.samples.height + 8))
    assert snapshot(root) == before


def test_visa_csv_mismatches_are_reported(synth, tmp_path) -> None:
    _, root = synth.copy("visa", tmp_path / "visa")
    csv_path = root / "split_csv" / "1cls.csv"
    lines = csv_path.read_text().splitlines()
    lines.append("candle,test,normal,candle/Data/Images/Normal/9999.JPG,")
    lines.append("candle,sometimes,normal,candle/Data/Images/Normal/0000.JPG,")
    # drop one listed image from the csv: it is on disk but unlisted
    dropped = next(i for i, line in enumerate(lines) if line.startswith("pcb1,train"))
    unlisted = lines.pop(dropped).split(",")[3]
    csv_path.write_text("\n".join(lines) + "\n")
    anomaly = next(line for line in lines if line.startswith("candle,test,anomaly"))
    (root / anomaly.split(",")[4]).unlink()

    q = read("visa", root).quarantine
    reasons = dict(zip(q["path"], q["reason"], strict=True))
    assert reasons[str(root / "candle/Data/Images/Normal/9999.JPG")] == Reason.MISSING_IMAGE
    assert reasons[str(root / unlisted)] == Reason.UNLISTED_IMAGE
    assert reasons[str(root / anomaly.split(",")[4])] == Reason.MISSING_MASK
    assert Reason.BAD_MANIFEST_ROW in set(q["reason"])


def test_dagm_labels_txt_disagreement_is_reported(synth, tmp_path) -> None:
    _, root = synth.copy("dagm", tmp_path / "dagm")
    label_dir = root / "Class1" / "Train" / "Label"
    mask = sorted(label_dir.glob("*_label.PNG"))[0]
    stem = mask.name.removesuffix("_label.PNG")
    mask.unlink()  # Labels.txt still flags it defective
    result = read("dagm", root)
    row = result.quarantine.filter(pl.col("reason") == Reason.LABEL_MISMATCH).to_dicts()
    assert [Path(r["path"]).stem for r in row] == [stem]
    assert "defective without" in row[0]["detail"]


def test_mmad_missing_image_and_broken_json(synth, tmp_path) -> None:
    _, root = synth.copy("mmad", tmp_path / "mmad")
    first = next(iter(json.loads((root / "mmad.json").read_text())))
    (root / first).unlink()
    result = read("mmad", root)
    assert result.quarantine.filter(pl.col("reason") == Reason.MISSING_IMAGE).height == 1
    (root / "mmad.json").write_text("{ not json")
    with pytest.raises(LayoutError, match=r"mmad\.json: not valid json"):
        read("mmad", root)


def test_truncated_jpeg_is_detected(synth, tmp_path) -> None:
    _, root = synth.copy("goodsad", tmp_path / "goodsad")
    image = sorted((root / "drink_bottle" / "train" / "good").iterdir())[0]
    _truncate(image)
    q = read("goodsad", root).quarantine
    assert q.select("reason", "path").rows() == [(Reason.TRUNCATED_IMAGE, str(image))]


def test_samples_table_is_the_same_whatever_the_worker_count(synth) -> None:
    report = synth.get("mpdd")
    a = read("mpdd", report.root).samples
    spec = get_spec("mpdd")
    b = build_samples(spec.scan(report.root), workers=1).samples
    assert a.equals(b)

"""Leakage guard and perceptual hash: copies are caught, look-alike images are not."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest

from iad_pipeline.datasets.registry import get_spec
from iad_pipeline.datasets.samples import build_samples
from iad_pipeline.errors import LayoutError
from iad_pipeline.questions import phash
from iad_pipeline.questions.leakage import (
    LEAKS_SCHEMA,
    LeakageError,
    assert_no_leaks,
    blurred_rmse,
    find_leaks,
    mmad_eval_images,
)
from iad_pipeline.synthetic import synthesize

# Look-alike categories: near-identical objects (bottle), regular patterns (grid, tile) and
# noisy textures (DAGM), where the hash alone cannot tell images apart.
SUBSETS = {"mvtec_ad": ["bottle", "grid", "tile"], "dagm": ["Class1", "Class3"]}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    base = tmp_path_factory.mktemp("leakage")
    frames = []
    for key, cats in SUBSETS.items():
        root = synthesize(key, base / key, per_class=3, size=128, categories=cats).root
        spec = get_spec(key)
        frames.append(build_samples(spec.scan(Path(root)), masks_required=False).samples)
    return pl.concat(frames)


@pytest.fixture(scope="module")
def mmad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(synthesize("mmad", tmp_path_factory.mktemp("mmad") / "m", per_class=1).root)


def one(samples: pl.DataFrame, sample_id: str) -> dict:
    return samples.filter(pl.col("sample_id") == sample_id).row(0, named=True)


def resized_copy(src: str, dest: Path, size: int, quality: int | None = None) -> Path:
    image = cv2.resize(cv2.imread(src), (size, size), interpolation=cv2.INTER_AREA)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality else []
    cv2.imwrite(str(dest), image, params)
    return dest


# ---- the perceptual hash -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(0, 0, 0), (0b1, 0b0, 1), (0b1100, 0b1010, 2), ((1 << 63) - 1, 0, 63), (0xFF, 0xF0F, 8)],
)
def test_hamming(a, b, expected):
    assert phash.hamming(a, b) == expected
    assert phash.distances(phash.as_array([a]), phash.as_array([b]))[0, 0] == expected


def test_phash_properties(samples: pl.DataFrame, tmp_path: Path):
    path = one(samples, "mvtec_ad/bottle/test/good/000")["image_path"]
    h = phash.phash_file(path)
    assert 0 <= h < 1 << 63
    assert h.bit_count() == 31  # median threshold over 63 distinct coefficients
    assert phash.phash_array(np.zeros((20, 30), np.uint8)) == 0  # flat image
    assert phash.phash_array(cv2.imread(path)) == h  # colour input is converted
    copy = resized_copy(path, tmp_path / "c.png", 96)
    assert phash.hamming(phash.phash_file(copy), h) <= 2
    with pytest.raises(phash.UnreadableImageError, match="not found"):
        phash.phash_file(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(phash.UnreadableImageError, match="cannot decode"):
        phash.phash_file(tmp_path / "bad.png")


def test_process_pool_gives_the_same_hashes(samples: pl.DataFrame, monkeypatch):
    paths = samples["image_path"].to_list()[:12]
    in_process = phash.phash_files(paths, workers=1)
    monkeypatch.setattr(phash, "PARALLEL_MIN", 1)
    monkeypatch.setattr(phash, "CHUNK", 5)
    assert phash.phash_files(paths, workers=2) == in_process


# ---- find_leaks ----------------------------------------------------------------------------

QUERY = "mvtec_ad/bottle/test/broken_large/000"
COPIES = [
    # (name, size, JPEG quality or None for PNG, expected kind)
    ("exact.png", None, None, "exact"),
    ("png96.png", 96, None, "perceptual"),  # 128 -> 96 px, lossless
    ("jpg96.jpg", 96, 90, "perceptual"),  # 128 -> 96 px, re-encoded as JPEG
    ("png64.png", 64, None, "perceptual"),  # half size
]


@pytest.mark.parametrize(("name", "size", "quality", "kind"), COPIES)
def test_copies_of_a_test_image_are_caught(samples, tmp_path, name, size, quality, kind):
    src = one(samples, QUERY)["image_path"]
    dest = tmp_path / name
    if size is None:
        shutil.copy(src, dest)
    else:
        resized_copy(src, dest, size, quality)
    evals = pl.DataFrame({"image_path": [str(dest)], "sha256": [sha(dest)]})
    leaks = find_leaks(samples, evals)
    assert leaks.schema == pl.Schema(LEAKS_SCHEMA)
    assert leaks.height == 1
    row = leaks.row(0, named=True)
    assert (row["sample_id"], row["eval_image_path"], row["kind"]) == (QUERY, str(dest), kind)
    assert row["train_image_path"] == src
    if kind == "exact":
        assert row["distance"] == 0 and row["rmse"] is None
    else:
        assert row["distance"] <= 10 and row["rmse"] <= 2.0


def test_different_images_of_a_category_are_not_flagged(samples: pl.DataFrame):
    # every pair of different images within a category of look-alikes: none is a copy
    indexed = samples.with_row_index()
    train = indexed.filter(pl.col("index") % 2 == 0)
    evals = indexed.filter(pl.col("index") % 2 == 1)
    assert find_leaks(train, evals).height == 0
    assert find_leaks(evals, train).height == 0


def test_exact_only_and_best_match(samples: pl.DataFrame, tmp_path: Path):
    src = one(samples, QUERY)["image_path"]
    exact = tmp_path / "same.png"
    shutil.copy(src, exact)
    small = resized_copy(src, tmp_path / "small.png", 96)
    evals = pl.DataFrame({"image_path": [str(small), str(exact)]})  # no sha256: computed
    leaks = find_leaks(samples, evals)
    assert leaks.select("sample_id", "kind", "n_matches").rows() == [(QUERY, "exact", 2)]
    only_exact = find_leaks(samples, evals.head(1), max_distance=None)
    assert only_exact.height == 0


def test_null_hashes_are_computed_and_empty_inputs_give_empty_tables(samples, tmp_path):
    src = one(samples, QUERY)["image_path"]
    exact = tmp_path / "same.png"
    shutil.copy(src, exact)
    evals = pl.DataFrame(
        {"image_path": [str(exact)], "sha256": [None]},
        schema={"image_path": pl.String, "sha256": pl.String},
    )
    assert find_leaks(samples, evals, max_distance=None)["kind"].to_list() == ["exact"]
    empty = find_leaks(samples.head(0), evals)
    assert empty.height == 0 and empty.schema == pl.Schema(LEAKS_SCHEMA)
    assert find_leaks(samples, evals.head(0)).height == 0


def test_assert_no_leaks(samples: pl.DataFrame, tmp_path: Path, caplog):
    src = one(samples, QUERY)["image_path"]
    exact = tmp_path / "same.png"
    shutil.copy(src, exact)
    evals = pl.DataFrame({"image_path": [str(exact)], "sha256": [sha(exact)]})
    assert assert_no_leaks(samples.head(3), evals.head(0)).height == 0
    with pytest.raises(LeakageError, match=f"1 training images appear(.|\n)*{QUERY} \\(exact"):
        assert_no_leaks(samples, evals, what="adfm_multidomain train")
    with caplog.at_level(logging.WARNING, logger="iad_pipeline.questions.leakage"):
        leaks = assert_no_leaks(samples, evals, allow=True)
    assert leaks.height == 1 and "allowed by allow=True" in caplog.text and QUERY in caplog.text


def test_blurred_rmse_compares_at_the_smaller_size():
    ramp = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (128, 1))
    assert blurred_rmse(ramp, ramp) == 0.0
    assert blurred_rmse(ramp, cv2.resize(ramp, (64, 64), interpolation=cv2.INTER_AREA)) < 0.5
    assert blurred_rmse(ramp, 255 - ramp) > 50


# ---- MMAD's evaluation images --------------------------------------------------------------


def test_mmad_eval_images_lists_queries_and_templates(mmad_root: Path):
    entries = json.loads((mmad_root / "mmad.json").read_text())
    templates = {
        t for e in entries.values() for t in e["similar_templates"] + e["random_templates"]
    }
    images = mmad_eval_images(mmad_root)
    assert images.height == len(set(entries) | templates)
    assert set(images.filter(pl.col("role") == "query")["relpath"]) == set(entries)
    assert set(images.filter(pl.col("role") == "template")["relpath"]) == templates - set(entries)
    row = images.row(0, named=True)
    assert row["image_path"] == str(mmad_root / row["relpath"])
    assert row["sha256"] == sha(Path(row["image_path"]))


def test_mmad_eval_images_missing_files(mmad_root: Path, tmp_path: Path, caplog):
    root = tmp_path / "m"
    shutil.copytree(mmad_root, root)
    victim = next(iter((root / "MVTec-AD").rglob("*.png")))
    victim.unlink()
    rel = victim.relative_to(root).as_posix()
    with pytest.raises(LayoutError, match=f"1 listed images are not on disk \\({rel}\\)"):
        mmad_eval_images(root)
    with caplog.at_level(logging.WARNING, logger="iad_pipeline.questions.leakage"):
        images = mmad_eval_images(root, skip_missing=True)
    assert rel not in images["relpath"].to_list() and "missing" in caplog.text


def test_a_resized_mmad_query_in_training_is_caught(mmad_root: Path, tmp_path: Path):
    # MMAD's DS-MVTec images are resized copies of MVTec AD test images: the reverse case
    images = mmad_eval_images(mmad_root)
    query = images.filter(pl.col("relpath").str.starts_with("DS-MVTec/")).row(0, named=True)
    copy = resized_copy(query["image_path"], tmp_path / "train.png", 100)
    train = pl.DataFrame({"sample_id": ["mvtec_ad/x/test/y/000"], "image_path": [str(copy)]})
    leaks = find_leaks(train, images)
    assert leaks.select("kind", "eval_image_path").rows() == [("perceptual", query["image_path"])]

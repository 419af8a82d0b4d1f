"""Synthetic datasets: every tree matches its manifest, is reproducible and packs cleanly."""

from __future__ import annotations

import csv
import json
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from iad_pipeline.datasets.catalog import DATASET_KEYS, DEFECTS, VISA_DEFECTS
from iad_pipeline.errors import IadError, UnknownDatasetError
from iad_pipeline.synthetic import SynthReport, pack_archive, synthesize
from iad_pipeline.synthetic.archive import EPOCH
from iad_pipeline.synthetic.defects import MIN_PIXELS
from iad_pipeline.synthetic.layouts_raw import LOCO_PIXEL_VALUES

PER_CLASS = 2
SIZE = 64
# key -> (categories, images, anomalous, masks), counted by hand for per_class=2:
CASES = {
    # bottle 4 train + 2 good + 3x2 defects = 12; grid 4 + 2 + 5x2 = 16
    "mvtec_ad": (["bottle", "grid"], 28, 16, 16),
    "mpdd": (["tubes"], 8, 2, 2),  # 4 + 2 + 1x2
    "goodsad": (["drink_bottle"], 12, 6, 6),  # 4 + 2 + 3x2
    "dtd_synthetic": (["Woven_001"], 8, 2, 2),  # 4 + 2 + bad x2
    # candle 6 normal + 7x2 anomalies; pcb1 6 + 4x2 (spot-diff's defect classes)
    "visa": (["candle", "pcb1"], 34, 22, 22),
    # 4 train + 2 val + 2 good + 2 logical + 2 structural; image 001 of each has 2 regions
    "mvtec_loco": (["breakfast_box"], 12, 4, 6),
    "mvtec_3d": (["bagel"], 16, 8, 8),  # 4 train + 2 val + 2 good + 4x2
    "dagm": (["Class1"], 12, 4, 4),  # (4 normal + 2 defective) x Train, Test
    # queries only: bottle 2+6, breakfast_box 2+2+2 (6 masks), candle 2+14, drink_bottle 2+6
    "mmad": (["bottle", "breakfast_box", "candle", "drink_bottle"], 38, 30, 32),
}
GRAY = {("mvtec_ad", "grid"), ("mvtec_ad", "screw"), ("mvtec_ad", "zipper")}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SynthReport]:
    base = tmp_path_factory.mktemp("synthetic")
    return {
        key: synthesize(key, base / key, per_class=PER_CLASS, size=SIZE, categories=cats)
        for key, (cats, *_) in CASES.items()
    }


def read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"unreadable: {path}"
    return image


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_every_key_has_a_case() -> None:
    assert set(CASES) == set(DATASET_KEYS)


@pytest.mark.parametrize("key", list(CASES))
def test_counts_match_hand_computed(reports: dict[str, SynthReport], key: str) -> None:
    cats, n_images, n_anomalous, n_masks = CASES[key]
    report = reports[key]
    assert (report.n_images, report.n_anomalous, report.n_masks) == (
        n_images,
        n_anomalous,
        n_masks,
    )
    assert list(report.categories()) == cats


@pytest.mark.parametrize("key", list(CASES))
def test_images_and_masks_match_manifest(reports: dict[str, SynthReport], key: str) -> None:
    report = reports[key]
    assert report.root.is_dir()
    assert [p.name for p in report.root.parent.iterdir() if p.name.startswith(".")] == []
    seen = set()
    for im in report.images:
        assert Path(im.image).stem == im.stem
        assert (im.category, im.split, im.label, im.stem, im.source) not in seen
        seen.add((im.category, im.split, im.label, im.stem, im.source))
        assert im.split in ("train", "val", "test")
        image = read(report.root / im.image)
        assert image.dtype == np.uint8 and image.shape[:2] == (SIZE, SIZE)
        gray = (
            key == "dagm"
            or (key, im.category) in GRAY
            or (key == "mmad" and im.source == "DS-MVTec" and ("mvtec_ad", im.category) in GRAY)
        )
        assert image.ndim == (2 if gray else 3), im.image
        assert bool(im.masks) == im.is_anomalous
        for rel in im.masks:
            mask = read(report.root / rel)
            assert mask.ndim == 2 and mask.dtype == np.uint8 and mask.shape == (SIZE, SIZE)
            assert np.count_nonzero(mask) >= MIN_PIXELS, rel


@pytest.mark.parametrize("key", ["mvtec_ad", "mpdd", "goodsad", "dtd_synthetic", "mvtec_3d"])
def test_mvtec_like_trees(reports: dict[str, SynthReport], key: str) -> None:
    report = reports[key]
    for cat in report.categories():
        ours = [im for im in report.images if im.category == cat]
        labels = {im.label for im in ours if im.split == "test"}
        assert labels == {"good", *DEFECTS[key][cat]}
        by_split = {s: sum(im.split == s for im in ours) for s in ("train", "val")}
        assert by_split == {"train": 2 * PER_CLASS, "val": PER_CLASS if key == "mvtec_3d" else 0}
    for im in report.images:
        for rel in im.masks:
            assert set(np.unique(read(report.root / rel))) == {0, 255}


def test_mvtec_ad_paths_and_licence(reports: dict[str, SynthReport]) -> None:
    report = reports["mvtec_ad"]
    paths = {im.image for im in report.images}
    assert {"bottle/train/good/000.png", "bottle/test/broken_large/001.png"} <= paths
    broken = next(im for im in report.images if im.image == "bottle/test/broken_large/001.png")
    assert broken.masks == ("bottle/ground_truth/broken_large/001_mask.png",)
    assert "synthetic" in (report.root / "readme.txt").read_text().lower()
    assert (report.root / "license.txt").is_file()


def test_defect_regions_can_be_two_fragments(reports: dict[str, SynthReport]) -> None:
    report = reports["mvtec_ad"]
    counts = []
    for im in report.images:
        if im.masks:
            mask = read(report.root / im.masks[0])
            counts.append(cv2.connectedComponents((mask > 0).astype(np.uint8))[0] - 1)
    assert 1 in counts and 2 in counts


def test_goodsad_names(reports: dict[str, SynthReport]) -> None:
    report = reports["goodsad"]
    im = next(i for i in report.images if i.label == "cap_open")
    assert im.image == "drink_bottle/test/cap_open/002000.jpg"
    assert im.masks == ("drink_bottle/ground_truth/cap_open/002000.png",)


def test_visa_raw_layout(reports: dict[str, SynthReport]) -> None:
    report = reports["visa"]
    root = report.root
    with open(root / "split_csv/1cls.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["object", "split", "label", "image", "mask"]
    expected = [
        [
            im.category,
            im.split,
            "normal" if im.label == "good" else "anomaly",
            im.image,
            im.masks[0] if im.masks else "",
        ]
        for im in report.images
    ]
    assert rows[1:] == expected
    assert rows[1] == ["candle", "train", "normal", "candle/Data/Images/Normal/0000.JPG", ""]
    assert {im.label for im in report.images} == {"good", "bad"}
    two_defects = 0
    for cat in report.categories():
        with open(root / cat / "image_anno.csv", newline="") as fh:
            anno = list(csv.DictReader(fh))
        ids = {name: i + 1 for i, name in enumerate(VISA_DEFECTS[cat])}
        for row in anno:
            assert (root / row["image"]).is_file()
            if row["label"] == "normal":
                assert row["mask"] == ""
                continue
            names = row["label"].split(",")
            two_defects += len(names) == 2
            values = set(np.unique(read(root / row["mask"]))) - {0}
            assert values == {ids[n] for n in names}, row
    assert two_defects > 0
    assert ',"' in (root / "candle/image_anno.csv").read_text()


def test_loco_masks_carry_config_values(reports: dict[str, SynthReport]) -> None:
    report = reports["mvtec_loco"]
    root = report.root
    config = json.loads((root / "breakfast_box/defects_config.json").read_text())
    assert {tuple(sorted(d)) for d in config} == {
        ("defect_name", "pixel_value", "relative_saturation", "saturation_threshold")
    }
    values = {d["pixel_value"] for d in config}
    assert 255 not in values
    assert {im.split for im in report.images} == {"train", "val", "test"}
    assert (root / "breakfast_box/validation/good/000.png").is_file()
    region_counts = []
    for im in report.images:
        if not im.masks:
            continue
        folder = {str(Path(m).parent) for m in im.masks}
        assert folder == {f"breakfast_box/ground_truth/{im.label}/{im.stem}"}
        union = np.zeros((SIZE, SIZE), bool)
        for rel in im.masks:
            mask = read(root / rel)
            found = set(np.unique(mask)) - {0}
            assert len(found) == 1 and found <= values, rel
            assert not (union & (mask > 0)).any()
            union |= mask > 0
        region_counts.append(len(im.masks))
    assert sorted(region_counts) == [1, 1, 2, 2]
    assert set(LOCO_PIXEL_VALUES.values()) == values


def test_mvtec_3d_modalities(reports: dict[str, SynthReport]) -> None:
    report = reports["mvtec_3d"]
    for im in report.images:
        base = report.root / Path(im.image).parent.parent
        xyz = read(base / "xyz" / f"{im.stem}.tiff")
        assert xyz.dtype == np.float32 and xyz.shape == (SIZE, SIZE, 3)
        gt = base / "gt" / f"{im.stem}.png"
        assert gt.is_file() == (im.split == "test")
        if im.split == "test" and not im.is_anomalous:
            assert not read(gt).any()
        if im.masks:
            assert im.masks == (gt.relative_to(report.root).as_posix(),)


def test_dagm_labels_agree_with_files(reports: dict[str, SynthReport]) -> None:
    report = reports["dagm"]
    for folder, split in (("Train", "train"), ("Test", "test")):
        label_dir = report.root / "Class1" / folder / "Label"
        lines = (label_dir / "Labels.txt").read_text().splitlines()
        assert lines[0] == "1"
        rows = [line.split("\t") for line in lines[1:]]
        ours = [im for im in report.images if im.split == split]
        assert len(rows) == len(ours) == 3 * PER_CLASS
        for row, im in zip(rows, ours, strict=True):
            ident, flag, name, zero, label = row
            assert (int(ident), name, zero) == (int(im.stem), f"{im.stem}.PNG", "0")
            assert flag == ("1" if im.is_anomalous else "0")
            assert label == (f"{im.stem}_label.PNG" if im.is_anomalous else "0")
            assert im.image == f"Class1/{folder}/{name}"
        assert sorted(p.name for p in label_dir.iterdir()) == sorted(
            ["Labels.txt", *(f"{im.stem}_label.PNG" for im in ours if im.is_anomalous)]
        )
    assert [im.stem for im in report.images[:3]] == ["0001", "0002", "0003"]
    assert [im.label for im in report.images[:3]] == ["good", "defect", "good"]


def test_mmad_json_matches_manifest(reports: dict[str, SynthReport]) -> None:
    report = reports["mmad"]
    root = report.root
    questions = json.loads((root / "mmad.json").read_text())
    assert set(questions) == {im.image for im in report.images}
    assert {im.source for im in report.images} == {"DS-MVTec", "MVTec-LOCO", "VisA", "GoodsAD"}
    for im in report.images:
        entry = questions[im.image]
        class_dir = f"{im.source}/{im.category}"
        assert f"{class_dir}/{entry['image_path']}" == im.image
        assert im.split == "test" and im.label == im.image.split("/")[-2]
        assert (root / im.image).with_suffix(".txt").is_file()
        mask = root / class_dir / entry["mask_path"] if entry["mask_path"] else None
        if mask is None:
            assert im.masks == ()
        elif mask.is_dir():
            assert entry["mask_path"].endswith("/")
            assert im.masks == tuple(p.relative_to(root).as_posix() for p in sorted(mask.iterdir()))
        else:
            assert im.masks == (mask.relative_to(root).as_posix(),)
        for template in entry["similar_templates"] + entry["random_templates"]:
            assert (root / template).is_file() and "/train/good/" in template
        assert len(entry["similar_templates"]) == len(entry["random_templates"]) == 3
        types = [q["type"] for q in entry["conversation"]]
        assert len(types) == (8 if im.is_anomalous else 4)
        for q in entry["conversation"]:
            assert q["Answer"] in q["Options"] and isinstance(q["annotation"], bool)
        detection = entry["conversation"][0]
        assert detection["type"] == "Anomaly Detection"
        assert detection["Options"][detection["Answer"]] == ("Yes" if im.is_anomalous else "No")
    ds = next(im for im in report.images if im.label == "broken_large" and im.stem == "000")
    assert (root / "DS-MVTec/bottle/rbg_mask/broken_large/000_rbg_mask.png").is_file()
    assert ds.masks == ("DS-MVTec/bottle/mask/broken_large/000_mask.png",)
    assert (root / "MVTec-AD/bottle/train/good/000.png").is_file()
    knowledge = json.loads((root / "domain_knowledge.json").read_text())
    assert set(knowledge) == {"MVTec", "MVTec-LOCO", "VisA", "GoodsAD"}
    bottle = knowledge["MVTec"]["bottle"]
    assert set(bottle) == {"broken_large", "broken_small", "contamination", "good", "combined"}


def test_mmad_default_categories(tmp_path: Path) -> None:
    report = synthesize("mmad", tmp_path / "mmad", per_class=1, size=SIZE)
    assert report.categories() == ("bottle", "screw", "breakfast_box", "candle", "drink_bottle")


def test_same_arguments_same_bytes(tmp_path: Path) -> None:
    args = {"per_class": 2, "size": SIZE, "seed": 7}
    for key, cats in (("visa", ["candle"]), ("mvtec_3d", ["foam"]), ("mmad", ["candle"])):
        one = synthesize(key, tmp_path / f"{key}1", categories=cats, **args)
        two = synthesize(key, tmp_path / f"{key}2", categories=cats, **args)
        assert one.images == two.images
        assert files(one.root) == files(two.root)
    other = synthesize("visa", tmp_path / "seed8", categories=["candle"], **{**args, "seed": 8})
    assert files(other.root) != files(tmp_path / "visa1")


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("mvtec_loco", "mvtec_loco_anomaly_detection.tar.xz"),
        ("visa", "VisA_20220922.tar"),
        ("dagm", "DAGM_2007.zip"),
    ],
)
def test_pack_round_trip(
    reports: dict[str, SynthReport], tmp_path: Path, key: str, name: str
) -> None:
    root = reports[key].root
    path, digest = pack_archive(key, root, tmp_path / name)
    assert path == tmp_path / name and len(digest) == 64
    assert pack_archive(key, root, tmp_path / "again" / name)[1] == digest
    out = tmp_path / "extracted"
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            assert all(i.date_time == (2020, 1, 1, 0, 0, 0) for i in zf.infolist())
            zf.extractall(out)
    else:
        with tarfile.open(path) as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {
                (EPOCH, 0, 0, "", "")
            }
            tar.extractall(out, filter="data")
    assert names == sorted(names)
    top = {n.rstrip("/").split("/")[0] for n in names}
    assert top == {p.name for p in root.iterdir()}
    assert files(out) == files(root)


def test_pack_default_destination(reports: dict[str, SynthReport], tmp_path: Path) -> None:
    root = tmp_path / "goodsad"
    root.mkdir()
    (root / "a.txt").write_text("x")
    path, _ = pack_archive("goodsad", root)
    assert path == tmp_path / "GoodsAD.zip" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["GoodsAD.zip", "goodsad"]


def test_out_not_empty_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(IadError, match=r"not empty \(1 entries: keep.txt\)"):
        synthesize("mpdd", out, categories=["tubes"], size=SIZE)
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    file_out = tmp_path / "file"
    file_out.write_text("x")
    with pytest.raises(IadError, match="not a folder"):
        synthesize("mpdd", file_out, categories=["tubes"], size=SIZE)


def test_empty_out_folder_is_used(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    report = synthesize("mpdd", out, per_class=1, categories=["tubes"], size=SIZE, progress=True)
    assert (out / report.images[0].image).is_file()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"key": "mvtec"}, UnknownDatasetError, "valid keys: mvtec_ad, visa"),
        ({"categories": ["bottle"]}, IadError, "unknown categories \\['bottle'\\].*tubes"),
        ({"categories": []}, IadError, "empty category list"),
        ({"per_class": 0}, IadError, "positive integer, found 0"),
        ({"size": 16}, IadError, "at least 64 pixels, found 16"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    args = {"key": "mpdd", "out": tmp_path / "x", **kwargs}
    with pytest.raises(error, match=match):
        synthesize(**args)
    assert not (tmp_path / "x").exists()


def test_unknown_key_is_a_key_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        synthesize("nope", tmp_path / "x")


def test_pack_errors(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UnknownDatasetError, match="valid keys"):
        pack_archive("nope", root)
    with pytest.raises(IadError, match="not a folder"):
        pack_archive("mpdd", tmp_path / "missing")
    with pytest.raises(IadError, match="contain itself"):
        pack_archive("mpdd", root, root / "MPDD.zip")
    with pytest.raises(IadError, match="archive format"):
        pack_archive("mpdd", root, tmp_path / "MPDD.rar")

"""Real-world installs: md5 digests, per-resource overrides, MMAD's archive as released (a
wrapper folder, __MACOSX/, the json files apart), MMAD's mask-path forms, EMIT's corrected
copy, MVTec 3D-AD's non-image content, VisA's CRLF split file."""

import hashlib
import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iad_pipeline.datasets.catalog import MVTEC_3D_DEFECTS
from iad_pipeline.datasets.fetch import Source, fetch, read_marker
from iad_pipeline.datasets.ingest import read_samples
from iad_pipeline.datasets.registry import get_spec, resolve_spec
from iad_pipeline.errors import ChecksumMismatchError, IadError, LayoutError
from iad_pipeline.synthetic import pack_archive, synthesize

NO_CONFIG = {"IAD_DATASETS_CONFIG": "/nonexistent/datasets.yaml"}


@pytest.fixture(scope="module")
def mvtec_3d_archive(tmp_path_factory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("m3d")
    tree = base / "mvtec_3d"
    synthesize("mvtec_3d", tree, per_class=1, categories=["tire"])
    archive, _ = pack_archive("mvtec_3d", tree)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_mvtec_3d_ships_anomalibs_current_link_and_md5() -> None:
    main = get_spec("mvtec_3d").resources[0]
    assert "/shares/150646/25de33f1276dd418cd856f2f48a84cdb/" in main.url
    assert main.md5 == "d8bb2800fbf3ac88e798da6ae10dc819" and main.sha256 is None
    assert main.verified_with == "md5"
    assert "hole" in MVTEC_3D_DEFECTS["tire"]


def test_an_md5_verifies_the_download_and_the_marker_says_so(
    server, mvtec_3d_archive, tmp_path
) -> None:
    archive, md5 = mvtec_3d_archive
    url = server.add("/mvtec_3d.tar.xz", archive)
    env = {**NO_CONFIG, "IAD_MVTEC_3D_URL": url, "IAD_MVTEC_3D_MD5": md5.upper()}
    record = fetch("mvtec_3d", data_dir=tmp_path, accept_license=True, progress=False, env=env)
    entry = record.resources[0]
    assert entry["verified"] is True and entry["verified_with"] == "md5"
    assert entry["md5"] == md5
    assert entry["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    marker = json.loads((tmp_path / "mvtec_3d.complete").read_text())
    assert marker["resources"][0]["verified_with"] == "md5"
    assert not record.warnings or "no published" not in " ".join(record.warnings)


def test_a_wrong_md5_keeps_the_bytes_aside_and_installs_nothing(
    server, mvtec_3d_archive, tmp_path
) -> None:
    archive, _ = mvtec_3d_archive
    url = server.add("/mvtec_3d.tar.xz", archive)
    with pytest.raises(ChecksumMismatchError, match="md5 is"):
        fetch(
            "mvtec_3d",
            data_dir=tmp_path,
            accept_license=True,
            progress=False,
            env=NO_CONFIG,
            source=Source(url=url, md5="0" * 32),
        )
    assert read_marker(tmp_path, "mvtec_3d") is None
    assert not (tmp_path / "mvtec_3d").exists()
    downloads = tmp_path / ".downloads"
    assert [p.name for p in downloads.iterdir() if p.name.endswith(".corrupt")]


def test_md5_in_the_yaml_and_a_user_archive(mvtec_3d_archive, tmp_path) -> None:
    archive, md5 = mvtec_3d_archive
    config = tmp_path / "datasets.yaml"
    config.write_text(f"mvtec_3d:\n  md5: {md5}\n")
    env = {"IAD_DATASETS_CONFIG": str(config)}
    assert resolve_spec("mvtec_3d", env=env).resources[0].md5 == md5
    record = fetch(
        "mvtec_3d",
        data_dir=tmp_path / "data",
        accept_license=True,
        progress=False,
        env=env,
        source=Source(from_path=archive),
    )
    assert record.resources[0]["verified_with"] == "md5"
    config.write_text("mvtec_3d:\n  md5: beef\n")
    with pytest.raises(IadError, match="md5 must be 32 hex digits"):
        resolve_spec("mvtec_3d", env=env)


def test_every_resource_takes_its_own_url_and_digest(tmp_path) -> None:
    digest = "a" * 64
    env = {
        **NO_CONFIG,
        "IAD_MMAD_MMAD_JSON_URL": "https://mirror.example/mmad.json",
        "IAD_MMAD_DOMAIN_KNOWLEDGE_JSON_SHA256": digest,
        "IAD_MMAD_URL": "https://mirror.example/ALL_DATA.zip",
    }
    zip_, mmad_json, knowledge = resolve_spec("mmad", env=env).resources
    assert zip_.url == "https://mirror.example/ALL_DATA.zip"
    assert mmad_json.url == "https://mirror.example/mmad.json"
    assert mmad_json.sha256 == get_spec("mmad").resources[1].sha256  # url moved, same file
    assert knowledge.sha256 == digest and knowledge.url == get_spec("mmad").resources[2].url
    config = tmp_path / "datasets.yaml"
    config.write_text(
        "mmad:\n  resources:\n    domain_knowledge.json:\n      url: https://y.example/dk.json\n"
    )
    spec = resolve_spec("mmad", env={"IAD_DATASETS_CONFIG": str(config)})
    assert spec.resources[2].url == "https://y.example/dk.json"
    config.write_text("mmad:\n  resources:\n    nope.json: {url: x}\n")
    with pytest.raises(IadError, match=r"mmad\.resources may name"):
        resolve_spec("mmad", env={"IAD_DATASETS_CONFIG": str(config)})


def _install(key: str, tree: Path, data: Path, env: dict[str, str] = NO_CONFIG):
    """Install ``tree``, a copy the user downloaded (``--from``), as ``key`` into ``data``."""
    return fetch(key, data_dir=data, accept_license=True, env=env, source=Source(from_path=tree))


@pytest.fixture(scope="module")
def mmad_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("mmad") / "mmad"
    synthesize("mmad", tree, per_class=1)
    return tree


def _release_zip(tree: Path, dest: Path, *, wrapper: str = "ALL_DATA") -> Path:
    """MMAD's ALL_DATA.zip as released: the image folders in one wrapper folder, no json
    files, and the __MACOSX/ resource forks a Finder-made zip carries."""
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree).as_posix()
            if path.is_file() and not rel.endswith(".json"):
                zf.write(path, f"{wrapper}/{rel}" if wrapper else rel)
        zf.writestr(f"__MACOSX/{wrapper}/._DS-MVTec", b"\x00\x05\x16\x07")
        zf.writestr("__MACOSX/._ALL_DATA", b"\x00\x05\x16\x07")
    return dest


def _serve_mmad(server, tree: Path, archive: Path) -> dict[str, str]:
    env = {**NO_CONFIG, "IAD_MMAD_URL": server.add("/ALL_DATA.zip", archive)}
    for name, var in (
        ("mmad.json", "MMAD_JSON"),
        ("domain_knowledge.json", "DOMAIN_KNOWLEDGE_JSON"),
    ):
        data = (tree / name).read_bytes()
        env[f"IAD_MMAD_{var}_URL"] = server.add(f"/{name}", data)
        env[f"IAD_MMAD_{var}_SHA256"] = hashlib.sha256(data).hexdigest()
    return env


def test_mmad_installs_from_its_released_zip_and_two_json_files(
    server, mmad_tree, tmp_path
) -> None:
    archive = _release_zip(mmad_tree, tmp_path / "ALL_DATA.zip")
    env = _serve_mmad(server, mmad_tree, archive)
    record = fetch("mmad", data_dir=tmp_path / "data", accept_license=True, progress=False, env=env)
    assert [r["filename"] for r in record.resources] == [
        "ALL_DATA.zip",
        "mmad.json",
        "domain_knowledge.json",
    ]
    assert [r["verified_with"] for r in record.resources] == [None, "sha256", "sha256"]
    root = tmp_path / "data" / "mmad"
    assert {"mmad.json", "domain_knowledge.json", "DS-MVTec", "VisA"} <= {
        p.name for p in root.iterdir()
    }
    assert not (root / "__MACOSX").exists() and not (root / "ALL_DATA").exists()
    expected = len(json.loads((mmad_tree / "mmad.json").read_text()))
    assert read_samples("mmad", tmp_path / "data").samples.height == expected


def test_a_zip_of_another_layout_is_refused_before_extraction(server, mmad_tree, tmp_path) -> None:
    archive = tmp_path / "ALL_DATA.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ALL_DATA/images/000.png", b"png")
        zf.writestr("ALL_DATA/readme.txt", b"hello")
    env = _serve_mmad(server, mmad_tree, archive)
    data = tmp_path / "data"
    with pytest.raises(LayoutError, match="nothing was extracted") as exc:
        fetch("mmad", data_dir=data, accept_license=True, progress=False, env=env)
    assert "ALL_DATA/ holds images, readme.txt" in str(exc.value)
    # reported before anything was written beside the downloads
    assert sorted(p.name for p in data.iterdir()) == [".downloads", ".mmad.lock"]


def test_mmad_mask_path_forms_are_resolved_and_recorded(mmad_tree, tmp_path, caplog) -> None:
    tree = tmp_path / "mmad"
    shutil.copytree(mmad_tree, tree)
    data = json.loads((tree / "mmad.json").read_text())
    png_key = next(k for k, v in data.items() if v["mask_path"].endswith(".png"))
    data[png_key]["mask_path"] = data[png_key]["mask_path"][: -len(".png")] + ".jpg"
    loco_key = next(k for k, v in data.items() if k.startswith("MVTec-LOCO") and v["mask_path"])
    data[loco_key]["mask_path"] = data[loco_key]["mask_path"].rstrip("/")  # no extension
    (tree / "mmad.json").write_text(json.dumps(data))
    _install("mmad", tree, tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="iad_pipeline.datasets.mmad"):
        result = read_samples("mmad", tmp_path / "data")
    rows = {r["image_path"]: r for r in result.samples.iter_rows(named=True)}
    by_key = {str(Path(p).relative_to(tmp_path / "data" / "mmad")): r for p, r in rows.items()}
    assert [Path(m).suffix for m in by_key[png_key]["mask_paths"]] == [".png"]
    assert all(Path(m).is_file() for m in by_key[png_key]["mask_paths"])
    assert len(by_key[loco_key]["mask_paths"]) >= 1
    assert result.quarantine.filter(result.quarantine["reason"] == "missing_mask").height == 0
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "1 jpg_as_png" in logged and "folder" in logged


def test_mmad_source_emit_installs_a_users_copy_and_records_it(mmad_tree, tmp_path) -> None:
    env = {**NO_CONFIG, "IAD_MMAD_MMAD_SOURCE": "emit"}
    with pytest.raises(IadError, match="pass --from PATH"):
        fetch("mmad", data_dir=tmp_path / "a", accept_license=True, progress=False, env=env)
    record = _install("mmad", mmad_tree, tmp_path / "b", env=env)
    assert record.variant == "emit"
    assert json.loads((tmp_path / "b" / "mmad.complete").read_text())["variant"] == "emit"
    config = tmp_path / "datasets.yaml"
    config.write_text("mmad:\n  mmad_source: other\n")
    with pytest.raises(IadError, match="mmad_source must be one of hf, emit"):
        fetch("mmad", data_dir=tmp_path / "c", env={"IAD_DATASETS_CONFIG": str(config)})


def test_mvtec_3d_calibration_and_text_files_are_not_quarantined(tmp_path) -> None:
    from iad_pipeline.annotate import mask_boxes

    tree = tmp_path / "mvtec_3d"
    synthesize("mvtec_3d", tree, per_class=1, categories=["tire"])
    # what the released archive holds besides the images
    (tree / "readme.txt").write_text("MVTec 3D-AD")
    (tree / "license.txt").write_text("CC BY-NC-SA 4.0")
    (tree / "tire" / "calibration").mkdir()
    (tree / "tire" / "calibration" / "camera_parameters.json").write_text("{}")
    (tree / "tire" / "class_ids.json").write_text('{"hole": 253}')
    # a gt mask with class-id values instead of 255
    gt = next((tree / "tire" / "test" / "hole" / "gt").iterdir())
    mask = np.asarray(Image.open(gt))
    classed = np.where(mask > 0, 253, 0).astype(np.uint8)
    classed[np.nonzero(mask)[0][:1], np.nonzero(mask)[1][:1]] = 255
    Image.fromarray(classed).save(gt)
    _install("mvtec_3d", tree, tmp_path / "data", env={})
    result = read_samples("mvtec_3d", tmp_path / "data")
    assert result.quarantine.height == 0, result.quarantine.to_dicts()
    assert set(result.samples["label"]) >= {"good", "hole"}
    boxes = mask_boxes(np.asarray(Image.open(gt)))
    assert boxes  # read as binary: the class-id region is a defect


def test_visa_from_a_real_format_split_csv_with_crlf(tmp_path) -> None:
    tree = tmp_path / "visa"
    synthesize("visa", tree, per_class=1, categories=["candle"])
    split = tree / "split_csv" / "1cls.csv"
    lines = split.read_text().splitlines()
    assert lines[0] == "object,split,label,image,mask"  # the released header
    assert any(",normal," in line and line.endswith(",") for line in lines)  # no mask: empty
    fetch("visa", data_dir=tmp_path / "lf", env={}, source=Source(from_path=tree))
    lf = read_samples("visa", tmp_path / "lf").samples
    crlf_tree = tmp_path / "visa_crlf"
    shutil.copytree(tree, crlf_tree)
    (crlf_tree / "split_csv" / "1cls.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    fetch("visa", data_dir=tmp_path / "crlf", env={}, source=Source(from_path=crlf_tree))
    result = read_samples("visa", tmp_path / "crlf")
    assert result.quarantine.height == 0
    assert (
        result.samples.select("sample_id", "split", "label")
        .sort("sample_id")
        .equals(lf.select("sample_id", "split", "label").sort("sample_id"))
    )
    assert all(not p.endswith("\r") for ms in result.samples["mask_paths"] for p in ms)


def test_mmad_json_paths_that_leave_the_folder_are_not_read(mmad_tree, tmp_path) -> None:
    tree = tmp_path / "mmad"
    shutil.copytree(mmad_tree, tree)
    (tmp_path / "secret.png").write_bytes(
        (tree / next(iter(json.loads((tree / "mmad.json").read_text())))).read_bytes()
    )
    data = json.loads((tree / "mmad.json").read_text())
    first = next(iter(data.values()))
    data["DS-MVTec/bottle/image/../../../../secret.png"] = first
    masked = next(k for k, v in data.items() if v["mask_path"].endswith(".png"))
    data[masked] = {**data[masked], "mask_path": "../../../secret.png"}
    (tree / "mmad.json").write_text(json.dumps(data))
    _install("mmad", tree, tmp_path / "data")
    # a manifest pointing outside its folder is refused whole, naming the file: nothing read
    with pytest.raises(LayoutError, match=r"mmad\.json: .* has a '\.\.' component"):
        read_samples("mmad", tmp_path / "data")

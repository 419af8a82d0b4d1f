"""Installing datasets end to end: loopback downloads of real archive formats, --from, markers."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from iad_pipeline.datasets.fetch import Source, dataset_path, fetch, marker_path, read_marker
from iad_pipeline.datasets.ingest import read_samples
from iad_pipeline.errors import (
    ChecksumMismatchError,
    IadError,
    LayoutError,
    LicenseNotAcceptedError,
    LinkMovedError,
)
from iad_pipeline.synthetic import pack_archive

QUIET = {"progress": False, "env": {}}


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Synthetic trees packed in their real archive formats: tar.xz, plain tar, zip."""
    from iad_pipeline.synthetic import synthesize

    base = tmp_path_factory.mktemp("archives")
    out = {}
    for key, cats in (
        ("mvtec_ad", ["bottle"]),
        ("visa", ["candle"]),
        ("mpdd", ["tubes"]),
        ("mmad", None),
    ):
        synthesize(key, base / key, per_class=1, categories=cats)
        out[key] = pack_archive(key, base / key)
    return out


def test_download_verify_extract_and_read(server, archives, tmp_path) -> None:
    archive, digest = archives["mvtec_ad"]
    url = server.add(
        "/mvtec_anomaly_detection.tar.xz", archive, drop_after=archive.stat().st_size // 2
    )
    data_dir = tmp_path / "data"
    record = fetch(
        "mvtec_ad",
        data_dir=data_dir,
        accept_license=True,
        retries=3,
        **QUIET,
        source=Source(url=url, sha256=digest),
    )
    assert record.mode == "download"
    assert server.route("/mvtec_anomaly_detection.tar.xz").bytes_sent == archive.stat().st_size
    assert (dataset_path(data_dir, "mvtec_ad") / "bottle" / "train" / "good").is_dir()
    marker = json.loads(marker_path(data_dir, "mvtec_ad").read_text())
    assert marker["resources"][0]["sha256"] == digest
    assert marker["licence"] == "CC BY-NC-SA 4.0"
    assert "14 of 15 categories absent" in marker["warnings"][0]
    # the archive is kept for re-verification; nothing else is left behind but the lock
    # file (never deleted: see fsutil.file_lock)
    assert sorted(p.name for p in data_dir.iterdir()) == [
        ".downloads",
        ".mvtec_ad.lock",
        "mvtec_ad",
        "mvtec_ad.complete",
    ]
    assert read_samples("mvtec_ad", data_dir).samples.height > 0
    again = fetch(
        "mvtec_ad",
        data_dir=data_dir,
        accept_license=True,
        **QUIET,
        source=Source(url=url, sha256=digest),
    )
    assert again.already_installed


def test_plain_tar_of_visa_needs_no_licence_flag(server, archives, tmp_path) -> None:
    archive, digest = archives["visa"]
    url = server.add("/VisA_20220922.tar", archive)
    fetch("visa", data_dir=tmp_path, **QUIET, source=Source(url=url, sha256=digest))
    assert (tmp_path / "visa" / "split_csv" / "1cls.csv").is_file()


def test_hash_mismatch_extracts_nothing_and_keeps_the_bytes_aside(server, archives, tmp_path):
    archive, digest = archives["mvtec_ad"]
    url = server.add("/a.tar.xz", archive)
    with pytest.raises(ChecksumMismatchError, match="corrupt"):
        fetch(
            "mvtec_ad",
            data_dir=tmp_path,
            accept_license=True,
            retries=0,
            **QUIET,
            source=Source(url=url, sha256="0" * 64),
        )
    assert not (tmp_path / "mvtec_ad").exists()
    assert read_marker(tmp_path, "mvtec_ad") is None
    corrupt = tmp_path / ".downloads" / "mvtec_anomaly_detection.tar.xz.corrupt"
    assert hashlib.sha256(corrupt.read_bytes()).hexdigest() == digest


def test_moved_link_says_how_to_pass_a_new_one(server, tmp_path) -> None:
    server.add("/gone.tar.xz", b"", status=404)
    with pytest.raises(LinkMovedError, match="IAD_MVTEC_AD_URL"):
        fetch(
            "mvtec_ad",
            data_dir=tmp_path,
            accept_license=True,
            retries=0,
            **QUIET,
            source=Source(url=server.url("/gone.tar.xz")),
        )
    assert not (tmp_path / "mvtec_ad").exists()


def test_licence_gate_refuses_before_any_request(server, archives, tmp_path) -> None:
    url = server.add("/a.tar.xz", archives["mvtec_ad"][0])
    with pytest.raises(LicenseNotAcceptedError, match="CC BY-NC-SA"):
        fetch("mvtec_ad", data_dir=tmp_path, **QUIET, source=Source(url=url))
    assert server.requests_seen == 0


def test_mmad_downloads_the_zip_and_the_json_files(server, archives, tmp_path) -> None:
    archive, digest = archives["mmad"]
    src = archive.parent / "mmad"
    server.add("/ALL_DATA.zip", archive)
    for name in ("mmad.json", "domain_knowledge.json"):
        server.add(f"/{name}", (src / name).read_bytes())
    env = {"IAD_MMAD_URL": server.url("/ALL_DATA.zip"), "IAD_MMAD_SHA256": digest}
    # the json resources point at the real host; redirect them to the loopback server
    import dataclasses

    from iad_pipeline.datasets import mmad

    spec = mmad.SPEC
    patched = dataclasses.replace(
        spec,
        resources=(
            spec.resources[0],
            dataclasses.replace(
                spec.resources[1],
                url=server.url("/mmad.json"),
                sha256=hashlib.sha256((src / "mmad.json").read_bytes()).hexdigest(),
            ),
            dataclasses.replace(spec.resources[2], url=server.url("/domain_knowledge.json")),
        ),
    )
    from iad_pipeline.datasets import registry

    registry.SPECS["mmad"] = patched
    try:
        record = fetch("mmad", data_dir=tmp_path, accept_license=True, progress=False, env=env)
    finally:
        registry.SPECS["mmad"] = spec
    assert [r["filename"] for r in record.resources] == [
        "ALL_DATA.zip",
        "mmad.json",
        "domain_knowledge.json",
    ]
    assert [r["verified"] for r in record.resources] == [True, True, False]
    assert (tmp_path / "mmad" / "mmad.json").is_file()
    assert read_samples("mmad", tmp_path).samples.height == len(
        json.loads((src / "mmad.json").read_text())
    )


# --- manual datasets and --from ---------------------------------------------------------------


def test_manual_dataset_without_from_explains_what_to_do(tmp_path) -> None:
    with pytest.raises(IadError, match="--from PATH"):
        fetch("mpdd", data_dir=tmp_path, accept_license=True, **QUIET)


def test_from_folder_links_and_never_writes_into_it(archives, tmp_path) -> None:
    src = archives["mpdd"][0].parent / "mpdd"
    before = listing(src)
    record = fetch(
        "mpdd",
        data_dir=tmp_path / "data",
        accept_license=True,
        **QUIET,
        source=Source(from_path=src),
    )
    assert record.mode == "folder"
    assert (tmp_path / "data" / "mpdd").resolve() == src.resolve()
    assert listing(src) == before
    assert read_samples("mpdd", tmp_path / "data").samples.height > 0


def test_from_folder_with_a_wrapper_folder(archives, tmp_path) -> None:
    wrapped = tmp_path / "download" / "MPDD"
    shutil.copytree(archives["mpdd"][0].parent / "mpdd", wrapped)
    fetch(
        "mpdd",
        data_dir=tmp_path / "data",
        accept_license=True,
        **QUIET,
        source=Source(from_path=wrapped.parent),
    )
    assert (tmp_path / "data" / "mpdd").resolve() == wrapped.resolve()


def test_from_incomplete_folder_says_exactly_what_is_missing(archives, tmp_path) -> None:
    src = tmp_path / "mpdd"
    shutil.copytree(archives["mpdd"][0].parent / "mpdd", src)
    shutil.rmtree(src / "tubes" / "train")
    (src / "metal_plate" / "test").mkdir(parents=True)
    with pytest.raises(LayoutError, match=r"missing: metal_plate/train/good/; tubes/train/good/"):
        fetch(
            "mpdd",
            data_dir=tmp_path / "data",
            accept_license=True,
            **QUIET,
            source=Source(from_path=src),
        )
    assert not (tmp_path / "data" / "mpdd").exists()


def test_from_archive_is_verified_then_extracted(archives, tmp_path) -> None:
    archive, digest = archives["mpdd"]
    fetch(
        "mpdd",
        data_dir=tmp_path,
        accept_license=True,
        **QUIET,
        source=Source(from_path=archive, sha256=digest),
    )
    assert (tmp_path / "mpdd" / "tubes" / "train" / "good").is_dir()
    with pytest.raises(ChecksumMismatchError, match="expected"):
        fetch(
            "mpdd",
            data_dir=tmp_path / "other",
            accept_license=True,
            **QUIET,
            source=Source(from_path=archive, sha256="1" * 64),
        )
    assert archive.is_file()  # the user's archive is never moved or renamed


def test_existing_folder_without_marker_is_left_alone(archives, tmp_path) -> None:
    (tmp_path / "mpdd").mkdir()
    (tmp_path / "mpdd" / "mine.txt").write_text("keep me")
    with pytest.raises(IadError, match=r"no mpdd\.complete marker"):
        fetch(
            "mpdd",
            data_dir=tmp_path,
            accept_license=True,
            **QUIET,
            source=Source(from_path=archives["mpdd"][0]),
        )
    assert (tmp_path / "mpdd" / "mine.txt").read_text() == "keep me"

"""Behaviour of :mod:`iad_pipeline.datasets.extract` on archives built in ``tmp_path``.

Good archives of every supported kind extract to the same tree. Hostile ones are refused
before anything is written: after each refusal the target does not exist, no temporary folder
is left, and nothing appeared anywhere else under ``tmp_path``.
"""

from __future__ import annotations

import functools
import io
import stat
import tarfile
import types
import zipfile
from pathlib import Path

import pytest

from iad_pipeline.datasets import extract as extract_module
from iad_pipeline.datasets.extract import archive_kind, list_members, safe_extract
from iad_pipeline.errors import IadError, InsufficientDiskSpaceError, UnsafeArchiveError

# name -> content (None for a folder): an MVTec-like tree with an empty file and unicode.
TREE: dict[str, bytes | None] = {
    "bottle/": None,
    "bottle/train/good/000.png": b"\x89PNG good",
    "bottle/test/broken_large/000.png": b"\x89PNG broken",
    "bottle/ground_truth/broken_large/000_mask.png": b"",
    "bottle/licence_été.txt": "CC BY-NC-SA 4.0 — ü".encode(),
}


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


def spec(*args, **kwargs) -> functools.partial:
    """A member to build later: each test needs fresh TarInfo and file objects."""
    return functools.partial(tar_member, *args, **kwargs)


def write_tar(path: Path, members, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, fileobj in members:
            tf.addfile(info, fileobj)
    return path


def tree_tar(path: Path, mode: str) -> Path:
    members = [
        tar_member(name, tarfile.DIRTYPE) if data is None else tar_member(name, data=data)
        for name, data in TREE.items()
    ]
    return write_tar(path, members, mode)


def write_zip(path: Path, entries) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry, data in entries:
            zf.writestr(entry, data)
    return path


def tree_zip(path: Path, _mode: str) -> Path:
    return write_zip(path, [(name, data or b"") for name, data in TREE.items()])


def zip_entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix, so the mode bits count
    info.external_attr = mode << 16
    return info


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def read_tree(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)) + ("/" if p.is_dir() else ""): None
        if p.is_dir()
        else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


EXPECTED_TREE = {
    "bottle/": None,
    "bottle/ground_truth/": None,
    "bottle/ground_truth/broken_large/": None,
    "bottle/ground_truth/broken_large/000_mask.png": b"",
    "bottle/licence_été.txt": "CC BY-NC-SA 4.0 — ü".encode(),
    "bottle/test/": None,
    "bottle/test/broken_large/": None,
    "bottle/test/broken_large/000.png": b"\x89PNG broken",
    "bottle/train/": None,
    "bottle/train/good/": None,
    "bottle/train/good/000.png": b"\x89PNG good",
}


@pytest.mark.parametrize(
    ("filename", "build", "mode", "kind"),
    [
        ("mvtec.tar.gz", tree_tar, "w:gz", "tar"),
        ("mvtec.tar.xz", tree_tar, "w:xz", "tar"),
        ("mvtec.tar.bz2", tree_tar, "w:bz2", "tar"),
        ("mvtec.tar", tree_tar, "w", "tar"),
        ("visa.zip", tree_zip, "", "zip"),
        ("misnamed.tar.gz", tree_zip, "", "zip"),  # detected by content, not by name
        ("misnamed.zip", tree_tar, "w:xz", "tar"),
    ],
)
def test_good_archives_extract_the_whole_tree(tmp_path, filename, build, mode, kind):
    archive = build(tmp_path / filename, mode)

    out = safe_extract(archive, tmp_path / "data" / "mvtec", progress=False)

    assert archive_kind(archive) == kind
    assert out == tmp_path / "data" / "mvtec"
    assert read_tree(out) == EXPECTED_TREE
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["mvtec"]  # no temp left
    assert archive.exists()  # the archive is kept, unlike anomalib's extract


def test_list_members_gives_names_in_archive_order(tmp_path):
    archive = tree_tar(tmp_path / "a.tar.gz", "w:gz")
    assert list_members(archive) == [name.rstrip("/") for name in TREE]


def test_symlink_inside_the_target_is_kept_for_tar(tmp_path):
    archive = write_tar(
        tmp_path / "a.tar",
        [
            tar_member("d/real.txt", data=b"x"),
            tar_member("d/alias.txt", tarfile.SYMTYPE, linkname="real.txt"),
            tar_member("up.txt", tarfile.SYMTYPE, linkname="d/../d/real.txt"),
            tar_member("d/hard.txt", tarfile.LNKTYPE, linkname="d/real.txt"),
        ],
        "w",
    )
    out = safe_extract(archive, tmp_path / "out", progress=False)
    assert (out / "d/alias.txt").is_symlink()
    assert [(out / n).read_bytes() for n in ("d/alias.txt", "up.txt", "d/hard.txt")] == [b"x"] * 3


UNSAFE_TAR = [
    # (case id, members, text the message must contain, paths under tmp_path that must not exist)
    ("dotdot", [spec("../evil", data=b"x")], "'..' component", ["evil"]),
    ("dotdot-deep", [spec("a/../../evil", data=b"x")], "'..' component", ["evil"]),
    ("backslash-dotdot", [spec("..\\evil", data=b"x")], "'..' component", []),
    ("absolute", [spec("{tmp}/abs_evil", data=b"x")], "absolute path", ["abs_evil"]),
    ("drive-letter", [spec("C:/evil", data=b"x")], "absolute path", []),
    ("unc", [spec("\\\\server\\evil", data=b"x")], "absolute path", []),
    ("symlink-abs", [spec("link", tarfile.SYMTYPE, linkname="/etc")], "absolute", []),
    (
        "symlink-up",
        [spec("a/link", tarfile.SYMTYPE, linkname="../../outside")],
        "outside the target",
        ["outside"],
    ),
    (
        "symlink-then-write-through",
        [
            spec("sub", tarfile.DIRTYPE),
            spec("link", tarfile.SYMTYPE, linkname="sub"),
            spec("link/evil", data=b"x"),
        ],
        "written through the archive's symlink",
        [],
    ),
    (
        "symlink-chain-escape",  # "d -> ." then "e/s -> ../d/../x" resolves outside
        [
            spec("d", tarfile.SYMTYPE, linkname="."),
            spec("e/s", tarfile.SYMTYPE, linkname="../d/../x"),
        ],
        "passes through the archive's symlink",
        ["x"],
    ),
    (
        "symlink-then-same-name-file",
        [
            spec("f", tarfile.SYMTYPE, linkname="g"),
            spec("f", data=b"x"),
        ],
        "same name as a symlink",
        [],
    ),
    (
        "hardlink-up",
        [spec("hl", tarfile.LNKTYPE, linkname="../outside_file")],
        "outside the target",
        ["outside_file"],
    ),
    (
        "hardlink-abs",
        [spec("hl", tarfile.LNKTYPE, linkname="/etc/passwd")],
        "absolute",
        [],
    ),
    ("fifo", [spec("pipe", tarfile.FIFOTYPE)], "a FIFO", []),
    (
        "char-device",
        [spec("null", tarfile.CHRTYPE, devmajor=1, devminor=3)],
        "character device",
        [],
    ),
    ("block-device", [spec("sda", tarfile.BLKTYPE)], "block device", []),
]


@pytest.mark.parametrize(
    ("members", "why", "outside"), [case[1:] for case in UNSAFE_TAR], ids=[c[0] for c in UNSAFE_TAR]
)
def test_unsafe_tar_members_are_refused_before_anything_is_written(tmp_path, members, why, outside):
    work = tmp_path / "work"
    work.mkdir()
    members = [build() for build in members]
    for info, _ in members:
        info.name = info.name.replace("{tmp}", str(tmp_path))
    # A harmless member first: it must not be extracted either.
    archive = write_tar(work / "a.tar.gz", [tar_member("ok.txt", data=b"ok"), *members])
    before = snapshot(tmp_path)

    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, work / "out", progress=False)

    assert str(archive) in str(info.value) and why in str(info.value)
    assert repr(members[-1][0].name) in str(info.value)
    assert snapshot(tmp_path) == before  # no target, no temp folder, nothing outside
    for name in outside:
        assert not (tmp_path / name).exists()


UNSAFE_ZIP = [
    ("dotdot", zipfile.ZipInfo("../evil"), "'..' component"),
    ("absolute", zipfile.ZipInfo("/abs_evil"), "absolute path"),
    ("drive-letter", zipfile.ZipInfo("C:\\evil"), "absolute path"),
    ("backslash-dotdot", zipfile.ZipInfo("a\\..\\..\\evil"), "'..' component"),
    ("symlink", zip_entry("link", stat.S_IFLNK | 0o777), "symlink"),
    ("fifo", zip_entry("pipe", stat.S_IFIFO | 0o644), "device file, FIFO"),
]


@pytest.mark.parametrize(
    ("entry", "why"), [case[1:] for case in UNSAFE_ZIP], ids=[c[0] for c in UNSAFE_ZIP]
)
def test_unsafe_zip_entries_are_refused_before_anything_is_written(tmp_path, entry, why):
    work = tmp_path / "work"
    work.mkdir()
    # zipfile.writestr keeps the name as given (ZipInfo does not sanitise it).
    archive = write_zip(work / "a.zip", [("ok.txt", b"ok"), (entry, b"/etc")])
    before = snapshot(tmp_path)

    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, work / "out", progress=False)

    assert str(archive) in str(info.value) and why in str(info.value)
    assert repr(entry.filename) in str(info.value)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "evil").exists()


def test_existing_target_is_refused_and_left_untouched(tmp_path):
    archive = tree_zip(tmp_path / "a.zip", "")
    target = tmp_path / "mvtec"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")

    with pytest.raises(IadError, match=r"already exists.*Move it away"):
        safe_extract(archive, target, progress=False)

    assert read_tree(target) == {"mine.txt": b"keep me"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "mvtec"]


def test_not_enough_disk_space_is_refused_before_writing(tmp_path, monkeypatch):
    archive = tree_tar(tmp_path / "a.tar.xz", "w:xz")
    fake_usage = types.SimpleNamespace(total=10**12, used=10**12, free=1024)
    monkeypatch.setattr(extract_module.shutil, "disk_usage", lambda _: fake_usage)

    with pytest.raises(InsufficientDiskSpaceError, match="free"):
        safe_extract(archive, tmp_path / "out", progress=False)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.xz"]


def test_truncated_archive_is_reported_and_cleaned_up(tmp_path):
    big = tmp_path / "big.tar.gz"
    write_tar(big, [tar_member(f"f{i}.bin", data=bytes(range(256)) * 400) for i in range(20)])
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(big.read_bytes()[: big.stat().st_size // 2])

    with pytest.raises(IadError, match=r"corrupt or truncated.*download it again"):
        safe_extract(truncated, tmp_path / "out", progress=False)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tar.gz", "cut.tar.gz"]


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"<!DOCTYPE html><html>Sign in</html>", "HTML page"),
        (b"\x00\x01\x02\x03 not an archive", "00 01 02 03"),
        (b"", "starting with bytes"),
    ],
)
def test_non_archives_are_named_with_what_was_found(tmp_path, content, found):
    path = tmp_path / "mvtec.tar.xz"
    path.write_bytes(content)
    with pytest.raises(IadError, match=found):
        archive_kind(path)
    with pytest.raises(IadError, match=found):
        safe_extract(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()

"""Decompression bombs are refused from the member list, before anything is written."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from iad_pipeline.datasets.extract import safe_extract
from iad_pipeline.errors import UnsafeArchiveError

MIB = 1024 * 1024
ZEROS = b"\0" * MIB


def zip_bomb(path: Path, mib: int = 200) -> Path:
    """A zip of about 200 KB holding ``mib`` MiB of zeros."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("bottle/train/good/000.png", "w", force_zip64=True) as out,
    ):
        for _ in range(mib):
            out.write(ZEROS)
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def tar_bomb(path: Path, mib: int = 200) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("bottle/train/good/000.png")
        info.size = mib * MIB
        tf.addfile(info, io.BufferedReader(_Zeros(info.size)))
    return path


@pytest.mark.parametrize("build", [zip_bomb, tar_bomb], ids=["zip", "tar.gz"])
def test_a_200_kb_archive_of_200_mb_is_refused_before_writing(tmp_path, build) -> None:
    archive = build(tmp_path / "bomb.bin")
    assert archive.stat().st_size < 1 * MIB
    with pytest.raises(UnsafeArchiveError, match=r"expands \d+-fold .* IAD_MAX_EXTRACT_RATIO"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.bin"]  # nothing written


def test_the_ratio_cap_can_be_raised_for_a_legitimate_archive(tmp_path, monkeypatch) -> None:
    archive = zip_bomb(tmp_path / "zeros.zip", mib=70)
    monkeypatch.setenv("IAD_MAX_EXTRACT_RATIO", "1000000")
    out = safe_extract(archive, tmp_path / "out", progress=False)
    assert (out / "bottle/train/good/000.png").stat().st_size == 70 * MIB


def test_the_absolute_cap_refuses_an_archive_too_big_for_it(tmp_path, monkeypatch) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("bottle/train/good/000.png", b"x" * 5000)
    monkeypatch.setenv("IAD_MAX_EXTRACT_BYTES", "4096")
    with pytest.raises(UnsafeArchiveError, match=r"above the cap .* IAD_MAX_EXTRACT_BYTES"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
